import { strict as assert } from 'assert';
import { disjointUnion, parseAddr, type Box } from '../../src/driver/net';
import { expandPresets, isolateRequestSchema, validate } from '../../src/driver';
import { ALL_SETS, cgroupOf, encodeState, ownerRules, renderConfirm, renderElements, renderIsolate, renderRelease, renderRollback, renderUnisolate, renderUpdate, type StateDoc } from '../../src/driver/ruleset';
import { decodeState, parseTable } from '../../src/driver/state';
import { tamperFindings } from '../../src/driver/tamper';
import { SEVER_ACCEPTED, SEVER_INITIATED, severFilters } from '../../src/driver/host/sever';

const doc: StateDoc = {
  v: 1,
  since: '2026-11-22T14:04:05.000Z',
  reason: 'Suricata: "ET MALWARE" $(reboot); `id` — ünïcode',
  mode: 'enforce',
  expiresAt: null,
  management: [{ addr: '198.18.5.1', port: 22 }],
  exceptions: [...expandPresets(['ssh', 'dns'], { management: [{ addr: '198.18.5.1', port: 22 }], servers: { dns: { addrs: ['198.18.5.53'], from: 'test' } } }), { direction: 'in', proto: 'tcp', addr: '198.18.5.3', port: 8443, comment: 'collector' }],
};

function contains(b: Box, point: bigint[]): boolean {
  return b.every(([lo, hi], d) => point[d] >= lo && point[d] <= hi);
}

describe('net: addresses', () => {
  it('parses to intervals', () => {
    assert.deepEqual(parseAddr('198.18.0.0/24')?.interval, [0xc6120000n, 0xc61200ffn]);
    assert.equal(parseAddr('2001:db8::/32')?.family, 6);
    assert.equal(parseAddr('1.2.3'), null);
    assert.equal(parseAddr('::/129'), null);
  });
});

describe('net: disjointUnion', () => {
  it('covers exactly the union, with no two pieces overlapping', () => {
    // deterministic pseudo-random boxes in a small 2-D space, checked point by point
    let seed = 7;
    const rnd = (n: number) => {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      return seed % n;
    };
    for (let round = 0; round < 30; round++) {
      const boxes: Box[] = Array.from({ length: 1 + rnd(6) }, () => {
        const a = rnd(16), b = rnd(16), c = rnd(16), d = rnd(16);
        return [
          [BigInt(Math.min(a, b)), BigInt(Math.max(a, b))],
          [BigInt(Math.min(c, d)), BigInt(Math.max(c, d))],
        ];
      });
      const out = disjointUnion(boxes);
      for (let x = 0n; x < 16n; x++) {
        for (let y = 0n; y < 16n; y++) {
          const inUnion = boxes.some((b) => contains(b, [x, y]));
          const hits = out.filter((b) => contains(b, [x, y])).length;
          assert.equal(hits, inUnion ? 1 : 0, `point ${x},${y} round ${round}`);
        }
      }
    }
  });

  it('drops a box inside a larger one instead of cutting it', () => {
    const big: Box = [[0n, 100n], [0n, 10n]];
    const small: Box = [[5n, 6n], [2n, 3n]];
    assert.deepEqual(disjointUnion([small, big]), [big]);
  });

  it('refuses pathological overlap instead of hanging', () => {
    // a grid of crossing bars cuts every vertical bar into ~100 pieces
    const boxes: Box[] = Array.from({ length: 200 }, (_, i) =>
      i % 2 === 0
        ? [[BigInt(i), BigInt(i)], [0n, 1000n]]
        : [[0n, 1000n], [BigInt(i), BigInt(i)]],
    );
    assert.throws(() => disjointUnion(boxes, 500), RangeError);
  });
});

