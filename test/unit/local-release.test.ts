/** The local release's command (issue 23): its order, its words, and what it refuses to render. */
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as path from 'path';
import { localReleaseCommand, localReleaseNotice } from '../../src/driver/host/local-release';
import { DEFAULT_TABLE } from '../../src/driver/policy';

describe('the local release command (issue 23)', () => {
  it('stops the guard, then the timers, removes the boot unit, then deletes the table', () => {
    const c = localReleaseCommand('nrhi_x');
    const at = (s: string) => {
      const i = c.indexOf(s);
      assert.ok(i >= 0, `${s} in ${c}`);
      return i;
    };
    const guard = at('systemctl stop nrhi-guard-nrhi_x.service');
    const timers = at('systemctl stop nrhi-release-nrhi_x.timer nrhi-release-nrhi_x.service');
    const boot = at('/etc/systemd/system/node-red-isolation-nrhi_x.service /etc/systemd/system/sysinit.target.wants/node-red-isolation-nrhi_x.service');
    const table = at('nft delete table inet nrhi_x');
    assert.ok(guard < timers && timers < boot && boot < table, c);
    const again = c.indexOf('systemctl stop nrhi-guard-nrhi_x.service', timers);
    assert.ok(again > timers && again < boot, 'the guard stopped once more after the timers (a rollback unit may have re-armed it)');
    assert.ok(c.endsWith('nft delete table inet nrhi_x'), 'its exit code is whether the table was there to delete');
    assert.doesNotMatch(c, /\$/, 'no shell expansion but the globs of the table\'s own files');
    assert.match(c, /rm -f \/run\/nrhi-guard\/nrhi_x\.\* \/run\/nrhi-release\/nrhi_x\.\* /);
  });

  it('renders only a valid table name, and the notice carries the command', () => {
    for (const bad of ['', 'a b', 'x;reboot', 'x*', '$t']) assert.throws(() => localReleaseCommand(bad));
    assert.ok(localReleaseNotice('nrhi_x').endsWith(`\n${localReleaseCommand('nrhi_x')}`));
  });

  it('docs/operations.md shows the very command for the default table', () => {
    const page = fs.readFileSync(path.join(__dirname, '../../../docs/operations.md'), 'utf8');
    assert.ok(page.includes(`\n${localReleaseCommand(DEFAULT_TABLE)}\n`), 'the "Releasing at the console" block is the rendered command');
  });
});
