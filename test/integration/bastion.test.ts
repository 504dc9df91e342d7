/**
 * Hosts reached only through a bastion (a lab namespace between the controller and the hosts,
 * with its own sshd): the driver and a real Node-RED runtime isolate through it over one pooled
 * bastion connection, the host keeps the bastion as its management channel, and every fault on
 * the way is typed, bounded and applies nothing. Real sshd, real nft, real packets.
 */
import { strict as assert } from 'assert';
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import { IsolationDriver, IsolationError, type HostState, type TargetInput } from '../../src/driver';
import { dropTables, useLab, useNodeRed } from '../lab/fixtures';
import type { Lab } from '../lab/lab';
import { httpAnswerNodes, httpIn, labTargetNode, payloadToMsg, placeNodes } from '../lab/nodered';

const TABLE = 'node_red_isolation';

function jumpOf(lab: Lab, over: Partial<NonNullable<TargetInput['jump']>> = {}): NonNullable<TargetInput['jump']> {
  const b = lab.bastion!;
  return { host: b.v4, port: b.port, username: b.user.username, privateKey: b.user.privateKey, knownHosts: b.knownHosts, ...over };
}

function targetOf(lab: Lab, i: number, over: Partial<TargetInput> = {}): TargetInput {
  const h = lab.hosts[i];
  return {
    host: h.v4,
    username: lab.users.root.username,
    privateKey: lab.users.root.privateKey,
    knownHosts: h.knownHosts,
    timeoutMs: 8000,
    jump: jumpOf(lab),
    ...over,
  };
}

async function isolated(lab: Lab, i: number): Promise<boolean> {
  return (await lab.exec(lab.hosts[i].ns, ['nft', 'list', 'table', 'inet', TABLE])).code === 0;
}

async function expectFault(p: Promise<unknown>, code: string, stage: string, maxMs: number): Promise<IsolationError> {
  const t0 = Date.now();
  const err = await p.then(
    () => assert.fail('expected a fault'),
    (e: unknown) => e,
  );
  const ms = Date.now() - t0;
  assert.ok(err instanceof IsolationError, String(err));
  assert.equal(err.code, code, err.message);
  assert.equal(err.details.via, 'bastion', JSON.stringify(err.details));
  assert.equal(err.details.stage, stage, err.message);
  assert.ok(ms <= maxMs, `took ${ms} ms, bound ${maxMs}`);
  return err;
}

