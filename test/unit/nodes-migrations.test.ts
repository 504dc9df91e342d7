/**
 * Saved flows and the pack's versions: each node's config carries a `version`, and its migrations
 * (src/nodes/<type>/migrations.ts) bring an older one up to date when the node starts, so a flow
 * saved by the pack before versions (no `version`) runs exactly as it did. The steps are pure
 * (tested here without Node-RED); the nodes apply them (tested in a runtime, the driver stubbed).
 */
import { strict as assert } from 'assert';
import fc from 'fast-check';
import helper from 'node-red-node-test-helper';
import * as sinon from 'sinon';
import type { HostState } from '../../src/driver';
import { notIsolated } from '../../src/driver/state';
import { NODE_MIGRATIONS } from '../../src/editor/migrations';
import { editorFragments } from '../../src/editor/target-form';
import { currentVersion, fillDefaults, migrate, versionOf, type Migration } from '../../src/nodes/common/migrate';
import { sharedDriver } from '../../src/nodes/common';
import targetNode from '../../src/nodes/isolation-target/isolation-target';
import isolateNode from '../../src/nodes/isolate-host/isolate-host';
import unisolateNode from '../../src/nodes/unisolate-host/unisolate-host';
import statusNode from '../../src/nodes/isolation-status/isolation-status';
import exceptionSetNode from '../../src/nodes/exception-set/exception-set';

helper.init(require.resolve('node-red'));

const driver = sharedDriver();
const ALL = [targetNode, isolateNode, unisolateNode, statusNode, exceptionSetNode];
const KNOWN = '198.18.0.2 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIL48++oJJJvDkewzvugVU7EctSvMYJmR74k7qVa5AGFD';
/** a target as the version-less pack saved it when only the required fields were filled in */
const OLD_TARGET = { id: 'tgt', type: 'isolation-target', host: '198.18.0.2', username: 'isolator', knownHosts: KNOWN };
const CREDS = { tgt: { privateKey: 'PRIVATE KEY' } };

type AnyNode = { receive(msg: object): void; on(ev: string, fn: (m: Record<string, unknown>) => void): void; warn: sinon.SinonSpy };

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

function state(host: string): HostState {
  return { ...notIsolated(host), isolated: true, state: 'isolated', mode: 'enforce', since: '2026-11-22T14:04:05.000Z' };
}

describe('config versions and migrations', () => {
  const steps: Migration[] = [
    { version: 1, why: 'a', up: fillDefaults({ a: 1, list: [] }) },
    { version: 2, why: 'b', up: (c) => ({ ...c, b: c.a === 1 ? 'old default' : 'set' }) },
  ];

  it('a config without a version is version 0 and goes through every step, in order', () => {
    const m = migrate({ x: 'kept' }, steps);
    assert.deepEqual(m, { config: { x: 'kept', a: 1, list: [], b: 'old default', version: 2 }, from: 0, newer: false });
    assert.equal((migrate({ a: 5, version: 1 }, steps).config as Record<string, unknown>).b, 'set', 'a version-1 config skips step 1');
    assert.deepEqual(migrate({ a: 5, version: 2 }, steps).config, { a: 5, version: 2 }, 'a current config is left as it is');
    for (const v of [undefined, null, '', 'x', -1, 1.5, {}]) assert.equal(versionOf({ version: v }), 0, `version ${JSON.stringify(v)}`);
    assert.equal(versionOf({ version: '1' }), 1);
    assert.equal(currentVersion(steps), 2);
  });

  it('a config from a newer pack is kept as it is, and said to be newer', () => {
    assert.deepEqual(migrate({ a: 1, version: 7 }, steps), { config: { a: 1, version: 7 }, from: 7, newer: true });
  });

  it('steps are numbered 1, 2, ...: a gap is refused', () => {
    assert.throws(() => migrate({}, [steps[1]]), /steps are numbered/);
  });

  it('filling defaults writes only what is left out (absent or null), copies, and never changes its argument', () => {
    fc.assert(
      fc.property(fc.dictionary(fc.constantFrom('a', 'list', 'other'), fc.oneof(fc.constant(null), fc.constant(undefined), fc.integer(), fc.string(), fc.boolean())), (given) => {
        const before = JSON.stringify(given);
        const out = fillDefaults({ a: 1, list: [] })(given);
        assert.equal(JSON.stringify(given), before, 'argument unchanged');
        for (const k of ['a', 'list']) {
          const v = (given as Record<string, unknown>)[k];
          assert.deepEqual(out[k], v === undefined || v === null ? { a: 1, list: [] }[k] : v);
        }
      }),
      { numRuns: 300 },
    );
    const a = fillDefaults({ list: [] })({});
    const b = fillDefaults({ list: [] })({});
    assert.notEqual(a.list, b.list, 'each config gets its own copy');
  });

  it("every node's steps are numbered, say why, and its editor default is the current version (filled in at build)", () => {
    const fragments = editorFragments();
    for (const [type, m] of Object.entries(NODE_MIGRATIONS)) {
      assert.ok(m.length >= 1, type);
      m.forEach((s, i) => {
        assert.equal(s.version, i + 1, `${type} step ${i}`);
        assert.ok(s.why.length > 10, `${type} step ${s.version} says why`);
      });
      assert.equal(fragments[`version-${type}`], String(currentVersion(m)), type);
    }
    assert.match(fragments['target-defaults'], new RegExp(`version: \\{ value: ${currentVersion(NODE_MIGRATIONS['isolation-target'])} \\}`));
  });

  it('version 1 writes out what the version-less pack used for a field left out, and keeps every value given', () => {
    assert.deepEqual(migrate({ type: 'isolate-host' }, NODE_MIGRATIONS['isolate-host']).config, {
      type: 'isolate-host',
      presets: [],
      exceptions: [],
      mode: 'enforce',
      duration: 0,
      verify: true,
      force: false,
      wall: '',
      persist: false,
      allowOverrides: false,
      maxHosts: 1000,
      pendingFor: 0,
      version: 3,
    });
    const given = { presets: ['ssh'], verify: false, allowOverrides: true, duration: '60' };
    assert.deepEqual({ ...migrate(given, NODE_MIGRATIONS['isolate-host']).config, ...given }, migrate(given, NODE_MIGRATIONS['isolate-host']).config);
    const t = migrate({ host: 'h' }, NODE_MIGRATIONS['isolation-target']).config as Record<string, unknown>;
    assert.deepEqual([t.port, t.timeout, t.sudo, t.jumpPort, t.dnsServers], [22, 20, false, 22, []]);
    assert.deepEqual(migrate({}, NODE_MIGRATIONS['exception-set']).config, { op: 'add', exceptions: [], maxHosts: 1000, version: 2 });
    assert.deepEqual(migrate({}, NODE_MIGRATIONS['unisolate-host']).config, { wall: '', version: 1 });
    assert.deepEqual(migrate({}, NODE_MIGRATIONS['isolation-status']).config, { check: false, version: 1 });
  });
});

