/**
 * `nft -j list table inet NAME` output -> the isolation state. Pure and zod-parsed: nft's JSON is
 * data from the host, checked like any other input before we believe it.
 */
import { z } from 'zod';
import { caseSchema, exceptionListSchema, requestedBySchema, type Case, type Exception } from './policy';
import { STATE_CHAIN, STATE_PREFIX, type ManagementEndpoint, type StateDoc } from './ruleset';

/**
 * The most observed flows a state read returns: the ones with the most packets, picked on the host
 * (host/status.ts's STATE_FILTER); how many more the host recorded is `observedOmitted`. 200 flows are
 * about 16 KiB of answer, and more than an operator turns into exceptions by hand.
 */
export const OBSERVED_TOP = 200;

export interface Counter {
  packets: number;
  bytes: number;
}

/** A flow audit mode saw that enforce would have dropped. */
export interface ObservedFlow {
  direction: 'in' | 'out';
  proto: string;
  addr: string;
  port: number | null;
  packets: number;
  bytes: number;
}

/**
 * Where a host stands: `isolated` (the table is in, enforce mode: traffic is dropped), `audit` (the
 * table is in, audit mode: nothing is dropped, would-be drops are recorded) or `free` (no table).
 */
export type IsolationState = 'isolated' | 'audit' | 'free';

export interface HostState {
  host: string;
  /** true only when traffic is actually dropped: `state === 'isolated'` (never in audit mode) */
  isolated: boolean;
  state: IsolationState;
  mode: 'enforce' | 'audit' | null;
  since: string | null;
  expiresAt: string | null;
  reason: string | null;
  /**
   * the case the isolation belongs to and who asked for it, as recorded on the host with it (null:
   * none given). Informational: root on the host can rewrite the record; the controller's audit
   * record of the request is the authority
   */
  case: Case | null;
  requestedBy: string | null;
  exceptions: Exception[];
  management: ManagementEndpoint[];
  /** what reached the drop policy since isolation (in audit mode: what enforce would have dropped) */
  dropped: { in: Counter; out: Counter; forward: Counter } | null;
  /**
   * audit mode (status): flows enforce would drop, most packets first, at most OBSERVED_TOP (200);
   * empty otherwise
   */
  observed: ObservedFlow[];
  /** status, audit mode: how many more flows the host recorded than `observed` holds (the ones with fewer packets) */
  observedOmitted: number;
  /**
   * status, audit mode: the host's record of observed flows is full (its sets are capped), so flows
   * new since then are not recorded until recorded ones expire (7 days without a packet)
   */
  observedFull: boolean;
  /** re-applied at boot by a systemd unit on the host until unisolated */
  persist: boolean;
  /**
   * status: what was changed behind the pack's back (a rule, a policy, set elements, or the whole
   * table removed while this controller had it isolated); isolate: what it found edited in place
   * under the same generation, and re-applied (then `changed` is true); empty when nothing was
   */
  tampered: string[];
  /**
   * isolate (and a change that narrows the exceptions): how many open connections the host cut
   * once the rules were in; null when nothing was asked to be cut or the host could not (see
   * `warnings`)
   */
  severed: number | null;
  /**
   * isolate with a probe: the host tried to reach the probe address once the isolation was in,
   * and could not (`reached` is always false here: a reached probe is a PROBE_REACHED error);
   * `outcome` how the connect ended (`timeout`, or `failed` with `detail`), `ms` how long the try
   * took as the controller measured it. Absent without a probe
   */
  probe?: { addr: string; port: number; proto: 'tcp'; reached: false; outcome: 'timeout' | 'failed'; detail?: string; ms: number };
  /** what the action could not fully do, said plainly (e.g. connections left open); empty when all went as asked */
  warnings: string[];
  /**
   * isolate, a change and status: whether a guard on the host keeps this isolation, re-applying it
   * within about a second when something removes or changes its table (systemd hosts, enforce
   * mode); false where there is none (no systemd, audit mode, no right to start it, or it gave up)
   */
  guard: boolean;
  /**
   * status: how often the host's guard re-applied the isolation since the host was last free, and
   * when it last did (ISO time, null: never); null when no guard is armed
   */
  healed: { count: number; last: string | null } | null;
  /**
   * status: since when (ISO) the host's guard has been stalled, its lock held by another process
   * so that it heals nothing (then `guard` is false and `warnings` says so); absent otherwise
   */
  guardStalledSince?: string;
  /**
   * status, a host with the pack's table (isolated or audit): the one command root at the host's
   * console runs to release it without the controller (guard, timers, boot unit, then the table:
   * src/driver/host/local-release.ts, docs/operations.md); absent otherwise
   */
  localRelease?: string;
  /**
   * whether this action changed the host: isolate (isolated now, or a different isolation, versus
   * already isolated exactly so), unisolate (released versus was not isolated), exception-set and
   * a mode switch (something differed); false for status
   */
  changed: boolean;
}

