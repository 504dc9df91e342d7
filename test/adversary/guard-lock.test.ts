/**
 * Issue 20, item 1: the self-healing guard's lock, played as a local user and as root on real
 * systemd hosts (Debian under systemd-nspawn, test/lab/container.ts), for a root SSH user and
 * for a sudo SSH user with exactly the README's sudoers lines.
 * - No file the pack relies on under /run/nrhi-guard (or /run/nrhi-release) opens for `nobody`:
 *   before, the lock was 0644 in a 0755 directory, so `flock` on it as nobody stalled the guard
 *   (its record still said `ok`) and made every change wait 10 s.
 * - A guard whose lock another (root) process holds says so: `stalled`, with since when, in
 *   status; never `guard: true`.
 * - A verify-then-commit isolate with a 10 s timeout while root holds the lock answers within
 *   its timeout, and the host then stays as the answer says (before, the first apply alone waited
 *   the whole 10 s and the answer was a timeout, the host left to its own rollback).
 */
import { strict as assert } from 'assert';
import { IsolationDriver, IsolationError, type TargetInput } from '../../src/driver';
import { GUARD_DIR, TIMER_DIR } from '../../src/driver/host/commands';
import { addSudoUser, asNobody, containerTarget, guardSuites, readmeGuardSudoers, removeSudoUser, unitActive, type ContainerHost } from '../lab/container';
import { useContainers, useDriver } from '../lab/fixtures';

const TABLE = 'nrhi_gl';
const UNIT = `nrhi-guard-${TABLE}`;
const LOCK = `${GUARD_DIR}/${TABLE}.lock`;
const PORT = 7051;
/** the verify window of this suite's driver: long enough to confirm, short enough to wait out */
const WINDOW_S = 8;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const suites = guardSuites();

