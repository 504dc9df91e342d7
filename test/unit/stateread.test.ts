/**
 * The state read's bounded answer: the host's filter (sed and awk, run here over a fake `nft` that
 * prints a listing as nft does) and the controller's strict reading of what it says. No root.
 */
import { strict as assert } from 'assert';
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { COMMANDS } from '../../src/driver/host/programs';
import { MAX_EXEC_OUTPUT } from '../../src/driver/transport';
import { DYNAMIC_SET_SIZE, encodeState, type StateDoc } from '../../src/driver/ruleset';
import { splitStateRead } from '../../src/driver/host/status';
import { OBSERVED_TOP, parseTable, toHostState, withStateRead } from '../../src/driver/state';

const TABLE = 'nr_iso';
const doc: StateDoc = { v: 1, since: '2026-12-02T10:00:00.000Z', reason: 'audit', mode: 'audit', expiresAt: null, management: [{ addr: '198.18.0.1', port: 22 }], exceptions: [] };

/** JSON as nft prints it (jansson: `, ` and `: ` between items, keys in nft's order). */
function nftJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(nftJson).join(', ')}]`;
  if (v !== null && typeof v === 'object') return `{${Object.entries(v).map(([k, x]) => `${JSON.stringify(k)}: ${nftJson(x)}`).join(', ')}}`;
  return JSON.stringify(v);
}

const t = { family: 'inet', table: TABLE };
const obsElem = (addr: string, proto: string | number, port: number | null, packets: number) => ({
  elem: { val: { concat: port === null ? [addr, proto] : [addr, proto, port] }, expires: 604790, counter: { packets, bytes: packets * 28 } },
});

/** A listing of an audit isolation whose obs_out4 holds `flows` flows (port 20000 + i, i packets... the first the most). */
function listing(flows: number, extra: unknown[] = []): string {
  const elems = Array.from({ length: flows }, (_, i) => obsElem('198.18.0.2', 'udp', 20000 + i, i === 7 ? 1000 : 1 + (i % 5)));
  return nftJson({
    nftables: [
      { metainfo: { version: '1.0.6', release_name: 'Lester Gooch #5', json_schema_version: 1 } },
      { table: { family: 'inet', name: TABLE, handle: 1 } },
      { counter: { family: 'inet', name: 'drop_in', table: TABLE, handle: 2, packets: 12, bytes: 720 } },
      { set: { family: 'inet', name: 'in4', table: TABLE, type: ['ipv4_addr', 'inet_proto', 'inet_service'], handle: 3, flags: ['interval'], elem: [{ concat: ['198.18.5.5', 'tcp', 22] }] } },
      { set: { family: 'inet', name: 'gen', table: TABLE, type: 'mark', handle: 4, elem: [5] } },
      {
        set: { family: 'inet', name: 'obs_out4', table: TABLE, type: ['ipv4_addr', 'inet_proto', 'inet_service'], handle: 5, size: DYNAMIC_SET_SIZE.observed, flags: ['timeout'], timeout: 604800, elem: elems },
      },
      { set: { family: 'inet', name: 'obs_in6_other', table: TABLE, type: ['ipv6_addr', 'inet_proto'], handle: 6, size: 256, flags: ['timeout'], timeout: 604800, elem: [obsElem('2001:db8::7', 'ipv6-icmp', null, 3)] } },
      { set: { family: 'inet', name: 'owner4', table: TABLE, type: ['ipv4_addr', 'inet_proto', 'inet_service', 'inet_service'], handle: 7, size: 2, flags: ['timeout'], timeout: 3600, elem: [1, 2].map((p) => ({ elem: { val: { concat: ['198.18.0.9', 'tcp', 443, 40000 + p] }, expires: 3500 } })) } },
      { set: { family: 'inet', name: 'owner6', table: TABLE, type: ['ipv6_addr', 'inet_proto', 'inet_service', 'inet_service'], handle: 8, size: 2048, flags: ['timeout'], timeout: 3600 } },
      ...extra,
      { chain: { family: 'inet', table: TABLE, name: 'state', handle: 9 } },
      ...encodeState(doc).map((comment, i) => ({ rule: { ...t, chain: 'state', handle: 100 + i, comment, expr: [{ counter: { packets: 0, bytes: 0 } }] } })),
    ],
  });
}

/** Runs the status read's script with `nft` (first in PATH) printing `out` and exiting `code`. */
function hostRead(out: string, code = 0, stderr = ''): { stdout: string; stderr: string; status: number | null } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nrhi-stateread-'));
  try {
    fs.writeFileSync(path.join(dir, 'out'), out);
    fs.writeFileSync(path.join(dir, 'nft'), `#!/bin/sh\ncat >/dev/null\ncat "${dir}/out"\nprintf '%s' '${stderr}' >&2\nexit ${code}\n`, { mode: 0o755 });
    const r = spawnSync('sh', ['-c', COMMANDS.status], {
      input: `${TABLE}\n{"nftables":[{"list":{"table":{"family":"inet","name":"${TABLE}"}}}]}`,
      env: { ...process.env, PATH: `${dir}:${process.env.PATH}` },
      encoding: 'utf8',
      timeout: 20_000,
      maxBuffer: 64 * 1024 * 1024,
    });
    return { stdout: r.stdout, stderr: r.stderr, status: r.status };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

