/**
 * isolate / unisolate / status / setExceptions / setMode: the public API, a thin facade. Each call
 * validates once at the edge, refuses a protected host, gets its turn from the scheduler (one
 * host's operations one after another) and runs one action (actions/) over one host session
 * (session.ts: the connection, its only exec path, what it learned of the host), whose changes
 * follow one claim rule (claim.ts).
 */
import { ProtectedUnresolvedError } from './errors';
import { parseAddr } from './net';
import { ProtectionCheck, type Resolver } from './protect';
import {
  exceptionListSchema,
  exceptionOpSchema,
  isolateRequestSchema,
  unisolateRequestSchema,
  modeSchema,
  targetSchema,
  validate,
  type ExceptionOp,
  type IsolateRequestInput,
  type UnisolateRequestInput,
  type Mode,
  type Target,
  type TargetInput,
} from './policy';
import type { HostState } from './state';
import { ConnectionPool, type OpenStream, type SshConnection } from './transport';
import type { Capabilities } from './host/preflight';
import { Beliefs } from './claim';
import { Scheduler } from './scheduler';
import { HostSession, Learned, type ApplyInfo, type DriverContext } from './session';
import { assertRenderable } from './actions/common';
import { isolate } from './actions/isolate';
import { unisolate } from './actions/unisolate';
import { setExceptions } from './actions/exceptions';
import { setMode } from './actions/mode';
import { status } from './actions/status';

export { nftInput } from './host/apply';
export { type ApplyHeader } from './host/apply-input';
export type { Capabilities } from './host/preflight';
export { MAX_RACE_ATTEMPTS } from './claim';
export { managementOf, type ApplyInfo } from './session';
export { nextExceptions } from './actions/exceptions';
export { RELEASE_NOTICE } from './actions/isolate';

export interface DriverOptions {
  /** how long an unused connection stays open (ms, default 60 s) */
  idleMs?: number;
  /**
   * most connections kept open at once; beyond it the least recently used idle one closes (default
   * 1000, as many hosts as one msg.hosts names). Bastion connections are counted apart, under the
   * same bound, and live only while a host connection uses them (plus min(idleMs, 5 s))
   */
  maxConnections?: number;
  /** most operations running at once across all hosts; the rest wait their turn (default 64) */
  maxConcurrent?: number;
  /** verify-then-commit: seconds after which the host rolls an unconfirmed isolation back (default 30) */
  verifyWindowS?: number;
  /** clock, for tests */
  now?: () => Date;
  /** name resolution for the protected-host check (default: the system resolver), for tests */
  resolve?: Resolver;
  /** opens the stream to a host's SSH port (default: TCP), for tests: the fast tier's in-process host */
  openStream?: OpenStream;
  /** how often the kept addresses of protected names are resolved again (ms, default 60 s), for tests */
  protectRefreshMs?: number;
}

/** a fleet-wide sweep (msg.hosts names up to isolationTargetMaxHosts, 1000 by default) keeps every connection warm for the next one */
const DEFAULT_MAX_CONNECTIONS = 1000;

export class IsolationDriver {
  private readonly pool: ConnectionPool;
  private readonly scheduler: Scheduler;
  private readonly protection: ProtectionCheck;
  private readonly ctx: DriverContext;

  constructor(opts: DriverOptions = {}) {
    this.pool = new ConnectionPool(opts.idleMs, opts.maxConnections ?? DEFAULT_MAX_CONNECTIONS, opts.openStream);
    this.scheduler = new Scheduler(opts.maxConcurrent ?? 64);
    this.protection = new ProtectionCheck(opts.resolve, undefined, undefined, { refreshMs: opts.protectRefreshMs });
    this.ctx = {
      pool: this.pool,
      protection: this.protection,
      checked: new WeakSet<Target>(),
      beliefs: new Beliefs(),
      learned: new Learned(),
      now: opts.now ?? (() => new Date()),
      verifyWindowS: opts.verifyWindowS ?? 30,
      openStream: opts.openStream,
    };
  }

  /**
   * Isolates the host: one transaction that replaces the pack's table and nothing else (one exec
   * on a warm connection whose belief is right; actions/isolate.ts).
   */
  async isolate(targetInput: TargetInput, requestInput: IsolateRequestInput = {}, info?: ApplyInfo): Promise<HostState> {
    const given = validate(targetSchema, targetInput, 'target');
    const req = validate(isolateRequestSchema, requestInput, 'request');
    assertRenderable(req.exceptions);
    // the target from here on connects to the address the check resolved and passed
    const target = await this.refuseProtected(given);
    return this.run(target, (s) => isolate(s, req), info);
  }

  /** Deletes the pack's table in one transaction; a no-op when the host is not isolated. */
  async unisolate(targetInput: TargetInput, requestInput: UnisolateRequestInput = {}, info?: ApplyInfo): Promise<HostState> {
    const given = validate(targetSchema, targetInput, 'target');
    const req = validate(unisolateRequestSchema, requestInput, 'request');
    const target = await this.addressed(given);
    return this.run(target, (s) => unisolate(s, req), info);
  }

  /** Reads the state kept on the host. */
  async status(targetInput: TargetInput): Promise<HostState> {
    const target = await this.addressed(validate(targetSchema, targetInput, 'target'));
    return this.run(target, (s) => status(s));
  }