describe('the blast-radius cap and saved flows (version 2)', () => {
  it('a config saved before the cap keeps the limit it had (1000); a new one (version 2) keeps what it says, blank included', () => {
    for (const type of ['isolate-host', 'exception-set']) {
      const steps = NODE_MIGRATIONS[type];
      assert.equal(currentVersion(steps), type === 'isolate-host' ? 3 : 2, type);
      assert.equal((migrate({ version: 1 }, steps).config as Record<string, unknown>).maxHosts, 1000, `${type}: version 1 -> 1000`);
      assert.equal((migrate({}, steps).config as Record<string, unknown>).maxHosts, 1000, `${type}: no version -> 1000`);
      assert.equal(migrate({ version: 1, maxHosts: 50 }, steps).config.maxHosts, 50, `${type}: a value given is kept`);
      assert.equal(migrate({ version: 2, maxHosts: 10 }, steps).config.maxHosts, 10, `${type}: a new node keeps 10`);
      assert.equal(migrate({ version: 2, maxHosts: '' }, steps).config.maxHosts, '', `${type}: blank stays blank (the node's default)`);
    }
    // release and status need no step: a node without maxHosts has the runtime's bound, as before
    assert.equal(currentVersion(NODE_MIGRATIONS['unisolate-host']), 1);
    assert.equal(currentVersion(NODE_MIGRATIONS['isolation-status']), 1);
  });
});

describe('pending isolations and saved flows (isolate-host version 3)', () => {
  it('a config saved before "Keep pending" is off (0), as is a new node; a value given is kept', () => {
    const steps = NODE_MIGRATIONS['isolate-host'];
    assert.equal(currentVersion(steps), 3);
    assert.equal((migrate({ version: 2, maxHosts: 10 }, steps).config as Record<string, unknown>).pendingFor, 0);
    assert.equal((migrate({}, steps).config as Record<string, unknown>).pendingFor, 0);
    assert.equal(migrate({ version: 2, pendingFor: 3600 }, steps).config.pendingFor, 3600);
    assert.equal(migrate({ version: 3, pendingFor: 600 }, steps).config.pendingFor, 600);
  });
});

