/**
 * Hosts that must never be isolated: the target's `protectedHosts` (names, addresses, CIDRs), its
 * jump host (by its name, by every address that name resolves to, and by the address the hosts
 * behind it see it from) and, without being listed, the controller itself (its interface
 * addresses, loopback, its hostname). Checked before any connection.
 *
 * Protected names are resolved when the flow starts (`prepare`) or at their first use, and their
 * last good addresses are KEPT: refreshed in the background every minute, a refresh that fails
 * (a DNS outage during an incident) keeps them. A name that has never resolved protects nothing
 * that is known, so every isolation through its target is refused (PROTECTED_UNRESOLVED) until it
 * does: an unresolvable protected name never lets an isolation through.
 *
 * The alert's host name is resolved once, here; `assert` returns the address it checked, and the
 * connection goes to that address (a name that rebinds between two lookups cannot reach another
 * host). Names are resolved by the controller, never by a bastion: a protected host whose name
 * only resolves behind the bastion (split horizon) must be listed by address or CIDR.
 */
import { lookup } from 'dns/promises';
import * as os from 'os';
import { ProtectedHostError, ProtectedUnresolvedError, TimeoutError, UnreachableError } from './errors';
import { parseAddr, type ParsedAddr } from './net';

/** Resolves a name to its addresses (as the system resolver does for the SSH connection). */
export type Resolver = (name: string) => Promise<string[]>;

export const systemResolver: Resolver = async (name) => (await lookup(name, { all: true, verbatim: true })).map((a) => a.address);

/** Most time one name may take to resolve before the request is refused (ms). */
export const MAX_RESOLVE_MS = 5000;
/** How often the kept addresses of protected names are resolved again (ms). */
export const PROTECT_REFRESH_MS = 60_000;
/** A name that never resolved is tried again at an isolation at most this often (else: refused at once). */
const RETRY_UNRESOLVED_MS = 5000;
/** A name no deployed target holds and no isolation asked about for this long is forgotten. */
const IDLE_NAME_MS = 60 * 60_000;
/** Most names kept; beyond it, the least recently used one that no target holds is forgotten. */
const MAX_NAMES = 4096;
/** Most names resolved at once by a refresh. */
const REFRESH_PARALLEL = 8;
const OWN_TTL_MS = 5000;

interface Own {
  at: number;
  addrs: Rule[];
  names: Set<string>;
}

interface Rule {
  addr: ParsedAddr;
  why: string;
}

/** One protected name: its last good addresses (null: never resolved), why the last lookup failed. */
interface NameEntry {
  addrs: ParsedAddr[] | null;
  why: string;
  /** when it was last looked up (started) */
  at: number;
  /** when a target or an isolation last asked about it */
  used: number;
  /** deployed targets that hold it (prepare without release) */
  holders: number;
  pending?: Promise<void>;
}

/** The jump host as the check needs it. */
export interface JumpRef {
  host: string;
  port: number;
}

export interface ProtectionOptions {
  /** how often kept protected names are resolved again (ms, default 60 s) */
  refreshMs?: number;
}

/**
 * The protected names a deployed target holds, resolved when its flow starts and kept: looked up
 * again every `refreshMs` (a few at a time), a failed lookup keeping the last good addresses, a
 * name nobody holds or asked about for an hour forgotten. What ProtectionCheck checks against.
 */
class KeptNames {
  private readonly names = new Map<string, NameEntry>();
  private timer: NodeJS.Timeout | undefined;
  private refreshing = false;

  constructor(
    private readonly resolve: Resolver,
    private readonly refreshMs: number,
  ) {}

  /** Why a name is not resolved, as last seen. */
  why(name: string): string | undefined {
    return this.names.get(name)?.why;
  }