describe('adversary: the guard lock is root\'s, its waits fit the time left, a stalled guard says so (issue 20, item 1)', function () {
  this.timeout(300_000);
  const { lab, hosts } = useContainers(suites);
  const driver = useDriver({ verifyWindowS: WINDOW_S });

  const guardActive = (h: ContainerHost) => unitActive(h, `${UNIT}.service`);
  const reaches = (h: ContainerHost) => lab.tryConnect(lab.peer.ns, h.v4, PORT, 800);
  /** root on the host holds the guard's lock (a bounded 61 s) until release() (flock and its sleep: the sleep holds it too) */
  const holdAsRoot = async (h: ContainerHost) => {
    const r = await h.exec(['sh', '-c', `flock ${LOCK} sleep 61 >/dev/null 2>&1 </dev/null & sleep 0.3; flock -n ${LOCK} true; echo $?`]);
    assert.equal(r.stdout.trim(), '1', `root holds the lock: ${r.stderr}`);
    return { since: Math.floor(Date.now() / 1000), release: () => h.exec(['pkill', '-f', 'sleep 61']) };
  };

  for (const [i, suite] of suites.entries()) {
    for (const user of ['root', 'sudo'] as const) {
      describe(`${suite}, ${user} SSH user`, () => {
        const h = () => hosts[i];
        const target = (): TargetInput => containerTarget(h(), TABLE, {}, user);
        let listener: { close(): void } | null = null;
        let holder: { release(): Promise<unknown> } | null = null;
        before(async () => {
          if (user === 'sudo') await addSudoUser(h(), readmeGuardSudoers(TABLE));
        });
        after(async () => {
          if (user === 'sudo') await removeSudoUser(h());
        });
        beforeEach(async () => {
          listener = await lab.listen(h().ns, PORT);
        });
        afterEach(async () => {
          await holder?.release();
          holder = null;
          listener?.close();
          await driver.unisolate(target()).catch(() => undefined);
          // a root SSH user's timed isolation leaves nothing armed behind either
          await h().exec(['sh', '-c', `systemctl stop 'nrhi-release-${TABLE}.timer' 'nrhi-release-${TABLE}.service' >/dev/null 2>&1; nft delete table inet ${TABLE} >/dev/null 2>&1; true`]);
        });

        it('nobody can open the lock, nor any file under /run/nrhi-guard or /run/nrhi-release', async () => {
          const iso = await driver.isolate(target(), { presets: ['ssh'], reason: 'lock modes', duration: user === 'root' ? 120 : 0 });
          assert.equal(iso.guard, true, 'a guard keeps it');
          assert.equal(await guardActive(h()), true);
          // what is there, listed by root: the directories and every file in them (once the guard
          // wrote its record and pid)
          await h().exec(['sh', '-c', `for i in $(seq 50); do [ -e ${GUARD_DIR}/${TABLE}.heal ] && [ -e ${GUARD_DIR}/${TABLE}.pid ] && exit 0; sleep 0.1; done`]);
          const ls = await h().exec(['sh', '-c', `find ${GUARD_DIR} ${TIMER_DIR} -maxdepth 1 2>/dev/null; true`]);
          const paths = ls.stdout.split('\n').filter(Boolean);
          for (const want of [GUARD_DIR, LOCK, `${GUARD_DIR}/${TABLE}.key`, `${GUARD_DIR}/${TABLE}.batch`, `${GUARD_DIR}/${TABLE}.heal`, `${GUARD_DIR}/${TABLE}.pid`, `${GUARD_DIR}/guard.sh`]) {
            assert.ok(paths.includes(want), `${want} is there (${paths.join(' ')})`);
          }
          if (user === 'root') assert.ok(paths.some((p) => p.startsWith(`${TIMER_DIR}/${TABLE}.`)), `the release timer's files are there (${paths.join(' ')})`);
          const modes = await h().exec(['stat', '-c', '%a %U %n', GUARD_DIR, ...(paths.includes(TIMER_DIR) ? [TIMER_DIR] : [])]);
          for (const l of modes.stdout.trim().split('\n')) assert.match(l, /^700 root /, `root's alone: ${l}`);
          // as nobody: opening each for reading fails (permission denied), and so does taking the lock
          const probe = await asNobody(h(), 'for f in "$@"; do if (exec 3<"$f") 2>/dev/null; then echo "OPENED $f"; fi; done', paths);
          assert.doesNotMatch(probe.stdout, /OPENED/, probe.stdout);
          const lockProbe = await asNobody(h(), `exec 9<${LOCK} 2>&1; echo opened`);
          assert.match(lockProbe.stdout + lockProbe.stderr, /Permission denied/, `nobody cannot open the lock: ${lockProbe.stdout}${lockProbe.stderr}`);
          assert.doesNotMatch(lockProbe.stdout, /opened/);
          // the guard is not stalled by anyone but root: a heal is as quick as ever
          const back = await h().exec(['sh', '-c', `nft flush ruleset; for i in $(seq 300); do nft list table inet ${TABLE} >/dev/null 2>&1 && { echo ok; exit 0; }; sleep 0.01; done; echo gone`]);
          assert.equal(back.stdout.trim(), 'ok', 'healed within 3 s');
          const st = await driver.status(target());
          assert.equal(st.guard, true);
          assert.equal(st.guardStalledSince, undefined);
        });

        it('root holding the lock: status reports the guard stalled, since when, not ok; free again, it guards again', async () => {
          await driver.isolate(target(), { presets: ['ssh'], reason: 'stall' });
          assert.equal((await driver.status(target())).guard, true);
          const held = await holdAsRoot(h());
          holder = held;
          // the guard looks at least every 5 s and waits 3 s for its lock before it says so
          let st = await driver.status(target());
          for (let n = 0; n < 30 && st.guardStalledSince === undefined; n++) {
            await sleep(500);
            st = await driver.status(target());
          }
          assert.equal(st.state, 'isolated');
          assert.equal(st.guard, false, 'a stalled guard is not reported as keeping the isolation');
          assert.ok(st.guardStalledSince, `stalled: ${JSON.stringify(st)}`);
          const since = Date.parse(st.guardStalledSince) / 1000;
          assert.ok(since >= held.since - 2 && since <= Date.now() / 1000, `stalled since ${st.guardStalledSince}, the lock taken at ${new Date(held.since * 1000).toISOString()}`);
          assert.ok(st.warnings.some((w) => /stalled/.test(w)), st.warnings.join('; '));
          assert.equal(await guardActive(h()), true, 'the guard still runs: it waits');
          // removed meanwhile: status says the guard cannot put it back (not that it is re-applying it)
          await h().exec(['nft', 'delete', 'table', 'inet', TABLE]);
          const gone = await driver.status(target());
          assert.equal(gone.state, 'free');
          assert.ok(gone.tampered.some((x) => /stalled/.test(x)), gone.tampered.join('; '));
          // let go: the guard takes up its work, heals, and says ok again
          await held.release();
          holder = null;
          let back = false;
          for (let n = 0; n < 100 && !back; n++) {
            back = (await h().exec(['nft', 'list', 'table', 'inet', TABLE])).code === 0;
            if (!back) await sleep(100);
          }
          assert.ok(back, 'healed once the lock was let go');
          // the guard writes its heal record just after the table is back: read status until it has
          // (bounded: 30 reads, 100 ms apart)
          st = await driver.status(target());
          for (let n = 0; n < 30 && !(st.healed && st.healed.count >= 1 && st.guard); n++) {
            await sleep(100);
            st = await driver.status(target());
          }
          assert.equal(st.state, 'isolated');
          assert.equal(st.guard, true);
          assert.equal(st.guardStalledSince, undefined);
          assert.ok(st.healed && st.healed.count >= 1, JSON.stringify(st.healed));
        });

        it('verify-then-commit with a 10 s timeout while root holds the lock: answered within the timeout, and the host stays as answered', async () => {
          const t = target();
          const prev = await driver.isolate(t, { presets: ['ssh'], reason: 'before the lock' });
          assert.equal(prev.guard, true);
          holder = await holdAsRoot(h());
          // a re-isolation (the case) that lets the peer in, so the test sees which one stands
          const t0 = Date.now();
          let answer: Awaited<ReturnType<IsolationDriver['isolate']>> | null = null;
          let failure: unknown = null;
          try {
            answer = await driver.isolate({ ...t, timeoutMs: 10_000 }, { presets: ['ssh'], reason: 'under a held lock', verify: true, exceptions: [{ direction: 'in', proto: 'tcp', addr: lab.peer.v4, port: PORT }] });
          } catch (err) {
            failure = err;
          }
          const took = Date.now() - t0;
          assert.ok(took <= 11_000, `answered in ${took} ms, within the 10 s timeout`);
          if (failure) {
            // a typed error, and if the controller's own rollback ran, it did roll back
            assert.ok(failure instanceof IsolationError, `typed: ${String(failure)}`);
            if (failure.code === 'VERIFY_FAILED') assert.equal((failure.details as { rolledBack?: boolean }).rolledBack, true, failure.message);
          } else {
            assert.ok(answer);
            assert.equal(answer.state, 'isolated');
            assert.equal(answer.guard, false, 'no guard could be armed past the held lock');
            assert.ok(answer.warnings.some((w) => /guard lock was held/.test(w)), JSON.stringify(answer.warnings));
          }
          // past the verify window (and the host's own rollback time): the host is as answered
          await sleep((WINDOW_S + 3) * 1000);
          const st = await driver.status(t);
          assert.equal(st.state, 'isolated', 'never freed by a rollback');
          assert.equal(st.reason, failure ? 'before the lock' : 'under a held lock', failure ? 'rolled back to the previous isolation' : 'the confirmed isolation stands');
          assert.equal(await reaches(h()), !failure, failure ? 'the previous isolation blocks the peer' : 'the confirmed exception lets the peer in');
          if (!failure) console.log(`      (${suite}/${user}: verify isolate under a held lock answered in ${took} ms)`);
        });
      });
    }
  }
});
