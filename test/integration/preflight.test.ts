/**
 * Preflight (issue 13 item 4, issue 15): what a host can do, asked in one exec that changes
 * nothing, reported by `capabilities()` and `isolation-status` with `msg.check`, and the gate
 * before the first isolate of each connection. On the namespace lab (sudo without the `ss` lines,
 * a host without /etc/protocols, a refused unit exception), on real Debian systems under
 * systemd-nspawn (bookworm nft 1.0.6, trixie nft 1.1.3), and through a real Node-RED runtime.
 */
import { strict as assert } from 'assert';
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import sinon from 'sinon';
import { IsolationDriver, type Capabilities, type HostState, type IsolationError } from '../../src/driver';
import { SshConnection } from '../../src/driver/transport';
import { containerTarget, guardSuites, NFT_VERSION } from '../lab/container';
import { useContainers, useDriver, useLab, useNodeRed } from '../lab/fixtures';
import { labTarget, PREFIX, SUDOERS_LINES, type Lab } from '../lab/lab';
import { httpAnswerNodes, httpIn, labTargetNode, payloadToMsg, placeNodes, runtimes } from '../lab/nodered';

const TABLE = 'nrhi_preflight';
/** the container suites (NRHI_GUARD_SUITES narrows them) */
const suites = guardSuites();

/** the nft this machine (and so every namespace lab host) runs */
function localNftVersion(): string {
  const out = execFileSync('nft', ['-v'], { encoding: 'utf8' });
  return /v(\d+\.\d+\.\d+)/.exec(out)?.[1] ?? 'unknown';
}

/** what must never be left behind by a preflight: its probe table, or any table at all */
async function assertNoProbeTable(lab: Lab, ns: string): Promise<void> {
  const r = await lab.nft(ns, ['list', 'tables']);
  assert.equal(r.code, 0, r.stderr);
  assert.doesNotMatch(r.stdout, /nrhi_preflight_probe/, 'the probe batch never applies');
}

