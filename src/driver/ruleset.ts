/**
 * Isolation request -> libnftables JSON batch. Pure: no I/O, deterministic for equal input.
 *
 * The table the pack owns (inet family, one name):
 *   chains  input / output / forward: filter hooks at priority -190 (after conntrack at -200, ahead
 *           of mangle -150 and filter 0), policy drop; `state`: a regular chain never jumped to,
 *           whose rule comments carry the isolation record (since, reason, exceptions...).
 *   sets    {in,out}{4,6}       addr . l4proto . port      tcp/udp exceptions
 *           {in,out}{4,6}_any   addr                       proto "any" exceptions
 *           {in,out}{4,6}_icmp  addr . icmp(v6) type       icmp exceptions
 *           gen                 one element, the generation number: a later change deletes it
 *                               and adds the next, so a change made by someone else in between
 *                               makes our transaction fail instead of silently overwriting it.
 *           exp                 with auto-release, one element: the expiry (unix seconds). The
 *                               release batch deletes exactly that element before the table, so
 *                               a timer armed for an older isolation can never release a newer one.
 *   owner_out  a regular chain the output chain jumps to: one rule per service/user exception
 *           (`meta skuid`, `socket cgroupv2`) and family, which records the flow in a dynamic set
 *           of this table (owner4/owner6: peer . proto . peer port . our port; owner4_other/
 *           owner6_other: peer . proto for other protocols), refreshed by every packet the owner
 *           sends; the input chain lets in the replies of recorded flows only. Nothing outside
 *           the table (no conntrack mark another tool could set) opens a reply path, and a live
 *           change that alters the owner exceptions empties the sets.
 *   counters drop_in / drop_out / drop_fwd count what reached the drop policy.
 *
 * Replies: there is no blanket `ct state established accept`. A packet passes if it is the
 * original direction of a flow an exception names, or the reply direction of such a flow
 * (`ct direction reply` + the same set matched with source/destination swapped). A connection
 * opened before isolation that no exception names is cut both ways at once. The management
 * channel is matched statelessly on its exact address and port so it survives even a conntrack
 * flush. ICMP exceptions are stateless by type; IPv6 neighbour discovery and multicast listener
 * discovery (link-local, hop limit 255 / 1) always pass, and so do ICMP errors that conntrack
 * relates to a flow that passed (path MTU: packet-too-big, fragmentation needed) and echo replies
 * to an echo request that passed: nothing that can carry data to an arbitrary peer on its own.
 */
import type { Case, Exception } from './policy';
import { ICMP_TYPES, isOwnerException } from './policy';
import { addrToNft, disjointUnion, fullRange, intToNft, parseAddr, type Box, type Family, type Interval } from './net';

export const CHAIN_PRIORITY = -190;
export const STATE_CHAIN = 'state';
export const STATE_PREFIX = 'nrhi1:';
export const OWNER_CHAIN = 'owner_out';
/** Dynamic sets of the flows that service/user exceptions opened, per family (see the header). */
export const OWNER_SETS = ['owner4', 'owner6', 'owner4_other', 'owner6_other'] as const;
/** How long a recorded owner flow keeps its reply path without a packet from its owner (s). */
const OWNER_FLOW_TIMEOUT = 3600;
/**
 * Caps of the dynamic sets (elements), which fill by themselves with what the host's users send
 * (audit mode's observed flows; the flows a uid or unit exception opens). The state read never
 * returns their elements (host/status.ts's statusScript cuts them out on the host), but anything that
 * lists the table does (an operator, an older controller). nft's JSON of an element of the
 * largest kind (an IPv6 flow of a ported set, with timeout, expiry and 20-digit counters) is at
 * most 205 bytes, so all twelve sets full make at most about 1.5 MB (test/unit/stateread pins
 * it): well under the 4 MiB a read may return. A full set records no new flow (nft's `update` breaks the rule): audit mode stops
 * recording new flows (the status says so: `observedFull`), and an owner exception's new flows
 * are dropped until recorded ones expire (the status warns).
 */
export const DYNAMIC_SET_SIZE = {
  /** obs_{in,out}{4,6}: addr . proto . port */
  observed: 1024,
  /** obs_{in,out}{4,6}_other: addr . proto */
  observedOther: 256,
  /** owner4 / owner6: peer . proto . peer port . our port (a connection each) */
  owner: 2048,
  /** owner4_other / owner6_other: peer . proto */
  ownerOther: 256,
} as const;
const CHUNK = 96;

