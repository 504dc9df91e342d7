/**
 * Tamper detection: the live table against what the pack's own record says it should be. The
 * record (in the `state` chain) is re-rendered into the batch the pack would apply, and both sides
 * are reduced to what decides which packets pass: each chain's hook, priority and policy; each
 * rule, in order, with nft's own shorthands undone (it drops a `meta l4proto` that a following
 * `tcp dport` implies, and prints user ids for names); each exception set's elements as canonical
 * intervals. Any difference is a finding, in words. Pure: no I/O.
 */
import { parseAddr } from './net';
import { ALL_SETS, type Batch } from './ruleset';

type Json = unknown;

/** nft's ICMP type names, as `nft -j` prints set elements, to numbers per family. */
const ICMP_NAMES: Record<string, number> = {
  'echo-reply': 0,
  'destination-unreachable': 3,
  'source-quench': 4,
  redirect: 5,
  'echo-request': 8,
  'router-advertisement': 9,
  'router-solicitation': 10,
  'time-exceeded': 11,
  'parameter-problem': 12,
  'timestamp-request': 13,
  'timestamp-reply': 14,
  'info-request': 15,
  'info-reply': 16,
  'address-mask-request': 17,
  'address-mask-reply': 18,
};
const ICMPV6_NAMES: Record<string, number> = {
  'destination-unreachable': 1,
  'packet-too-big': 2,
  'time-exceeded': 3,
  'parameter-problem': 4,
  'echo-request': 128,
  'echo-reply': 129,
  'mld-listener-query': 130,
  'mld-listener-report': 131,
  'mld-listener-done': 132,
  'nd-router-solicit': 133,
  'nd-router-advert': 134,
  'nd-neighbor-solicit': 135,
  'nd-neighbor-advert': 136,
  'nd-redirect': 137,
  'router-renumbering': 138,
  'ind-neighbor-solicit': 141,
  'ind-neighbor-advert': 142,
  'mld2-listener-report': 143,
};
const PROTOS: Record<string, number> = { tcp: 6, udp: 17, icmp: 1, 'ipv6-icmp': 58, icmpv6: 58 };

