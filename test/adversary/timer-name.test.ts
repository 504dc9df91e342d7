/**
 * Issue 20, item 6: a process name is not a record. The host's release timers that are processes
 * of the SSH session (no systemd-run for the account) used to be found with `pgrep -f
 * nrhi-release:<table>:<netns>:`, a name any local user can give a process (`exec -a`). Such a
 * process made every later change end the guard (it passed for a kept session timer), and the
 * next timer's cancel killed it as root. The pack now finds its session timers by a record only
 * the SSH user (and root) can write: pid and start time. Here `nobody` runs a process with the
 * exact name, and nothing of ours takes it for a timer: not the cancel, not the guard check.
 */
import { strict as assert } from 'assert';
import type { TargetInput } from '../../src/driver';
import { addSudoUser, containerTarget, guardSuites, readmeGuardSudoers, unitActive, type ContainerHost } from '../lab/container';
import { dropTables, useContainers, useDriver, useLab } from '../lab/fixtures';
import { labTarget } from '../lab/lab';

const TABLE = 'nrhi_tn';
const UNIT = `nrhi-guard-${TABLE}`;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const suites = guardSuites();

type Run = (argv: string[], stdin?: string) => Promise<{ code: number | null; stdout: string; stderr: string }>;

/** the network namespace inode the apply script puts in its timer tag, as seen by `run` */
async function nsInode(run: Run): Promise<string> {
  const ns = /\[(\d+)\]/.exec((await run(['readlink', '/proc/self/ns/net'])).stdout)?.[1];
  assert.ok(ns, 'the namespace inode');
  return ns;
}

/**
 * Starts, as `nobody`, a session leader named exactly like the pack's timer of TABLE (as an
 * attacker would: `setsid`, so that a kill of its process group reaches it); returns its pid.
 */
async function fakeTimer(run: Run): Promise<number> {
  const tag = `nrhi-release:${TABLE}:${await nsInode(run)}:`;
  const r = await run(['sh', '-c', `setpriv --reuid=65534 --regid=65534 --clear-groups setsid -f bash -c 'exec -a "$1" sleep 600' fake "$1" </dev/null >/dev/null 2>&1; sleep 0.3; pgrep -u 65534 -f "^$1"`, 'sh', tag]);
  const pid = Number(r.stdout.trim().split('\n')[0]);
  assert.ok(pid > 0, `the fake timer runs: ${r.stdout} ${r.stderr}`);
  return pid;
}

/** whether `pid` still runs as nobody under the fake name */
async function alive(run: Run, pid: number): Promise<boolean> {
  const r = await run(['sh', '-c', `ps -o user=,args= -p ${pid}`]);
  return r.code === 0 && /^nobody +nrhi-release:/.test(r.stdout.trim());
}

/** this table's timers of one user (the real ones: the fake is nobody's) */
async function timersOf(run: Run, user: string): Promise<string> {
  return (await run(['sh', '-c', `pgrep -u "$1" -f "nrhi-release:${TABLE}:$2:" || true`, 'sh', user, await nsInode(run)])).stdout.trim();
}

