/**
 * One operation on one host over one connection: the only path by which the driver runs a command
 * on a host (a dead, stalled or flooding pooled connection is dropped from the pool there), the
 * operation's time left, and what the connection learned of the host (the management channel, its
 * servers, its capabilities), kept per connection so that a warm action asks nothing again.
 */
import { createHash } from 'crypto';
import {
  IsolationError,
  ManagementUnknownError,
  NftFailedError,
  OutputLimitError,
  ProtectedHostError,
  ServersUnknownError,
  TimeoutError,
  UnreachableError,
  UnsupportedError,
  ValidationError,
} from './errors';
import { parseAddr } from './net';
import type { ProtectionCheck } from './protect';
import type { Exception, PresetName, Servers, Target } from './policy';
import { serverKindsNeeded, type PresetServers } from './presets';
import { renderVersionProbe, type Batch, type ManagementEndpoint } from './ruleset';
import { parseNftVersion } from './state';
import { nftInput, scriptError } from './host/apply';
import { type ApplyHeader } from './host/apply-input';
import { EXIT } from './host/commands';
import { lockWaitS } from './host/guard';
import { DISCOVER_SCRIPT, LOOKUP_SCRIPT, lookupInput, parseDiscovery, parseLookup, SERVER_KINDS, type ServerKind } from './host/servers';
import { connect, neverStarted, nftError, reachSsh, type ConnectionPool, type ExecResult, type OpenStream, type SshConnection } from './transport';
import { CGROUPV2_NEEDS, MAX_PREFLIGHT_OUTPUT, parseCapabilities, preflightInput, type Capabilities } from './host/preflight';
import type { Beliefs } from './claim';
import type { Deadline } from './scheduler';

/** Filled in by a call that changes the host: the nft batch it applied and its sha256 (for audit records). */
export interface ApplyInfo {
  digest?: string;
  /** the JSON text of that batch, as piped to `nft -j -f -` */
  batch?: string;
}

/** What the actions share, owned by the driver. */
export interface DriverContext {
  readonly pool: ConnectionPool;
  readonly protection: ProtectionCheck;
  /** targets that passed the protected-host check (an action that isolates): the bastion's own session is refused for them */
  readonly checked: WeakSet<Target>;
  readonly beliefs: Beliefs;
  readonly learned: Learned;
  readonly now: () => Date;
  /** verify-then-commit: seconds after which the host rolls an unconfirmed isolation back */
  readonly verifyWindowS: number;
  readonly openStream?: OpenStream;
}

export type HostServers = Record<ServerKind, { addrs: string[]; from: string } | { error: string }>;

/** What each connection's host told it, asked once per connection (a failed question is asked again). */
export class Learned {
  private readonly caps = new WeakMap<SshConnection, Promise<Capabilities>>();
  private readonly answered = new WeakMap<SshConnection, Capabilities>();
  private readonly servers = new WeakMap<SshConnection, Promise<HostServers>>();

  capabilities(conn: SshConnection, ask: () => Promise<Capabilities>, again = false): Promise<Capabilities> {
    return once(this.caps, conn, ask, again, (c) => this.answered.set(conn, c));
  }

  /** What the connection's host last answered to the preflight, if it has (without asking). */
  knownCapabilities(conn: SshConnection): Capabilities | undefined {
    return this.answered.get(conn);
  }

  hostServers(conn: SshConnection, ask: () => Promise<HostServers>): Promise<HostServers> {
    return once(this.servers, conn, ask);
  }
}

function once<V>(map: WeakMap<SshConnection, Promise<V>>, conn: SshConnection, ask: () => Promise<V>, again = false, answered?: (v: V) => void): Promise<V> {
  let p = again ? undefined : map.get(conn);
  if (!p) {
    p = ask();
    map.set(conn, p);
    const mine = p;
    p.then(
      (v) => {
        if (map.get(conn) === mine) answered?.(v);
      },
      () => {
        if (map.get(conn) === mine) map.delete(conn);
      },
    );
  }
  return p;
}

export class HostSession {
  private connection?: SshConnection;
  /** holds a pooled connection (released when the operation ends); false for verify's fresh one */
  private pooled = false;