export interface ManagementEndpoint {
  addr: string;
  port: number;
}

/** What is kept on the host, inside the table, so that any controller reads the same truth. */
export interface StateDoc {
  v: 1;
  since: string;
  reason: string | null;
  /**
   * the case and requester of the request that isolated the host (absent: none given). Root on the
   * host can rewrite this record: the controller's audit record is the authority, this copy informs
   */
  case?: Case;
  requestedBy?: string;
  mode: 'enforce' | 'audit';
  expiresAt: string | null;
  management: ManagementEndpoint[];
  exceptions: Exception[];
  /** re-applied at boot by a systemd unit on the host (absent: not persisted) */
  persist?: boolean;
}

type Dir = 'in' | 'out';
type Kind = '' | '_any' | '_icmp';
const DIRS: Dir[] = ['in', 'out'];
const FAMS: Family[] = [4, 6];
const KINDS: Kind[] = ['', '_any', '_icmp'];

export function setName(dir: Dir, fam: Family, kind: Kind): string {
  return `${dir}${fam}${kind}`;
}

export const ALL_SETS: string[] = DIRS.flatMap((d) => FAMS.flatMap((f) => KINDS.map((k) => setName(d, f, k))));

function setType(fam: Family, kind: Kind): string | string[] {
  const addr = fam === 4 ? 'ipv4_addr' : 'ipv6_addr';
  if (kind === '_any') return addr;
  if (kind === '_icmp') return [addr, fam === 4 ? 'icmp_type' : 'icmpv6_type'];
  return [addr, 'inet_proto', 'inet_service'];
}

const PROTO_NUM = { tcp: 6n, udp: 17n } as const;
/**
 * IP protocol numbers, rendered as numbers: a protocol name in the batch makes nft look it up in
 * the host's /etc/protocols, which minimal hosts (no netbase: container images, debootstrap
 * minbase, appliances) do not have ("Could not resolve protocol name"). Nothing in a batch may
 * depend on the host's name databases. ICMP types, `ct state` and `meta nfproto` values are nft's
 * own symbols and need no lookup.
 */
export const IPPROTO = { icmp: 1, tcp: 6, udp: 17, icmpv6: 58 } as const;
const TCP_UDP = { set: [IPPROTO.tcp, IPPROTO.udp] };

function portInterval(port: number | string | undefined): Interval {
  if (port === undefined) return [0n, 65535n];
  if (typeof port === 'number') return [BigInt(port), BigInt(port)];
  const [lo, hi] = port.split('-').map((p) => BigInt(p));
  return [lo, hi];
}

/** The boxes each set must hold for these exceptions (before making them disjoint). */
export function exceptionBoxes(exceptions: readonly Exception[]): Map<string, Box[]> {
  const out = new Map<string, Box[]>(ALL_SETS.map((n) => [n, []]));
  for (const e of exceptions) {
    if (isOwnerException(e)) continue; // rules of the owner_out chain, not set elements
    const parsed = e.addr !== undefined ? parseAddr(e.addr) : null;
    for (const fam of FAMS) {
      if (parsed && parsed.family !== fam) continue;
      const addr = parsed ? parsed.interval : fullRange(fam);
      if (e.proto === 'any') {
        out.get(setName(e.direction, fam, '_any'))!.push([addr]);
      } else if (e.proto === 'icmp') {
        let type: Interval = [0n, 255n];
        if (e.icmpType !== undefined) {
          const n = ICMP_TYPES[e.icmpType]?.[fam === 4 ? 'v4' : 'v6'];
          if (n === undefined) continue; // this ICMP type does not exist in this family
          type = [BigInt(n), BigInt(n)];
        }
        out.get(setName(e.direction, fam, '_icmp'))!.push([addr, type]);
      } else {
        const p = PROTO_NUM[e.proto];
        out.get(setName(e.direction, fam, ''))!.push([addr, [p, p], portInterval(e.port)]);
      }
    }
  }
  return out;
}

function elementOf(box: Box, fam: Family, kind: Kind): unknown {
  if (kind === '_any') return addrToNft(box[0], fam);
  return { concat: [addrToNft(box[0], fam), ...box.slice(1).map(intToNft)] };
}