export interface ParsedTable {
  doc: StateDoc;
  gen: number;
  dropped: NonNullable<HostState['dropped']>;
  observed: ObservedFlow[];
  /** flows recorded on the host beyond `observed` (absent: none) */
  observedOmitted?: number;
  /** the dynamic sets that are full (their caps reached), with their fill (absent: none known) */
  fullSets?: DynamicSetFill[];
  /** the raw listing items, for tamper detection (absent when built from a write) */
  listing?: Record<string, unknown>[];
}

export class StateParseError extends Error {}

const listingSchema = z.object({
  nftables: z.array(z.record(z.string(), z.unknown())),
});

const setSchema = z.object({ name: z.string(), table: z.string(), elem: z.array(z.unknown()).optional() });
const ruleSchema = z.object({ chain: z.string(), table: z.string(), handle: z.number(), comment: z.string().optional() });
const observedElemSchema = z.object({
  elem: z.object({
    val: z.object({ concat: z.array(z.union([z.string(), z.number()])).min(2).max(3) }),
    counter: z.object({ packets: z.number(), bytes: z.number() }).optional(),
  }),
});
const counterSchema = z.object({ name: z.string(), table: z.string(), packets: z.number(), bytes: z.number() });

const isoDate = z.string().refine((s) => !Number.isNaN(Date.parse(s)), 'not a date');
const docSchema = z.object({
  v: z.literal(1),
  since: isoDate,
  // what isolate accepts (1024 characters); a longer one was not written by the pack
  reason: z.string().max(1024).nullable(),
  // what isolate accepts; anything else was not written by the pack
  case: caseSchema.optional(),
  requestedBy: requestedBySchema.optional(),
  mode: z.enum(['enforce', 'audit']),
  expiresAt: isoDate.nullable(),
  management: z.array(z.object({ addr: z.string(), port: z.number().int().min(1).max(65535) })).max(128),
  exceptions: exceptionListSchema,
  persist: z.boolean().optional(),
});

/** Decodes the record spread over the `state` chain's rule comments. */
export function decodeState(comments: string[]): StateDoc {
  const parts = comments
    .filter((c) => c.startsWith(STATE_PREFIX))
    .map((c) => {
      const m = /^(\d+)\/(\d+):([A-Za-z0-9_-]*)$/.exec(c.slice(STATE_PREFIX.length));
      if (!m) throw new StateParseError(`malformed state comment ${JSON.stringify(c.slice(0, 40))}`);
      return { i: Number(m[1]), n: Number(m[2]), data: m[3] };
    });
  if (parts.length === 0) throw new StateParseError('the table carries no isolation record');
  const n = parts[0].n;
  parts.sort((a, b) => a.i - b.i);
  if (parts.length !== n || parts.some((p, i) => p.i !== i || p.n !== n)) {
    throw new StateParseError('isolation record is incomplete');
  }
  let raw: unknown;
  try {
    raw = JSON.parse(Buffer.from(parts.map((p) => p.data).join(''), 'base64url').toString('utf8'));
  } catch {
    throw new StateParseError('isolation record is not valid JSON');
  }
  const r = docSchema.safeParse(raw);
  if (!r.success) throw new StateParseError(`isolation record invalid: ${r.error.issues[0]?.message}`);
  return r.data as StateDoc;
}