describe('through a bastion (hosts reachable only from it)', function () {
  this.timeout(180_000);
  const lab = useLab({ hosts: 3, bastion: true });
  let driver: IsolationDriver;

  beforeEach(() => {
    driver = new IsolationDriver({ verifyWindowS: 20 });
  });
  afterEach(async () => {
    await driver.close();
    await lab.bastion?.configure();
    await dropTables(lab, TABLE);
  });

  it('the lab: hosts answer only through the bastion; the root namespace has no route to them', async () => {
    const h = lab.hosts[0];
    // `ip route get` sends nothing: the hosts' network is not on the lab's link from the root namespace
    const route = execFileSync('ip', ['route', 'get', h.v4], { encoding: 'utf8' });
    assert.ok(!route.includes(lab.controller.link), route);
    assert.equal(await lab.tcpOpen(lab.bastion!.ns, h.v4, 22), true, 'the bastion reaches the host');
    // nothing is forwarded at the IP layer by the bastion
    const fwd = await lab.exec(lab.bastion!.ns, ['sysctl', '-n', 'net.ipv4.ip_forward']);
    assert.equal(fwd.stdout.trim(), '0');
  });

  it('isolates through the bastion: the host keeps the bastion as its management channel, traffic is cut, release works', async () => {
    const h = lab.hosts[0];
    const listener = await lab.listen(h.ns, 8443);
    try {
      assert.equal(await lab.tryConnect(lab.peer.ns, h.v4, 8443), true);
      const st = await driver.isolate(targetOf(lab, 0), { presets: ['ssh'], reason: 'via bastion' });
      assert.equal(st.isolated, true);
      assert.deepEqual(
        st.management.map((m) => m.addr),
        [lab.bastion!.inner.v4],
        'the management channel the host saw is the bastion',
      );
      assert.equal(await lab.tryConnect(lab.peer.ns, h.v4, 8443), false, 'peer cut');
      assert.equal(await lab.tcpOpen(lab.peer.ns, h.v4, 22, 1000), false, 'ssh from the peer cut');
      assert.equal(await lab.tcpOpen(lab.bastion!.ns, h.v4, 22), true, 'ssh from the bastion kept');
      // a new connection through the bastion still works (status opens a channel on the warm one)
      assert.equal((await driver.status(targetOf(lab, 0))).isolated, true);
      await driver.close();
      const again = new IsolationDriver();
      try {
        assert.equal((await again.status(targetOf(lab, 0))).isolated, true, 'a fresh controller reaches the isolated host through the bastion');
        await again.unisolate(targetOf(lab, 0));
      } finally {
        await again.close();
      }
      assert.equal(await lab.tryConnect(lab.peer.ns, h.v4, 8443), true, 'released');
    } finally {
      listener.close();
    }
  });

  it('a fleet action opens one connection to the bastion, not one per host; warm actions stay one exec', async () => {
    assert.equal(await lab.bastion!.sessions(), 0);
    const states = await Promise.all(lab.hosts.map((_, i) => driver.isolate(targetOf(lab, i), { presets: ['ssh'], verify: false })));
    assert.deepEqual(
      states.map((s) => s.isolated),
      [true, true, true],
    );
    assert.equal(driver.bastionConnections, 1, 'one pooled bastion connection');
    assert.equal(driver.connections, 3, 'one host connection per host, each over the bastion');
    assert.equal(await lab.bastion!.sessions(), 1, 'the bastion sshd holds exactly one session');
    for (let i = 0; i < lab.hosts.length; i++) assert.equal(await isolated(lab, i), true);
    // verify-then-commit: its fresh connection also goes through the (same) bastion connection
    await Promise.all(lab.hosts.map((_, i) => driver.unisolate(targetOf(lab, i))));
    await Promise.all(lab.hosts.map((_, i) => driver.isolate(targetOf(lab, i), { presets: ['ssh'], verify: true })));
    assert.equal(await lab.bastion!.sessions(), 1, 'still one bastion session after verify-then-commit');
    // the warm path: one exec per action on the pooled host connection
    const conn = await driver.pooledConnection(targetOf(lab, 0));
    let execs = 0;
    const orig = conn.exec.bind(conn);
    conn.exec = (...args: Parameters<typeof conn.exec>) => {
      execs++;
      return orig(...args);
    };
    await driver.isolate(targetOf(lab, 0), { presets: ['ssh'], verify: false, reason: 'again' });
    assert.equal(execs, 1, 'one exec for a warm isolate through the bastion');
    await Promise.all(lab.hosts.map((_, i) => driver.unisolate(targetOf(lab, i))));
    await driver.close();
    assert.equal(driver.bastionConnections, 0);
    for (let i = 0; i < 50 && (await lab.bastion!.sessions()) > 0; i++) await new Promise((r) => setTimeout(r, 100));
    assert.equal(await lab.bastion!.sessions(), 0, 'the bastion connection closes with the pool');
  });

  it('the bastion connection closes by itself once no host connection uses it', async () => {
    const d = new IsolationDriver({ idleMs: 300 });
    try {
      await d.status(targetOf(lab, 0));
      assert.equal(d.bastionConnections, 1);
      for (let i = 0; i < 50 && d.bastionConnections > 0; i++) await new Promise((r) => setTimeout(r, 100));
      assert.equal(d.connections, 0);
      assert.equal(d.bastionConnections, 0, 'idle bastion closed');
      for (let i = 0; i < 30 && (await lab.bastion!.sessions()) > 0; i++) await new Promise((r) => setTimeout(r, 100));
      assert.equal(await lab.bastion!.sessions(), 0);
    } finally {
      await d.close();
    }
  });

  it('survives a bastion that drops: the next action goes through a new bastion connection', async () => {
    await driver.status(targetOf(lab, 0));
    await driver.status(targetOf(lab, 1));
    assert.equal(await lab.bastion!.sessions(), 1);
    await lab.bastion!.dropSessions();
    for (let i = 0; i < 50 && driver.bastionConnections > 0; i++) await new Promise((r) => setTimeout(r, 100));
    assert.equal(driver.bastionConnections, 0, 'the dropped bastion left the pool');
    const st = await driver.isolate(targetOf(lab, 0), { presets: ['ssh'] });
    assert.equal(st.isolated, true);
    assert.equal((await driver.status(targetOf(lab, 1))).isolated, false);
    assert.equal(driver.bastionConnections, 1);
    assert.equal(await lab.bastion!.sessions(), 1);
  });

  describe('faults on the way, typed and bounded, nothing applied', () => {
    it('bastion unreachable', async () => {
      const t = targetOf(lab, 0, { jump: jumpOf(lab, { port: 2222 }) });
      const err = await expectFault(driver.isolate(t, { presets: ['ssh'] }), 'UNREACHABLE', 'bastion', 8000);
      assert.equal(err.host, lab.hosts[0].v4);
      assert.match(err.message, /bastion/);
      assert.equal(await isolated(lab, 0), false);
    });

    it('bastion silent: TIMEOUT within the target timeout', async () => {
      // an address on the bastion's front network that nobody answers on
      const silent = lab.bastion!.v4.replace(/\.2$/, '.77');
      const t = targetOf(lab, 0, { timeoutMs: 1500, jump: jumpOf(lab, { host: silent, knownHosts: lab.bastion!.knownHosts.replace(lab.bastion!.v4, silent) }) });
      await expectFault(driver.isolate(t, { presets: ['ssh'] }), 'TIMEOUT', 'bastion', 3000);
      assert.equal(await isolated(lab, 0), false);
    });

    it('bastion host key wrong', async () => {
      const t = targetOf(lab, 0, { jump: jumpOf(lab, { knownHosts: lab.bastion!.wrongKnownHosts }) });
      const err = await expectFault(driver.isolate(t, { presets: ['ssh'] }), 'HOST_KEY_MISMATCH', 'bastion', 8000);
      assert.match(err.message, /bastion/);
      assert.equal(await isolated(lab, 0), false);
    });

    it('bastion user refused', async () => {
      const t = targetOf(lab, 0, { jump: jumpOf(lab, { privateKey: lab.users.nosudo.privateKey }) });
      await expectFault(driver.isolate(t, { presets: ['ssh'] }), 'AUTH_FAILED', 'bastion', 8000);
      assert.equal(await isolated(lab, 0), false);
    });

    it('bastion refuses the forward (AllowTcpForwarding no)', async () => {
      await lab.bastion!.configure({ allowTcpForwarding: false });
      const err = await expectFault(driver.isolate(targetOf(lab, 0), { presets: ['ssh'] }), 'UNREACHABLE', 'forward', 8000);
      assert.match(err.message, /refused to forward/);
      assert.equal(await isolated(lab, 0), false);
    });

    it('bastion refuses the forward (PermitOpen excludes the target)', async () => {
      await lab.bastion!.configure({ permitOpen: [`${lab.hosts[1].v4}:22`] });
      await expectFault(driver.isolate(targetOf(lab, 0), { presets: ['ssh'] }), 'UNREACHABLE', 'forward', 8000);
      assert.equal(await isolated(lab, 0), false);
      // the one it admits still works, over the same bastion connection
      assert.equal((await driver.isolate(targetOf(lab, 1), { presets: ['ssh'] })).isolated, true);
      assert.equal(driver.bastionConnections, 1);
    });

    it('target unreachable from the bastion (refused, and silent)', async () => {
      await lab.stopSshd(2);
      try {
        await expectFault(driver.isolate(targetOf(lab, 2), { presets: ['ssh'] }), 'UNREACHABLE', 'target', 8000);
      } finally {
        await lab.startSshd(2);
      }
      await lab.silence(2, true);
      try {
        await expectFault(driver.isolate(targetOf(lab, 2, { timeoutMs: 1500 }), { presets: ['ssh'] }), 'TIMEOUT', 'target', 3000);
      } finally {
        await lab.silence(2, false);
      }
      assert.equal(await isolated(lab, 2), false);
    });

    it('target host key wrong, through the bastion', async () => {
      const err = await expectFault(driver.isolate(targetOf(lab, 0, { knownHosts: lab.hosts[0].wrongKnownHosts }), { presets: ['ssh'] }), 'HOST_KEY_MISMATCH', 'target', 8000);
      assert.equal(err.host, lab.hosts[0].v4);
      assert.equal(await isolated(lab, 0), false);
    });
  });

  describe('nodes in a real Node-RED runtime', () => {
    const red = useNodeRed();

    before(async () => {
      const b = lab.bastion!;
      await red.deploy(
        placeNodes([
          { id: 'tab', type: 'tab', label: 'bastion' },
          // the bastion as an isolation-target of its own, named as the jump of the hosts' target
          {
            id: 'jump',
            type: 'isolation-target',
            name: 'bastion',
            host: b.v4,
            port: 22,
            username: b.user.username,
            knownHosts: b.knownHosts,
            timeout: 10,
            credentials: { privateKey: b.user.privateKey },
          },
          labTargetNode(lab, 'tgt', { name: 'hosts behind the bastion', timeout: 10, jumpTarget: 'jump' }),
          // the same through the jump host's own fields, credentials in the store
          {
            id: 'tgt2',
            type: 'isolation-target',
            name: 'jump by fields',
            host: lab.hosts[1].v4,
            port: 22,
            username: lab.users.root.username,
            knownHosts: lab.hosts[1].knownHosts,
            timeout: 10,
            jumpHost: b.v4,
            jumpPort: 22,
            jumpUser: b.user.username,
            jumpKnownHosts: b.knownHosts,
            credentials: { privateKey: lab.users.root.privateKey, jumpPrivateKey: b.user.privateKey },
          },
          httpIn('in-iso', 'post', '/isolate', 'm-iso'),
          payloadToMsg('m-iso', ['host', 'hosts'], 'iso'),
          { id: 'iso', type: 'isolate-host', z: 'tab', target: 'tgt', presets: ['ssh'], exceptions: [], mode: 'enforce', duration: 0, verify: true, wires: [['resp'], []] },
          httpIn('in-un', 'post', '/unisolate', 'm-un'),
          payloadToMsg('m-un', ['host', 'hosts'], 'un'),
          { id: 'un', type: 'unisolate-host', z: 'tab', target: 'tgt', wires: [['resp'], []] },
          httpIn('in-st2', 'get', '/status2', 'st2'),
          { id: 'st2', type: 'isolation-status', z: 'tab', target: 'tgt2', wires: [['resp']] },
          ...httpAnswerNodes(),
        ]),
      );
      // the flow file keeps no secret: the jump's key is in the credential store only
      const flowsText = fs.readdirSync(red.userDir).filter((f) => f.startsWith('flows') && f.endsWith('.json') && !f.includes('cred')).map((f) => fs.readFileSync(`${red.userDir}/${f}`, 'utf8')).join('');
      assert.ok(flowsText.includes('"jumpHost"'), 'the flow file was read');
      assert.ok(!flowsText.includes('PRIVATE KEY'), 'no key in the flow file');
    });

    it('isolates one host and a fan-out through the bastion, over one bastion session, with real traffic', async () => {
      const listeners = await Promise.all(lab.hosts.map((h) => lab.listen(h.ns, 8444)));
      try {
        const one = await red.request('POST', '/isolate', { host: lab.hosts[0].v4 });
        assert.equal(one.status, 200, JSON.stringify(one.body));
        const st = one.body as HostState;
        assert.equal(st.isolated, true);
        assert.deepEqual(st.management.map((m) => m.addr), [lab.bastion!.inner.v4]);
        assert.equal(await lab.tryConnect(lab.peer.ns, lab.hosts[0].v4, 8444), false, 'h0 isolated');

        const fan = await red.request('POST', '/isolate', { hosts: lab.hosts.map((h) => h.v4) });
        assert.equal(fan.status, 200, JSON.stringify(fan.body));
        const rows = fan.body as { host: string; ok: boolean; state?: HostState }[];
        assert.deepEqual(
          rows.map((r) => [r.ok, r.state?.isolated]),
          lab.hosts.map(() => [true, true]),
        );
        for (const h of lab.hosts) {
          assert.equal(await lab.tryConnect(lab.peer.ns, h.v4, 8444), false, `${h.v4} isolated`);
          assert.equal(await lab.tcpOpen(lab.bastion!.ns, h.v4, 22), true, `${h.v4} keeps ssh from the bastion`);
        }
        assert.equal(await lab.bastion!.sessions(), 1, 'the runtime holds one bastion session for the whole fleet');

        const s2 = await red.request('GET', '/status2');
        assert.equal(s2.status, 200, JSON.stringify(s2.body));
        assert.equal((s2.body as HostState).isolated, true, 'the jump given by fields reaches host 1 too');
        // a second target with the same bastion and credentials shares its connection
        assert.equal(await lab.bastion!.sessions(), 1);

        const un = await red.request('POST', '/unisolate', { hosts: lab.hosts.map((h) => h.v4) });
        assert.deepEqual((un.body as { ok: boolean }[]).map((r) => r.ok), lab.hosts.map(() => true));
        for (const h of lab.hosts) assert.equal(await lab.tryConnect(lab.peer.ns, h.v4, 8444), true, `${h.v4} released`);
      } finally {
        for (const l of listeners) l.close();
      }
    });
  });
});