/** set name -> nft elements, disjoint, deterministic. */
export function renderElements(exceptions: readonly Exception[]): Map<string, unknown[]> {
  const boxes = exceptionBoxes(exceptions);
  const out = new Map<string, unknown[]>();
  for (const dir of DIRS) {
    for (const fam of FAMS) {
      for (const kind of KINDS) {
        const name = setName(dir, fam, kind);
        out.set(
          name,
          disjointUnion(boxes.get(name)!).map((b) => elementOf(b, fam, kind)),
        );
      }
    }
  }
  return out;
}

/** The state record as rule comments of at most 128 bytes each (nft's limit), base64url in chunks. */
export function encodeState(doc: StateDoc): string[] {
  const b64 = Buffer.from(JSON.stringify(doc), 'utf8').toString('base64url');
  const chunks: string[] = [];
  for (let i = 0; i < b64.length; i += CHUNK) chunks.push(b64.slice(i, i + CHUNK));
  return chunks.map((c, i) => `${STATE_PREFIX}${i}/${chunks.length}:${c}`);
}

// ---- small JSON expression helpers -------------------------------------------------------------
const payload = (protocol: string, field: string) => ({ payload: { protocol, field } });
const meta = (key: string) => ({ meta: { key } });
const match = (left: unknown, right: unknown, op = '==') => ({ match: { op, left, right } });
const ctDir = (dir: 'original' | 'reply') => match({ ct: { key: 'direction' } }, dir);
const ACCEPT = { accept: null };

function ipProto(fam: Family): string {
  return fam === 4 ? 'ip' : 'ip6';
}