  /**
   * Changes the exceptions of a live isolation in one transaction (set elements and the record
   * only). `remove` ignores exceptions that are not there; the comment is not part of identity.
   */
  async setExceptions(targetInput: TargetInput, opInput: ExceptionOp, exceptionsInput: unknown, info?: ApplyInfo): Promise<HostState> {
    const given = validate(targetSchema, targetInput, 'target');
    const opName = validate(exceptionOpSchema, opInput, 'op');
    const parsed = validate(exceptionListSchema, exceptionsInput ?? [], 'exceptions');
    // adding an exception only loosens an isolation: allowed on a protected host (isolated by mistake)
    const target = opName !== 'add' ? await this.refuseProtected(given) : await this.addressed(given);
    return this.run(target, (s) => setExceptions(s, opName, parsed), info);
  }

  /**
   * Switches a live isolation between audit and enforce in one transaction, keeping its
   * exceptions, reason, since and expiry (the release timer stays armed). The table is rebuilt,
   * so flows recorded in audit mode are gone afterwards: read them with `status` first.
   */
  async setMode(targetInput: TargetInput, modeInput: Mode, info?: ApplyInfo): Promise<HostState> {
    const given = validate(targetSchema, targetInput, 'target');
    const mode = validate(modeSchema, modeInput, 'mode');
    // switching to audit drops nothing: allowed on a protected host (isolated by mistake)
    const target = mode === 'enforce' ? await this.refuseProtected(given) : await this.addressed(given);
    return this.run(target, (s) => setMode(s, mode), info);
  }

  /**
   * What the host can do (host/preflight.ts), asked now in one exec; the answer is also what the next
   * isolate on this connection goes by.
   */
  async capabilities(targetInput: TargetInput): Promise<Capabilities> {
    const target = await this.addressed(validate(targetSchema, targetInput, 'target'));
    return this.run(target, (s) => s.capabilities('full'));
  }

  /** The pooled, warm connection to a target (opened if need be), for diagnostics and the benchmark. */
  async pooledConnection(targetInput: TargetInput): Promise<SshConnection> {
    const target = validate(targetSchema, targetInput, 'target');
    const conn = await this.pool.get(target, target.timeoutMs);
    this.pool.release(target);
    return conn;
  }

  /** How many connections the pool holds open now. */
  get connections(): number {
    return this.pool.size;
  }

  /** How many bastion connections the pool holds open now (each shared by the hosts behind it). */
  get bastionConnections(): number {
    return this.pool.bastions.size;
  }

  /**
   * Decrypts the target's private key and its jump host's, where they have a passphrase, once
   * and off the event loop (when the flow starts), for every connect after, until `close`.
   * Rejects with AUTH_FAILED where a key or its passphrase is unusable.
   */
  async prepareKey(targetInput: TargetInput): Promise<void> {
    await this.pool.prepareKey(validate(targetSchema, targetInput, 'target'));
  }

  /** Closes every pooled connection (and stops refreshing protected names until the next use). */
  async close(): Promise<void> {
    this.protection.close();
    await this.pool.closeAll();
  }

  /**
   * Resolves the target's protected names and its jump host's name now (when the flow starts), and
   * keeps their addresses, refreshed every minute, until `releaseProtection`; a refresh that fails
   * keeps the last good ones. Rejects with PROTECTED_UNRESOLVED (the first name that has never
   * resolved): then every isolation through this target is refused until it resolves.
   */
  async prepareProtection(targetInput: TargetInput): Promise<void> {
    const target = validate(targetSchema, targetInput, 'target');
    const unresolved = await this.protection.prepare(protectedNames(target), target.timeoutMs);
    const jumpName = target.jump && parseAddr(target.jump.host) === null ? target.jump.host : null;
    const first = unresolved.find((u) => u.name !== jumpName) ?? unresolved[0];
    if (first) throw new ProtectedUnresolvedError(first.name, first.name === jumpName ? 'jump host' : 'protected host', first.why);
  }

  /** The target is gone (its config node closed): its names are no longer held (kept a while still). */
  releaseProtection(targetInput: TargetInput): void {
    const parsed = targetSchema.safeParse(targetInput);
    if (parsed.success) this.protection.release(protectedNames(parsed.data));
  }

  /**
   * PROTECTED_HOST before any connection when the host must never be isolated (listed in the
   * target's protectedHosts, the target's jump host, or the controller itself, by name or by what
   * its name resolves to); PROTECTED_UNRESOLVED when a protected name never resolved. The host's
   * name is resolved once, here: the target returned connects to the address that was checked.
   */
  private async refuseProtected(target: Target): Promise<Target> {
    const dial = await this.protection.assert(target.host, target.protectedHosts, target.timeoutMs, target.jump);
    const checked: Target = { ...target, dial };
    this.ctx.checked.add(checked);
    return checked;
  }

  /**
   * For the actions that isolate nothing (release, status, loosening): the host's name resolved by
   * this controller, as the check does, so that they reach the host an isolation by that name
   * reached (and its warm connection). A name this controller cannot resolve is left to the
   * connection (through a bastion: the bastion resolves it), so that a release is never blocked.
   */
  private async addressed(target: Target): Promise<Target> {
    const dial = await this.protection.address(target.host, target.timeoutMs);
    return dial === undefined ? target : { ...target, dial };
  }

  /** One action, in its turn (scheduler.ts), over a session on the target's pooled connection. */
  private run<T>(target: Target, fn: (s: HostSession) => Promise<T>, info?: ApplyInfo): Promise<T> {
    return this.scheduler.run(`${target.host}:${target.port}`, target.host, target.timeoutMs, (deadline) => HostSession.run(this.ctx, target, deadline, info, fn));
  }
}

/** The names a target's protection depends on: its protected names and its jump host's name. */
function protectedNames(t: Target): string[] {
  return [...t.protectedHosts, ...(t.jump ? [t.jump.host] : [])].filter((h) => parseAddr(h) === null);
}