describe('preflight on the namespace lab', function () {
  this.timeout(120_000);
  const lab = useLab({ hosts: 2, tables: [TABLE] });
  const driver = useDriver();

  it('reports a sudo host fully, changes nothing, and cuts no open connection', async () => {
    const h = lab.hosts[0];
    const listener = await lab.listen(h.ns, 7301);
    const conn = await lab.openConnection(lab.peer.ns, h.v4, 7301);
    try {
      assert.equal(await conn.roundTrip(), true);
      const before = (await lab.nft(h.ns, ['list', 'ruleset'])).stdout;
      const c = await driver.capabilities(labTarget(lab, 0, TABLE, 15_000));
      assert.equal(c.privilege, 'sudo');
      assert.equal(c.root, false);
      assert.equal(c.nft.present, true);
      assert.equal(c.nft.version, localNftVersion());
      assert.equal(c.nft.json, true);
      assert.equal(c.nft.socketCgroupv2, false, 'nft 1.0.6 refuses socket cgroupv2 in JSON');
      assert.equal(c.ss.present, true);
      assert.equal(c.ss.kill, true);
      assert.deepEqual(c.sudo, { nft: true, ss: true, persist: false }, 'the lab grants nft and ss, not the boot unit lines');
      assert.equal(c.systemd.running, fs.existsSync('/run/systemd/system'));
      assert.equal(c.protocols, true);
      assert.match(c.kernel ?? '', /^\d+\.\d+/);
      for (const [path, why] of Object.entries(c.unknown)) assert.ok(why.length > 0, `${path} has a reason`);
      assert.ok(c.limits.some((l) => l.includes('socket cgroupv2')), c.limits.join('; '));
      // nothing changed: the ruleset is as it was, the connection still carries data
      assert.equal((await lab.nft(h.ns, ['list', 'ruleset'])).stdout, before);
      await assertNoProbeTable(lab, h.ns);
      assert.equal(await conn.roundTrip(), true, 'ss -K with a filter matching nothing destroyed nothing');
    } finally {
      conn.close();
      listener.close();
    }
  });

  it('a host whose sudo allows nft but not ss: reported, isolate still works and says it could not cut', async () => {
    const h = lab.hosts[1];
    // this host's own /etc (an overlay): its sudoers drop-in without the ss lines
    const file = `/etc/sudoers.d/${PREFIX}${lab.id}`;
    const nftOnly = SUDOERS_LINES(lab.users.sudo.username).split('\n').filter((l) => !l.includes('/ss '));
    await lab.hostFile(1, file, `${nftOnly.join('\n')}\n`);
    const d = new IsolationDriver();
    const listener = await lab.listen(h.ns, 7302);
    const conn = await lab.openConnection(lab.peer.ns, h.v4, 7302);
    try {
      const t = labTarget(lab, 1, TABLE, 15_000);
      const c = await d.capabilities(t);
      assert.deepEqual(c.sudo, { nft: true, ss: false, persist: false });
      assert.equal(c.ss.kill, false);
      assert.ok(c.limits.some((l) => l.includes('sudo refuses `ss -K`')), c.limits.join('; '));
      // not a refusal: the isolation goes in, the open connection is frozen and the answer says so
      const st = await d.isolate(t, { presets: ['ssh'], verify: false });
      assert.equal(st.state, 'isolated');
      assert.ok(st.warnings.some((w) => /NOT all cut.*refused/.test(w)), st.warnings.join('; '));
      assert.equal(await conn.roundTrip(1500), false, 'frozen by the drop rules');
      await d.unisolate(t);
    } finally {
      conn.close();
      listener.close();
      await d.close();
      await lab.hostFile(1, file, `${SUDOERS_LINES(lab.users.sudo.username)}\n`);
    }
  });

  it('a host without /etc/protocols: reported, isolated and released', async () => {
    const h = lab.hosts[1];
    await lab.hostFile(1, '/etc/protocols', null);
    const d = new IsolationDriver();
    try {
      const t = labTarget(lab, 1, TABLE, 15_000, {}, 'root');
      const c = await d.capabilities(t);
      assert.equal(c.protocols, false);
      assert.equal(c.privilege, 'root');
      assert.equal(c.sudo, null);
      assert.equal(c.root, true);
      const listener = await lab.listen(h.ns, 7303);
      try {
        await d.isolate(t, { presets: ['ssh'], exceptions: [{ direction: 'in', proto: 'tcp', addr: lab.peer.v4, port: 7303 }], verify: false });
        assert.equal(await lab.tryConnect(lab.peer.ns, h.v4, 7303), true, 'the exception passes');
        assert.equal(await lab.ping(lab.peer.ns, h.v4), false, 'the rest is dropped');
        await d.unisolate(t);
        assert.equal(await lab.ping(lab.peer.ns, h.v4), true, 'released');
      } finally {
        listener.close();
      }
    } finally {
      await d.close();
      await lab.hostFile(1, '/etc/protocols', fs.readFileSync('/etc/protocols', 'utf8'));
    }
  });

  it('a flooding nft: the preflight answers in bounded time, cut on the host, and leaves nothing running', async () => {
    await lab.wrapNft(0, 'exec timeout 30 yes AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA');
    const d = new IsolationDriver();
    try {
      const t0 = Date.now();
      const c = await d.capabilities(labTarget(lab, 0, TABLE, 8000));
      const ms = Date.now() - t0;
      assert.ok(ms < 8000, `within the timeout (${ms} ms)`);
      assert.equal(c.nft.json, null);
      assert.match(c.unknown['nft.json'], /cut on the host/);
      assert.equal(c.nft.version, null);
      assert.equal(c.nft.socketCgroupv2, null);
      assert.equal(c.systemd.unitDir, true, 'the rest of the answer is whole');
      let left = lab.processes(lab.hosts[0].ns).filter((p) => p === 'yes' || p === 'timeout');
      for (let i = 0; i < 50 && left.length > 0; i++) {
        await new Promise((r) => setTimeout(r, 100));
        left = lab.processes(lab.hosts[0].ns).filter((p) => p === 'yes' || p === 'timeout');
      }
      assert.deepEqual(left, [], 'the flood died of SIGPIPE on the host');
    } finally {
      await lab.wrapNft(0, null);
      await d.close();
    }
  });

  it('isolate refuses a unit exception up front (UNSUPPORTED, naming nft and the feature), without an apply', async () => {
    const d = new IsolationDriver();
    const execs = sinon.spy(SshConnection.prototype, 'exec'); // counts real execs, changes nothing
    try {
      const t = labTarget(lab, 0, TABLE, 15_000);
      await assert.rejects(d.isolate(t, { presets: ['ssh'], exceptions: [{ direction: 'out', proto: 'any', unit: 'ssh.service' }], verify: false }), (err: IsolationError) => {
        assert.equal(err.code, 'UNSUPPORTED', err.message);
        assert.ok(err.message.includes(`nft ${localNftVersion()}`), err.message);
        assert.match(err.message, /socket cgroupv2/);
        return true;
      });
      // the connect's own read, then the preflight: no apply was ever sent
      assert.equal(execs.callCount, 2, 'connect + preflight, nothing else');
      assert.ok(!execs.getCalls().some((c) => String(c.args[1]).includes('"nftables"') && String(c.args[1]).includes(TABLE)), 'no batch of ours went out');
      assert.equal((await lab.exec(lab.hosts[0].ns, ['nft', 'list', 'table', 'inet', TABLE])).code, 1, 'nothing applied');
    } finally {
      execs.restore();
      await d.close();
    }
  });

  it('the warm isolate gains no exec: the preflight runs once per connection', async () => {
    const d = new IsolationDriver();
    const execs = sinon.spy(SshConnection.prototype, 'exec');
    const t = labTarget(lab, 0, TABLE, 15_000);
    try {
      await d.status(t); // a warm connection, as the bench has
      execs.resetHistory();
      let t0 = process.hrtime.bigint();
      await d.isolate(t, { presets: ['ssh'], verify: false });
      const firstMs = Number(process.hrtime.bigint() - t0) / 1e6;
      assert.equal(execs.callCount, 2, 'the first isolate on a connection: preflight + apply');
      await d.unisolate(t);
      const warm: number[] = [];
      for (let i = 0; i < 10; i++) {
        execs.resetHistory();
        t0 = process.hrtime.bigint();
        await d.isolate(t, { presets: ['ssh'], verify: false });
        warm.push(Number(process.hrtime.bigint() - t0) / 1e6);
        assert.equal(execs.callCount, 1, 'a warm isolate is one exec');
        await d.unisolate(t);
      }
      // the preflight alone, for the record
      const pre: number[] = [];
      for (let i = 0; i < 5; i++) {
        t0 = process.hrtime.bigint();
        await d.capabilities(t);
        pre.push(Number(process.hrtime.bigint() - t0) / 1e6);
      }
      const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)].toFixed(1);
      console.log(`      (first isolate on a warm connection ${firstMs.toFixed(1)} ms; warm isolate p50 ${med(warm)} ms; full preflight p50 ${med(pre)} ms)`);
    } finally {
      execs.restore();
      await d.close();
    }
  });
});

