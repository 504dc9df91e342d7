/**
 * What the editor gets from the driver at build time: its rules (src/editor/rules.ts, bundled into
 * resources/driver-rules.js) give the driver's verdict, and the help's shared parts (state fields,
 * error codes, presets) are the driver's, in every node, with no hand-kept copy left in nodes/.
 */
import { strict as assert } from 'assert';
import fc from 'fast-check';
import * as fs from 'fs';
import * as path from 'path';
import * as vm from 'vm';
import { allowedHostsSchema, exceptionSchema, ICMP_TYPES, PRESET_NAMES, PRESETS, targetSchema } from '../../src/driver';
import { hostSchema, MAX_DURATION } from '../../src/driver/policy';
import { ERROR_MEANINGS, expandShared, sharedHelp, stateFields } from '../../src/editor/help';
import { settingsDeclaration } from '../../src/nodes/common/settings';
import * as rules from '../../src/editor/rules';
import { exceptionArb } from '../fuzz/properties';
import { REPO_ROOT } from '../lab/nodered';

const RUNS = Number(process.env.FUZZ_RUNS ?? 2000);
const ACTION_NODES = ['isolate-host', 'unisolate-host', 'isolation-status', 'exception-set'];

function driverRules(): typeof rules & { PRESET_NAMES: string[]; PRESETS: unknown; ICMP_TYPES: unknown; MAX_DURATION: number } {
  const file = path.join(REPO_ROOT, 'resources', 'driver-rules.js');
  const window: Record<string, unknown> = {};
  vm.runInNewContext(fs.readFileSync(file, 'utf8'), { window }, { filename: file });
  return window.hostIsolationRules as ReturnType<typeof driverRules>;
}

/** exceptions that are mostly valid, to exercise the rules between fields (the fuzz arbitrary is mostly hostile) */
const dir = fc.constantFrom('in', 'out');
const addrArb = fc.option(fc.oneof(fc.ipV4(), fc.ipV6(), fc.constantFrom('198.18.0.0/24', '2001:db8::/32', '198.18.0.1/33')), { nil: undefined });
const portArb = fc.option(fc.oneof(fc.integer({ min: 0, max: 65536 }), fc.constantFrom('22', '1000-2000', '2000-1000', '80 ')), { nil: undefined });
const clean = (e: Record<string, unknown>) => Object.fromEntries(Object.entries(e).filter(([, v]) => v !== undefined));
const plausibleArb = fc.oneof(
  fc.record({ direction: dir, proto: fc.constantFrom('tcp', 'udp'), addr: addrArb, port: portArb }).map(clean),
  fc.record({ direction: dir, proto: fc.constantFrom('icmp', 'any', 'tcp'), addr: addrArb, icmpType: fc.option(fc.constantFrom(...Object.keys(ICMP_TYPES)), { nil: undefined }) }).map(clean),
  fc.record({ direction: dir, proto: fc.constantFrom('any', 'tcp', 'icmp'), port: portArb, addr: addrArb }).map(clean),
  fc
    .record({
      direction: fc.constantFrom('out', 'out', 'in'),
      proto: fc.constantFrom('tcp', 'udp', 'any', 'icmp'),
      owner: fc.oneof(
        fc.record({ uid: fc.oneof(fc.integer({ min: -1, max: 70000 }), fc.constantFrom('backup', 'Bad')) }),
        fc.record({ unit: fc.constantFrom('edr-agent.service', '..x.service', 'x.timer') }),
        fc.record({ cgroup: fc.constantFrom('system.slice/x.service', 'a/../b') }),
        fc.record({ uid: fc.constant(0), unit: fc.constant('a.service') }),
      ),
      port: portArb,
    })
    .map(({ owner, ...e }) => clean({ ...e, ...owner })),
);

