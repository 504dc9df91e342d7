/**
 * Release timers are the host's own: two lab hosts (two network namespaces of one machine, as
 * containers on one server are) isolated under the same table name keep each their own timer.
 */
import { strict as assert } from 'assert';
import { useDriver, useLab } from '../lab/fixtures';
import { labTarget } from '../lab/lab';

const TABLE = 'nrhi_timers';

describe('release timers on several hosts of one machine', function () {
  this.timeout(120_000);
  const lab = useLab({ hosts: 2 });
  const driver = useDriver();

  it('isolating another host with the same table name does not cancel this host\'s timer', async () => {
    const [a, b] = [labTarget(lab, 0, TABLE, 15_000, {}, 'root'), labTarget(lab, 1, TABLE, 15_000, {}, 'root')];
    const first = await driver.isolate(a, { duration: 3, verify: false });
    // arms (and so cancels, by table name) timers on the other host
    await driver.isolate(b, { duration: 60, verify: false });
    await driver.unisolate(b);
    await new Promise((r) => setTimeout(r, Math.max(0, Date.parse(first.expiresAt!) - Date.now()) + 2500));
    assert.equal((await driver.status(a)).isolated, false, 'host 0 released itself on time');
    assert.ok(!(await lab.nft(lab.hosts[0].ns, ['list', 'tables'])).stdout.includes(TABLE));
  });
});