describe('a flow saved by the pack before versions', function () {
  this.timeout(10_000);
  let sb: sinon.SinonSandbox;
  beforeEach(() => {
    sb = sinon.createSandbox();
  });
  afterEach(async () => {
    sb.restore();
    await helper.unload();
  });

  type FlowNode = { id: string; type: string } & Record<string, unknown>;
  const flow = (node: Record<string, unknown>): FlowNode[] => [OLD_TARGET, { id: 'n1', target: 'tgt', wires: [['out'], []], ...node, type: String(node.type) }, { id: 'out', type: 'helper' }];

  it('isolate-host and its target, saved with only the required fields and no version: the same driver call as before, msg fields still ignored', async () => {
    const iso = sb.stub(driver, 'isolate').resolves(state('198.18.0.2'));
    await helper.load(ALL, flow({ type: 'isolate-host' }), CREDS);
    const got = next('out');
    (helper.getNode('n1') as unknown as AnyNode).receive({ mode: 'audit', duration: 1 });
    await got;
    const [target, req] = iso.firstCall.args;
    assert.deepEqual(target, {
      host: '198.18.0.2',
      port: 22,
      username: 'isolator',
      knownHosts: KNOWN,
      sudo: false,
      timeoutMs: 20_000,
      managementCidrs: [],
      protectedHosts: [],
      privateKey: 'PRIVATE KEY',
      passphrase: undefined,
      password: undefined,
    });
    assert.deepEqual(req, { duration: 0, presets: [], exceptions: [], mode: 'enforce', reason: undefined, force: false, verify: true, wall: undefined, persist: false });
  });

  it('isolate-host saved before the cap still takes a 1000-host msg.hosts, as it did; 1001 is BLAST_RADIUS', async () => {
    const iso = sb.stub(driver, 'isolate').callsFake(async (t) => state(String((t as { host: string }).host)));
    const target = { ...OLD_TARGET, allowedHosts: ['10.0.0.0/8'] };
    await helper.load(ALL, [target, ...flow({ type: 'isolate-host' }).slice(1)], CREDS);
    const hosts = Array.from({ length: 1000 }, (_, i) => `10.0.${Math.floor(i / 250)}.${(i % 250) + 1}`);
    const got = next('out', 8000);
    (helper.getNode('n1') as unknown as AnyNode).receive({ hosts });
    const msg = await got;
    assert.equal((msg.payload as unknown[]).length, 1000);
    assert.deepEqual(msg.fleet, { asked: 1000, maxHosts: 1000 });
    assert.equal(iso.callCount, 1000);
    const n = helper.getNode('n1') as unknown as AnyNode & { error: sinon.SinonSpy };
    (helper.getNode('n1') as unknown as AnyNode).receive({ hosts: [...hosts, '10.9.9.9'] });
    await new Promise((r) => setTimeout(r, 100));
    const err = n.error.getCalls().filter((c) => c.thisValue === n).map((c) => c.args[0] as { code?: string })[0];
    assert.equal(err?.code, 'BLAST_RADIUS');
    assert.equal(iso.callCount, 1000, 'the refused message reached no host');
  });

  it('fields saved as null count as left out, as they did', async () => {
    const iso = sb.stub(driver, 'isolate').resolves(state('198.18.0.2'));
    await helper.load(ALL, flow({ type: 'isolate-host', presets: null, mode: null, duration: null, verify: null, force: null, wall: null, persist: null, allowOverrides: null }), CREDS);
    const got = next('out');
    (helper.getNode('n1') as unknown as AnyNode).receive({ mode: 'audit' });
    await got;
    assert.deepEqual(iso.firstCall.args[1], { duration: 0, presets: [], exceptions: [], mode: 'enforce', reason: undefined, force: false, verify: true, wall: undefined, persist: false });
  });

  it('exception-set adds, unisolate-host sends no notice, isolation-status runs no preflight', async () => {
    const set = sb.stub(driver, 'setExceptions').resolves(state('198.18.0.2'));
    const un = sb.stub(driver, 'unisolate').resolves(notIsolated('198.18.0.2'));
    const st = sb.stub(driver, 'status').resolves(state('198.18.0.2'));
    const caps = sb.stub(driver, 'capabilities');
    for (const [type, run] of [
      ['exception-set', () => assert.equal(set.firstCall.args[1], 'add')],
      ['unisolate-host', () => assert.deepEqual(un.firstCall.args[1], { wall: undefined })],
      ['isolation-status', () => assert.equal(caps.callCount, 0)],
    ] as const) {
      await helper.load(ALL, flow({ type }), CREDS);
      const got = next('out');
      (helper.getNode('n1') as unknown as AnyNode).receive({});
      await got;
      run();
      await helper.unload();
    }
    assert.equal(st.callCount, 1);
  });

  it('a config saved by a newer pack is used as it is, with a warning', async () => {
    sb.stub(driver, 'isolate').resolves(state('198.18.0.2'));
    await helper.load(ALL, flow({ type: 'isolate-host', version: 99 }), CREDS);
    const n = helper.getNode('n1') as unknown as AnyNode;
    const said = n.warn.getCalls().filter((c) => c.thisValue === n).map((c) => String(c.args[0]));
    assert.deepEqual(said, ['saved by a newer version of this pack (config version 99): used as it is']);
  });
});