/** Rules of one hooked chain, in order. `hook` decides which side of the packet is the peer. */
function chainRules(hook: 'input' | 'output', management: readonly ManagementEndpoint[], audit: boolean): unknown[][] {
  const local = hook === 'input' ? 'saddr' : 'daddr'; // the peer's address field
  const ifKey = hook === 'input' ? 'iifname' : 'oifname';
  const rules: unknown[][] = [];
  rules.push([match(meta(ifKey), 'lo'), ACCEPT]);

  for (const m of management) {
    const p = parseAddr(m.addr);
    if (!p) continue;
    rules.push([
      match(payload(ipProto(p.family), local), addrToNft(p.interval, p.family)),
      match(payload('tcp', hook === 'input' ? 'dport' : 'sport'), m.port),
      ACCEPT,
    ]);
  }

  // IPv6 neighbour discovery (link-local, hop limit 255): without it no v6 peer can reach us at all
  rules.push([
    match(payload('icmpv6', 'type'), { set: ['nd-router-solicit', 'nd-router-advert', 'nd-neighbor-solicit', 'nd-neighbor-advert'] }),
    match(payload('ip6', 'hoplimit'), 255),
    ACCEPT,
  ]);
  // IPv6 multicast listener discovery: link-local source, hop limit 1, so never routed off the link
  rules.push([
    match(payload('icmpv6', 'type'), { set: ['mld-listener-query', 'mld-listener-report', 'mld-listener-done', 'mld2-listener-report'] }),
    match(payload('ip6', 'hoplimit'), 1),
    match(payload('ip6', 'saddr'), { set: [{ prefix: { addr: 'fe80::', len: 10 } }, '::'] }),
    ACCEPT,
  ]);
  // ICMP errors about a flow that passed (conntrack relates them): path MTU, unreachable, time exceeded
  rules.push([
    match({ ct: { key: 'state' } }, 'related', 'in'),
    match(meta('l4proto'), IPPROTO.icmp),
    match(payload('icmp', 'type'), { set: ['destination-unreachable', 'time-exceeded', 'parameter-problem'] }),
    ACCEPT,
  ]);
  rules.push([
    match({ ct: { key: 'state' } }, 'related', 'in'),
    match(meta('l4proto'), IPPROTO.icmpv6),
    match(payload('icmpv6', 'type'), { set: ['destination-unreachable', 'packet-too-big', 'time-exceeded', 'parameter-problem'] }),
    ACCEPT,
  ]);
  // the reply to an echo request that passed (an unsolicited echo reply has no conntrack entry)
  rules.push([ctDir('reply'), match(meta('l4proto'), IPPROTO.icmp), match(payload('icmp', 'type'), 'echo-reply'), ACCEPT]);
  rules.push([ctDir('reply'), match(meta('l4proto'), IPPROTO.icmpv6), match(payload('icmpv6', 'type'), 'echo-reply'), ACCEPT]);

  const here: Dir = hook === 'input' ? 'in' : 'out'; // flows this hook sees in original direction
  const there: Dir = hook === 'input' ? 'out' : 'in'; // flows whose replies this hook sees
  for (const fam of FAMS) {
    const ip = ipProto(fam);
    const l4 = meta('l4proto');
    // original direction of flows excepted on this side
    rules.push([ctDir('original'), match({ concat: [payload(ip, local), l4, payload('th', 'dport')] }, `@${setName(here, fam, '')}`), ACCEPT]);
    // replies of flows excepted on the other side: peer is the flow's destination, its port our source
    rules.push([ctDir('reply'), match({ concat: [payload(ip, local), l4, payload('th', 'sport')] }, `@${setName(there, fam, '')}`), ACCEPT]);
    rules.push([ctDir('original'), match(payload(ip, local), `@${setName(here, fam, '_any')}`), ACCEPT]);
    rules.push([ctDir('reply'), match(payload(ip, local), `@${setName(there, fam, '_any')}`), ACCEPT]);
    const icmpProto = fam === 4 ? 'icmp' : 'icmpv6';
    rules.push([
      match(l4, fam === 4 ? IPPROTO.icmp : IPPROTO.icmpv6),
      match({ concat: [payload(ip, local), payload(icmpProto, 'type')] }, `@${setName(here, fam, '_icmp')}`),
      ACCEPT,
    ]);
  }
  if (hook === 'input') {
    // replies of flows that an excepted unit or user opened (recorded by owner_out)
    for (const fam of FAMS) {
      const ip = ipProto(fam);
      rules.push([ctDir('reply'), match({ concat: [payload(ip, 'saddr'), meta('l4proto'), payload('th', 'sport'), payload('th', 'dport')] }, `@owner${fam}`), ACCEPT]);
      rules.push([ctDir('reply'), match({ concat: [payload(ip, 'saddr'), meta('l4proto')] }, `@owner${fam}_other`), ACCEPT]);
    }
  } else {
    rules.push([ctDir('original'), { jump: { target: OWNER_CHAIN } }]);
  }
  if (audit) {
    // what enforce would drop, recorded per flow (original direction only) with counters
    for (const fam of FAMS) {
      const ip = ipProto(fam);
      const key = [payload(ip, local), meta('l4proto')];
      rules.push([
        ctDir('original'),
        match(meta('l4proto'), TCP_UDP),
        { set: { op: 'update', elem: { concat: [...key, payload('th', 'dport')] }, set: `@${observedSet(here, fam, false)}`, stmt: [{ counter: null }] } },
      ]);
      rules.push([
        ctDir('original'),
        match(meta('l4proto'), TCP_UDP, '!='),
        { set: { op: 'update', elem: { concat: key }, set: `@${observedSet(here, fam, true)}`, stmt: [{ counter: null }] } },
      ]);
    }
  }
  rules.push([{ counter: hook === 'input' ? 'drop_in' : 'drop_out' }]);
  return rules;
}

/** The names of the sets filled from the packet path (`update`), whose size follows the host's traffic. */
export const DYNAMIC_SET = /^(obs_(in|out)[46](_other)?|owner[46](_other)?)$/;

/** Audit mode's dynamic sets of observed flows: `obs_in4` (addr . proto . port), `obs_in4_other` (addr . proto). */
export function observedSet(dir: Dir, fam: Family, other: boolean): string {
  return `obs_${dir}${fam}${other ? '_other' : ''}`;
}
/**
 * The rules of the owner_out chain for the service/user exceptions: who owns the socket, then
 * the optional protocol, address and port, then record the flow (for its replies) and accept.
 * One rule per exception and family (the record's key names the family's address).
 */
