/**
 * The nodes in a real Node-RED runtime (node-red-node-test-helper). The driver is stubbed here
 * only: these tests are about what the nodes do with messages, config and errors. The driver
 * itself is proved on the lab host in test/integration.
 */
import { strict as assert } from 'assert';
import helper from 'node-red-node-test-helper';
import * as sinon from 'sinon';
import * as fs from 'fs';
import * as path from 'path';
import { HostKeyMismatchError, IsolationDriver, NotIsolatedError, ProbeReachedError, ProtectedUnresolvedError, ValidationError, type HostState } from '../../src/driver';
import { notIsolated } from '../../src/driver/state';
import { DEFAULT_MAX_HOSTS, driverOptions, fleetCap, fleetLimit, SETTINGS } from '../../src/nodes/common';
import { REPO_ROOT } from '../lab/nodered';
import { sharedDriver } from '../../src/nodes/common';

const driver = sharedDriver();
import targetNode from '../../src/nodes/isolation-target/isolation-target';
import isolateNode from '../../src/nodes/isolate-host/isolate-host';
import unisolateNode from '../../src/nodes/unisolate-host/unisolate-host';
import statusNode from '../../src/nodes/isolation-status/isolation-status';
import exceptionSetNode from '../../src/nodes/exception-set/exception-set';
// eslint-disable-next-line @typescript-eslint/no-require-imports
const catchNode = require('@node-red/nodes/core/common/25-catch.js');

helper.init(require.resolve('node-red'));

/** Node-RED's log level of errors */
const LOG_ERROR = 20;

const ALL = [targetNode, isolateNode, unisolateNode, statusNode, exceptionSetNode, catchNode];

const TARGET = {
  id: 'tgt',
  type: 'isolation-target',
  name: 'lab',
  host: '198.18.0.2',
  port: 22,
  username: 'isolator',
  allowedHosts: ['198.18.0.0/24', 'web-01'],
  knownHosts: '198.18.0.2 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIL48++oJJJvDkewzvugVU7EctSvMYJmR74k7qVa5AGFD',
  sudo: true,
  timeout: 7,
};
const CREDS = { tgt: { privateKey: 'PRIVATE KEY', passphrase: 'pp' } };

function state(host: string, isolated = true): HostState {
  const free = notIsolated(host);
  return isolated ? { ...free, isolated, state: 'isolated', mode: 'enforce', since: '2026-11-22T14:04:05.000Z' } : free;
}

/** A host in audit mode: the table is in, nothing is dropped. */
function audited(host: string): HostState {
  return { ...notIsolated(host), isolated: false, state: 'audit', mode: 'audit', since: '2026-11-22T14:04:05.000Z' };
}

type AnyNode = { receive(msg: object): void; on(ev: string, fn: (m: Record<string, unknown>) => void): void; status: sinon.SinonSpy; warn: sinon.SinonSpy };

/** What node `id` warned (the helper spies on every node's warn at once: keep this node's calls). */
function warnings(id: string): string[] {
  const n = helper.getNode(id) as unknown as AnyNode;
  return n.warn
    .getCalls()
    .filter((c) => c.thisValue === n)
    .map((c) => String(c.args[0]));
}

type FlowNode = { id: string; type: string } & Record<string, unknown>;

function flow(node: Record<string, unknown>): FlowNode[] {
  return [
    TARGET,
    { id: 'n1', type: String(node.type), wires: [['out'], ['audit']], target: 'tgt', ...node },
    { id: 'out', type: 'helper' },
    { id: 'audit', type: 'helper' },
    { id: 'c1', type: 'catch', scope: null, uncaught: false, wires: [['caught']] },
    { id: 'caught', type: 'helper' },
  ];
}

/** The next message on a helper node, or a failure after `ms`. */
function next(id: string, ms = 2000): Promise<Record<string, unknown>> {
  const n = helper.getNode(id) as unknown as AnyNode;
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`no message on ${id}`)), ms);
    n.on('input', (m) => {
      clearTimeout(t);
      resolve(m);
    });
  });
}

/** Resolves false if a message arrives on `id` within `ms`. */
function nothing(id: string, ms = 200): Promise<boolean> {
  const n = helper.getNode(id) as unknown as AnyNode;
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve(true), ms);
    n.on('input', () => {
      clearTimeout(t);
      resolve(false);
    });
  });
}