function isObj(v: Json): v is Record<string, Json> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** JSON with sorted keys, so that equal values print equal. */
function canon(v: Json): string {
  if (Array.isArray(v)) return `[${v.map(canon).join(',')}]`;
  if (isObj(v)) {
    return `{${Object.keys(v)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canon(v[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(v);
}

// ---- rules -----------------------------------------------------------------------------------

function normValue(v: Json): Json {
  // an anonymous set is printed back sorted
  if (isObj(v) && Array.isArray(v.set)) return { set: v.set.map(normValue).map(canon).sort() };
  if (typeof v === 'string') {
    const a = parseAddr(v);
    return a ? a.text : v;
  }
  if (isObj(v) && isObj(v.prefix)) {
    const a = parseAddr(`${String(v.prefix.addr)}/${String(v.prefix.len)}`);
    return a ? a.text : v;
  }
  return normDeep(v);
}

function normDeep(v: Json): Json {
  if (Array.isArray(v)) return v.map(normDeep);
  if (!isObj(v)) return v;
  // a port is printed as `tcp dport` where the protocol is known, `th dport` where not
  if (isObj(v.payload) && ['tcp', 'udp', 'th'].includes(String(v.payload.protocol)) && ['dport', 'sport'].includes(String(v.payload.field))) {
    return { payload: { protocol: 'l4', field: v.payload.field } };
  }
  const out: Record<string, Json> = {};
  for (const [k, x] of Object.entries(v)) {
    // counter values are not part of what the rule does
    if (k === 'counter' && isObj(x) && 'packets' in x) out[k] = null;
    else out[k] = normDeep(x);
  }
  return out;
}

/** Protocol names (as a host with /etc/protocols prints them) to their numbers, in sets too. */
function protoNumbers(v: Json): Json {
  if (typeof v === 'string' && v in PROTOS) return PROTOS[v];
  if (isObj(v) && Array.isArray(v.set)) return { set: v.set.map(protoNumbers) };
  return v;
}

/** One rule's statements, with nft's listing shorthands undone on both sides. */
function normRule(expr: Json[]): string {
  const out: Json[] = [];
  for (const st of expr) {
    if (isObj(st) && isObj(st.match)) {
      const { left, right, op } = st.match;
      // `meta l4proto tcp` before `tcp dport`/`th dport`: nft leaves it implied in listings
      if (isObj(left) && isObj(left.meta) && left.meta.key === 'l4proto' && (typeof right === 'string' || typeof right === 'number') && op === '==') continue;
      // `meta nfproto ipv4` before an `ip daddr`: implied too
      if (isObj(left) && isObj(left.meta) && left.meta.key === 'nfproto' && op === '==') continue;
      const l = normDeep(left);
      // a user name is printed back as its uid: only the host can map one to the other; a
      // protocol number as its name where the host has /etc/protocols, as the number where not
      const key = isObj(l) && isObj(l.meta) ? l.meta.key : undefined;
      const r = key === 'skuid' ? 'uid' : key === 'l4proto' ? normValue(protoNumbers(right)) : normValue(right);
      out.push({ match: { op, left: l, right: r } });
    } else {
      out.push(normDeep(st));
    }
  }
  return canon(out);
}

// ---- set elements ----------------------------------------------------------------------------

function normComponent(c: Json, fam: 4 | 6): string {
  if (typeof c === 'number') return String(c);
  if (typeof c === 'string') {
    const a = parseAddr(c);
    if (a) return a.text;
    if (c in PROTOS) return String(PROTOS[c]);
    const icmp = (fam === 4 ? ICMP_NAMES : ICMPV6_NAMES)[c];
    return icmp !== undefined ? String(icmp) : c;
  }
  if (isObj(c) && isObj(c.prefix)) {
    const a = parseAddr(`${String(c.prefix.addr)}/${String(c.prefix.len)}`);
    return a ? a.text : canon(c);
  }
  if (isObj(c) && Array.isArray(c.range) && c.range.length === 2) {
    const [lo, hi] = c.range.map((x) => normComponent(x, fam));
    return lo === hi ? lo : `${lo}-${hi}`;
  }
  return canon(c);
}

function normElement(e: Json, fam: 4 | 6): string {
  const v = isObj(e) && isObj(e.elem) ? e.elem.val : e;
  if (isObj(v) && Array.isArray(v.concat)) return v.concat.map((c) => normComponent(c, fam)).join(' . ');
  return normComponent(v, fam);
}

// ---- the comparison ----------------------------------------------------------------------------

interface Model {
  chains: Map<string, string>;
  rules: Map<string, string[]>;
  sets: Map<string, string[]>;
}

const IGNORED_SETS = /^(gen|exp|obs_.*|owner[46](_other)?)$/;
const STATE_CHAIN = 'state';

function chainDef(c: Record<string, Json>): string {
  return c.hook === undefined ? 'regular chain' : `${String(c.type)} hook ${String(c.hook)} priority ${String(c.prio)} policy ${String(c.policy ?? 'accept')}`;
}

function setFamily(name: string): 4 | 6 {
  return /6/.test(name) ? 6 : 4;
}

function modelOf(items: { kind: string; obj: Record<string, Json> }[]): Model {
  const m: Model = { chains: new Map(), rules: new Map(), sets: new Map() };
  for (const { kind, obj } of items) {
    if (kind === 'chain') {
      m.chains.set(String(obj.name), chainDef(obj));
    } else if (kind === 'rule' && obj.chain !== STATE_CHAIN) {
      const list = m.rules.get(String(obj.chain)) ?? [];
      list.push(normRule(Array.isArray(obj.expr) ? obj.expr : []));
      m.rules.set(String(obj.chain), list);
    } else if ((kind === 'set' || kind === 'element') && !IGNORED_SETS.test(String(obj.name))) {
      // a listed set carries its elements; a batch adds them with `add element` after `add set`
      const name = String(obj.name);
      const elems = (Array.isArray(obj.elem) ? obj.elem : []).map((e) => normElement(e, setFamily(name)));
      m.sets.set(name, [...(m.sets.get(name) ?? []), ...elems]);
    }
  }
  for (const [k, v] of m.sets) m.sets.set(k, [...v].sort());
  return m;
}

/** The model of what a batch builds (its `add` commands, in order). */
function expectedModel(batch: Batch): Model {
  const items: { kind: string; obj: Record<string, Json> }[] = [];
  for (const cmd of batch.nftables) {
    if (!isObj(cmd) || !isObj(cmd.add)) continue;
    const [kind, obj] = Object.entries(cmd.add)[0] ?? [];
    if (kind && isObj(obj) && kind !== 'table') items.push({ kind, obj });
  }
  return modelOf(items);
}

/** The model of a listing (`nft -j list table`), only this table's objects. */
function actualModel(listing: Json[], table: string): Model {
  const items: { kind: string; obj: Record<string, Json> }[] = [];
  for (const it of listing) {
    if (!isObj(it)) continue;
    const [kind, obj] = Object.entries(it)[0] ?? [];
    if (kind && isObj(obj) && obj.table === table && ['chain', 'rule', 'set'].includes(kind)) items.push({ kind, obj });
  }
  return modelOf(items);
}

/**
 * What differs between the live table and the isolation its record describes (`expected`, the
 * batch the pack would apply for that record). Empty when nothing was changed behind its back.
 */
export function tamperFindings(listing: Json[], table: string, expected: Batch): string[] {
  const want = expectedModel(expected);
  const have = actualModel(listing, table);
  const findings: string[] = [];
  for (const [name, def] of want.chains) {
    const got = have.chains.get(name);
    if (got === undefined) findings.push(`chain ${name} was deleted`);
    else if (got !== def) findings.push(`chain ${name} was changed: ${got} (the pack set ${def})`);
  }
  for (const name of have.chains.keys()) if (!want.chains.has(name)) findings.push(`chain ${name} was added`);
  for (const [name, rules] of want.rules) {
    if (!have.chains.has(name)) continue;
    const got = have.rules.get(name) ?? [];
    if (got.length !== rules.length) findings.push(`chain ${name} has ${got.length} rules, the pack wrote ${rules.length}`);
    else {
      const changed = rules.findIndex((r, i) => r !== got[i]);
      if (changed >= 0) findings.push(`chain ${name}: rule ${changed + 1} was changed`);
    }
  }
  for (const [name, rules] of have.rules) {
    if (!want.rules.has(name) && want.chains.has(name) && rules.length > 0) findings.push(`chain ${name} has ${rules.length} rules, the pack wrote none`);
  }
  for (const name of ALL_SETS) {
    const w = want.sets.get(name) ?? [];
    const g = have.sets.get(name);
    if (g === undefined) {
      findings.push(`set ${name} was deleted`);
      continue;
    }
    const added = g.filter((e) => !w.includes(e));
    const removed = w.filter((e) => !g.includes(e));
    if (added.length > 0) findings.push(`set ${name}: elements added behind the pack's back: ${added.slice(0, 5).join(', ')}${added.length > 5 ? ', ...' : ''}`);
    if (removed.length > 0) findings.push(`set ${name}: elements removed: ${removed.slice(0, 5).join(', ')}${removed.length > 5 ? ', ...' : ''}`);
  }
  for (const name of have.sets.keys()) if (!want.sets.has(name) && !(ALL_SETS as string[]).includes(name)) findings.push(`set ${name} was added`);
  return findings;
}