describe('the state read: bounded whatever the host records', () => {
  it('the host filter cuts the dynamic sets out and returns the top flows, nft JSON otherwise as it was', function () {
    this.timeout(30_000);
    const full = listing(5000, [{ set: { family: 'inet', name: 'obs_in4', table: 'other', type: 'mark', handle: 1, elem: [{ elem: { val: 1, comment: 'not ours' } }] } }]);
    const r = hostRead(full);
    assert.equal(r.status, 0, r.stderr);
    assert.ok(full.length > 500_000 && r.stdout.length < 40_000, `${full.length} bytes of listing -> ${r.stdout.length} bytes of answer`);
    const { json, extras } = splitStateRead(r.stdout);
    const items = (JSON.parse(json) as { nftables: Record<string, { name?: string; table?: string; elem?: unknown[] }>[] }).nftables;
    const sets = items.filter((i) => i.set).map((i) => i.set);
    assert.deepEqual(
      sets.map((s) => [s.name, s.table, s.elem === undefined ? 'no elements' : s.elem.length]),
      [
        ['in4', TABLE, 1],
        ['gen', TABLE, 1],
        ['obs_out4', TABLE, 'no elements'],
        ['obs_in6_other', TABLE, 'no elements'],
        ['owner4', TABLE, 'no elements'],
        ['owner6', TABLE, 'no elements'],
        ['obs_in4', 'other', 1], // another table's set of the same name is not ours to cut (nor listed by `list table`)
      ],
    );
    assert.ok(extras);
    assert.deepEqual(extras.sets, [
      { name: 'obs_out4', count: 5000, size: DYNAMIC_SET_SIZE.observed },
      { name: 'obs_in6_other', count: 1, size: 256 },
      { name: 'owner4', count: 2, size: 2 },
      { name: 'owner6', count: 0, size: 2048 },
    ]);
    assert.equal(extras.flows.length, OBSERVED_TOP);
    assert.deepEqual(extras.flows[0], { direction: 'out', proto: 'udp', addr: '198.18.0.2', port: 20007, packets: 1000, bytes: 28000 });
    for (let i = 1; i < extras.flows.length; i++) assert.ok(extras.flows[i - 1].packets >= extras.flows[i].packets);

    const parsed = withStateRead(parseTable(json, TABLE), extras);
    assert.equal(parsed.gen, 5);
    assert.deepEqual(parsed.doc, doc);
    assert.equal(parsed.observed.length, OBSERVED_TOP);
    assert.equal(parsed.observedOmitted, 5001 - OBSERVED_TOP);
    const st = toHostState('h', parsed);
    assert.equal(st.observedFull, true, 'obs_out4 holds more than its cap says: full');
    assert.match(st.warnings.join(' '), /observed flows is full \(obs_out4: 5000\)/);
    assert.ok(!st.warnings.some((w) => /service\/user/.test(w)), 'a full owner set drops nothing in audit mode');
  });

  it("the host filter passes nft's failure through: its code, its stderr, nothing on stdout", () => {
    const r = hostRead('', 1, 'Error: No such file or directory');
    assert.equal(r.status, 1);
    assert.equal(r.stdout, '');
    assert.match(r.stderr, /No such file or directory/);
  });

  it('a full owner set in enforce mode is a warning', () => {
    const enforce = { ...doc, mode: 'enforce' as const };
    const json = nftJson({
      nftables: [
        { table: { family: 'inet', name: TABLE, handle: 1 } },
        { set: { family: 'inet', name: 'gen', table: TABLE, type: 'mark', handle: 4, elem: [5] } },
        ...encodeState(enforce).map((comment, i) => ({ rule: { ...t, chain: 'state', handle: 100 + i, comment, expr: [] } })),
      ],
    });
    const st = toHostState('h', withStateRead(parseTable(json, TABLE), { sets: [{ name: 'owner4', count: 2048, size: 2048 }], flows: [] }));
    assert.equal(st.state, 'isolated');
    assert.equal(st.observedFull, false);
    assert.match(st.warnings.join(' '), /flows opened by service\/user exceptions is full \(owner4: 2048\)/);
  });

  it('reads the filter lines strictly: malformed, foreign or excess lines are left out', () => {
    const good = (i: number) => `nrhi-flow ${1000 - i} ${i} in 4 198.18.0.${i % 250} tcp ${1000 + i}`;
    const lines = [
      '{"nftables": []}',
      'nrhi-dynset obs_in4 900 1024',
      'nrhi-dynset obs_in4 1 1', // a second line for the same set: the first counts
      'nrhi-dynset evil 1 1', // not a dynamic set of the pack
      'nrhi-dynset obs_out6 x 1',
      `nrhi-dynset obs_out4 ${'9'.repeat(10)} 1`,
      'nrhi-flow 5 5 in 6 198.18.0.1 tcp 80', // family says 6, address is v4
      'nrhi-flow 5 5 in 4 198.18.0.0/16 tcp 80', // a prefix, not a flow's address
      'nrhi-flow 5 5 in 4 198.18.0.1 tcp 70000',
      'nrhi-flow 5 5 sideways 4 198.18.0.1 tcp 80',
      'nrhi-flow 5 5 in 4 198.18.0.1 TCP;rm 80',
      `nrhi-flow 5 5 in 4 198.18.0.1 tcp 80 ${'x'.repeat(300)}`,
      'nrhi-flow 7 70 out 6 2001:db8::1 ipv6-icmp -',
      'nrhi-flow 9 90 out 4 198.18.0.3 17 53',
      ...Array.from({ length: OBSERVED_TOP + 50 }, (_, i) => good(i)),
    ];
    const { json, extras } = splitStateRead(lines.join('\n'));
    assert.equal(json.trim(), '{"nftables": []}');
    assert.ok(extras);
    assert.deepEqual(extras.sets, [{ name: 'obs_in4', count: 900, size: 1024 }]);
    assert.equal(extras.flows.length, OBSERVED_TOP, 'at most OBSERVED_TOP flows');
    assert.deepEqual(extras.flows.at(-1), { direction: 'out', proto: 'icmp', addr: '2001:db8::1', port: null, packets: 7, bytes: 70 });
    assert.ok(extras.flows.some((f) => f.proto === 'udp' && f.port === 53), 'a protocol number is named');
    assert.ok(!extras.flows.some((f) => f.port === 80 || f.port === 70000), 'the malformed ones are left out');
    // the number left out is what the host recorded beyond the flows that came back
    const base = parseTable(
      nftJson({ nftables: [{ table: { family: 'inet', name: TABLE } }, { set: { family: 'inet', name: 'gen', table: TABLE, elem: [1] } }, ...encodeState(doc).map((comment, i) => ({ rule: { ...t, chain: 'state', handle: i, comment } }))] }),
      TABLE,
    );
    assert.equal(withStateRead(base, extras).observedOmitted, 900 - OBSERVED_TOP);
    assert.equal(splitStateRead('{"nftables": []}\n').extras, null, 'no filter ran: nothing from it');
  });

  it('the caps keep even a full listing of every dynamic set well under the read limit', () => {
    // the widest element of each kind as nft prints it: widest addresses, 20-digit counters
    const v6 = 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff';
    const v4 = '255.255.255.255';
    const big = 18446744073709551615n;
    const obs = (a: string, ported: boolean) =>
      `${nftJson({ elem: { val: { concat: ported ? [a, 'udp', 65535] : [a, 'ipv6-icmp'] }, timeout: 604800, expires: 604799, counter: { packets: 0, bytes: 0 } } }).replace(/"packets": 0, "bytes": 0/, `"packets": ${big}, "bytes": ${big}`)}, `;
    const owner = (a: string, ported: boolean) => `${nftJson({ elem: { val: { concat: ported ? [a, 'udp', 65535, 65535] : [a, 'ipv6-icmp'] }, timeout: 3600, expires: 3599 } })}, `;
    const per = (f: (a: string, p: boolean) => string, ported: boolean) => f(v4, ported).length + f(v6, ported).length;
    const S = DYNAMIC_SET_SIZE;
    const worst = 2 * S.observed * per(obs, true) + 2 * S.observedOther * per(obs, false) + S.owner * per(owner, true) + S.ownerOther * per(owner, false);
    assert.ok(obs(v6, true).length <= 205, obs(v6, true));
    assert.ok(worst < 1.6e6 && worst < MAX_EXEC_OUTPUT / 2, `all twelve sets full: ${worst} bytes`);
  });

  it("without the filter (nft's answer as it is), the observed flows are bounded the same way", () => {
    const p = parseTable(listing(1000), TABLE);
    assert.equal(p.observed.length, OBSERVED_TOP);
    assert.equal(p.observedOmitted, 1001 - OBSERVED_TOP);
    assert.equal(p.observed[0].packets, 1000);
  });
});
