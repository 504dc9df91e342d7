/**
 * The blocking probe against a real lab host: once the isolation is in, the host itself tries to
 * reach the peer on a port where the peer listens. Cut: the isolation stands and says so. Reached
 * (an exception the static check cannot see lets it through: a uid exception for the SSH user):
 * PROBE_REACHED and the host holds what it held before, free or the previous isolation.
 */
import { strict as assert } from 'assert';
import { IsolationError, type TargetInput } from '../../src/driver';
import { dropTables, useDriver, useLab } from '../lab/fixtures';

const TABLE = 'nrhi_probe';
const PORT = 7311;

async function expectCode(p: Promise<unknown>, code: string): Promise<IsolationError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof IsolationError, `expected IsolationError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    return err;
  }
  assert.fail(`expected error ${code}, got success`);
}

describe('blocking probe on the lab host', function () {
  this.timeout(120_000);
  const lab = useLab({ hosts: 1 });
  const driver = useDriver();
  let target: TargetInput;
  const host = () => lab.hosts[0];

  before(() => {
    target = { host: host().v4, username: lab.users.root.username, privateKey: lab.users.root.privateKey, knownHosts: host().knownHosts, table: TABLE, timeoutMs: 15_000 };
  });
  afterEach(() => dropTables(lab, TABLE, [0]));

  /** what the host's table holds, as nft lists it (rules and sets; '' when there is no table) */
  const table = async () => {
    try {
      return (await lab.nft(host().ns, ['list', 'table', 'inet', TABLE])).stdout;
    } catch (err) {
      if (/No such file or directory/.test(String(err))) return '';
      throw err;
    }
  };

  it('a probe the isolation cuts (v4 and v6, with and without verify): the isolation stands and the answer says so', async () => {
    const peer = await lab.listen(lab.peer.ns, PORT);
    try {
      assert.equal(await lab.tryConnect(host().ns, lab.peer.v4, PORT), true, 'the peer is reachable before');
      const st = await driver.isolate(target, { probe: { addr: lab.peer.v4, port: PORT } });
      assert.equal(st.isolated, true);
      assert.equal(st.probe?.reached, false);
      assert.equal(st.probe?.addr, lab.peer.v4);
      assert.equal(st.probe?.port, PORT);
      assert.ok(st.probe && st.probe.ms < 10_000, JSON.stringify(st.probe));
      assert.equal(await lab.tryConnect(host().ns, lab.peer.v4, PORT), false, 'still cut');

      const again = await driver.isolate(target, { probe: { addr: lab.peer.v6, port: PORT }, verify: false });
      assert.equal(again.isolated, true);
      assert.equal(again.probe?.reached, false);
      assert.equal((await driver.status(target)).isolated, true, 'the isolation stands after a probe without verify');
    } finally {
      await peer.close();
    }
  });

  it('a reached probe from a free host: PROBE_REACHED, and the host is free again (verify and without)', async () => {
    const peer = await lab.listen(lab.peer.ns, PORT);
    try {
      // the SSH user's own traffic out is excepted: a path the table keeps open that the static check cannot see
      const req = { exceptions: [{ direction: 'out' as const, proto: 'tcp' as const, uid: 0 }], probe: { addr: lab.peer.v4, port: PORT } };
      for (const verify of [true, false]) {
        const err = await expectCode(driver.isolate(target, { ...req, verify }), 'PROBE_REACHED');
        assert.equal(err.details.rolledBack, true);
        assert.deepEqual(err.details.probe, { addr: lab.peer.v4, port: PORT });
        assert.equal(err.details.outcome, 'connected');
        assert.equal(await table(), '', `verify ${verify}: no table of ours is left`);
        assert.equal((await driver.status(target)).isolated, false);
      }
    } finally {
      await peer.close();
    }
  });

  it('a RST counts as reached: a closed port of the peer answered, so a packet got through', async () => {
    const err = await expectCode(
      driver.isolate(target, { exceptions: [{ direction: 'out', proto: 'tcp', uid: 0 }], probe: { addr: lab.peer.v6, port: PORT + 1 } }),
      'PROBE_REACHED',
    );
    assert.equal(err.details.outcome, 'refused');
    assert.equal(await table(), '');
  });

  it('a reached probe over an earlier isolation puts that isolation back', async () => {
    const peer = await lab.listen(lab.peer.ns, PORT);
    try {
      await driver.isolate(target, { reason: 'first', exceptions: [{ direction: 'in', proto: 'tcp', port: 9999 }] });
      const before = await driver.status(target);
      await expectCode(
        driver.isolate(target, { reason: 'second', exceptions: [{ direction: 'out', proto: 'tcp', uid: 0 }], probe: { addr: lab.peer.v4, port: PORT } }),
        'PROBE_REACHED',
      );
      const after = await driver.status(target);
      assert.equal(after.isolated, true);
      assert.equal(after.reason, 'first');
      assert.deepEqual(after.exceptions, before.exceptions);
      assert.equal(await lab.tryConnect(host().ns, lab.peer.v4, PORT), false, 'the earlier isolation cuts again');
    } finally {
      await peer.close();
    }
  });

  it('a bad or pointless probe is refused before anything changes on the host', async () => {
    for (const probe of [{ addr: `${lab.peer.v4}/24` }, { addr: 'peer.example' }, { addr: '127.0.0.1' }, { addr: lab.peer.v4, port: 0 }, { addr: lab.peer.v4, proto: 'udp' }]) {
      await expectCode(driver.isolate(target, { probe: probe as never }), 'VALIDATION');
    }
    // an address exception that opens the probe's path, or the management address: it would prove nothing
    const err = await expectCode(
      driver.isolate(target, { exceptions: [{ direction: 'out', proto: 'tcp', addr: `${lab.peer.v4}/24`, port: PORT }], probe: { addr: lab.peer.v4, port: PORT } }),
      'VALIDATION',
    );
    assert.match(err.message, /proves nothing/);
    await expectCode(driver.isolate(target, { probe: { addr: lab.controller.v4, port: PORT } }), 'VALIDATION');
    await expectCode(driver.isolate(target, { mode: 'audit', probe: { addr: lab.peer.v4 } }), 'VALIDATION');
    assert.equal(await table(), '', 'nothing was applied');
  });
});