  private constructor(
    readonly ctx: DriverContext,
    readonly target: Target,
    readonly deadline: Deadline,
    readonly info?: ApplyInfo,
  ) {}

  /**
   * Runs `fn` over the target's pooled connection. A warm connection that died while idle (the
   * host cut it, say) is noticed only when a command cannot start on it: then the operation runs
   * once more on a new connection, as nothing reached the host.
   */
  static async run<T>(ctx: DriverContext, target: Target, deadline: Deadline, info: ApplyInfo | undefined, fn: (s: HostSession) => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      const s = new HostSession(ctx, target, deadline, info);
      try {
        await s.open();
        return await fn(s);
      } catch (err) {
        if (attempt > 1 || !neverStarted(err)) throw err;
        ctx.pool.discard(target);
      } finally {
        if (s.pooled) ctx.pool.release(target);
      }
    }
  }

  /**
   * A session of this operation over a new connection of its own (verify-then-commit's proof of a
   * login), closed by `close`. It only proves the login: it asks nothing of the host.
   */
  async fresh(what: string): Promise<HostSession> {
    const s = new HostSession(this.ctx, this.target, this.deadline);
    s.connection = await connect(this.target, this.remaining(what), this.ctx.pool.bastions, this.ctx.openStream, { endpoints: false });
    return s;
  }

  /** Proves that a new TCP connection reaches the host's sshd (through the same bastion), with no login (see reachSsh). */
  reach(what: string): Promise<void> {
    return reachSsh(this.target, this.remaining(what), this.ctx.pool.bastions, this.ctx.openStream);
  }

  close(): void {
    if (!this.pooled) this.connection?.close();
  }

  get conn(): SshConnection {
    if (!this.connection) throw new Error('the session has no connection');
    return this.connection;
  }

  get host(): string {
    return this.target.host;
  }

  /** The ms the operation has left, or TIMEOUT when it has none. */
  remaining(what: string): number {
    return this.deadline.left(what);
  }

  private async open(): Promise<void> {
    const { target } = this;
    const conn = await this.ctx.pool.get(target, this.remaining('SSH connect'));
    this.pooled = true;
    this.connection = conn;
    const jump = target.jump;
    const ep = conn.endpoints;
    if (jump && ep) {
      // the address the hosts behind the bastion see it from is the bastion's too: protected from now on
      this.ctx.protection.sawJump(jump, ep.clientAddr);
      // a host that sees its session come from its own address is the bastion itself (forwarded to itself)
      const self = parseAddr(ep.clientAddr);
      if (this.ctx.checked.has(target) && self && self.text === parseAddr(ep.serverAddr)?.text) {
        throw new ProtectedHostError(target.host, `it is this target's jump host (bastion ${jump.host}): the session through it comes from its own address ${self.text}`);
      }
    }
  }

  /**
   * One command on the host within the operation's time (or `timeoutMs`, for a rollback that may
   * outlast it); a dead or flooded pooled connection is dropped from the pool. The only exec path.
   */
  async exec(cmd: string, stdin: string, what: string, opts: { maxOutput?: number; timeoutMs?: number } = {}): Promise<ExecResult> {
    try {
      return await this.conn.exec(cmd, stdin, opts.timeoutMs ?? this.remaining(what), opts.maxOutput);
    } catch (err) {
      // the connection is dead, or the host flooded it: the next call opens a fresh one
      if (this.pooled && (err instanceof TimeoutError || err instanceof UnreachableError || err instanceof OutputLimitError)) this.ctx.pool.discard(this.target);
      throw err;
    }
  }

  /** One batch, bare or through the apply script (`timer`); the host's lock wait, unless set, fits the time left. */
  nft(batch: Batch, timer?: ApplyHeader): Promise<ExecResult> {
    const header = timer ? this.guardCopies(timer.lockWaitS === undefined ? { ...timer, lockWaitS: lockWaitS(this.deadline.msLeft) } : timer) : timer;
    const { cmd, stdin } = nftInput(this.target, batch, header);
    return this.exec(cmd, stdin, 'remote command');
  }

  /**
   * A host this connection knows runs no systemd can run no guard (the apply script starts one only
   * under systemd): the guard's copies (its `guard` and `rearm` batches, each a whole isolate) are
   * not sent to it. Where that is not known, they are.
   */
  guardCopies(h: ApplyHeader): ApplyHeader {
    const caps = this.connection ? this.ctx.learned.knownCapabilities(this.connection) : undefined;
    if (caps?.systemd.running !== false || (!h.guard && !h.rearm)) return h;
    return { ...h, ...(h.guard ? { guard: null } : {}), ...(h.rearm ? { rearm: null } : {}) };
  }

  /** Applies one batch (with the apply script when `timer` is given); returns what the host printed. */
  async apply(batch: Batch, timer?: ApplyHeader): Promise<string> {
    if (this.info) {
      this.info.batch = JSON.stringify(batch);
      this.info.digest = createHash('sha256').update(this.info.batch).digest('hex');
    }
    const res = await this.nft(batch, timer);
    if (res.code === 0) return res.stdout;
    this.ctx.beliefs.forget(this.target);
    const err = applyError(this.host, res, batch, timer);
    // what the host lacks is said with the nft it runs (one more exec, only on this path)
    if (err instanceof UnsupportedError && err.details.nftVersion === undefined && res.code !== EXIT.NO_SYSTEMD) {
      const version = await this.nftVersion().catch(() => null);
      if (version) throw new UnsupportedError(this.host, err.feature, err.hint, err.stderr, version);
    }
    throw err;
  }

  /** The host's nft version, from the metainfo of a listing of its table names (the constant nft command). */
  private async nftVersion(): Promise<string | null> {
    const res = await this.nft(renderVersionProbe());
    return res.code === 0 ? parseNftVersion(res.stdout) : null;
  }

  /** The management channel as this connection's host sees it (see managementOf). */
  management(force = false): ManagementEndpoint[] {
    return managementOf(this.conn, this.target, force);
  }

  /**
   * What the host can do (host/preflight.ts): the isolate gate, asked in the first isolate of each
   * connection and then known; `full` asks the full check now, and it is what the connection knows next.
   */
  capabilities(mode: 'gate' | 'full' = 'gate'): Promise<Capabilities> {
    return this.ctx.learned.capabilities(this.conn, () => this.askCapabilities(mode), mode === 'full');
  }

  private async askCapabilities(mode: 'gate' | 'full'): Promise<Capabilities> {
    const { cmd, stdin } = preflightInput(this.target, mode);
    const res = await this.exec(cmd, stdin, 'preflight', { maxOutput: MAX_PREFLIGHT_OUTPUT });
    return parseCapabilities(res.stdout, this.target.sudo ? 'sudo' : 'root', mode, this.ctx.now());
  }

}