describe('ruleset', () => {
  it('renders one transaction that replaces only its own table', () => {
    const batch = renderIsolate('nr_iso', doc, 1);
    const cmds = batch.nftables as Record<string, Record<string, Record<string, unknown>>>[];
    assert.deepEqual(cmds.slice(0, 3), [
      { add: { table: { family: 'inet', name: 'nr_iso' } } },
      { delete: { table: { family: 'inet', name: 'nr_iso' } } },
      { add: { table: { family: 'inet', name: 'nr_iso' } } },
    ]);
    for (const c of cmds) {
      const obj = Object.values(Object.values(c)[0])[0];
      const table = obj.table ?? obj.name;
      assert.equal(table === 'nr_iso' || obj.table === 'nr_iso', true, JSON.stringify(c));
      assert.equal(obj.family, 'inet');
    }
    const chains = cmds.filter((c) => c.add?.chain).map((c) => c.add.chain);
    for (const hook of ['input', 'output', 'forward']) {
      const ch = chains.find((x) => x.name === hook);
      assert.ok(ch, hook);
      assert.equal(ch.policy, 'drop');
      assert.equal(ch.hook, hook);
      assert.ok((ch.prio as number) < 0 && (ch.prio as number) > -200, 'after conntrack, ahead of filter');
    }
    const text = JSON.stringify(batch);
    assert.ok(!/"established"/.test(text), 'no blanket ct state established accept');
  });

  it('audit mode: same exceptions, policy accept, would-be drops recorded per flow', () => {
    const cmds = renderIsolate('t', { ...doc, mode: 'audit' }, 1).nftables as Record<string, Record<string, Record<string, unknown>>>[];
    const chains = cmds.filter((c) => c.add?.chain?.hook).map((c) => c.add.chain);
    assert.deepEqual(chains.map((c) => c.policy), ['accept', 'accept', 'accept']);
    const obsSets = cmds.filter((c) => String(c.add?.set?.name ?? '').startsWith('obs_')).map((c) => c.add.set.name);
    assert.equal(obsSets.length, 8);
    const text = JSON.stringify(cmds);
    assert.ok(text.includes('"op":"update"') && text.includes('"@obs_in4"') && text.includes('"@obs_out6_other"'));
    const enforce = JSON.stringify(renderIsolate('t', doc, 1));
    assert.ok(!enforce.includes('obs_'), 'enforce records nothing');
    // the exception elements are the same in both modes
    const elems = (b: string) => JSON.parse(b).nftables.filter((c: { add?: { element?: unknown } }) => c.add?.element);
    assert.deepEqual(elems(JSON.stringify({ nftables: cmds })), elems(enforce));
  });

  it('is deterministic', () => {
    assert.deepEqual(renderIsolate('t', doc, 3), renderIsolate('t', structuredClone(doc), 3));
  });

  it('puts each exception in the set of its family and kind', () => {
    const els = renderElements([
      { direction: 'in', proto: 'tcp', addr: '198.18.0.3', port: 22 },
      { direction: 'out', proto: 'udp', port: '1000-2000' },
      { direction: 'out', proto: 'any', addr: '2001:db8::/48' },
      { direction: 'in', proto: 'icmp', icmpType: 'packet-too-big' },
    ]);
    assert.deepEqual(els.get('in4'), [{ concat: ['198.18.0.3', 6, 22] }]);
    assert.deepEqual(els.get('in6'), []);
    assert.deepEqual(els.get('out4'), [{ concat: [{ prefix: { addr: '0.0.0.0', len: 0 } }, 17, { range: [1000, 2000] }] }]);
    assert.deepEqual(els.get('out6'), [{ concat: [{ prefix: { addr: '::', len: 0 } }, 17, { range: [1000, 2000] }] }]);
    assert.deepEqual(els.get('out6_any'), [{ prefix: { addr: '2001:db8::', len: 48 } }]);
    assert.deepEqual(els.get('in4_icmp'), [], 'packet-too-big has no IPv4 twin');
    assert.deepEqual(els.get('in6_icmp'), [{ concat: [{ prefix: { addr: '::', len: 0 } }, 2] }]);
    assert.equal(els.size, ALL_SETS.length);
  });

  it('service and user exceptions become owner_out rules that record the flow in a set of the table, not set elements', () => {
    const owners = [
      { direction: 'out' as const, proto: 'tcp' as const, uid: 34, addr: '2001:db8::/32', port: '443-444' },
      { direction: 'out' as const, proto: 'any' as const, unit: 'edr-agent.service' },
      { direction: 'out' as const, proto: 'udp' as const, cgroup: 'unified/system.slice/x.service', port: 53 },
    ];
    for (const set of renderElements(owners).values()) assert.deepEqual(set, [], 'no set elements');
    const m = (left: unknown, right: unknown, op = '==') => ({ match: { op, left, right } });
    const p = (protocol: string, field: string) => ({ payload: { protocol, field } });
    const l4 = { meta: { key: 'l4proto' } };
    const rec = (fam: 4 | 6, other = false) => {
      const ip = fam === 4 ? 'ip' : 'ip6';
      const key = other ? [p(ip, 'daddr'), l4] : [p(ip, 'daddr'), l4, p('th', 'dport'), p('th', 'sport')];
      return { set: { op: 'update', elem: { concat: key }, set: `@owner${fam}${other ? '_other' : ''}` } };
    };
    const unit = m({ socket: { key: 'cgroupv2', level: 2 } }, 'system.slice/edr-agent.service');
    const cg = m({ socket: { key: 'cgroupv2', level: 2 } }, 'unified/system.slice/x.service');
    const fam = (f: 4 | 6) => m({ meta: { key: 'nfproto' } }, f === 4 ? 'ipv4' : 'ipv6');
    assert.deepEqual(ownerRules(owners), [
      [m({ meta: { key: 'skuid' } }, 34), m(p('ip6', 'daddr'), { prefix: { addr: '2001:db8::', len: 32 } }), m(l4, 6), m(p('th', 'dport'), { range: [443, 444] }), rec(6), { accept: null }],
      [unit, fam(4), m(l4, { set: [6, 17] }), rec(4), { accept: null }],
      [unit, fam(4), m(l4, { set: [6, 17] }, '!='), rec(4, true), { accept: null }],
      [unit, fam(6), m(l4, { set: [6, 17] }), rec(6), { accept: null }],
      [unit, fam(6), m(l4, { set: [6, 17] }, '!='), rec(6, true), { accept: null }],
      [cg, fam(4), m(l4, 17), m(p('th', 'dport'), 53), rec(4), { accept: null }],
      [cg, fam(6), m(l4, 17), m(p('th', 'dport'), 53), rec(6), { accept: null }],
    ]);
    assert.deepEqual(cgroupOf({ direction: 'out', proto: 'any', cgroup: 'user.slice/user-1000.slice' }), { path: 'user.slice/user-1000.slice', level: 2 });
    // the input chain lets in the replies of recorded flows only: no conntrack mark anyone could set
    const iso = JSON.stringify(renderIsolate('t', { ...doc, exceptions: owners }, 1));
    assert.ok(!iso.includes('{"ct":{"key":"mark"}}'), 'no conntrack mark');
    assert.ok(iso.includes('"set":"@owner4"') && iso.includes('"right":"@owner6_other"'));
    assert.ok(iso.includes('{"jump":{"target":"owner_out"}}'));
    // a live update rebuilds owner_out; recorded flows are forgotten only when the owner exceptions change
    const same = JSON.stringify(renderUpdate('t', { ...doc, exceptions: owners }, 1, owners));
    assert.ok(same.includes('{"flush":{"chain":{"family":"inet","table":"t","name":"owner_out"}}}'));
    assert.ok(!same.includes('{"flush":{"set":{"family":"inet","table":"t","name":"owner4"}}}'));
    const fewer = JSON.stringify(renderUpdate('t', { ...doc, exceptions: owners.slice(1) }, 1, owners));
    assert.ok(fewer.includes('{"flush":{"set":{"family":"inet","table":"t","name":"owner4"}}}'), 'removed owner: its flows lose their reply path');
  });

  it('updates claim the generation they read', () => {
    const cmds = renderUpdate('t', doc, 41).nftables as Record<string, unknown>[];
    assert.deepEqual(cmds[0], { delete: { element: { family: 'inet', table: 't', name: 'gen', elem: [41] } } });
    assert.deepEqual(cmds[1], { add: { element: { family: 'inet', table: 't', name: 'gen', elem: [42] } } });
    assert.ok(!JSON.stringify(cmds).includes('"chain":{"family":"inet","table":"t","name":"input"'), 'no chain rebuilt');
  });

  it('an auto-release deletes the expiry element it was armed for, then the table', () => {
    assert.equal(renderRelease('t', doc), null, 'no timer without expiry');
    const timed = { ...doc, expiresAt: '2026-11-22T15:04:05.000Z' };
    const exp = Date.parse(timed.expiresAt) / 1000;
    assert.deepEqual(renderRelease('t', timed)?.nftables, [
      { delete: { element: { family: 'inet', table: 't', name: 'exp', elem: [exp] } } },
      { delete: { table: { family: 'inet', name: 't' } } },
    ]);
    const cmds = JSON.stringify(renderIsolate('t', timed, 1));
    assert.ok(cmds.includes(JSON.stringify({ add: { element: { family: 'inet', table: 't', name: 'exp', elem: [exp] } } })));
    assert.ok(!JSON.stringify(renderIsolate('t', doc, 1)).includes('"name":"exp","elem"'), 'no expiry element without duration');
  });

  it('verify-then-commit: rollback and confirm claim the same deadline element first', () => {
    const none = renderRollback('t', 1000, null).nftables;
    assert.deepEqual(none, [
      { delete: { element: { family: 'inet', table: 't', name: 'exp', elem: [1000] } } },
      { delete: { table: { family: 'inet', name: 't' } } },
    ]);
    const prev = renderRollback('t', 1000, { doc, gen: 4 }).nftables;
    assert.deepEqual(prev[0], none[0]);
    assert.deepEqual(prev.slice(1), renderIsolate('t', doc, 6).nftables, 'restores the previous isolation');
    const timed = { ...doc, expiresAt: '2026-11-22T15:04:05.000Z' };
    assert.deepEqual(renderConfirm('t', 1000, timed).nftables, [
      { delete: { element: { family: 'inet', table: 't', name: 'exp', elem: [1000] } } },
      { add: { element: { family: 'inet', table: 't', name: 'exp', elem: [Date.parse(timed.expiresAt) / 1000] } } },
    ]);
  });

  it('unisolate touches the table only: delete it (refused when absent), or create and delete it (refused when present)', () => {
    const { release, free } = renderUnisolate('t');
    assert.deepEqual(release.nftables, [{ delete: { table: { family: 'inet', name: 't' } } }]);
    assert.deepEqual(free.nftables, [{ create: { table: { family: 'inet', name: 't' } } }, { delete: { table: { family: 'inet', name: 't' } } }]);
  });
});