describe('editor rules from the driver', function () {
  this.timeout(60_000);

  it('an exception passes the editor exactly when it passes the driver schema', () => {
    let valid = 0;
    let invalid = 0;
    fc.assert(
      fc.property(fc.oneof(exceptionArb, { arbitrary: plausibleArb, weight: 2 }), (e) => {
        const driverOk = exceptionSchema.safeParse(e).success;
        const problem = rules.exceptionProblem(e, ICMP_TYPES);
        assert.equal(problem === null, driverOk, `${JSON.stringify(e)}: driver ${driverOk ? 'accepts' : 'refuses'}, editor says ${problem}`);
        if (driverOk) valid++;
        else invalid++;
      }),
      { numRuns: RUNS },
    );
    assert.ok(valid > RUNS / 5 && invalid > RUNS / 5, `both verdicts exercised (${valid} valid, ${invalid} invalid)`);
  });

  it('hosts, allowed hosts and management CIDRs: the driver verdict, with a message when refused', () => {
    const samples = ['198.18.0.2', ' 198.18.0.2 ', '2001:db8::1', 'fleet-01.example.org', '198.18.0.0/24', '1.2.3', '', 'a..b', 'x'.repeat(300), 'host_name', '::ffff:198.18.0.1', '198.18.0.256'];
    const host = fc.oneof(fc.constantFrom(...samples), fc.domain(), fc.ipV4(), fc.ipV6(), fc.string({ maxLength: 20 }));
    fc.assert(
      fc.property(host, (h) => {
        assert.equal(rules.hostProblem(h) === null, hostSchema.safeParse(h).success, `host ${JSON.stringify(h)}`);
        assert.equal(rules.listProblem([h], 'hosts') === null, h.trim() === '' || allowedHostsSchema.safeParse([h]).success, `allowed host ${JSON.stringify(h)}`);
        const cidrOk = targetSchema.safeParse({ host: 'h', username: 'u', password: 'p', knownHosts: 'k', managementCidrs: [h.trim()] }).success;
        assert.equal(rules.listProblem([h], 'cidrs') === null, h.trim() === '' || cidrOk, `cidr ${JSON.stringify(h)}`);
      }),
      { numRuns: RUNS },
    );
    assert.match(String(rules.hostProblem('1.2.3')), /IP address or a DNS host name/);
  });

  it("a target's server lists: the driver's verdict, its width limit (/16, /48) and its count included", () => {
    const samples = ['10.0.0.0/8', '10.0.0.0/16', '10.1.0.0/15', '198.18.0.53', '2001:db8::/32', '2001:db8::/48', '2001:db8::/47', '::ffff:10.0.0.0/104', '::ffff:10.0.0.0/112', 'ns1.example', '1.2.3', '0.0.0.0/0', '198.18.0.0/24'];
    const entry = fc.oneof(fc.constantFrom(...samples), fc.ipV4(), fc.ipV6(), fc.tuple(fc.ipV4(), fc.integer({ min: 0, max: 33 })).map(([a, l]) => `${a}/${l}`), fc.tuple(fc.ipV6(), fc.integer({ min: 0, max: 129 })).map(([a, l]) => `${a}/${l}`));
    fc.assert(
      fc.property(fc.array(entry, { minLength: 1, maxLength: 36 }), (list) => {
        const driverOk = targetSchema.safeParse({ host: 'h', username: 'u', password: 'p', knownHosts: 'k', servers: { dns: list } }).success;
        assert.equal(rules.serversProblem(list) === null, driverOk, `${JSON.stringify(list)}: driver ${driverOk ? 'accepts' : 'refuses'}, editor says ${rules.serversProblem(list)}`);
      }),
      { numRuns: RUNS },
    );
    assert.match(String(rules.serversProblem(['10.0.0.0/8'])), /"10.0.0.0\/8" is too wide for a server: at most \/16 \(IPv4\) or \/48 \(IPv6\)/);
    assert.match(String(rules.serversProblem(['2001:db8::/32'])), /too wide/);
    assert.equal(rules.serversProblem(['10.1.0.0/16', '2001:db8:1::/48', '198.18.0.53']), null);
    assert.equal(rules.serversProblem([]), null, 'empty: read from the host');
  });

  it('number fields accept blank, as the runtime defaults them, and say what is wrong otherwise', () => {
    for (const blank of [undefined, null, '', '  ']) assert.equal(rules.numberProblem(blank, 0.1, 600, false), null);
    assert.equal(rules.numberProblem('20', 0.1, 600, false), null);
    assert.equal(rules.numberProblem(0.5, 0.1, 600, false), null);
    assert.equal(rules.numberProblem('abc', 1, 65535), 'must be a whole number');
    assert.equal(rules.numberProblem(70000, 1, 65535), 'must be between 1 and 65535');
    assert.equal(rules.numberProblem(1.5, 1, 65535), 'must be a whole number');
  });

  it('the built bundle (resources/driver-rules.js) runs alone, gives the same verdicts and carries the driver data', () => {
    const R = driverRules();
    // the bundle ran in a context of its own: compare its data as JSON
    const json = (v: unknown) => JSON.parse(JSON.stringify(v)) as unknown;
    assert.deepEqual(json(R.PRESET_NAMES), [...PRESET_NAMES]);
    assert.deepEqual(json(R.PRESETS), json(PRESETS));
    assert.deepEqual(json(R.ICMP_TYPES), ICMP_TYPES);
    assert.equal(R.MAX_DURATION, MAX_DURATION);
    fc.assert(
      fc.property(exceptionArb, (e) => {
        assert.equal(R.exceptionProblem(e, ICMP_TYPES), rules.exceptionProblem(e, ICMP_TYPES));
      }),
      { numRuns: 300 },
    );
    assert.match(String(R.exceptionsProblem([{ direction: 'in', proto: 'tcp' }, { direction: 'in', proto: 'tcp', port: 99999 }], ICMP_TYPES)), /^exception 2: port/);
  });
});