/** The nft version a host's JSON answer names in its metainfo (`1.0.6`), or null. */
export function parseNftVersion(json: string): string | null {
  try {
    const items = (JSON.parse(json) as { nftables?: unknown[] }).nftables ?? [];
    for (const it of items) {
      const v = (it as { metainfo?: { version?: unknown } })?.metainfo?.version;
      if (typeof v === 'string' && /^\d+(\.\d+){1,3}$/.test(v)) return v;
    }
  } catch {
    /* not JSON */
  }
  return null;
}

/** A listed protocol: a name where the host has /etc/protocols, its number where not (minimal hosts). */
export function protoName(p: string | number): string {
  const n = typeof p === 'number' ? p : /^\d+$/.test(p) ? Number(p) : null;
  if (n === 1 || n === 58 || p === 'ipv6-icmp') return 'icmp';
  if (n === 6) return 'tcp';
  if (n === 17) return 'udp';
  return String(p);
}

/** Parses the JSON of `list table`; throws StateParseError when it is not our table. */
export function parseTable(json: string, table: string): ParsedTable {
  let raw: unknown;
  try {
    raw = JSON.parse(json);
  } catch {
    throw new StateParseError('nft output is not JSON');
  }
  const listing = listingSchema.safeParse(raw);
  if (!listing.success) throw new StateParseError('nft output lacks the nftables array');

  const comments: { handle: number; comment: string }[] = [];
  let gen: number | undefined;
  const counters: Record<string, Counter> = {};
  const observed: ObservedFlow[] = [];
  let sawTable = false;
  for (const item of listing.data.nftables) {
    if ('table' in item) {
      const t = z.object({ name: z.string(), family: z.string() }).safeParse(item.table);
      if (t.success && t.data.name === table && t.data.family === 'inet') sawTable = true;
    } else if ('rule' in item) {
      const r = ruleSchema.safeParse(item.rule);
      if (r.success && r.data.table === table && r.data.chain === STATE_CHAIN && r.data.comment !== undefined) {
        comments.push({ handle: r.data.handle, comment: r.data.comment });
      }
    } else if ('set' in item) {
      const s = setSchema.safeParse(item.set);
      const obs = s.success && s.data.table === table ? /^obs_(in|out)[46](_other)?$/.exec(s.data.name) : null;
      if (obs) {
        for (const e of s.data!.elem ?? []) {
          const el = observedElemSchema.safeParse(e);
          if (!el.success) continue;
          const [addr, proto, port] = el.data.elem.val.concat;
          observed.push({
            direction: obs[1] as 'in' | 'out',
            proto: protoName(proto),
            addr: String(addr),
            port: typeof port === 'number' ? port : port === undefined ? null : Number(port),
            packets: el.data.elem.counter?.packets ?? 0,
            bytes: el.data.elem.counter?.bytes ?? 0,
          });
        }
      } else if (s.success && s.data.table === table && s.data.name === 'gen') {
        const g = z.array(z.number().int().nonnegative()).length(1).safeParse(s.data.elem);
        if (!g.success) throw new StateParseError('generation set is damaged');
        gen = g.data[0];
      }
    } else if ('counter' in item) {
      const c = counterSchema.safeParse(item.counter);
      if (c.success && c.data.table === table) counters[c.data.name] = { packets: c.data.packets, bytes: c.data.bytes };
    }
  }
  if (!sawTable) throw new StateParseError(`table inet ${table} missing from the listing`);
  const doc = decodeState(comments.sort((a, b) => a.handle - b.handle).map((c) => c.comment));
  if (gen === undefined) throw new StateParseError('generation set is missing');
  const zero = { packets: 0, bytes: 0 };
  return {
    doc,
    gen,
    dropped: { in: counters.drop_in ?? zero, out: counters.drop_out ?? zero, forward: counters.drop_fwd ?? zero },
    // nft's whole answer (a host without the read's filter): the same bound as the filter's
    observed: observed.sort(byPackets).slice(0, OBSERVED_TOP),
    observedOmitted: Math.max(0, observed.length - OBSERVED_TOP),
    listing: listing.data.nftables,
  };
}