describe('state', () => {
  it('round-trips the record through rule comments of at most 128 bytes', () => {
    const comments = encodeState(doc);
    for (const c of comments) assert.ok(Buffer.byteLength(c) <= 128, c);
    assert.deepEqual(decodeState(comments), doc);
    assert.deepEqual(decodeState([...comments].reverse()), doc);
  });

  it('a maximal record (the longest reason, case and requester the request takes) round-trips in comments of at most 128 bytes, key for key', () => {
    const req = validate(isolateRequestSchema, {
      // the costliest characters: a control character is 6 bytes of JSON, a CJK one 3 bytes of UTF-8
      reason: '\u0001'.repeat(1024),
      case: { id: 'Z'.repeat(64), url: `https://cases.example/${'中'.repeat(490)}` },
      requestedBy: '中'.repeat(128),
    }, 'request');
    const max: StateDoc = { v: 1, since: doc.since, reason: req.reason!, case: req.case, requestedBy: req.requestedBy, mode: 'enforce', expiresAt: null, management: doc.management, exceptions: doc.exceptions, persist: true };
    const comments = encodeState(max);
    for (const c of comments) assert.ok(Buffer.byteLength(c) <= 128, c);
    const back = decodeState(comments);
    assert.deepEqual(back, max);
    // the same text, so an isolate built on a read compares equal to one built on its own record
    assert.equal(JSON.stringify(back), JSON.stringify(max));
    assert.deepEqual(renderIsolate('t', back, 3), renderIsolate('t', max, 3));
    // a record without them is the record of before (no keys, so old tables read the same)
    assert.ok(!('case' in decodeState(encodeState(doc))) && !('requestedBy' in decodeState(encodeState(doc))));
    // what the request refuses, the read refuses too: root on the host cannot pass more through it
    assert.throws(() => decodeState(encodeState({ ...max, requestedBy: 'x\u001b[2J' })), /isolation record invalid/);
    assert.throws(() => decodeState(encodeState({ ...max, case: { id: 'a b' } })), /isolation record invalid/);
    assert.throws(() => decodeState(encodeState({ ...max, case: { id: 'C', url: 'javascript:x' } })), /isolation record invalid/);
  });

  it('refuses incomplete or foreign records', () => {
    const comments = encodeState({ ...doc, reason: 'x'.repeat(500) });
    assert.ok(comments.length > 2);
    assert.throws(() => decodeState(comments.slice(1)), /incomplete/);
    assert.throws(() => decodeState([]), /no isolation record/);
    assert.throws(() => decodeState(['nrhi1:0/1:!!!']), /malformed/);
  });

  it('parses a listing as nft prints it', () => {
    const rules = encodeState(doc).map((comment, i) => ({
      rule: { family: 'inet', table: 'nr_iso', chain: 'state', handle: 100 + i, comment, expr: [{ counter: { packets: 0, bytes: 0 } }] },
    }));
    const listing = {
      nftables: [
        { metainfo: { version: '1.0.6', json_schema_version: 1 } },
        { table: { family: 'inet', name: 'nr_iso', handle: 3 } },
        { counter: { family: 'inet', name: 'drop_in', table: 'nr_iso', handle: 1, packets: 12, bytes: 720 } },
        { set: { family: 'inet', name: 'gen', table: 'nr_iso', type: 'mark', handle: 2, elem: [5] } },
        ...rules,
      ],
    };
    const p = parseTable(JSON.stringify(listing), 'nr_iso');
    assert.equal(p.gen, 5);
    assert.deepEqual(p.dropped.in, { packets: 12, bytes: 720 });
    assert.deepEqual(p.doc, doc);
    assert.throws(() => parseTable('not json', 'nr_iso'), /not JSON/);
    assert.throws(() => parseTable(JSON.stringify({ nftables: [] }), 'nr_iso'), /missing/);
  });
  it('names no protocol the host would look up in /etc/protocols, and tamper reads names and numbers alike', () => {
    const all: StateDoc = {
      ...doc,
      mode: 'audit',
      exceptions: [
        ...doc.exceptions,
        { direction: 'out', proto: 'any', unit: 'edr-agent.service' },
        { direction: 'out', proto: 'udp', uid: 34, port: 53 },
        { direction: 'in', proto: 'icmp', icmpType: 'echo-request' },
      ],
    };
    const batch = renderIsolate('t', all, 1);
    const l4: unknown[] = [];
    const walk = (v: unknown): void => {
      if (Array.isArray(v)) v.forEach(walk);
      else if (typeof v === 'object' && v !== null) {
        const o = v as Record<string, unknown>;
        const m = o.match as { left?: { meta?: { key?: string } }; right?: unknown } | undefined;
        if (m?.left?.meta?.key === 'l4proto') l4.push(m.right);
        Object.values(o).forEach(walk);
      }
    };
    walk(batch);
    assert.ok(l4.length >= 10, `found ${l4.length} l4proto matches`);
    for (const r of l4) {
      const values = typeof r === 'object' && r !== null && 'set' in r ? (r as { set: unknown[] }).set : [r];
      assert.ok(values.every((x) => typeof x === 'number'), `l4proto by name: ${JSON.stringify(r)}`);
    }
    assert.ok(!/"(tcp|udp|icmp|ipv6-icmp)"\s*[,\]]/.test(JSON.stringify(batch).replace(/"protocol":"(tcp|udp|icmp|icmpv6)"/g, '')), 'no protocol name as a value');
    // a listing as a host with /etc/protocols prints it (names) and as a minimal host does (numbers)
    const listing = (named: boolean): unknown[] => {
      const names: Record<number, string> = { 1: 'icmp', 6: 'tcp', 17: 'udp', 58: 'ipv6-icmp' };
      const rename = (v: unknown): unknown => (typeof v === 'number' && named && names[v] ? names[v] : v);
      const sets = new Map<string, Record<string, unknown>>();
      const out: unknown[] = [];
      for (const cmd of batch.nftables as Record<string, Record<string, Record<string, unknown>>>[]) {
        const [kind, obj] = Object.entries(cmd.add ?? {})[0] ?? [];
        if (kind === 'set') {
          const s = { ...obj, elem: [] as unknown[] };
          sets.set(String(obj.name), s);
          out.push({ set: s });
        } else if (kind === 'element') (sets.get(String(obj.name))!.elem as unknown[]).push(...(obj.elem as unknown[]));
        else if (kind === 'chain') out.push({ chain: obj });
        else if (kind === 'rule') {
          const expr = JSON.parse(JSON.stringify(obj.expr), function (this: Record<string, unknown>, k, v: unknown) {
            const left = this?.left as { meta?: { key?: string } } | undefined;
            if (k === 'right' && left?.meta?.key === 'l4proto') {
              return typeof v === 'object' && v !== null && 'set' in v ? { set: (v as { set: unknown[] }).set.map(rename) } : rename(v);
            }
            return v;
          }) as unknown;
          out.push({ rule: { ...obj, expr } });
        }
      }
      return out;
    };
    assert.deepEqual(tamperFindings(listing(true), 't', batch), []);
    assert.deepEqual(tamperFindings(listing(false), 't', batch), []);
  });
});