describe('preflight on Debian systems under systemd-nspawn (bookworm nft 1.0.6, trixie nft 1.1.3)', function () {
  this.timeout(600_000);
  const { lab, hosts } = useContainers(suites, { logBoot: true });
  const driver = useDriver();

  for (const [i, suite] of suites.entries()) {
    it(`${suite}: systemd, nft ${NFT_VERSION[suite]}, nftables.conf flushes, no socket cgroupv2; persist and a unit exception decided up front`, async () => {
      const h = hosts[i];
      const target = containerTarget(h, TABLE);
      const c: Capabilities = await driver.capabilities(target);
      assert.equal(c.systemd.running, true);
      assert.equal(c.systemd.unitDir, true);
      assert.equal(c.nft.version, NFT_VERSION[suite]);
      assert.equal(c.nft.json, true);
      assert.equal(c.nft.socketCgroupv2, false);
      assert.equal(c.nftablesConf.present, true);
      assert.equal(c.nftablesConf.flushesRuleset, true, "Debian's /etc/nftables.conf begins with flush ruleset");
      const enabled = (await h.exec(['systemctl', 'is-enabled', 'nftables.service'])).stdout.trim();
      assert.equal(c.nftablesConf.serviceEnabled, enabled === 'enabled', `systemctl says ${enabled}`);
      assert.equal(c.protocols, false, 'minbase has no /etc/protocols');
      assert.equal(c.ss.present, true);
      assert.equal(c.ss.kill, true);
      assert.equal(c.root, true);
      const uname = (await h.exec(['uname', '-r'])).stdout.trim();
      assert.equal(c.kernel, uname);
      assert.equal((await h.exec(['nft', 'list', 'tables'])).stdout.includes('nrhi_preflight_probe'), false, 'the probe never applies');

      const d = new IsolationDriver();
      try {
        await assert.rejects(d.isolate(target, { presets: ['ssh'], exceptions: [{ direction: 'out', proto: 'any', unit: 'ssh.service' }] }), (err: IsolationError) => {
          assert.equal(err.code, 'UNSUPPORTED');
          assert.equal(err.details.nftVersion, NFT_VERSION[suite]);
          return true;
        });
        assert.equal((await d.status(target)).state, 'free', 'nothing applied');
        // what the host can do goes through: persist where systemd is, then released
        const st = await d.isolate(target, { presets: ['ssh'], persist: true, verify: false });
        assert.equal(st.state, 'isolated');
        assert.equal(await lab.ping(lab.peer.ns, h.v4), false, 'isolated: the peer is dropped');
        await d.unisolate(target);
        assert.equal(await lab.ping(lab.peer.ns, h.v4), true, 'released');
      } finally {
        await d.close();
      }
    });
  }
});

