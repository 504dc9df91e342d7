/**
 * Issue 23, "the console, without the controller": on real systemd hosts (Debian under
 * systemd-nspawn), an isolation with the guard and a release timer, then one with the guard and
 * persist, is ended by root at the host's console with the one command status shows
 * (localRelease, src/driver/host/local-release.ts):
 * with sshd stopped (no controller can reach the host), the command run through the container's
 * own exec ends the guard, the timer, the boot unit and the table; nothing brings the table back,
 * through a reboot; the driver then reads the host free. As `nobody` the same command does nothing.
 */
import { strict as assert } from 'assert';
import { localReleaseCommand } from '../../src/driver/host/local-release';
import { asNobody, containerTarget, guardSuites, timeTableBack, unitActive, type ContainerHost } from '../lab/container';
import { useContainers, withDriver } from '../lab/fixtures';

const TABLE = 'nrhi_lr';
const GUARD = `nrhi-guard-${TABLE}.service`;
const TIMER = `nrhi-release-${TABLE}.timer`;
const BOOT = `/etc/systemd/system/node-red-isolation-${TABLE}.service`;
const WANTS = `/etc/systemd/system/sysinit.target.wants/node-red-isolation-${TABLE}.service`;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const suites = guardSuites();

const tablePresent = async (h: ContainerHost) => (await h.exec(['nft', 'list', 'table', 'inet', TABLE])).code === 0;
const fileThere = async (h: ContainerHost, f: string) => (await h.exec(['test', '-e', f])).code === 0;

describe('the local release: root at the console ends a guarded, timed or persisted isolation without the controller (issue 23)', function () {
  this.timeout(300_000);
  const env = useContainers(suites);

  for (const [i, suite] of suites.entries()) {
    it(`${suite}: one command as root ends the guard and the timer, or the guard and the boot unit (sshd stopped), and the table; nothing brings it back, through a reboot; nobody cannot run it`, async () => {
      const h = env.hosts[i];
      const t = containerTarget(h, TABLE);
      const cmd = localReleaseCommand(TABLE);
      // a timed isolation (persist cannot have a duration): guard and timer, ended by the command
      const timed = await withDriver(async (d) => {
        await d.isolate(t, { presets: ['ssh'], duration: 3600, reason: 'local release test', wall: 'isolated for a test' });
        return d.status(t);
      });
      assert.equal(timed.guard, true, 'guarded');
      assert.equal(timed.localRelease, cmd, 'status shows the local release');
      assert.equal(await unitActive(h, TIMER), true, 'the release timer is armed');
      const r0 = await h.exec(['sh', '-c', cmd]);
      assert.equal(r0.code, 0, `${r0.stdout}${r0.stderr}`);
      assert.equal(await unitActive(h, GUARD), false, 'timed: the guard is stopped');
      assert.equal(await unitActive(h, TIMER), false, 'timed: the timer is gone');
      assert.equal(await tablePresent(h), false, 'timed: the table is gone');

      // persisted: guard and boot unit, through a reboot
      const st = await withDriver(async (d) => {
        await d.isolate(t, { presets: ['ssh'], persist: true, reason: 'local release test', wall: 'isolated for a test' });
        return d.status(t);
      });
      assert.equal(st.state, 'isolated');
      assert.equal(st.guard, true, 'guarded');
      assert.equal(st.persist, true);
      assert.equal(st.localRelease, cmd, 'status shows the local release');
      assert.equal(await fileThere(h, BOOT), true, 'the boot unit is there');
      // the guard heals a table deleted by hand: why a plain `nft delete table` is no release
      const backMs = await timeTableBack(h, TABLE, `nft delete table inet ${TABLE}`);
      assert.ok(backMs >= 0, 'the guard brought the table back');

      // a local user without rights: the command changes nothing
      const nob = await asNobody(h, cmd);
      assert.notEqual(nob.code, 0, 'nobody cannot run it');
      assert.equal(await tablePresent(h), true, 'as nobody: the table stays');
      assert.equal(await unitActive(h, GUARD), true, 'as nobody: the guard runs');
      assert.equal(await fileThere(h, BOOT), true, 'as nobody: the boot unit stays');

      // no controller: sshd stopped, the command run by root through the container's own exec
      const ssh = await h.exec(['sh', '-c', 'systemctl stop ssh.socket 2>/dev/null; systemctl stop ssh.service']);
      assert.equal(ssh.code, 0, ssh.stderr);
      const r = await h.exec(['sh', '-c', cmd]);
      assert.equal(r.code, 0, `${r.stdout}${r.stderr}`);
      assert.equal(await unitActive(h, GUARD), false, 'the guard is stopped');
      assert.equal(await fileThere(h, BOOT), false, 'the boot unit is gone');
      assert.equal(await fileThere(h, WANTS), false, 'its enabling link is gone');
      assert.equal(await tablePresent(h), false, 'the table is gone');
      assert.equal((await h.exec(['sh', '-c', `ls /run/nrhi-guard /run/nrhi-release 2>/dev/null | grep -c '^${TABLE}\\.'`])).stdout.trim(), '0', 'no guard or timer files');
      await sleep(3000);
      assert.equal(await tablePresent(h), false, 'nothing healed it');
      // run again: nothing more to do (nft says the table is not there)
      assert.notEqual((await h.exec(['sh', '-c', cmd])).code, 0);

      await h.reboot();
      assert.equal(await tablePresent(h), false, 'the reboot does not bring the table back');
      assert.equal(await unitActive(h, GUARD), false, 'no guard after the reboot');
      const free = await withDriver((d) => d.status(t));
      assert.equal(free.state, 'free');
      assert.equal(free.isolated, false);
      assert.equal(free.localRelease, undefined, 'nothing to release');
      assert.deepEqual(free.tampered, [], 'a new controller has no belief to miss');
    });
  }
});