  /**
   * Resolves the protected names now (each bounded) and keeps them, refreshed, until `release`.
   * Returns the names that have never resolved (with why): their target refuses every isolation.
   */
  async prepare(names: readonly string[], timeoutMs = MAX_RESOLVE_MS): Promise<{ name: string; why: string }[]> {
    const list = [...new Set(names.filter((n) => parseAddr(n) === null).map((n) => n.toLowerCase()))];
    for (const n of list) this.entry(n).holders++;
    await Promise.all(list.map((n) => this.lookupName(this.entry(n), n, Math.min(timeoutMs, MAX_RESOLVE_MS))));
    return list.flatMap((n) => {
      const e = this.names.get(n);
      return e && e.addrs === null ? [{ name: n, why: e.why }] : [];
    });
  }
  /** The names of a target that is gone (its config node closed): kept a while, no longer held. */
  release(names: readonly string[]): void {
    for (const n of new Set(names.map((s) => s.toLowerCase()))) {
      const e = this.names.get(n);
      if (e && e.holders > 0) e.holders--;
    }
  }
  /** The kept addresses of a protected name (null: never resolved; undefined: not kept). */
  kept(name: string): string[] | null | undefined {
    const e = this.names.get(name.toLowerCase());
    return e ? (e.addrs?.map((a) => a.text) ?? null) : undefined;
  }
  /** Stops the background refresh (it starts again at the next use). */
  close(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }
  /** The kept addresses of a protected name; looked up now when it is new, or never resolved and not tried lately. */
  async addrsOf(name: string, ms: number): Promise<ParsedAddr[] | null> {
    const e = this.entry(name);
    e.used = Date.now();
    if (e.addrs === null && (e.pending || Date.now() - e.at >= RETRY_UNRESOLVED_MS)) await this.lookupName(e, name, ms);
    return e.addrs;
  }
  private entry(name: string): NameEntry {
    let e = this.names.get(name);
    if (!e) {
      e = { addrs: null, why: 'not resolved yet', at: 0, used: Date.now(), holders: 0 };
      this.names.set(name, e);
      if (this.names.size > MAX_NAMES) {
        for (const [n, old] of this.names) {
          if (old.holders === 0 && old !== e) {
            this.names.delete(n);
            break;
          }
        }
      }
    }
    if (!this.timer) {
      this.timer = setInterval(() => void this.refresh(), this.refreshMs);
      this.timer.unref();
    }
    return e;
  }
  /** Looks the name up (one lookup at a time per name, waited for at most `ms`); a failure keeps the last good addresses. */
  private lookupName(e: NameEntry, name: string, ms: number): Promise<void> {
    if (!e.pending) {
      e.at = Date.now();
      const p = bounded(this.resolve(name), MAX_RESOLVE_MS, name).then(
        (list) => {
          const addrs = list.flatMap((a) => parseAddr(a) ?? []);
          if (addrs.length > 0) e.addrs = addrs;
          else e.why = 'it resolves to no address';
        },
        (err: unknown) => {
          e.why = err instanceof TimeoutError ? `no answer within ${MAX_RESOLVE_MS} ms` : String((err as Error).message).replace(/^.*? unreachable: /, '');
        },
      );
      e.pending = p.finally(() => {
        e.pending = undefined;
      });
    }
    let timer: NodeJS.Timeout | undefined;
    return Promise.race([e.pending, new Promise<void>((r) => (timer = setTimeout(r, ms)))]).finally(() => clearTimeout(timer));
  }
  /** Every kept name again (a few at a time); names nobody holds or asked about for an hour are forgotten. */
  private async refresh(): Promise<void> {
    if (this.refreshing) return;
    this.refreshing = true;
    try {
      const now = Date.now();
      const todo: [string, NameEntry][] = [];
      for (const [n, e] of this.names) {
        if (e.holders === 0 && now - e.used > IDLE_NAME_MS) this.names.delete(n);
        else todo.push([n, e]);
      }
      if (this.names.size === 0) this.close();
      for (let i = 0; i < todo.length; i += REFRESH_PARALLEL) {
        await Promise.all(todo.slice(i, i + REFRESH_PARALLEL).map(([n, e]) => this.lookupName(e, n, MAX_RESOLVE_MS)));
      }
    } finally {
      this.refreshing = false;
    }
  }
}

export class ProtectionCheck {
  private own: Own | null = null;
  private readonly names: KeptNames;
  /** the addresses each jump host was seen from by the hosts behind it (their SSH_CONNECTION) */
  private readonly jumpSeen = new Map<string, Set<string>>();

  constructor(
    private readonly resolve: Resolver = systemResolver,
    private readonly interfaces: () => NodeJS.Dict<os.NetworkInterfaceInfo[]> = os.networkInterfaces,
    private readonly hostname: () => string = os.hostname,
    opts: ProtectionOptions = {},
  ) {
    this.names = new KeptNames(resolve, Math.max(10, opts.refreshMs ?? PROTECT_REFRESH_MS));
  }




  /**
   * Resolves the protected names now (each bounded) and keeps them, refreshed, until `release`.
   * Returns the names that have never resolved (with why): their target refuses every isolation.
   */
  prepare(names: readonly string[], timeoutMs = MAX_RESOLVE_MS): Promise<{ name: string; why: string }[]> {
    return this.names.prepare(names, timeoutMs);
  }

  /** The names of a target that is gone (its config node closed): kept a while, no longer held. */
  release(names: readonly string[]): void {
    this.names.release(names);
  }

  /** The kept addresses of a protected name (null: never resolved; undefined: not kept). */
  kept(name: string): string[] | null | undefined {
    return this.names.kept(name);
  }

  /** Stops the background refresh (it starts again at the next use). */
  close(): void {
    this.names.close();
  }

  /** A host behind `jump` saw the connection come from `addr`: that is an address of the jump host too. */
  sawJump(jump: JumpRef, addr: string): void {
    const p = parseAddr(addr);
    if (!p || p.text.includes('/')) return;
    const key = jumpKey(jump);
    let seen = this.jumpSeen.get(key);
    if (!seen) {
      seen = new Set();
      this.jumpSeen.set(key, seen);
      if (this.jumpSeen.size > 1024) this.jumpSeen.delete(this.jumpSeen.keys().next().value!);
    }
    if (seen.size < 16) seen.add(p.text);
  }