/**
 * The servers each server preset opens to: the request's, else the target's, else the host's own
 * (read from its configuration and resolved there, once per connection). None found: refused.
 */
export async function presetServers(s: HostSession, presets: readonly PresetName[], given: Servers | undefined): Promise<PresetServers> {
  const out: PresetServers = {};
  for (const kind of serverKindsNeeded(presets)) {
    const named = given?.[kind] ?? s.target.servers?.[kind];
    if (named) {
      out[kind] = { addrs: named, from: 'named by the operator' };
      continue;
    }
    const r = (await s.ctx.learned.hostServers(s.conn, () => discoverServers(s)))[kind];
    if ('error' in r) throw new ServersUnknownError(s.host, kind, r.error);
    out[kind] = r;
  }
  return out;
}

/** Exceptions with a user name get its uid as the host knows it (nft would read some names as keywords); asked every time. */
export async function resolveUsers(s: HostSession, exceptions: readonly Exception[]): Promise<Exception[]> {
  const names = [...new Set(exceptions.flatMap((e) => (typeof e.uid === 'string' ? [e.uid] : [])))];
  if (names.length === 0) return [...exceptions];
  const res = await s.exec(LOOKUP_SCRIPT, lookupInput([], names), 'looking up users');
  const uids = parseLookup(res.stdout).users;
  const missing = names.filter((n) => !uids.has(n));
  if (missing.length > 0) {
    throw new ValidationError(`invalid exceptions: no user ${missing.map((n) => JSON.stringify(n)).join(', ')} on ${s.host}`, [
      { path: 'exceptions.uid', message: `no such user on the host: ${missing.join(', ')}` },
    ]);
  }
  return exceptions.map((e) => (typeof e.uid === 'string' ? { ...e, uid: uids.get(e.uid)!, comment: e.comment ?? `user ${e.uid}` } : e));
}