// ---- an in-place edit, seen by the apply itself ---------------------------------------------------

/** The most of the pre-apply listing the host sends back (bytes): past it, nothing is compared. */
export const INSPECT_MAX_BYTES = 1024 * 1024;

/**
 * What the apply script lists (one more nft process in the same exec, under the same lock) just
 * before an isolate re-applies the generation the controller believes is on the host: the table
 * as it is, to be compared with its record. One `list table`: nft 1.0.6 lists only the last of
 * several chains (or sets) named in one batch, and a batch's list commands run after the whole
 * batch is evaluated, so they cannot ride in the isolate batch itself. Its dynamic sets (owner
 * flows, audit observations) can be large: the host sends at most INSPECT_MAX_BYTES of it.
 */
export function inspectCommands(table: string): unknown[] {
  return [{ list: { table: { family: 'inet', name: table } } }];
}

/**
 * The listing items nft printed for inspectCommands (the answer's `{"nftables": ...}` line); null
 * when there is none, or it was cut short (too large) or is not nft's.
 */
export function parseInspected(stdout: string): Json[] | null {
  const line = stdout.split('\n').find((l) => l.startsWith('{"nftables"'));
  if (line === undefined) return null;
  try {
    const v = JSON.parse(line) as Json;
    return isObj(v) && Array.isArray(v.nftables) ? v.nftables : null;
  } catch {
    return null;
  }
}

/**
 * What an isolation found edited in place when it re-applied the same generation: the findings of
 * the listing against the batch its record describes; empty when nothing was, or when there is no
 * listing to go by (then nothing can be said, and nothing is claimed).
 */
export function editFindings(listing: Json[] | null, table: string, expected: Batch): string[] {
  if (listing === null || !listing.some((it) => isObj(it) && isObj(it.table) && it.table.name === table)) return [];
  return tamperFindings(listing, table, expected);
}