describe('adversary: a process named like a release timer (issue 20, item 6)', function () {
  this.timeout(300_000);

  describe('lab hosts (no systemd: every timer is a session process)', () => {
    const lab = useLab({ hosts: 1 });
    const driver = useDriver();
    let fake = 0;
    const run: Run = (argv, stdin) => lab.exec(lab.hosts[0].ns, argv, stdin);
    beforeEach(async () => {
      fake = await fakeTimer(run);
    });
    afterEach(async () => {
      if (fake > 0) await run(['kill', '-9', String(fake)]);
      fake = 0;
      await dropTables(lab, TABLE, [0]);
    });

    for (const as of ['root', 'sudo'] as const) {
      it(`${as}: the cancel kills only the timer it armed, never the fake; the timed release still comes on time`, async () => {
        const t = labTarget(lab, 0, TABLE, 15_000, {}, as);
        const user = lab.users[as].username;
        const uid = as === 'root' ? '0' : user;
        // arming cancels every timer of the table first: the fake is not one
        await driver.isolate(t, { duration: 60, verify: false });
        assert.equal(await alive(run, fake), true, 'the fake survives the cancel before an arming');
        assert.notEqual(await timersOf(run, uid), '', 'our timer runs');
        // no expiry: our timer is cancelled (found by its record), the fake is left alone
        await driver.isolate(t, { duration: 0, reason: 'no expiry', verify: false });
        assert.equal(await timersOf(run, uid), '', 'our timer was cancelled');
        assert.equal(await alive(run, fake), true, 'the fake survives a cancel');
        // a timed release fires on time, and unisolate still cancels what it armed
        const timed = await driver.isolate(t, { duration: 3, verify: false });
        const expiresAt = Date.parse(timed.expiresAt!);
        let free = false;
        for (let n = 0; n < 80 && !free && Date.now() < expiresAt + 5000; n++) {
          await sleep(100);
          free = !(await lab.nft(lab.hosts[0].ns, ['list', 'tables'])).stdout.includes(TABLE);
        }
        assert.ok(free && Date.now() <= expiresAt + 2500, 'the session timer released the host on time');
        await driver.isolate(t, { duration: 60, verify: false });
        assert.notEqual(await timersOf(run, uid), '');
        await driver.unisolate(t);
        assert.equal(await timersOf(run, uid), '', 'unisolate cancelled our timer');
        assert.equal(await alive(run, fake), true, 'and never the fake');
      });
    }
  });

  describe('systemd hosts: the guard is not ended by a fake', () => {
    const { hosts } = useContainers(suites);
    const driver = useDriver();

    const targetOf = (h: ContainerHost): TargetInput => containerTarget(h, TABLE);

    for (const [i, suite] of suites.entries()) {
      describe(suite, () => {
        const h = () => hosts[i];
        const run: Run = (argv, stdin) => h().exec(argv, stdin);
        const guardActive = () => unitActive(h(), `${UNIT}.service`);
        let fake = 0;
        beforeEach(async () => {
          fake = await fakeTimer(run);
        });
        afterEach(async () => {
          if (fake > 0) await run(['kill', '-9', String(fake)]);
          fake = 0;
          await driver.unisolate(targetOf(h())).catch(() => undefined);
        });

        it('root: isolate, an exception change and a timed isolation keep the guard on; the fake lives', async () => {
          const t = targetOf(h());
          // no timer to arm, none known: the script checks whether a kept timer is a session process
          const iso = await driver.isolate(t, { presets: ['ssh'], verify: false });
          assert.equal(iso.guard, true, 'the fake is not taken for a kept session timer');
          assert.equal(await guardActive(), true, `${UNIT} runs`);
          const ch = await driver.setExceptions(t, 'add', [{ direction: 'out', proto: 'tcp', addr: '198.18.0.77', port: 443 }]);
          assert.equal(ch.guard, true, 'nor on a change that keeps the timers');
          assert.equal(await guardActive(), true);
          // a systemd timer armed: every timer of the table is cancelled first, never the fake
          const timed = await driver.isolate(t, { presets: ['ssh'], duration: 60, verify: false });
          assert.equal(timed.guard, true);
          assert.equal(await alive(run, fake), true, 'the cancel did not kill the fake');
          const st = await driver.status(t);
          assert.equal(st.guard, true);
          assert.deepEqual(st.warnings, [], st.warnings.join('; '));
          await driver.unisolate(t);
          assert.equal(await alive(run, fake), true, 'nor did unisolate');
        });

        it("a sudo user without the timer's rights: its session timer is found by its record (no guard beside it), the fake is not", async () => {
          // the README's sudoers blocks (the nft line and the guard's, generated), for this table
          await addSudoUser(h(), readmeGuardSudoers(TABLE));
          const t: TargetInput = { ...targetOf(h()), username: 'isolator', sudo: true };
          try {
            const plain = await driver.isolate(t, { presets: ['ssh'], verify: false });
            assert.equal(plain.guard, true, 'guarded, the fake notwithstanding');
            const timed = await driver.isolate(t, { presets: ['ssh'], duration: 60, verify: false });
            assert.equal(timed.guard, false, 'no guard beside a session timer');
            assert.notEqual(await timersOf(run, 'isolator'), '', 'its session timer runs');
            // a change that keeps the timers: the kept session timer is found (by its record), so no guard
            const ch = await driver.setExceptions(t, 'add', [{ direction: 'out', proto: 'tcp', addr: '198.18.0.77', port: 443 }]);
            assert.equal(ch.guard, false, 'the kept session timer is known: no guard that would undo its release');
            assert.equal(await guardActive(), false);
            // no expiry: its timer is cancelled, and the guard comes back
            const again = await driver.isolate(t, { presets: ['ssh'], reason: 'no expiry', verify: false });
            assert.equal(await timersOf(run, 'isolator'), '', 'its timer was cancelled');
            assert.equal(again.guard, true);
            assert.equal(await guardActive(), true);
            assert.equal(await alive(run, fake), true, 'the fake lives');
            assert.equal((await driver.unisolate(t)).state, 'free');
          } finally {
            await driver.unisolate(t).catch(() => undefined);
            await run(['rm', '-f', '/etc/sudoers.d/isolator']);
          }
        });
      });
    }
  });
});