/** The servers the host is configured with (its files, its resolver), in one or two execs. */
async function discoverServers(s: HostSession): Promise<HostServers> {
  const d = parseDiscovery((await s.exec(DISCOVER_SCRIPT, '', 'reading the host\'s servers')).stdout);
  const names = [...new Set(SERVER_KINDS.flatMap((k) => d.names[k]))];
  const resolved = names.length > 0 ? parseLookup((await s.exec(LOOKUP_SCRIPT, lookupInput(names, []), 'resolving the host\'s servers')).stdout).hosts : new Map<string, string[]>();
  const out = {} as HostServers;
  for (const kind of SERVER_KINDS) {
    const unresolved = d.names[kind].filter((n) => (resolved.get(n) ?? []).length === 0);
    const addrs = [...new Set([...d.addrs[kind], ...d.names[kind].flatMap((n) => resolved.get(n) ?? [])])];
    if (addrs.length > 0) out[kind] = { addrs, from: d.sources[kind].join(', ') || 'the host' };
    else if (unresolved.length > 0) out[kind] = { error: `${unresolved.join(', ')} does not resolve on the host` };
    else if (kind === 'dns' && d.localOnly) out[kind] = { error: 'it resolves through a local stub whose upstream servers are not known' };
    else {
      const hidden = d.unreadable.length > 0 ? `; cannot read ${d.unreadable.join(', ')}` : '';
      out[kind] = { error: `none configured in the files the host has${hidden}` };
    }
  }
  return out;
}

/**
 * The management channel (what the lockout protection keeps): the SSH session as the host sees
 * it (SSH_CONNECTION: our address and the sshd port), plus the target's extra management CIDRs on
 * that port. Without a detected channel the isolation is refused, unless the caller forces it.
 */
export function managementOf(conn: Pick<SshConnection, 'endpoints'>, target: Target, force = false): ManagementEndpoint[] {
  const ep = conn.endpoints;
  const addr = ep ? parseAddr(ep.clientAddr) : null;
  const detected = ep && addr && !addr.text.includes('/') ? [{ addr: addr.text, port: ep.serverPort }] : [];
  if (detected.length === 0 && !force) throw new ManagementUnknownError(target.host);
  const port = ep?.serverPort ?? target.port;
  const extra = target.managementCidrs.map((cidr) => ({ addr: cidr, port }));
  const seen = new Set<string>();
  return [...detected, ...extra].filter((m) => {
    const k = `${m.addr}|${m.port}`;
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}

/**
 * Says so clearly when the host's nft or kernel lacks what a service exception needs: nft
 * refuses `socket cgroupv2` in JSON (1.0.6 and 1.1.3: "Invalid socket key value"), kernels before
 * 5.13 refuse the expression ("Operation not supported").
 */
function unsupportedOr(err: IsolationError, host: string, batch: Batch): IsolationError {
  if (!(err instanceof NftFailedError) || !JSON.stringify(batch).includes('"cgroupv2"')) return err;
  if (/Invalid socket key|socket.*cgroupv2|Operation not supported/i.test(err.stderr)) {
    return new UnsupportedError(host, 'match a systemd unit or cgroup (nft "socket cgroupv2")', CGROUPV2_NEEDS, err.stderr);
  }
  return err;
}

/** The typed error for a failed apply exec: the script's own exit codes first, then nft's. */
export function applyError(host: string, res: ExecResult, batch: Batch, timer?: ApplyHeader): IsolationError {
  const own = timer ? scriptError(host, res.code, res.stderr) : null;
  if (own) return own;
  const err = unsupportedOr(nftError(host, res), host, batch);
  // a user name that nft reads as a keyword ("tcp") or that does not exist: the request was wrong
  if (err instanceof NftFailedError && /User does not exist|expected user ID/.test(err.stderr)) {
    return new ValidationError(`invalid exceptions: a uid names no user on ${host}`, [{ path: 'exceptions.uid', message: 'no such user on the host' }]);
  }
  return err;
}