export function ownerRules(exceptions: readonly Exception[]): unknown[][] {
  const rules: unknown[][] = [];
  for (const e of exceptions) {
    if (!isOwnerException(e)) continue;
    let owner: unknown;
    if (e.uid !== undefined) owner = match(meta('skuid'), e.uid);
    else {
      const { path, level } = cgroupOf(e);
      owner = match({ socket: { key: 'cgroupv2', level } }, path);
    }
    const parsed = e.addr !== undefined ? parseAddr(e.addr) : null;
    for (const fam of FAMS) {
      if (parsed && parsed.family !== fam) continue;
      const ip = ipProto(fam);
      const head: unknown[] = [owner];
      if (parsed) head.push(match(payload(ip, 'daddr'), addrToNft(parsed.interval, parsed.family)));
      else head.push(match(meta('nfproto'), fam === 4 ? 'ipv4' : 'ipv6'));
      const ported = [payload(ip, 'daddr'), meta('l4proto'), payload('th', 'dport'), payload('th', 'sport')];
      const record = (other: boolean) => ({ set: { op: 'update', elem: { concat: other ? ported.slice(0, 2) : ported }, set: `@owner${fam}${other ? '_other' : ''}` } });
      if (e.proto === 'tcp' || e.proto === 'udp') {
        const expr = [...head, match(meta('l4proto'), IPPROTO[e.proto])];
        if (e.port !== undefined) expr.push(match(payload('th', 'dport'), intToNft(portInterval(e.port))));
        rules.push([...expr, record(false), ACCEPT]);
      } else {
        rules.push([...head, match(meta('l4proto'), TCP_UDP), record(false), ACCEPT]);
        rules.push([...head, match(meta('l4proto'), TCP_UDP, '!='), record(true), ACCEPT]);
      }
    }
  }
  return rules;
}

/**
 * The cgroup v2 path nft resolves (relative to /sys/fs/cgroup) and its depth below the cgroup2
 * root. A unit lives at `system.slice/<unit>`; on a hybrid host, where the cgroup2 root is
 * mounted at /sys/fs/cgroup/unified, give `cgroup: "unified/..."`: that first segment is the
 * mount point, not a level.
 */
export function cgroupOf(e: Exception): { path: string; level: number } {
  const path = e.unit !== undefined ? `system.slice/${e.unit}` : e.cgroup!;
  const segs = path.split('/');
  return { path, level: segs[0] === 'unified' ? segs.length - 1 : segs.length };
}

function ownerSetCommands(table: string): unknown[] {
  const t = { family: 'inet', table };
  return FAMS.flatMap((fam) => {
    const addr = fam === 4 ? 'ipv4_addr' : 'ipv6_addr';
    return [
      // `dynamic` is implied by the update rule (JSON refuses the flag)
      { add: { set: { ...t, name: `owner${fam}`, type: [addr, 'inet_proto', 'inet_service', 'inet_service'], size: DYNAMIC_SET_SIZE.owner, flags: ['timeout'], timeout: OWNER_FLOW_TIMEOUT } } },
      { add: { set: { ...t, name: `owner${fam}_other`, type: [addr, 'inet_proto'], size: DYNAMIC_SET_SIZE.ownerOther, flags: ['timeout'], timeout: OWNER_FLOW_TIMEOUT } } },
    ];
  });
}

/** `flush`: a live change; `forget` also empties the recorded owner flows (the owner exceptions changed). */
function ownerCommands(table: string, exceptions: readonly Exception[], flush: boolean, forget = false): unknown[] {
  const t = { family: 'inet', table };
  const cmds: unknown[] = [{ add: { chain: { ...t, name: OWNER_CHAIN } } }];
  if (flush) cmds.push({ flush: { chain: { ...t, name: OWNER_CHAIN } } });
  if (forget) for (const name of OWNER_SETS) cmds.push({ flush: { set: { ...t, name } } });
  for (const expr of ownerRules(exceptions)) cmds.push({ add: { rule: { ...t, chain: OWNER_CHAIN, expr } } });
  return cmds;
}

const OBSERVED_TIMEOUT = 7 * 86400;

export type Batch = { nftables: unknown[] };

/**
 * The whole isolation as one transaction: `add table` + `delete table` first (so the batch works
 * whether or not the table exists, and never merges with an old one), then the full definition.
 */
/**
 * `expElement` overrides the expiry element (unix seconds): verify-then-commit holds the rollback
 * deadline there until the isolation is confirmed.
 */