export const byPackets = (a: ObservedFlow, b: ObservedFlow) => b.packets - a.packets || b.bytes - a.bytes;

/** How full one of the table's dynamic sets is (the state read's `nrhi-dynset` line). */
export interface DynamicSetFill {
  name: string;
  count: number;
  /** its cap (0: none said) */
  size: number;
}

/** What the state read's filter said beside the listing (host/status.ts, splitStateRead): the dynamic sets' fill and the top observed flows. */
export interface StateReadExtras {
  sets: DynamicSetFill[];
  flows: ObservedFlow[];
}

/** The parsed table with what the filter said: its top flows, how many it left out, which sets are full. */
export function withStateRead(parsed: ParsedTable, extras: StateReadExtras | null): ParsedTable {
  if (!extras) return parsed;
  const recorded = extras.sets.filter((s) => s.name.startsWith('obs_')).reduce((n, s) => n + s.count, 0);
  return {
    ...parsed,
    observed: extras.flows,
    observedOmitted: Math.max(0, recorded - extras.flows.length),
    fullSets: extras.sets.filter((s) => s.size > 0 && s.count >= s.size),
  };
}

export function notIsolated(host: string): HostState {
  return {
    host,
    isolated: false,
    state: 'free',
    mode: null,
    since: null,
    expiresAt: null,
    reason: null,
    case: null,
    requestedBy: null,
    exceptions: [],
    management: [],
    dropped: null,
    observed: [],
    observedOmitted: 0,
    observedFull: false,
    persist: false,
    tampered: [],
    severed: null,
    warnings: [],
    guard: false,
    healed: null,
    changed: false,
  };
}

export function toHostState(host: string, parsed: ParsedTable): HostState {
  const { doc } = parsed;
  const observedFull = (parsed.fullSets ?? []).filter((s) => s.name.startsWith('obs_'));
  // audit mode accepts what an owner rule could not record: only enforce drops those flows
  const ownerFull = doc.mode === 'enforce' ? (parsed.fullSets ?? []).filter((s) => s.name.startsWith('owner')) : [];
  const state: IsolationState = doc.mode === 'enforce' ? 'isolated' : 'audit';
  return {
    host,
    isolated: state === 'isolated',
    state,
    mode: doc.mode,
    since: doc.since,
    expiresAt: doc.expiresAt,
    reason: doc.reason,
    case: doc.case ?? null,
    requestedBy: doc.requestedBy ?? null,
    exceptions: doc.exceptions,
    management: doc.management,
    dropped: parsed.dropped,
    observed: parsed.observed,
    observedOmitted: parsed.observedOmitted ?? 0,
    observedFull: observedFull.length > 0,
    persist: doc.persist === true,
    tampered: [],
    severed: null,
    warnings: fullWarnings(observedFull, ownerFull),
    guard: false,
    healed: null,
    changed: false,
  };
}

function fullWarnings(observed: DynamicSetFill[], owner: DynamicSetFill[]): string[] {
  const list = (sets: DynamicSetFill[]) => sets.map((s) => `${s.name}: ${s.count}`).join(', ');
  const out: string[] = [];
  if (observed.length > 0) {
    out.push(`the record of observed flows is full (${list(observed)}): flows new since then are not recorded until recorded ones expire (7 days without a packet)`);
  }
  if (owner.length > 0) {
    out.push(
      `the record of flows opened by service/user exceptions is full (${list(owner)}): new flows of those services and users are dropped until recorded ones expire (1 hour without a packet)`,
    );
  }
  return out;
}