describe('severFilters: the sockets an isolation keeps, each exception in its own direction', () => {
  const mgmt = [{ addr: '198.18.5.1', port: 22 }];
  const loop = 'dst 127.0.0.0/8 ,or dst [::1] ,or dst ::ffff:127.0.0.0/104';
  const keepMgmt = '( ( dst 198.18.5.1/32 or dst ::ffff:198.18.5.1/128 ) and sport = :22 )';

  it('inbound: our local port and the peer, only for sockets the peer opened to a listener (accepted)', () => {
    const f = severFilters(mgmt, [{ direction: 'in', proto: 'tcp', addr: '198.18.5.3', port: 8443 }, { direction: 'in', proto: 'tcp', port: 443 }]);
    assert.equal(f.tcp, `! ( ${loop} ,or ${keepMgmt} ,or ( ${SEVER_ACCEPTED} and ( ( ( dst 198.18.5.3/32 or dst ::ffff:198.18.5.3/128 ) and sport = :8443 ) ,or sport = :443 ) ) )`);
    // a TCP exception keeps no UDP socket
    assert.equal(f.udp, `! ( ${loop} ,or ${keepMgmt} )`);
  });

  it('outbound: the peer and ITS port, only for sockets the host opened (initiated), never our local port', () => {
    const f = severFilters(mgmt, [{ direction: 'out', proto: 'udp', addr: '2001:db8::53', port: 53 }, { direction: 'out', proto: 'udp', port: '1000-2000' }]);
    assert.equal(f.udp, `! ( ${loop} ,or ${keepMgmt} ,or ( ${SEVER_INITIATED} and ( ( dst [2001:db8::53] and dport = :53 ) ,or ( dport >= :1000 and dport <= :2000 ) ) ) )`);
    assert.ok(!/sport = :53|sport >= :1000/.test(f.udp));
    assert.equal(f.tcp, `! ( ${loop} ,or ${keepMgmt} )`);
  });

  it('a peer with any port: its address and the direction; `any` counts for both protocols', () => {
    const f = severFilters(mgmt, [{ direction: 'in', proto: 'any', addr: '198.18.5.3' }]);
    const want = `! ( ${loop} ,or ${keepMgmt} ,or ( ${SEVER_ACCEPTED} and ( ( dst 198.18.5.3/32 or dst ::ffff:198.18.5.3/128 ) ) ) )`;
    assert.deepEqual(f, { tcp: want, udp: want });
  });

  it('a whole direction keeps that direction\'s sockets; both directions whole: that protocol is not cut', () => {
    const inAll = severFilters(mgmt, [{ direction: 'in', proto: 'tcp' }]);
    assert.equal(inAll.tcp, `! ( ${loop} ,or ${keepMgmt} ,or ${SEVER_ACCEPTED} )`);
    const both = severFilters(mgmt, [{ direction: 'in', proto: 'tcp' }, { direction: 'out', proto: 'any' }]);
    assert.equal(both.tcp, '');
    assert.equal(both.udp, `! ( ${loop} ,or ${keepMgmt} ,or ${SEVER_INITIATED} )`);
  });

  it('service, user and ICMP exceptions keep no socket; every filter stays within the alphabet the host script checks', () => {
    const f = severFilters(mgmt, [
      { direction: 'out', proto: 'tcp', uid: 0, port: 443 },
      { direction: 'out', proto: 'tcp', unit: 'x.service' },
      { direction: 'in', proto: 'icmp', addr: '198.18.5.3' },
    ]);
    assert.deepEqual(f, { tcp: `! ( ${loop} ,or ${keepMgmt} )`, udp: `! ( ${loop} ,or ${keepMgmt} )` });
    const all = severFilters(mgmt, doc.exceptions);
    for (const text of [all.tcp, all.udp]) assert.match(text, /^[A-Za-z0-9.:/, ()[\]=<>!]*$/);
    // each word the host fills in appears once at most: the host replaces the first only
    for (const w of [SEVER_ACCEPTED, SEVER_INITIATED]) assert.ok(all.tcp.split(w).length <= 2);
  });
});
