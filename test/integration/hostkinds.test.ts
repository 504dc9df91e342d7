/**
 * The hosts people run (issue 15): every action round-trips, without false tamper reports, on
 * - a namespace lab host whose /etc/protocols is removed (a minimal host: no netbase), and
 * - real Debian systems booted with systemd-nspawn from debootstrap minbase trees (no
 *   /etc/protocols either): bookworm with nft 1.0.6 and trixie with nft 1.1.3.
 * Real traffic from the lab's peer checks what each isolation claims.
 */
import { strict as assert } from 'assert';
import type { IsolationDriver, IsolationError, TargetInput } from '../../src/driver';
import { containerTarget, guardSuites, NFT_VERSION } from '../lab/container';
import { useContainers, useDriver, useLab } from '../lab/fixtures';
import type { Lab } from '../lab/lab';

const TABLE = 'nrhi_kinds';
/** the container suites (NRHI_GUARD_SUITES narrows them) */
const suites = guardSuites();

interface KindHost {
  ns: string;
  v4: string;
  v6: string;
  target: TargetInput;
}

/** isolate, change exceptions, audit, status with no tampering, unisolate: with packets from the peer */
async function roundTrip(lab: Lab, driver: IsolationDriver, h: KindHost): Promise<void> {
  const l1 = await lab.listen(h.ns, 8090);
  const l2 = await lab.listen(h.ns, 8091);
  const out = await lab.listen(lab.peer.ns, 8092);
  const clean = async (what: string) => {
    const st = await driver.status(h.target);
    assert.deepEqual(st.tampered, [], `${what}: ${st.tampered.join('; ')}`);
    return st;
  };
  try {
    assert.equal(await lab.tryConnect(lab.peer.ns, h.v4, 8090), true, 'open before isolation');
    const iso = await driver.isolate(h.target, {
      presets: ['ssh', 'icmp'],
      exceptions: [
        { direction: 'in', proto: 'tcp', addr: lab.peer.v4, port: 8090 },
        { direction: 'out', proto: 'tcp', uid: 0, addr: lab.peer.v4, port: 8092 },
        { direction: 'out', proto: 'any', uid: 0, addr: lab.peer.v6 },
      ],
      verify: true,
    });
    assert.equal(iso.state, 'isolated');
    let st = await clean('fresh isolation');
    assert.equal(st.state, 'isolated');
    assert.equal(await lab.tryConnect(lab.peer.ns, h.v4, 8090), true, 'excepted port passes');
    assert.equal(await lab.tryConnect(lab.peer.ns, h.v4, 8091), false, 'other port dropped');
    assert.equal(await lab.tryConnect(lab.peer.ns, h.v6, 8090), false, 'v6 is not excepted');
    assert.equal(await lab.ping(lab.peer.ns, h.v4), true, 'icmp preset: echo-request v4');
    assert.equal(await lab.ping(lab.peer.ns, h.v6), true, 'icmp preset: echo-request v6');
    assert.equal(await lab.tryConnect(h.ns, lab.peer.v4, 8092, 1500, { uid: 0 }), true, 'uid exception out, its replies back');
    assert.equal(await lab.tryConnect(h.ns, lab.peer.v4, 8092, 1500, { uid: 65534 }), false, 'another uid is dropped');

    st = await driver.setExceptions(h.target, 'add', [{ direction: 'in', proto: 'tcp', addr: lab.peer.v4, port: 8091 }]);
    assert.equal(await lab.tryConnect(lab.peer.ns, h.v4, 8091), true, 'added exception passes');
    await clean('after add');
    await driver.setExceptions(h.target, 'remove', [{ direction: 'in', proto: 'tcp', addr: lab.peer.v4, port: 8090 }]);
    assert.equal(await lab.tryConnect(lab.peer.ns, h.v4, 8090), false, 'removed exception drops');
    await clean('after remove');

    // audit: nothing dropped, flows recorded by protocol (listed as numbers on a minimal host)
    await driver.isolate(h.target, { mode: 'audit', presets: ['ssh'] });
    assert.equal(await lab.tryConnect(lab.peer.ns, h.v4, 8090), true, 'audit drops nothing');
    st = await clean('audit');
    assert.equal(st.state, 'audit');
    assert.ok(
      st.observed.some((f) => f.direction === 'in' && f.proto === 'tcp' && f.port === 8090),
      `audit records tcp/8090: ${JSON.stringify(st.observed)}`,
    );

    const free = await driver.unisolate(h.target);
    assert.equal(free.state, 'free');
    assert.equal((await driver.status(h.target)).state, 'free');
    assert.equal(await lab.tryConnect(lab.peer.ns, h.v4, 8091), true, 'open after unisolate');
    assert.equal(await lab.tryConnect(h.ns, lab.peer.v4, 8092, 1500, { uid: 65534 }), true, 'out open after unisolate');
  } finally {
    l1.close();
    l2.close();
    out.close();
  }
}

describe('host kinds: a minimal namespace host without /etc/protocols', function () {
  this.timeout(120_000);
  const lab = useLab({ hosts: 1 });
  const driver = useDriver();

  it('isolates, changes exceptions, reports no tampering and releases', async () => {
    const h = lab.hosts[0];
    await lab.hostFile(0, '/etc/protocols', null);
    const probe = await lab.hostExec(0, ['sh', '-c', 'test -e /etc/protocols; echo $?']);
    assert.equal(probe.stdout.trim(), '1', 'the host has no /etc/protocols');
    const target = { host: h.v4, username: lab.users.root.username, privateKey: lab.users.root.privateKey, knownHosts: h.knownHosts, table: TABLE, timeoutMs: 15_000 };
    await roundTrip(lab, driver, { ns: h.ns, v4: h.v4, v6: h.v6, target });
  });
});

describe('host kinds: Debian systems under systemd-nspawn (bookworm nft 1.0.6, trixie nft 1.1.3)', function () {
  this.timeout(600_000);
  const { lab, hosts } = useContainers(suites, { logBoot: true });
  const driver = useDriver();

  for (const [i, suite] of suites.entries()) {
    it(`${suite} (nft ${NFT_VERSION[suite]}, no /etc/protocols): isolates, changes exceptions, reports no tampering and releases`, async () => {
      const h = hosts[i];
      assert.equal((await h.exec(['sh', '-c', 'test -e /etc/protocols; echo $?'])).stdout.trim(), '1', 'minbase has no /etc/protocols');
      const target = containerTarget(h, TABLE);
      await roundTrip(lab, driver, { ns: h.ns, v4: h.v4, v6: h.v6, target });
    });

    it(`${suite}: a systemd unit exception is refused as UNSUPPORTED naming nft ${NFT_VERSION[suite]}, and nothing changes`, async () => {
      const h = hosts[i];
      const target = containerTarget(h, TABLE);
      // ssh.service's cgroup exists on this host: only nft's JSON parser stands in the way
      await assert.rejects(driver.isolate(target, { presets: ['ssh'], exceptions: [{ direction: 'out', proto: 'any', unit: 'ssh.service' }] }), (err: IsolationError) => {
        assert.equal(err.code, 'UNSUPPORTED', err.message);
        assert.ok(err.message.includes(`nft ${NFT_VERSION[suite]}`), err.message);
        assert.equal(err.details.nftVersion, NFT_VERSION[suite]);
        return true;
      });
      assert.equal((await driver.status(target)).state, 'free', 'nothing applied');
    });
  }
});