for (const rt of runtimes()) describe(`isolation-status with msg.check in a real Node-RED runtime (${rt.label})`, function () {
  this.timeout(180_000);
  const lab = useLab({ hosts: 1, runtime: rt });
  const red = useNodeRed({
    runtime: rt,
    flows: () =>
      placeNodes([
        { id: 'tab', type: 'tab', label: 'preflight' },
        labTargetNode(lab, 'tgt', { timeout: 15 }),
        httpIn('in-st', 'post', '/status', 'm-st'),
        payloadToMsg('m-st', ['check'], 'st'),
        { id: 'st', type: 'isolation-status', z: 'tab', target: 'tgt', wires: [['resp']] },
        // the node option: every status it reads carries the capabilities
        httpIn('in-st2', 'post', '/status-checked', 'st2'),
        { id: 'st2', type: 'isolation-status', z: 'tab', target: 'tgt', check: true, wires: [['resp']] },
        ...httpAnswerNodes(),
      ]),
  });

  it('returns payload.capabilities on msg.check or the node option, and not otherwise', async () => {
    const plain = await red.request('POST', '/status', {});
    assert.equal(plain.status, 200, JSON.stringify(plain.body));
    assert.equal((plain.body as HostState).state, 'free');
    assert.equal('capabilities' in (plain.body as object), false, 'no check asked');

    const checked = await red.request('POST', '/status', { check: true });
    assert.equal(checked.status, 200, JSON.stringify(checked.body));
    const c = (checked.body as HostState & { capabilities: Capabilities }).capabilities;
    assert.equal(c.nft.json, true);
    assert.equal(c.nft.version, localNftVersion());
    assert.equal(c.nft.socketCgroupv2, false);
    assert.deepEqual(c.sudo, { nft: true, ss: true, persist: false });
    assert.equal((checked.body as HostState).state, 'free', 'the state is there too');

    const option = await red.request('POST', '/status-checked', {});
    assert.equal(option.status, 200, JSON.stringify(option.body));
    assert.equal((option.body as { capabilities: Capabilities }).capabilities.ss.kill, true);

    const bad = await red.request('POST', '/status', { check: 'yes' });
    assert.equal(bad.status, 500);
    assert.equal((bad.body as { code: string }).code, 'VALIDATION');
  });
});
