/**
 * Hosts that must never be isolated: the target's `protectedHosts` (names, addresses, CIDRs) and,
 * without being listed, the controller itself (its interface addresses, loopback, its hostname).
 * Checked before any connection; a name is resolved here (bounded in time) so that an alert that
 * names a protected host by another name is refused too.
 */
import { lookup } from 'dns/promises';
import * as os from 'os';
import { ProtectedHostError, TimeoutError, UnreachableError } from './errors';
import { parseAddr, type ParsedAddr } from './net';

/** Resolves a name to its addresses (as the system resolver does for the SSH connection). */
export type Resolver = (name: string) => Promise<string[]>;

export const systemResolver: Resolver = async (name) => (await lookup(name, { all: true, verbatim: true })).map((a) => a.address);

/** Most time one name may take to resolve before the request is refused (ms). */
export const MAX_RESOLVE_MS = 5000;
const OWN_TTL_MS = 5000;
const NAME_TTL_MS = 60_000;

interface Own {
  at: number;
  addrs: { addr: ParsedAddr; why: string }[];
  names: Set<string>;
}

export class ProtectionCheck {
  private own: Own | null = null;
  /** addresses of the protected names, for a short while (a failed lookup is kept as none) */
  private readonly names = new Map<string, { at: number; addrs: Promise<string[]> }>();

  constructor(
    private readonly resolve: Resolver = systemResolver,
    private readonly interfaces: () => NodeJS.Dict<os.NetworkInterfaceInfo[]> = os.networkInterfaces,
    private readonly hostname: () => string = os.hostname,
  ) {}

  /**
   * Throws PROTECTED_HOST when `host` (a canonical address or lower-case name) is protected, by
   * name or by any address it resolves to; UNREACHABLE or TIMEOUT when a name does not resolve.
   */
  async assert(host: string, protectedHosts: readonly string[], timeoutMs: number): Promise<void> {
    const own = this.ownNow();
    const ip = parseAddr(host);
    const listedNames = protectedHosts.filter((p) => parseAddr(p) === null).map((p) => p.toLowerCase());
    const listedAddrs = protectedHosts.flatMap((p) => {
      const a = parseAddr(p);
      return a ? [{ addr: a, why: `listed in protectedHosts as ${a.text}` }] : [];
    });
    if (!ip) {
      if (own.names.has(host) || host.endsWith('.localhost')) throw new ProtectedHostError(host, 'it names the controller itself');
      if (listedNames.includes(host)) throw new ProtectedHostError(host, `listed in protectedHosts as ${host}`);
    }
    const ms = Math.min(timeoutMs, MAX_RESOLVE_MS);
    const addrs = ip ? [ip] : (await bounded(this.resolve(host), ms, host)).flatMap((a) => parseAddr(a) ?? []);
    if (!ip && addrs.length === 0) throw new UnreachableError(host, 'the name resolves to no address');
    // protected names count by their addresses too (resolved in parallel, each bounded; a name
    // that does not resolve protects by name only)
    const named = await Promise.all(
      listedNames.map(async (n) => {
        const list = await bounded(this.namedAddrs(n), ms, n).catch(() => [] as string[]);
        return list.flatMap((a) => {
          const p = parseAddr(a);
          return p ? [{ addr: p, why: `listed in protectedHosts as ${n} (${p.text})` }] : [];
        });
      }),
    );
    const rules = [...own.addrs, ...listedAddrs, ...named.flat()];
    for (const a of addrs) {
      const hit = rules.find((r) => r.addr.family === a.family && a.interval[0] >= r.addr.interval[0] && a.interval[1] <= r.addr.interval[1]);
      if (hit) throw new ProtectedHostError(host, ip ? hit.why : `it resolves to ${a.text}, ${hit.why}`);
    }
  }

  private namedAddrs(name: string): Promise<string[]> {
    const now = Date.now();
    const c = this.names.get(name);
    if (c && now - c.at < NAME_TTL_MS) return c.addrs;
    const addrs = this.resolve(name);
    addrs.catch(() => this.names.delete(name));
    this.names.set(name, { at: now, addrs });
    if (this.names.size > 4096) this.names.delete(this.names.keys().next().value!);
    return addrs;
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