export function renderIsolate(table: string, doc: StateDoc, gen: number, expElement: number | null = expirySeconds(doc)): Batch {
  const t = { family: 'inet', table };
  const cmds: unknown[] = [
    { add: { table: { family: 'inet', name: table } } },
    { delete: { table: { family: 'inet', name: table } } },
    { add: { table: { family: 'inet', name: table } } },
  ];
  for (const dir of DIRS) {
    for (const fam of FAMS) {
      for (const kind of KINDS) {
        cmds.push({ add: { set: { ...t, name: setName(dir, fam, kind), type: setType(fam, kind), flags: ['interval'] } } });
      }
    }
  }
  cmds.push({ add: { set: { ...t, name: 'gen', type: 'mark' } } });
  cmds.push({ add: { element: { ...t, name: 'gen', elem: [gen] } } });
  cmds.push({ add: { set: { ...t, name: 'exp', type: 'mark' } } });
  if (expElement !== null) cmds.push({ add: { element: { ...t, name: 'exp', elem: [expElement] } } });
  for (const name of ['drop_in', 'drop_out', 'drop_fwd']) cmds.push({ add: { counter: { ...t, name } } });
  cmds.push(...elementCommands(table, doc.exceptions, false));

  const audit = doc.mode === 'audit';
  if (audit) {
    for (const dir of DIRS) {
      for (const fam of FAMS) {
        for (const other of [false, true]) {
          const addr = fam === 4 ? 'ipv4_addr' : 'ipv6_addr';
          const type = other ? [addr, 'inet_proto'] : [addr, 'inet_proto', 'inet_service'];
          // `dynamic` is implied by the update rule (JSON refuses the flag)
          cmds.push({ add: { set: { ...t, name: observedSet(dir, fam, other), type, size: other ? DYNAMIC_SET_SIZE.observedOther : DYNAMIC_SET_SIZE.observed, flags: ['timeout'], timeout: OBSERVED_TIMEOUT } } });
        }
      }
    }
  }
  cmds.push(...ownerSetCommands(table));
  cmds.push(...ownerCommands(table, doc.exceptions, false));
  for (const hook of ['input', 'output', 'forward'] as const) {
    cmds.push({ add: { chain: { ...t, name: hook, type: 'filter', hook, prio: CHAIN_PRIORITY, policy: audit ? 'accept' : 'drop' } } });
  }
  for (const hook of ['input', 'output'] as const) {
    for (const expr of chainRules(hook, doc.management, audit)) cmds.push({ add: { rule: { ...t, chain: hook, expr } } });
  }
  cmds.push({ add: { rule: { ...t, chain: 'forward', expr: [{ counter: 'drop_fwd' }] } } });
  cmds.push({ add: { chain: { ...t, name: STATE_CHAIN } } });
  cmds.push(...stateCommands(table, doc));
  return { nftables: cmds };
}

function elementCommands(table: string, exceptions: readonly Exception[], flush: boolean): unknown[] {
  const t = { family: 'inet', table };
  const cmds: unknown[] = [];
  for (const [name, elem] of renderElements(exceptions)) {
    if (flush) cmds.push({ flush: { set: { ...t, name } } });
    if (elem.length > 0) cmds.push({ add: { element: { ...t, name, elem } } });
  }
  return cmds;
}

function stateCommands(table: string, doc: StateDoc): unknown[] {
  return encodeState(doc).map((comment) => ({
    add: { rule: { family: 'inet', table, chain: STATE_CHAIN, comment, expr: [{ counter: null }] } },
  }));
}

/**
 * A live change of the exceptions as one transaction: claim generation `gen` (fails if someone
 * changed the isolation since we read it), then replace set contents, the owner_out rules and
 * the state record. The hooked chains, their rules and the counters stay as they are.
 */
export function renderUpdate(table: string, doc: StateDoc, gen: number, previous?: readonly Exception[]): Batch {
  const t = { family: 'inet', table };
  const owners = (list: readonly Exception[]) => JSON.stringify(list.filter(isOwnerException).map((e) => ({ ...e, comment: undefined })));
  // flows recorded for an owner exception that is gone (or changed) lose their reply path now
  const forget = previous === undefined || owners(previous) !== owners(doc.exceptions);
  return {
    nftables: [
      { delete: { element: { ...t, name: 'gen', elem: [gen] } } },
      { add: { element: { ...t, name: 'gen', elem: [gen + 1] } } },
      ...elementCommands(table, doc.exceptions, true),
      ...ownerCommands(table, doc.exceptions, true, forget),
      { flush: { chain: { ...t, name: STATE_CHAIN } } },
      ...stateCommands(table, doc),
    ],
  };
}