describe('nodes', function () {
  this.timeout(10_000);
  let sb: sinon.SinonSandbox;

  beforeEach(() => {
    sb = sinon.createSandbox();
  });
  afterEach(async () => {
    sb.restore();
    await helper.unload();
  });

  it('registers the five types and reads the target config with its credentials', async () => {
    const iso = sb.stub(driver, 'isolate').resolves(state('198.18.0.2'));
    await helper.load(ALL, flow({ type: 'isolate-host', presets: ['ssh', 'dns'], exceptions: [], mode: 'enforce', duration: 0, verify: true }), CREDS);
    const got = next('out');
    (helper.getNode('n1') as unknown as AnyNode).receive({ payload: 'x' });
    await got;
    const [target, req] = iso.firstCall.args;
    assert.deepEqual(target, {
      host: '198.18.0.2',
      port: 22,
      username: 'isolator',
      knownHosts: TARGET.knownHosts,
      sudo: true,
      timeoutMs: 7000,
      managementCidrs: [],
      protectedHosts: [],
      privateKey: 'PRIVATE KEY',
      passphrase: 'pp',
      password: undefined,
    });
    assert.deepEqual(req, { duration: 0, presets: ['ssh', 'dns'], exceptions: [], mode: 'enforce', reason: undefined, force: false, verify: true, wall: undefined, persist: false });
  });

  it('the servers named on the target reach the driver per kind; kinds left empty are read from the host', async () => {
    const iso = sb.stub(driver, 'isolate').resolves(state('198.18.0.2'));
    const withServers = { ...TARGET, dnsServers: ['198.18.0.53', '2001:db8::53'], ntpServers: '198.18.0.123\n', ldapServers: [] };
    await helper.load(ALL, [withServers, ...flow({ type: 'isolate-host', presets: ['dns', 'ntp', 'ldap'] }).slice(1)], CREDS);
    const got = next('out');
    (helper.getNode('n1') as unknown as AnyNode).receive({ payload: 'x' });
    await got;
    assert.deepEqual(iso.firstCall.args[0].servers, { dns: ['198.18.0.53', '2001:db8::53'], ntp: ['198.18.0.123'] });
  });

  it('isolate-host with msg overrides on: msg fields override and add to the configured presets and exceptions; payload is the state; the rest passes through', async () => {
    const iso = sb.stub(driver, 'isolate').resolves(state('198.18.0.7'));
    const configured = { direction: 'in', proto: 'tcp', port: 8443 };
    await helper.load(ALL, flow({ type: 'isolate-host', presets: ['ssh'], exceptions: [configured], allowOverrides: true }), CREDS);
    const got = next('out');
    const alert = { id: 'ALRT-1', host: { ip: '198.18.0.7' } };
    const extra = { direction: 'out', proto: 'udp', port: 53 };
    (helper.getNode('n1') as unknown as AnyNode).receive({ host: '198.18.0.7', reason: 'r1', presets: ['icmp'], exceptions: [extra], mode: 'enforce', duration: 600, force: true, wall: 'SOC: isolated', persist: true, alert, topic: 't' });
    const msg = await got;
    assert.deepEqual(msg.payload, state('198.18.0.7'));
    assert.deepEqual(msg.alert, alert);
    assert.equal(msg.topic, 't');
    assert.equal(msg.host, '198.18.0.7');
    const [target, req] = iso.firstCall.args;
    assert.equal(target.host, '198.18.0.7');
    assert.deepEqual(req, { duration: 600, presets: ['ssh', 'icmp'], exceptions: [configured, extra], mode: 'enforce', reason: 'r1', force: true, verify: true, wall: 'SOC: isolated', persist: true });
    assert.deepEqual(warnings('n1'), [], 'nothing ignored, nothing to warn about');
  });

  it('isolate-host by default: the node decides mode, force, persist, duration, presets and exceptions; the message cannot weaken it, and is told once', async () => {
    const iso = sb.stub(driver, 'isolate').resolves(state('198.18.0.7'));
    const configured = { direction: 'in', proto: 'tcp', port: 8443 };
    await helper.load(ALL, flow({ type: 'isolate-host', presets: ['dns'], exceptions: [configured], mode: 'enforce', duration: 0, force: false, persist: true }), CREDS);
    const n = helper.getNode('n1') as unknown as AnyNode;
    const attack = { mode: 'audit', force: true, persist: false, duration: 1, presets: ['icmp'], exceptions: [{ direction: 'in', proto: 'any' }] };
    let got = next('out');
    let quiet = nothing('caught', 300);
    n.receive({ host: '198.18.0.7', reason: 'r1', wall: 'SOC: isolated', ...attack, alert: 'kept' });
    const msg = await got;
    assert.equal(msg.alert, 'kept');
    assert.equal(await quiet, true, 'one output, no error');
    // reason, wall and host stay the message's
    assert.deepEqual(iso.firstCall.args[1], { duration: 0, presets: ['dns'], exceptions: [configured], mode: 'enforce', reason: 'r1', force: false, verify: true, wall: 'SOC: isolated', persist: true });
    assert.equal(iso.firstCall.args[0].host, '198.18.0.7');
    assert.deepEqual(warnings('n1'), [
      'ignored msg.mode, msg.force, msg.persist, msg.duration, msg.presets, msg.exceptions: this node\'s settings decide (tick "Overrides" on the node to let the message decide)',
    ]);

    // ignored means ignored: values that would be invalid do not fail the message either
    got = next('out');
    n.receive({ duration: -1, presets: 'all', exceptions: 'all', mode: null });
    await got;
    assert.deepEqual(iso.secondCall.args[1], { duration: 0, presets: ['dns'], exceptions: [configured], mode: 'enforce', reason: undefined, force: false, verify: true, wall: undefined, persist: true });
    assert.equal(warnings('n1')[1], 'ignored msg.duration, msg.presets, msg.exceptions: this node\'s settings decide (tick "Overrides" on the node to let the message decide)');

    // a message without such fields: no warning
    got = next('out');
    n.receive({ reason: 'plain alert' });
    await got;
    assert.equal(warnings('n1').length, 2);

    // many hosts in one message: one warning for the message, every host isolated as configured
    got = next('out');
    quiet = nothing('caught', 300);
    n.receive({ hosts: ['198.18.0.11', '198.18.0.12', '198.18.0.13'], mode: 'audit' });
    assert.deepEqual(((await got).payload as { ok: boolean }[]).map((r) => r.ok), [true, true, true]);
    assert.equal(await quiet, true);
    assert.deepEqual(iso.getCalls().slice(3).map((c) => c.args[1]!.mode), ['enforce', 'enforce', 'enforce']);
    assert.equal(warnings('n1').length, 3);
    assert.match(warnings('n1')[2], /^ignored msg\.mode:/);
  });

  it('isolate-host: no preset unless one is chosen (the management channel is kept anyway)', async () => {
    const iso = sb.stub(driver, 'isolate').resolves(state('198.18.0.2'));
    await helper.load(ALL, flow({ type: 'isolate-host' }), CREDS);
    const got = next('out');
    (helper.getNode('n1') as unknown as AnyNode).receive({});
    await got;
    assert.deepEqual(iso.firstCall.args[1]!.presets, []);
    assert.deepEqual(iso.firstCall.args[1]!.exceptions, []);
    assert.equal(iso.firstCall.args[1]!.mode, 'enforce');
  });

  it('isolate-host: the probe is the node\'s (port blank: the driver\'s 443); msg.probe counts only with Overrides; PROBE_REACHED reaches a Catch node', async () => {
    const iso = sb.stub(driver, 'isolate').resolves(state('198.18.0.2'));
    await helper.load(ALL, flow({ type: 'isolate-host', probeAddr: ' 198.51.100.7 ', probePort: '' }), CREDS);
    const n = helper.getNode('n1') as unknown as AnyNode;
    let got = next('out');
    n.receive({ probe: { addr: '198.51.100.9', port: 80 } });
    await got;
    assert.deepEqual(iso.firstCall.args[1]!.probe, { addr: '198.51.100.7' });
    assert.match(warnings('n1')[0], /^ignored msg\.probe:/);
    await helper.unload();

    await helper.load(ALL, flow({ type: 'isolate-host', probeAddr: '198.51.100.7', probePort: 8443, allowOverrides: true }), CREDS);
    const m = helper.getNode('n1') as unknown as AnyNode;
    got = next('out');
    m.receive({});
    await got;
    assert.deepEqual(iso.secondCall.args[1]!.probe, { addr: '198.51.100.7', port: 8443 });
    got = next('out');
    m.receive({ probe: { addr: '198.51.100.9', port: 80 } });
    await got;
    assert.deepEqual(iso.thirdCall.args[1]!.probe, { addr: '198.51.100.9', port: 80 });
    await helper.unload();

    iso.rejects(new ProbeReachedError('198.18.0.2', { addr: '198.51.100.7', port: 443 }, 'connected', true, '2026-12-03T00:00:00.000Z'));
    await helper.load(ALL, flow({ type: 'isolate-host', probeAddr: '198.51.100.7' }), CREDS);
    const caught = next('caught');
    (helper.getNode('n1') as unknown as AnyNode).receive({});
    const err = (await caught).error as { code: string; message: string };
    assert.equal(err.code, 'PROBE_REACHED');
    assert.match(err.message, /198\.51\.100\.7 port 443 \(connected\).*rolled back/);
  });

  it('unisolate-host: the wall notice from the node, overridden by msg.wall', async () => {
    const un = sb.stub(driver, 'unisolate').resolves(state('198.18.0.2', false));
    await helper.load(ALL, flow({ type: 'unisolate-host', wall: 'Released by the SOC' }), CREDS);
    const n = helper.getNode('n1') as unknown as AnyNode;
    let got = next('out');
    n.receive({});
    await got;
    assert.deepEqual(un.firstCall.args[1], { wall: 'Released by the SOC' });
    got = next('out');
    n.receive({ wall: 'Back online after INC-42' });
    await got;
    assert.deepEqual(un.secondCall.args[1], { wall: 'Back online after INC-42' });
  });

  it('msg.hosts fans out: one message on, an answer per host in order, an audit record per host', async () => {
    const st = sb.stub(driver, 'status').callsFake(async (t) => {
      const host = String((t as { host: string }).host);
      if (host === '198.18.0.12') throw new HostKeyMismatchError(host, 'mismatch', 'SHA256:x');
      return state(host);
    });
    await helper.load(ALL, flow({ type: 'isolation-status' }), CREDS);
    const n = helper.getNode('n1') as unknown as AnyNode;
    const audits: Record<string, unknown>[] = [];
    (helper.getNode('audit') as unknown as AnyNode).on('input', (m) => audits.push(m.payload as Record<string, unknown>));
    const out = next('out');
    const quiet = nothing('caught', 500);
    n.receive({ hosts: ['198.18.0.11', '203.0.113.9', '198.18.0.12', 'web-01', '198.18.0.11'], ticket: 'INC-7' });
    const msg = await out;
    assert.equal(msg.ticket, 'INC-7');
    assert.deepEqual(
      (msg.payload as { host: string; ok: boolean; error?: { code: string } }[]).map((r) => [r.host, r.ok, r.error?.code ?? null]),
      [
        ['198.18.0.11', true, null],
        ['203.0.113.9', false, 'HOST_NOT_ALLOWED'],
        ['198.18.0.12', false, 'HOST_KEY_MISMATCH'],
        ['web-01', true, null],
      ],
    );
    assert.equal(st.callCount, 3, 'the refused host was never asked');
    assert.equal(await quiet, true, 'per-host failures are answers, not a Catch');
    await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(audits.map((a) => [a.host, a.result]).sort(), [
      ['198.18.0.11', 'ok'],
      ['198.18.0.12', 'error'],
      ['203.0.113.9', 'error'],
      ['web-01', 'ok'],
    ]);
    assert.deepEqual(n.status.lastCall.args[0], { fill: 'yellow', shape: 'dot', text: '2/4 hosts ok' });
    for (const bad of [{ hosts: [] }, { hosts: '198.18.0.11' }, { hosts: [1] }, { hosts: ['198.18.0.11'], host: '198.18.0.11' }]) {
      const caught = next('caught');
      n.receive(bad);
      assert.equal(((await caught).error as { code: string }).code, 'VALIDATION', JSON.stringify(bad));
    }
  });

  /** n hosts of the target's allowlist (198.18.0.0/24) */
  const fleet = (n: number) => Array.from({ length: n }, (_, i) => `198.18.0.${i + 11}`);

  it('blast radius: a new isolate-host takes at most 10 hosts per msg.hosts; 11 is one BLAST_RADIUS error, no driver call and no connection, with asked and the cap', async () => {
    const iso = sb.spy(driver, 'isolate');
    const opened = driver.connections + driver.bastionConnections;
    // a node as the editor makes it now: version 2, maxHosts 10
    await helper.load(ALL, flow({ type: 'isolate-host', version: 2, maxHosts: 10 }), CREDS);
    const n = helper.getNode('n1') as unknown as AnyNode;
    const audits: Record<string, unknown>[] = [];
    (helper.getNode('audit') as unknown as AnyNode).on('input', (m) => audits.push(m.payload as Record<string, unknown>));
    const caught = next('caught');
    const quiet = nothing('out', 300);
    n.receive({ hosts: fleet(11), reason: 'mass slip' });
    const err = (await caught).error as { code: string; message: string };
    assert.equal(err.code, 'BLAST_RADIUS');
    assert.match(err.message, /names 11 hosts, more than this node acts on in one message \(10, this node's Max hosts\)/);
    assert.equal(await quiet, true, 'no answer on output 1');
    assert.equal(iso.callCount, 0, 'the driver was never asked');
    assert.equal(driver.connections + driver.bastionConnections, opened, 'no connection was opened');
    assert.equal(audits.length, 1, 'one audit record for the refused message');
    assert.deepEqual([audits[0].host, audits[0].result, (audits[0].error as { code: string }).code, audits[0].fleet], [null, 'error', 'BLAST_RADIUS', { asked: 11, maxHosts: 10 }]);
    assert.deepEqual(n.status.lastCall.args[0].text, 'BLAST_RADIUS');
  });

  it('blast radius: at the cap the fleet runs, msg.fleet and every audit record say asked and the cap; a host named twice counts once', async () => {
    const iso = sb.stub(driver, 'isolate').callsFake(async (t) => state(String((t as { host: string }).host)));
    await helper.load(ALL, flow({ type: 'isolate-host', version: 2, maxHosts: 10 }), CREDS);
    const n = helper.getNode('n1') as unknown as AnyNode;
    const audits: Record<string, unknown>[] = [];
    (helper.getNode('audit') as unknown as AnyNode).on('input', (m) => audits.push(m.payload as Record<string, unknown>));
    const out = next('out');
    n.receive({ hosts: [...fleet(10), '198.18.0.11'] });
    const msg = await out;
    assert.equal((msg.payload as unknown[]).length, 10);
    assert.deepEqual(msg.fleet, { asked: 10, maxHosts: 10 });
    assert.equal(iso.callCount, 10);
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(audits.length, 10);
    for (const a of audits) assert.deepEqual(a.fleet, { asked: 10, maxHosts: 10 });
    // a single host is never capped, and its record has no fleet
    const one = next('out');
    n.receive({ host: '198.18.0.40' });
    await one;
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(audits[audits.length - 1].fleet, undefined);
  });

  it('blast radius: blank Max hosts is the node default (isolate-host, exception-set: 10); unisolate-host and isolation-status default to the runtime bound', async () => {
    sb.stub(driver, 'isolate').callsFake(async (t) => state(String((t as { host: string }).host)));
    sb.stub(driver, 'setExceptions').callsFake(async (t) => state(String((t as { host: string }).host)));
    sb.stub(driver, 'unisolate').callsFake(async (t) => notIsolated(String((t as { host: string }).host)));
    sb.stub(driver, 'status').callsFake(async (t) => state(String((t as { host: string }).host)));
    for (const [node, n, code] of [
      [{ type: 'isolate-host', version: 2, maxHosts: '' }, 11, 'BLAST_RADIUS'],
      [{ type: 'exception-set', version: 2, maxHosts: 10 }, 11, 'BLAST_RADIUS'],
      [{ type: 'exception-set', version: 2, maxHosts: 11 }, 11, null],
      [{ type: 'unisolate-host', version: 1 }, 200, null],
      [{ type: 'unisolate-host', version: 1, maxHosts: '' }, 200, null],
      [{ type: 'unisolate-host', version: 1, maxHosts: 3 }, 4, 'BLAST_RADIUS'],
      [{ type: 'isolation-status', version: 1 }, 200, null],
    ] as const) {
      await helper.load(ALL, flow({ ...node }), CREDS);
      const hosts = Array.from({ length: n }, (_, i) => `198.18.${Math.floor(i / 200)}.${(i % 200) + 1}`);
      if (code) {
        const caught = next('caught');
        (helper.getNode('n1') as unknown as AnyNode).receive({ hosts });
        assert.equal(((await caught).error as { code: string }).code, code, JSON.stringify(node));
      } else {
        const out = next('out');
        (helper.getNode('n1') as unknown as AnyNode).receive({ hosts });
        const msg = await out;
        assert.equal((msg.fleet as { asked: number }).asked, n, JSON.stringify(node));
        assert.equal((msg.fleet as { maxHosts: number }).maxHosts, node.type === 'exception-set' ? 11 : 1000, JSON.stringify(node));
      }
      await helper.unload();
    }
  });

  it('blast radius: the runtime bound (isolationTargetMaxHosts) wins over a larger Max hosts, which the node says at deploy', async () => {
    const iso = sb.spy(driver, 'isolate');
    helper.settings({ isolationTargetMaxHosts: 5 } as Record<string, unknown>);
    try {
      await helper.load(ALL, flow({ type: 'isolate-host', version: 2, maxHosts: 50 }), CREDS);
      assert.deepEqual(warnings('n1'), ['Max hosts 50 is more than isolationTargetMaxHosts (5) in settings.js: at most 5 hosts per message']);
      const caught = next('caught');
      (helper.getNode('n1') as unknown as AnyNode).receive({ hosts: fleet(6) });
      const err = (await caught).error as { code: string; message: string };
      assert.equal(err.code, 'BLAST_RADIUS');
      assert.match(err.message, /\(5, isolationTargetMaxHosts in settings\.js\)/);
      assert.equal(iso.callCount, 0);
    } finally {
      helper.settings({});
    }
  });

  it('blast radius: the cap from Max hosts and the bound, pure', () => {
    const said: string[] = [];
    const warn = (t: string) => said.push(t);
    assert.deepEqual(fleetCap(undefined, 10, 1000, warn), { maxHosts: 10, why: "this node's Max hosts (its default)" });
    assert.deepEqual(fleetCap('', 10, 1000, warn), { maxHosts: 10, why: "this node's Max hosts (its default)" });
    assert.deepEqual(fleetCap(' 25 ', 10, 1000, warn), { maxHosts: 25, why: "this node's Max hosts" });
    assert.deepEqual(fleetCap(null, null, 1000, warn), { maxHosts: 1000, why: 'isolationTargetMaxHosts in settings.js' });
    assert.deepEqual(fleetCap(undefined, 10, 4, warn), { maxHosts: 4, why: 'isolationTargetMaxHosts in settings.js' }, 'a default above the bound: the bound, silently');
    assert.deepEqual(said, []);
    assert.equal(fleetCap(2000, 10, 1000, warn).maxHosts, 1000);
    assert.equal(said.length, 1);
    for (const bad of [0, -1, 1.5, 'ten', {}, true]) assert.equal(fleetCap(bad, 10, 1000).problem?.code, 'VALIDATION', JSON.stringify(bad));
    assert.equal(fleetLimit({}), DEFAULT_MAX_HOSTS);
    assert.equal(fleetLimit({ isolationTargetMaxHosts: 50 }), 50);
    for (const bad of [0, 1.5, '50', 100_001]) assert.throws(() => fleetLimit({ isolationTargetMaxHosts: bad }), /settings\.isolationTargetMaxHosts/);
  });

  it('blast radius: an invalid saved Max hosts fails every msg.hosts message with VALIDATION, a single host still works', async () => {
    const iso = sb.stub(driver, 'isolate').callsFake(async (t) => state(String((t as { host: string }).host)));
    await helper.load(ALL, flow({ type: 'isolate-host', version: 2, maxHosts: 'lots' }), CREDS);
    const n = helper.getNode('n1') as unknown as AnyNode;
    const caught = next('caught');
    n.receive({ hosts: fleet(2) });
    assert.equal(((await caught).error as { code: string }).code, 'VALIDATION');
    assert.equal(iso.callCount, 0);
    const out = next('out');
    n.receive({ host: '198.18.0.11' });
    await out;
    assert.equal(iso.callCount, 1);
  });

  it('msg.hosts: protected hosts are refused with PROTECTED_HOST in their own rows, before any connection (the real driver)', async () => {
    const iso = sb.spy(driver, 'isolate');
    const opened = driver.connections;
    const withProtected = flow({ type: 'isolate-host' }).map((n) => (n.id === 'tgt' ? { ...n, protectedHosts: ['198.18.0.20', '198.18.0.32/30'] } : n));
    await helper.load(ALL, withProtected, CREDS);
    const out = next('out');
    (helper.getNode('n1') as unknown as AnyNode).receive({ hosts: ['198.18.0.20', '198.18.0.33', '203.0.113.9'] });
    const rows = (await out).payload as { host: string; ok: boolean; error?: { code: string; message: string } }[];
    assert.deepEqual(
      rows.map((r) => [r.host, r.ok, r.error?.code]),
      [
        ['198.18.0.20', false, 'PROTECTED_HOST'],
        ['198.18.0.33', false, 'PROTECTED_HOST'],
        ['203.0.113.9', false, 'HOST_NOT_ALLOWED'],
      ],
    );
    assert.match(rows[1].error!.message, /198\.18\.0\.32\/30/);
    assert.equal(iso.callCount, 2, 'the driver was asked for the allowlisted two, and refused them');
    assert.equal(driver.connections, opened, 'no connection was opened');
  });

  it('refuses a msg.host outside the allowlist before any driver call, to a Catch node with its code', async () => {
    const iso = sb.stub(driver, 'isolate').resolves(state('x'));
    await helper.load(ALL, flow({ type: 'isolate-host' }), CREDS);
    const caught = next('caught');
    const quiet = nothing('out', 300);
    (helper.getNode('n1') as unknown as AnyNode).receive({ host: '203.0.113.66', alert: 'kept' });
    const m = await caught;
    assert.equal((m.error as { code: string }).code, 'HOST_NOT_ALLOWED');
    assert.equal(m.alert, 'kept');
    assert.equal(iso.callCount, 0, 'no connection attempted');
    assert.equal(await quiet, true, 'no output besides the error');
  });

  it('accepts allowlisted names and CIDR members', async () => {
    const st = sb.stub(driver, 'status').callsFake(async (t) => state(String((t as { host: string }).host), false));
    await helper.load(ALL, flow({ type: 'isolation-status' }), CREDS);
    for (const host of ['web-01', '198.18.0.99']) {
      const got = next('out');
      (helper.getNode('n1') as unknown as AnyNode).receive({ host });
      assert.equal(((await got).payload as HostState).host, host);
    }
    assert.equal(st.callCount, 2);
  });

  it('rejects bad msg fields with VALIDATION and no driver call', async () => {
    const iso = sb.stub(driver, 'isolate').resolves(state('x'));
    await helper.load(ALL, flow({ type: 'isolate-host', allowOverrides: true }), CREDS);
    // the message's fields are read once, also for many hosts: a bad one is one error, before any host
    for (const bad of [{ exceptions: 'all' }, { presets: 'ssh' }, { duration: -1 }, { duration: 1.5 }, { duration: 'soon' }, { duration: {} }, { host: { ip: '198.18.0.2' } }, { hosts: ['198.18.0.11', '198.18.0.12'], duration: -1 }]) {
      const caught = next('caught');
      (helper.getNode('n1') as unknown as AnyNode).receive(bad);
      const m = await caught;
      assert.equal((m.error as { code: string }).code, 'VALIDATION', JSON.stringify(bad));
    }
    assert.equal(iso.callCount, 0);
  });

  it('driver errors reach a Catch node with their code, and the status turns red', async () => {
    sb.stub(driver, 'unisolate').rejects(new HostKeyMismatchError('198.18.0.2', 'mismatch', 'SHA256:x'));
    await helper.load(ALL, flow({ type: 'unisolate-host' }), CREDS);
    const n = helper.getNode('n1') as unknown as AnyNode;
    const statusSpy = n.status; // the test helper already spies on status
    statusSpy.resetHistory(); // the blank status each node starts with
    const caught = next('caught');
    n.receive({ payload: 1 });
    const m = await caught;
    assert.equal((m.error as { code: string }).code, 'HOST_KEY_MISMATCH');
    assert.deepEqual(statusSpy.firstCall.args[0], { fill: 'blue', shape: 'dot', text: 'working' });
    assert.deepEqual(statusSpy.lastCall.args[0], { fill: 'red', shape: 'ring', text: 'HOST_KEY_MISMATCH' });
  });

  it('status shows isolated since / audit since (a yellow ring, not green) / not isolated', async () => {
    const st = sb.stub(driver, 'status');
    st.onFirstCall().resolves(state('198.18.0.2', true));
    st.onSecondCall().resolves(state('198.18.0.2', false));
    st.onThirdCall().resolves(audited('198.18.0.2'));
    await helper.load(ALL, flow({ type: 'isolation-status' }), CREDS);
    const n = helper.getNode('n1') as unknown as AnyNode;
    const statusSpy = n.status; // the test helper already spies on status
    let got = next('out');
    n.receive({});
    await got;
    assert.deepEqual(statusSpy.lastCall.args[0], { fill: 'green', shape: 'dot', text: '198.18.0.2 isolated since 14:04' });
    got = next('out');
    n.receive({});
    await got;
    assert.deepEqual(statusSpy.lastCall.args[0], { fill: 'grey', shape: 'ring', text: '198.18.0.2 not isolated' });
    const records: Record<string, unknown>[] = [];
    (helper.getNode('audit') as unknown as AnyNode).on('input', (a) => records.push(a.payload as Record<string, unknown>));
    got = next('out');
    n.receive({});
    const m = await got;
    assert.deepEqual(statusSpy.lastCall.args[0], { fill: 'yellow', shape: 'ring', text: '198.18.0.2 audit since 14:04' });
    assert.deepEqual([(m.payload as HostState).isolated, (m.payload as HostState).state], [false, 'audit']);
    await new Promise((r) => setTimeout(r, 50));
    const r = records[records.length - 1];
    assert.deepEqual([r.isolated, r.state, r.mode], [false, 'audit', 'audit'], 'the audit record says the same');
  });

  it('exception-set: op and exceptions from config, overridden and added to by msg', async () => {
    const set = sb.stub(driver, 'setExceptions').resolves(state('198.18.0.2'));
    const configured = { direction: 'in', proto: 'tcp', addr: '198.18.0.3', port: 22 };
    await helper.load(ALL, flow({ type: 'exception-set', op: 'add', exceptions: [configured] }), CREDS);
    const n = helper.getNode('n1') as unknown as AnyNode;
    let got = next('out');
    n.receive({});
    await got;
    assert.deepEqual(set.firstCall.args.slice(1, 3), ['add', [configured]]);
    got = next('out');
    const extra = { direction: 'out', proto: 'any', addr: '198.18.0.4' };
    n.receive({ op: 'remove', exceptions: [extra] });
    await got;
    assert.deepEqual(set.secondCall.args.slice(1, 3), ['remove', [configured, extra]]);
  });

  it('exception-set on a host that is not isolated errors with NOT_ISOLATED', async () => {
    sb.stub(driver, 'setExceptions').rejects(new NotIsolatedError('198.18.0.2'));
    await helper.load(ALL, flow({ type: 'exception-set', op: 'add', exceptions: [] }), CREDS);
    const caught = next('caught');
    (helper.getNode('n1') as unknown as AnyNode).receive({});
    assert.equal(((await caught).error as { code: string }).code, 'NOT_ISOLATED');
  });

  it('runs several hosts at once, each message answered once', async () => {
    const st = sb.stub(driver, 'status').callsFake(async (t) => {
      await new Promise((r) => setTimeout(r, 50));
      return state(String((t as { host: string }).host), false);
    });
    await helper.load(ALL, flow({ type: 'isolation-status' }), CREDS);
    const hosts = ['198.18.0.10', '198.18.0.11', '198.18.0.12', '198.18.0.13'];
    const seen: string[] = [];
    const out = helper.getNode('out') as unknown as AnyNode;
    const all = new Promise<void>((resolve) => {
      out.on('input', (m) => {
        seen.push((m.payload as HostState).host);
        if (seen.length === hosts.length) resolve();
      });
    });
    for (const host of hosts) (helper.getNode('n1') as unknown as AnyNode).receive({ host });
    await all;
    assert.deepEqual(seen.sort(), hosts);
    assert.equal(st.callCount, hosts.length);
    assert.equal(await nothing('out', 200), true, 'no duplicate outputs');
  });

  it('yields an audit record on the second output, for success and for failure', async () => {
    const iso = sb.stub(driver, 'isolate').callsFake(async (_t, _r, info) => {
      if (info) info.digest = 'a'.repeat(64);
      return { ...state('198.18.0.2'), reason: 'from alert' };
    });
    await helper.load(ALL, flow({ type: 'isolate-host', name: 'contain' }), CREDS);
    const n = helper.getNode('n1') as unknown as AnyNode;
    let rec = next('audit');
    const out = next('out');
    n.receive({ reason: 'from alert', ticket: 'INC-1' });
    const ok = (await rec).payload as Record<string, unknown>;
    assert.equal(((await out).payload as HostState).isolated, true);
    assert.equal((await rec).topic, 'host-isolation/audit');
    assert.ok(!('ticket' in (await rec)), 'the record is a message of its own');
    assert.deepEqual(
      { ...ok, when: typeof ok.when },
      {
        when: 'string',
        node: { id: 'n1', type: 'isolate-host', name: 'contain' },
        host: '198.18.0.2',
        action: 'isolate',
        reason: 'from alert',
        case: null,
        requestedBy: null,
        result: 'ok',
        isolated: true,
        state: 'isolated',
        changed: false,
        mode: 'enforce',
        since: '2026-11-22T14:04:05.000Z',
        expiresAt: null,
        exceptions: 0,
        digest: 'a'.repeat(64),
      },
    );
    iso.rejects(new HostKeyMismatchError('198.18.0.2', 'mismatch', 'SHA256:x'));
    rec = next('audit');
    const caught = next('caught');
    const quiet = nothing('out', 300);
    n.receive({});
    const bad = (await rec).payload as Record<string, unknown>;
    assert.equal(bad.result, 'error');
    assert.deepEqual((bad.error as { code: string }).code, 'HOST_KEY_MISMATCH');
    assert.equal(bad.host, '198.18.0.2');
    assert.equal(((await caught).error as { code: string }).code, 'HOST_KEY_MISMATCH');
    assert.equal(await quiet, true, 'no state output for a failed action');
  });

  it('msg.case and msg.requestedBy: into the isolate request from any message (not an override), and into every audit record', async () => {
    const kase = { id: 'INC-42', url: 'https://cases.example/INC-42' };
    const iso = sb.stub(driver, 'isolate').callsFake(async (_t, r) => ({ ...state('198.18.0.2'), case: r?.case ?? null, requestedBy: r?.requestedBy ?? null }));
    await helper.load(ALL, flow({ type: 'isolate-host' }), CREDS);
    const n = helper.getNode('n1') as unknown as AnyNode;
    let rec = next('audit');
    n.receive({ reason: 'r', case: kase, requestedBy: 'alice@soc' });
    let a = (await rec).payload as Record<string, unknown>;
    assert.deepEqual(iso.firstCall.args[1], { duration: 0, presets: [], exceptions: [], mode: 'enforce', reason: 'r', case: kase, requestedBy: 'alice@soc', force: false, verify: true, wall: undefined, persist: false });
    assert.deepEqual([a.case, a.requestedBy], [kase, 'alice@soc']);
    assert.deepEqual(warnings('n1'), [], 'not an override: nothing ignored');

    // none given: none asked for; the audit record says what the host answered (its record)
    iso.resolves({ ...state('198.18.0.2'), case: { id: 'INC-1' }, requestedBy: 'bob' });
    rec = next('audit');
    n.receive({ case: '', requestedBy: null });
    a = (await rec).payload as Record<string, unknown>;
    assert.ok(!('case' in iso.secondCall.args[1]!) && !('requestedBy' in iso.secondCall.args[1]!));
    assert.deepEqual([a.case, a.requestedBy], [{ id: 'INC-1' }, 'bob']);

    // refused by the driver's schema: the failed record carries the alert's text, bounded and clean
    iso.rejects(new ValidationError('invalid request: request.case.id: bad', [{ path: 'request.case.id', message: 'bad' }]));
    rec = next('audit');
    const caught = next('caught');
    n.receive({ case: { id: 'x'.repeat(500) + '\u001b[31m' }, requestedBy: 'eve\u0007' });
    a = (await rec).payload as Record<string, unknown>;
    assert.equal(((await caught).error as { code: string }).code, 'VALIDATION');
    assert.equal(a.result, 'error');
    assert.ok((a.case as { id: string }).id.length <= 64 && /^x+…\[cut: 505 characters\]$/.test((a.case as { id: string }).id));
    assert.equal(a.requestedBy, 'eve');
  });

  it('exception-set and unisolate-host: msg.case and msg.requestedBy in the audit record, a bad one refused with VALIDATION before the driver', async () => {
    for (const [type, method] of [['exception-set', 'setExceptions'], ['unisolate-host', 'unisolate']] as const) {
      const stub = sb.stub(driver, method).resolves(state('198.18.0.2', method === 'setExceptions'));
      await helper.load(ALL, flow({ type, op: 'add', exceptions: [] }), CREDS);
      const n = helper.getNode('n1') as unknown as AnyNode;
      const rec = next('audit');
      n.receive({ case: { id: 'CASE-7' }, requestedBy: 'playbook:phish' });
      const a = (await rec).payload as Record<string, unknown>;
      assert.deepEqual([a.case, a.requestedBy], [{ id: 'CASE-7' }, 'playbook:phish'], type);
      const circular: Record<string, unknown> = { id: 'C' };
      circular.self = circular;
      for (const bad of [{ case: { id: 'a b' } }, { case: { id: 'C', url: 'javascript:alert(1)' } }, { case: 'C-1' }, { requestedBy: 'x'.repeat(129) }, { case: { id: 'C', extra: 1 } }, { requestedBy: { self: circular } }]) {
        const caught = next('caught');
        const failed = next('audit');
        n.receive(bad);
        assert.equal(((await caught).error as { code: string }).code, 'VALIDATION', `${type} ${Object.keys(bad).join()}`);
        assert.equal(((await failed).payload as { result: string }).result, 'error', 'the failed action has its record too');
      }
      assert.equal(stub.callCount, 1, type);
      stub.restore();
      await helper.unload();
    }
  });

  it('close during an operation waits for it, and the message still ends in its output path', async () => {
    let release: (s: HostState) => void = () => undefined;
    sb.stub(driver, 'isolate').returns(new Promise<HostState>((r) => (release = r)));
    await helper.load(ALL, flow({ type: 'isolate-host' }), CREDS);
    const n = helper.getNode('n1') as unknown as { receive(m: object): void; status: (s: unknown) => void };
    n.receive({ payload: 'go' });
    await new Promise((r) => setTimeout(r, 50));
    let closed = false;
    const closing = helper.unload().then(() => (closed = true));
    // unload() restores the helper's spies synchronously: watch status ourselves from here on
    const after: unknown[] = [];
    n.status = (st: unknown) => void after.push(st);
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(closed, false, 'close waits for the running operation');
    release(state('198.18.0.2'));
    await closing;
    assert.equal(closed, true);
    assert.deepEqual(after, [{ fill: 'green', shape: 'dot', text: '198.18.0.2 isolated since 14:04' }], 'the operation ran to its end');
  });

  it('checks the target when the flow starts: a bad host, CIDR or known_hosts line is logged by the target and shown red on its nodes', async () => {
    const cases: [Record<string, unknown>, RegExp, string][] = [
      [{ host: '198.18.0.256' }, /invalid target: target\.host: host must be an IP address or a DNS hostname/, 'target invalid: host'],
      [{ managementCidrs: ['198.18.0.0/33'] }, /managementCidrs\.0: not an IPv4\/IPv6 address or CIDR/, 'target invalid: managementCidrs.0'],
      [{ allowedHosts: ['web 01'] }, /allowedHosts\.0: each allowed host must be a hostname, an IP or a CIDR/, 'target invalid: allowedHosts.0'],
      [{ knownHosts: '198.18.0.2 ssh-ed25519 AAAA%%' }, /knownHosts line 1: key is not valid base64/, 'target invalid: knownHosts line 1'],
      [{ knownHosts: '# only a comment' }, /knownHosts holds no host key line/, 'target invalid: knownHosts'],
      [{ timeout: 'soon' }, /timeoutMs/, 'target invalid: timeout'],
    ];
    for (const [change, logged, status] of cases) {
      const iso = sb.stub(driver, 'isolate').resolves(state('198.18.0.2'));
      const nodes = flow({ type: 'isolate-host' }).map((n) => (n.id === 'tgt' ? { ...n, ...change } : n));
      await helper.load(ALL, nodes, CREDS);
      const errors = helper
        .log()
        .args.map((a: { level: number; id: string; msg: unknown }[]) => a[0])
        .filter((e: { level: number; id: string }) => e.level === LOG_ERROR && e.id === 'tgt');
      assert.equal(errors.length, 1, `${JSON.stringify(change)}: one error from the target`);
      assert.match(String(errors[0].msg), logged);
      const n1 = helper.getNode('n1') as unknown as AnyNode;
      const statuses = n1.status.getCalls().filter((c) => (c.thisValue as { id: string }).id === 'n1').map((c) => c.args[0]);
      assert.deepEqual(statuses, [{ fill: 'red', shape: 'ring', text: status }], JSON.stringify(change));
      // an alert on it fails at once with the same error, and nothing is sent
      const caught = next('caught');
      n1.receive({ payload: 'alert' });
      assert.equal(((await caught).error as { code: string }).code, 'VALIDATION');
      assert.equal(iso.callCount, 0);
      await helper.unload();
      sb.restore();
    }
  });

  it('a protected name that never resolved when the flow started: logged by the target, red on its nodes naming it; the driver refuses the isolation (typed)', async () => {
    const err = new ProtectedUnresolvedError('dc1.corp.example', 'protected host', 'the name does not resolve (ENOTFOUND)');
    const prep = sb.stub(driver, 'prepareProtection').rejects(err);
    const release = sb.spy(driver, 'releaseProtection');
    const iso = sb.stub(driver, 'isolate').rejects(err);
    const nodes = flow({ type: 'isolate-host' }).map((n) => (n.id === 'tgt' ? { ...n, protectedHosts: ['DC1.corp.example'] } : n));
    await helper.load(ALL, nodes, CREDS);
    assert.equal(prep.callCount, 1, 'resolved when the flow starts');
    assert.deepEqual((prep.firstCall.args[0] as { protectedHosts: string[] }).protectedHosts, ['DC1.corp.example']);
    const n1 = helper.getNode('n1') as unknown as AnyNode;
    const own = () => n1.status.getCalls().filter((c) => (c.thisValue as { id: string }).id === 'n1').map((c) => c.args[0]);
    for (let i = 0; i < 100 && own().length < 2; i++) await new Promise((r) => setTimeout(r, 10));
    assert.deepEqual(own(), [{}, { fill: 'red', shape: 'ring', text: 'target: dc1.corp.example does not resolve' }]);
    const errors = helper
      .log()
      .args.map((a: { level: number; id: string; msg: unknown }[]) => a[0])
      .filter((e: { level: number; id: string }) => e.level === LOG_ERROR && e.id === 'tgt');
    assert.equal(errors.length, 1);
    assert.match(String(errors[0].msg), /protected host dc1\.corp\.example has never resolved/);
    const caught = next('caught');
    n1.receive({ payload: 'alert' });
    assert.equal(((await caught).error as { code: string }).code, 'PROTECTED_UNRESOLVED');
    assert.equal(iso.callCount, 1);
    await helper.unload();
    assert.equal(release.callCount, 1, 'the names are let go when the target closes');
  });

  it('msg.hosts: the jump host of the target (by address) is refused PROTECTED_HOST in its own row, before any connection (the real driver)', async () => {
    const opened = driver.connections + driver.bastionConnections;
    const nodes = flow({ type: 'isolate-host' }).map((n) =>
      n.id === 'tgt'
        ? { ...n, allowedHosts: ['198.18.0.0/24', '198.19.0.0/24'], protectedHosts: ['198.18.0.20'], jumpHost: '198.19.0.2', jumpUser: 'jump', jumpKnownHosts: '198.19.0.2 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIL48++oJJJvDkewzvugVU7EctSvMYJmR74k7qVa5AGFD' }
        : n,
    );
    await helper.load(ALL, nodes, { tgt: { ...CREDS.tgt, jumpPrivateKey: 'JKEY' } });
    const out = next('out');
    (helper.getNode('n1') as unknown as AnyNode).receive({ hosts: ['198.19.0.2', '198.18.0.20'] });
    const rows = (await out).payload as { host: string; ok: boolean; error?: { code: string; message: string } }[];
    assert.deepEqual(
      rows.map((r) => [r.host, r.ok, r.error?.code]),
      [
        ['198.19.0.2', false, 'PROTECTED_HOST'],
        ['198.18.0.20', false, 'PROTECTED_HOST'],
      ],
    );
    assert.match(rows[0].error!.message, /jump host \(bastion 198\.19\.0\.2\)/);
    assert.equal(driver.connections + driver.bastionConnections, opened, 'no connection was opened');
  });

  it('a valid target logs nothing, and its nodes start with a blank status (clearing an earlier red one)', async () => {
    await helper.load(ALL, flow({ type: 'isolation-status' }), CREDS);
    const errors = helper.log().args.filter((a: { level: number }[]) => a[0].level === LOG_ERROR);
    assert.deepEqual(errors, []);
    const n1 = helper.getNode('n1') as unknown as AnyNode;
    assert.deepEqual(n1.status.getCalls().filter((c) => (c.thisValue as { id: string }).id === 'n1').map((c) => c.args[0]), [{}]);
  });

  it('runtime settings: defaults, units, and a bad value named', () => {
    assert.deepEqual(driverOptions({}), {}, "left out: the driver's own defaults");
    assert.deepEqual(driverOptions({ isolationTargetMaxConcurrent: 8, isolationTargetPoolSize: 16, isolationTargetIdleTimeout: 2.5, isolationTargetVerifyWindow: 60 }), {
      maxConcurrent: 8,
      maxConnections: 16,
      idleMs: 2500,
      verifyWindowS: 60,
    });
    for (const name of Object.keys(SETTINGS)) assert.match(name, /^isolationTarget[A-Z]/, 'Node-RED requires the type name as prefix');
    assert.throws(
      () => driverOptions({ isolationTargetMaxConcurrent: 0, isolationTargetIdleTimeout: '60' }),
      (err: Error & { code?: string }) =>
        err.code === 'VALIDATION' && /settings\.isolationTargetMaxConcurrent/.test(err.message) && /settings\.isolationTargetIdleTimeout/.test(err.message),
    );
  });

  it("the documented defaults of the runtime settings are the driver's own", () => {
    // the driver keeps them private: read them here only, to hold the docs (docs/operations.md) and the help to them
    const d = new IsolationDriver() as unknown as { scheduler: { slots: { max: number } }; pool: { maxConnections: number; idleMs: number }; ctx: { verifyWindowS: number } };
    const effective: Record<string, number> = {
      isolationTargetMaxConcurrent: d.scheduler.slots.max,
      isolationTargetPoolSize: d.pool.maxConnections,
      isolationTargetIdleTimeout: d.pool.idleMs / 1000,
      isolationTargetVerifyWindow: d.ctx.verifyWindowS,
      // not the driver's: the nodes' bound on msg.hosts (fanout.ts)
      isolationTargetMaxHosts: fleetLimit({}),
    };
    assert.deepEqual(Object.keys(effective).sort(), Object.keys(SETTINGS).sort());
    const docs = fs.readFileSync(path.join(REPO_ROOT, 'docs', 'operations.md'), 'utf8');
    const help = fs.readFileSync(path.join(REPO_ROOT, 'src', 'nodes', 'isolation-target', 'locales', 'en-US', 'isolation-target.html'), 'utf8');
    for (const [name, value] of Object.entries(effective)) {
      assert.equal(Number(new RegExp(`${name}: (\\d+),`).exec(docs)?.[1]), value, `docs/operations.md: ${name}`);
      assert.equal(Number(new RegExp(`<code>${name}</code>\\s*\\([^)]*?(\\d+)\\)`).exec(help)?.[1]), value, `help: ${name}`);
    }
  });
});