describe('editor: Max hosts (the blast radius of one msg.hosts)', () => {
  /** resources/editor.js run alone, with the driver rules and the settings the runtime exports */
  function editorApi(exported: Record<string, unknown>): { validMaxHosts: (v: unknown, opt?: { label?: string }) => true | string } {
    const file = path.join(REPO_ROOT, 'resources', 'editor.js');
    const window: Record<string, unknown> = { hostIsolationRules: driverRules(), RED: { settings: exported } };
    vm.runInNewContext(fs.readFileSync(file, 'utf8'), { window }, { filename: file });
    return window.hostIsolation as ReturnType<typeof editorApi>;
  }

  it('checks a whole number from 1 up to the runtime\'s isolationTargetMaxHosts (1000 when none is exported); blank is the default', () => {
    const api = editorApi({ isolationTargetMaxHosts: 50 });
    for (const ok of ['', undefined, 1, '10', 50]) assert.equal(api.validMaxHosts(ok), true, String(ok));
    assert.equal(api.validMaxHosts(51), 'maxHosts: must be between 1 and 50 (isolationTargetMaxHosts in settings.js)');
    assert.equal(api.validMaxHosts(0), 'maxHosts: must be between 1 and 50 (isolationTargetMaxHosts in settings.js)');
    assert.equal(api.validMaxHosts('2.5'), 'maxHosts: must be a whole number');
    assert.equal(editorApi({}).validMaxHosts(1000), true);
    assert.notEqual(editorApi({}).validMaxHosts(1001), true);
  });

  it('new isolate-host and exception-set nodes start at 10, unisolate-host blank (the runtime bound); the setting is exported to the editor with its default', () => {
    const html = (type: string) => fs.readFileSync(path.join(REPO_ROOT, 'src', 'nodes', type, `${type}.html`), 'utf8');
    for (const type of ['isolate-host', 'exception-set']) assert.match(html(type), /maxHosts: \{ value: 10, validate: function \(v, opt\) \{ return window\.hostIsolation\.validMaxHosts\(v, opt\); \} \}/, type);
    assert.match(html('unisolate-host'), /maxHosts: \{ value: '', validate/);
    assert.ok(!html('isolation-status').includes('maxHosts'), 'a read has no cap of its own');
    for (const type of ['isolate-host', 'exception-set', 'unisolate-host']) assert.ok(html(type).includes('id="node-input-maxHosts"'), `${type}: the field`);
    assert.deepEqual(settingsDeclaration().isolationTargetMaxHosts, { exportable: true, value: 1000 });
    assert.deepEqual(settingsDeclaration().isolationTargetPoolSize, { exportable: false });
  });
});

describe('editor HTML and help', () => {
  // a node's editor HTML and its help (locales/en-US/<type>.html), as Node-RED serves them together
  const both = (dir: string, type: string) => ['', 'locales/en-US/'].map((sub) => fs.readFileSync(path.join(dir, type, `${sub}${type}.html`), 'utf8')).join('\n');
  const built = (type: string) => both(path.join(REPO_ROOT, 'dist', 'src', 'nodes'), type);
  const source = (type: string) => both(path.join(REPO_ROOT, 'src', 'nodes'), type);

  it('every action node help lists the driver state fields and every error code, from one source', () => {
    for (const type of ACTION_NODES) {
      const html = built(type);
      assert.ok(!html.includes('#shared'), `${type}: every shared part expanded`);
      assert.ok(html.includes(`{ ${stateFields().join(', ')} }`), `${type}: state fields`);
      for (const code of Object.keys(ERROR_MEANINGS)) assert.ok(html.includes(`<dt>${code}</dt>`), `${type}: ${code}`);
    }
    assert.ok(built('isolate-host').includes('<dt>cloud-metadata</dt>'), 'isolate-host lists the presets');
  });

  it('no node HTML keeps its own copy of the driver rules or data; shared code comes from resources/', () => {
    for (const type of [...ACTION_NODES, 'isolation-target']) {
      const html = source(type);
      assert.ok(!/var (PRESETS|V4|V6|UNIT|CGROUP)\b/.test(html), `${type}: no copied rule`);
      assert.ok(!html.includes("'cloud-metadata'"), `${type}: no copied preset list`);
      assert.ok(!/window\.hostIsolation(ExceptionList|ReadExceptions|ValidException)/.test(html), `${type}: no global from another node's HTML`);
      if (/hostIsolation\./.test(html)) {
        assert.ok(html.includes('src="resources/@soc-playbooks/node-red-host-isolation/editor.js"'), `${type} loads the shared editor code itself`);
        assert.ok(html.includes('src="resources/@soc-playbooks/node-red-host-isolation/driver-rules.js"'), `${type} loads the driver rules itself`);
      }
    }
  });

  it('the help of every node lives in locales/en-US/<type>.html, where Node-RED looks for it (and a translation can take its place)', () => {
    for (const type of [...ACTION_NODES, 'isolation-target']) {
      const editor = fs.readFileSync(path.join(REPO_ROOT, 'src', 'nodes', type, `${type}.html`), 'utf8');
      const help = fs.readFileSync(path.join(REPO_ROOT, 'src', 'nodes', type, 'locales', 'en-US', `${type}.html`), 'utf8');
      assert.ok(!editor.includes('data-help-name'), `${type}: no help inline in the editor HTML`);
      assert.match(help, new RegExp(`^<script type="text/html" data-help-name="${type}">`), `${type}: its help`);
    }
  });

  it('an unknown shared part fails the build', () => {
    assert.throws(() => expandShared('<!-- #shared nope -->', 'x.html'), /unknown shared help fragment "nope"/);
    assert.ok(Object.keys(sharedHelp()).includes('errors'));
  });

  it('the error table of docs/nodes.md lists exactly the driver codes', () => {
    const page = fs.readFileSync(path.join(REPO_ROOT, 'docs', 'nodes.md'), 'utf8');
    const start = page.indexOf('\n## Errors\n');
    assert.ok(start >= 0, 'docs/nodes.md has an Errors section');
    const end = page.indexOf('\n#', start + 5);
    const table = page.slice(start, end < 0 ? undefined : end);
    const codes = [...table.matchAll(/^\| `([A-Z_]+)` \|/gm)].map((m) => m[1]);
    assert.deepEqual(codes.sort(), Object.keys(ERROR_MEANINGS).sort());
  });
});