export function expirySeconds(doc: StateDoc): number | null {
  return doc.expiresAt === null ? null : Math.floor(Date.parse(doc.expiresAt) / 1000);
}

/**
 * What the host's own timer runs at expiry: delete the expiry element it was armed for, then the
 * table. If the isolation was replaced or released meanwhile, the element is gone, the
 * transaction fails as a whole, and nothing changes.
 */
export function renderRelease(table: string, doc: StateDoc): Batch | null {
  const exp = expirySeconds(doc);
  if (exp === null) return null;
  return {
    nftables: [{ delete: { element: { family: 'inet', table, name: 'exp', elem: [exp] } } }, { delete: { table: { family: 'inet', name: table } } }],
  };
}

/**
 * Verify-then-commit, host side. `rollback` is what the host runs by itself when the isolation is
 * not confirmed in time (and what the controller runs at once when its check fails): it claims the
 * rollback deadline element, then restores the previous state (no table, or the previous
 * isolation). `confirm` claims the same element and puts the real expiry in its place, so a
 * confirmed isolation can no longer be rolled back by a late timer.
 */
export function renderRollback(table: string, deadline: number, previous: { doc: StateDoc; gen: number } | null): Batch {
  const claim = { delete: { element: { family: 'inet', table, name: 'exp', elem: [deadline] } } };
  if (!previous) return { nftables: [claim, { delete: { table: { family: 'inet', name: table } } }] };
  return { nftables: [claim, ...renderIsolate(table, previous.doc, previous.gen + 2).nftables] };
}

export function renderConfirm(table: string, deadline: number, doc: StateDoc): Batch {
  const exp = expirySeconds(doc);
  const cmds: unknown[] = [{ delete: { element: { family: 'inet', table, name: 'exp', elem: [deadline] } } }];
  if (exp !== null) cmds.push({ add: { element: { family: 'inet', table, name: 'exp', elem: [exp] } } });
  return { nftables: cmds };
}

/**
 * Unisolate as two batches, each one transaction that touches the table only and says what it
 * found: `release` deletes the table (nft refuses it when there is none: "No such file or
 * directory"), `free` creates and deletes it (refused when there is one: "File exists"). Whichever
 * nft takes tells whether the host was isolated; a refused one changes nothing.
 */
export function renderUnisolate(table: string): { release: Batch; free: Batch } {
  const t = { family: 'inet', name: table };
  return {
    release: { nftables: [{ delete: { table: t } }] },
    free: { nftables: [{ create: { table: t } }, { delete: { table: t } }] },
  };
}

/** Lists only the host's table names: its answer's metainfo says which nft the host runs. */
export function renderVersionProbe(): Batch {
  return { nftables: [{ list: { tables: null } }] };
}

export function renderList(table: string): Batch {
  return { nftables: [{ list: { table: { family: 'inet', name: table } } }] };
}

/**
 * The systemd unit that re-applies an isolation at boot, before the network comes up: the whole
 * isolate batch travels inside it (StandardInputData, base64) and is piped to `nft -j -f -`, the
 * same single transaction the driver sends. Pure text; the host writes it to a constant path.
 * `post`: an ExecStartPost= command line (the guard's re-arming, see bootGuardExec).
 */
export function renderBootUnit(table: string, batch: Batch, post?: string): string {
  return [
    '# Written by node-red-host-isolation: re-applies the network isolation (nftables table',
    `# inet ${table}) at boot, before the network comes up. unisolate removes it. Do not edit.`,
    '[Unit]',
    `Description=Keep this host network-isolated across reboots (node-red-host-isolation, ${table})`,
    'DefaultDependencies=no',
    'Wants=network-pre.target',
    // after the distribution's own firewall service: Debian's nftables.service loads
    // /etc/nftables.conf, which begins with `flush ruleset` and would remove this table
    'After=nftables.service',
    'Before=network-pre.target shutdown.target',
    'Conflicts=shutdown.target',
    '',
    '[Service]',
    'Type=oneshot',
    'RemainAfterExit=yes',
    `StandardInputData=${Buffer.from(JSON.stringify(batch), 'utf8').toString('base64')}`,
    'ExecStart=nft -j -f -',
    // an enforced isolation: re-arm the host's guard (its files were in /run) from the same batch
    ...(post ? [`ExecStartPost=${post}`] : []),
    '',
    '[Install]',
    'WantedBy=sysinit.target',
    '',
  ].join('\n');
}