  /**
   * Throws PROTECTED_HOST when `host` (a canonical address or lower-case name) is protected, by
   * name or by any address it resolves to; PROTECTED_UNRESOLVED when a protected name (or the
   * jump host's name) has never resolved; UNREACHABLE or TIMEOUT when `host` does not resolve.
   * Returns the address that was checked: the one to connect to.
   */
  async assert(host: string, protectedHosts: readonly string[], timeoutMs: number, jump?: JumpRef): Promise<string> {
    const own = this.ownNow();
    const ip = parseAddr(host);
    const ms = Math.min(timeoutMs, MAX_RESOLVE_MS);
    const jumpWhy = jump ? `it is this target's jump host (bastion ${jump.host})` : '';
    const listed: { name: string; why: string; role: 'protected host' | 'jump host' }[] = [];
    const rules: Rule[] = [...own.addrs];
    for (const p of protectedHosts) {
      const a = parseAddr(p);
      if (a) rules.push({ addr: a, why: `listed in protectedHosts as ${a.text}` });
      else listed.push({ name: p.toLowerCase(), why: `listed in protectedHosts as ${p.toLowerCase()}`, role: 'protected host' });
    }
    if (jump) {
      const a = parseAddr(jump.host);
      if (a) rules.push({ addr: a, why: jumpWhy });
      else listed.push({ name: jump.host.toLowerCase(), why: jumpWhy, role: 'jump host' });
      for (const s of this.jumpSeen.get(jumpKey(jump)) ?? []) rules.push({ addr: parseAddr(s)!, why: `${jumpWhy}, as the hosts behind it see it` });
    }
    if (!ip) {
      if (own.names.has(host) || host.endsWith('.localhost')) throw new ProtectedHostError(host, 'it names the controller itself');
      const hit = listed.find((l) => l.name === host);
      if (hit) throw new ProtectedHostError(host, hit.why);
    }
    // the alert's name (resolved once, here) and the kept addresses of the protected names, in parallel
    const resolving = ip ? Promise.resolve([ip]) : bounded(this.resolve(host), ms, host).then((list) => list.flatMap((a) => parseAddr(a) ?? []));
    resolving.catch(() => undefined); // answered below, after the protected names
    const named = await Promise.all(listed.map((l) => this.names.addrsOf(l.name, ms).then((a) => ({ ...l, addrs: a }))));
    // fail closed: what a name that never resolved protects is not known (this comes first: it is the target's problem)
    const unknown = named.find((n) => n.addrs === null);
    if (unknown) throw new ProtectedUnresolvedError(unknown.name, unknown.role, this.names.why(unknown.name) ?? 'not resolved');
    const addrs = await resolving;
    for (const n of named) for (const a of n.addrs!) rules.push({ addr: a, why: `${n.why} (${a.text})` });
    if (!ip && addrs.length === 0) throw new UnreachableError(host, 'the name resolves to no address');
    for (const a of addrs) {
      const hit = rules.find((r) => r.addr.family === a.family && a.interval[0] >= r.addr.interval[0] && a.interval[1] <= r.addr.interval[1]);
      if (hit) throw new ProtectedHostError(host, ip ? hit.why : `it resolves to ${a.text}, ${hit.why}`);
    }
    return addrs[0].text;
  }

  /** The address `host` resolves to now (bounded), itself for an address; undefined when a name does not resolve. */
  async address(host: string, timeoutMs: number): Promise<string | undefined> {
    const ip = parseAddr(host);
    if (ip) return ip.text;
    const list = await bounded(this.resolve(host), Math.min(timeoutMs, MAX_RESOLVE_MS), host).catch(() => [] as string[]);
    return list.flatMap((a) => parseAddr(a) ?? [])[0]?.text;
  }






  /** The controller's own addresses and names, read again every few seconds. */
  private ownNow(): Own {
    const now = Date.now();
    if (this.own && now - this.own.at < OWN_TTL_MS) return this.own;
    const why = 'it is one of the controller\'s own addresses';
    const addrs: Own['addrs'] = ['127.0.0.0/8', '::1', '0.0.0.0', '::'].map((a) => ({ addr: parseAddr(a)!, why: 'it is the controller itself (loopback)' }));
    for (const list of Object.values(this.interfaces())) {
      for (const i of list ?? []) {
        const p = parseAddr(i.address.split('%')[0]);
        if (p) addrs.push({ addr: p, why });
      }
    }
    const host = this.hostname().toLowerCase();
    const names = new Set(['localhost', 'localhost.localdomain', 'ip6-localhost', host, host.split('.')[0]]);
    this.own = { at: now, addrs, names };
    return this.own;
  }
}

function jumpKey(j: JumpRef): string {
  return `${j.host.toLowerCase()}:${j.port}`;
}

function bounded<T>(p: Promise<T>, ms: number, host: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new TimeoutError(host, 'resolving the name', ms)), ms);
  });
  return Promise.race([
    p.catch((err: unknown) => {
      if (err instanceof TimeoutError) throw err;
      const code = (err as { code?: string }).code;
      throw new UnreachableError(host, `the name does not resolve${code ? ` (${code})` : ''}`);
    }),
    timeout,
  ]).finally(() => clearTimeout(timer));
}
