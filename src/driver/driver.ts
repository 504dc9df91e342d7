/**
 * isolate / unisolate / status / setExceptions. Validates once at the edge, serialises the
 * operations of one host, and sends each change as one nft transaction over a pooled connection.
 */
import { createHash, randomInt } from 'crypto';
import {
  ConcurrentChangeError,
  IsolationError,
  ManagementUnknownError,
  NftFailedError,
  NotIsolatedError,
  OutputLimitError,
  ParseError,
  PrivilegeError,
  ProtectedHostError,
  ProtectedUnresolvedError,
  ServersUnknownError,
  TimeoutError,
  UnreachableError,
  UnsupportedError,
  ValidationError,
  VerifyFailedError,
} from './errors';
import { parseAddr } from './net';
import { ProtectionCheck, type Resolver } from './protect';
import {
  dedupeExceptions,
  exceptionKey,
  exceptionListSchema,
  exceptionOpSchema,
  isolateRequestSchema,
  unisolateRequestSchema,
  modeSchema,
  targetSchema,
  validate,
  type Exception,
  type ExceptionOp,
  type IsolateRequestInput,
  type UnisolateRequestInput,
  type Mode,
  type PresetName,
  type Servers,
  type Target,
  type TargetInput,
} from './policy';
import { expandPresets, serverKindsNeeded, type PresetServers } from './presets';
import { renderBootUnit, renderConfirm, renderElements, renderIsolate, renderList, renderRelease, renderRollback, renderUnisolate, renderUpdate, renderVersionProbe, type Batch, type ManagementEndpoint, type StateDoc } from './ruleset';
import { editFindings, inspectCommands, parseInspected, tamperFindings } from './tamper';
import { notIsolated, parseNftVersion, parseTable, splitStateRead, StateParseError, toHostState, withStateRead, type HostState, type ParsedTable } from './state';
import { bootGuardExec, EXIT, fallbackRollback, guardEndedWarning, lockWaitS, nftInput, parseGuard, parseGuardArmed, parseGuardEnded, parseSevered, scriptError, severFilters, severWarning, statusInput, type GuardReport, type SeverReport, type Timer } from './hostscript';
import { DISCOVER_SCRIPT, LOOKUP_SCRIPT, lookupInput, parseDiscovery, parseLookup, SERVER_KINDS, type ServerKind } from './servers';
import { ConnectionPool, connect, neverStarted, nftError, type ExecResult, type OpenStream, type SshConnection } from './transport';
import { CGROUPV2_NEEDS, MAX_PREFLIGHT_OUTPUT, parseCapabilities, preflightInput, refusal, type Capabilities } from './preflight';

export { nftInput, type Timer } from './hostscript';
export type { Capabilities } from './preflight';

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

interface Op {
  target: Target;
  deadline: number;
  info?: ApplyInfo;
  /** holds a pooled connection, released when the operation ends */
  pooled?: boolean;
}

/** A counting semaphore: at most `max` functions run at once, the others wait in order. */
class Slots {
  private running = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(private readonly max: number) {}

  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.running >= this.max) await new Promise<void>((resolve) => this.waiting.push(resolve));
    else this.running++;
    try {
      return await fn();
    } finally {
      const next = this.waiting.shift();
      if (next) next();
      else this.running--;
    }
  }
}

/** Filled in by a call that changes the host: the nft batch it applied and its sha256 (for audit records). */
export interface ApplyInfo {
  digest?: string;
  /** the JSON text of that batch, as piped to `nft -j -f -` */
  batch?: string;
}

/** a fleet-wide sweep (msg.hosts names up to 1000) keeps every connection warm for the next one */
const DEFAULT_MAX_CONNECTIONS = 1000;
/** what a verify's fresh SSH connection may take, kept out of the first apply's lock wait (ms) */
const VERIFY_CONNECT_MS = 2000;

/** What the host's users are told when a timed isolation they were told about ends by itself. */
export const RELEASE_NOTICE = 'The network isolation of this host has ended (timed release).';

export class IsolationDriver {
  private readonly pool: ConnectionPool;
  private readonly queues = new Map<string, Promise<unknown>>();
  private readonly known = new Map<string, Known | null>();
  /**
   * the generation this controller last applied on each host: with the generation the host's
   * guard was given, what tells a table replaced past the pack (status) from a change of ours
   */
  private readonly made = new Map<string, number>();
  private readonly slots: Slots;
  private readonly now: () => Date;
  private readonly verifyWindowS: number;
  private readonly protection: ProtectionCheck;
  private readonly openStream?: OpenStream;
  /** targets that passed the protected-host check (an action that isolates): the bastion's own session is refused for them */
  private readonly checked = new WeakSet<Target>();
  /** the servers each connection's host is configured with, read once per connection */
  private readonly hostServers = new WeakMap<SshConnection, Promise<Record<ServerKind, { addrs: string[]; from: string } | { error: string }>>>();
  /** what each connection's host can do, asked once per connection (preflight.ts) */
  private readonly hostCaps = new WeakMap<SshConnection, Promise<Capabilities>>();

  constructor(opts: DriverOptions = {}) {
    this.pool = new ConnectionPool(opts.idleMs, opts.maxConnections ?? DEFAULT_MAX_CONNECTIONS, opts.openStream);
    this.slots = new Slots(opts.maxConcurrent ?? 64);
    this.verifyWindowS = opts.verifyWindowS ?? 30;
    this.now = opts.now ?? (() => new Date());
    this.openStream = opts.openStream;
    this.protection = new ProtectionCheck(opts.resolve, undefined, undefined, { refreshMs: opts.protectRefreshMs });
  }

  /**
   * Isolates the host: one transaction that replaces the pack's table and nothing else. On a warm
   * connection this is ONE exec: the state the driver last saw on the host (or, first time, "not
   * isolated") is claimed by a guard at the head of the same transaction (`create table` fails if
   * the table exists; deleting the generation we saw fails if it moved on). Only when that guess
   * was wrong does the driver read the host and apply again.
   */
  async isolate(targetInput: TargetInput, requestInput: IsolateRequestInput = {}, info?: ApplyInfo): Promise<HostState> {
    const given = validate(targetSchema, targetInput, 'target');
    const req = validate(isolateRequestSchema, requestInput, 'request');
    assertRenderable(req.exceptions);
    // the target from here on connects to the address the check resolved and passed
    const target = await this.refuseProtected(given);
    return this.run(target, async (op) => {
      const conn = await this.connection(op);
      const management = managementOf(conn, target, req.force);
      // what the host can do: asked in the first isolate of each connection (alongside the
      // lookups below), then known; a warm isolate pays nothing for it
      const caps = this.preflight(op, conn);
      caps.catch(() => undefined);
      // presets resolve to this host's own servers and management networks, uid names to numbers,
      // all read from the host (once per connection) before anything is applied
      const servers = await this.presetServers(op, conn, req.presets, req.servers);
      const own = await this.resolveUsers(op, conn, req.exceptions);
      const exceptions = dedupeExceptions([...expandPresets(req.presets, { management, servers }), ...own]);
      assertRenderable(exceptions);
      const refused = refusal(target.host, await caps, { persist: req.persist === true, exceptions });
      if (refused) throw refused;
      const sever = req.mode === 'enforce' ? severFilters(management, exceptions) : undefined;
      // `listing`: the host's table as read just now (when the belief was wrong)
      const attempt = async (current: Known | null, guarded: boolean, listing?: Record<string, unknown>[]): Promise<HostState> => {
        const now = this.now();
        const doc: StateDoc = {
          v: 1,
          since: current?.doc.since ?? now.toISOString(),
          reason: req.reason ?? current?.doc.reason ?? null,
          mode: req.mode,
          expiresAt: req.duration > 0 ? new Date(now.getTime() + req.duration * 1000).toISOString() : null,
          management,
          exceptions,
          ...(req.persist ? { persist: true } : {}),
        };
        // the same isolation again: the same generation, so the table is byte for byte the same
        // (still re-asserted: a table removed behind our back is put back, and that is a change).
        // A first isolation starts at a random generation, so that a belief about an earlier
        // isolation of this host (released and isolated again since, by anyone) cannot match it
        const same = current !== null && JSON.stringify(current.doc) === JSON.stringify(doc);
        const gen = same ? current.gen : current ? current.gen + 1 : firstGeneration();
        const batch = renderIsolate(target.table, doc, gen);
        const release: Timer = {
          // no timer to arm and none known to cancel: leave the host's timers alone
          seconds: req.duration === 0 && !req.verify && (current === null || current.doc.expiresAt === null) ? 'keep' : req.duration,
          release: renderRelease(target.table, doc),
          notice: req.wall,
          releaseNotice: req.wall !== undefined && req.duration > 0 ? RELEASE_NOTICE : undefined,
          // a new isolation replaces the old one's boot unit too: installed, or removed
          boot: bootOf(target.table, doc, gen),
          // the host's guard keeps an enforced isolation (systemd hosts): its copy, this batch
          guard: req.mode === 'enforce' ? { gen, batch } : null,
        };
        // the same generation again: the same exec first lists what the table holds now (just
        // before the batch replaces it), so that an edit made in place (by root on the host) is
        // seen, and said, as it is undone. After a read, that read's listing is compared
        const guard = guarded ? guardFor(target.table, current) : [];
        const inspect = same && guarded ? { nftables: inspectCommands(target.table) } : undefined;
        let out: string;
        if (!req.verify) {
          out = await this.apply(op, conn, withGuard(guard, batch), { ...release, sever, inspect });
        } else {
          out = await this.applyVerified(op, conn, doc, gen, current, release, guard, sever, inspect);
        }
        this.remember(target, { doc, gen });
        this.madeHere(target, gen);
        const zero = { packets: 0, bytes: 0 };
        const state = withHostGuard(withSevered(toHostState(target.host, { doc, gen, dropped: { in: zero, out: zero, forward: zero }, observed: [] }), sever, out), out);
        const edited = same ? editFindings(guarded ? parseInspected(out) : (listing ?? null), target.table, renderIsolate(target.table, current.doc, current.gen)) : [];
        if (edited.length === 0) return { ...state, changed: !same };
        return {
          ...state,
          tampered: edited,
          warnings: [...state.warnings, `the isolation (generation ${gen}) had been edited in place by something other than this controller (${edited.join('; ')}): re-applied as recorded`],
          changed: true,
        };
      };
      const guess = this.known.get(knownKey(target));
      try {
        return await attempt(guess ?? null, true);
      } catch (err) {
        // the guess was stale (the guard failed, so nothing changed): read the host, then apply
        if (!(err instanceof NftFailedError)) throw err;
        this.forget(target);
      }
      // a damaged or tampered table of ours is replaced, not an obstacle to isolating
      const current = await this.read(op, conn).catch((err: unknown) => {
        if (err instanceof ParseError) return null;
        throw err;
      });
      return attempt(current, false, current?.listing);
    }, info);
  }

  /** Deletes the pack's table in one transaction; a no-op when the host is not isolated. */
  async unisolate(targetInput: TargetInput, requestInput: UnisolateRequestInput = {}, info?: ApplyInfo): Promise<HostState> {
    const given = validate(targetSchema, targetInput, 'target');
    const req = validate(unisolateRequestSchema, requestInput, 'request');
    const target = await this.addressed(given);
    return this.run(target, async (op) => {
      const conn = await this.connection(op);
      // the same script cancels any release timer of this table on the host (unless it is known
      // that there is none), and removes a boot unit
      const known = this.known.get(knownKey(target));
      const noTimer = known === null || (known !== undefined && known.doc.expiresAt === null);
      const timer: Timer = { seconds: noTimer ? 'keep' : 0, release: null, notice: req.wall, boot: '-', guard: null };
      // Whether it changed the host (released now, or was not isolated) is told by which of the
      // two batches nft accepts (release: the table was there; free: it was not). The script arms,
      // cancels or removes nothing after a batch nft refused, so a wrong guess changes nothing. The
      // driver's belief only picks which one goes first: one exec when it is right, two when it is
      // wrong. No generation is claimed: whoever's isolation it is, unisolate removes it.
      const { release, free } = renderUnisolate(target.table);
      let isolated = known !== null; // unknown (undefined): released is the more useful first guess
      let wrong = false;
      for (let attempt = 1; ; attempt++) {
        try {
          // after a wrong belief, cancel the host's timers whatever the driver believed of them
          await this.apply(op, conn, isolated ? release : free, wrong ? { ...timer, seconds: 0 } : timer);
          break;
        } catch (err) {
          // only the answer the batch asks about flips the guess; any other failure is the answer
          const miss = isolated ? /No such file or directory/ : /File exists/;
          if (!(err instanceof NftFailedError && miss.test(err.stderr))) throw err;
          // released, then isolated again by someone else (or the other way round), every time
          if (attempt >= 2 * MAX_RACE_ATTEMPTS) throw new ConcurrentChangeError(target.host);
          if (attempt > 2) await raceBackoff(attempt - 2);
          isolated = !isolated;
          wrong = true;
        }
      }
      const changed = isolated;
      this.remember(target, null);
      this.made.delete(knownKey(target));
      return { ...notIsolated(target.host), changed };
    }, info);
  }

  /** Reads the state kept on the host. */
  async status(targetInput: TargetInput): Promise<HostState> {
    const target = await this.addressed(validate(targetSchema, targetInput, 'target'));
    return this.run(target, async (op) => {
      const conn = await this.connection(op);
      const before = this.known.get(knownKey(target));
      const host: { guard: GuardReport | null } = { guard: null };
      let current = await this.read(op, conn, host);
      // a generation this controller did not make and the guard was not given: read once more,
      // so that a change another controller made between the read of the guard's key and the
      // listing (it re-arms the guard with its own generation) is not taken for one
      if (current && this.foreign(target, current.gen, host.guard) !== null) current = await this.read(op, conn, host);
      if (!current) {
        const free = notIsolated(target.host);
        // gone, though this controller left it isolated and no release time had come
        const expiry = before?.doc.expiresAt ? Date.parse(before.doc.expiresAt) : Infinity;
        if (before && this.now().getTime() < expiry - 2000) {
          free.tampered = [`the isolation since ${before.doc.since} was removed by something other than this controller`];
        }
        // the host's guard still holds an isolation that is not there: removed behind the pack's back
        if (host.guard && host.guard.state !== 'superseded') {
          free.tampered.push(
            host.guard.alive && host.guard.state === 'stalled'
              ? `the isolation (generation ${host.guard.gen}) is missing; the host's guard cannot re-apply it: it is stalled, its lock held by another process`
              : host.guard.alive && !host.guard.state.startsWith('gave-up')
              ? `the isolation (generation ${host.guard.gen}) is missing; the host's guard is re-applying it`
              : `the isolation (generation ${host.guard.gen}) was removed and the host's guard is not running to re-apply it (stopped, or it gave up)`,
          );
        }
        return withGuardReport(free, host.guard);
      }
      const state = toHostState(target.host, current);
      state.tampered = tamperFindings(current.listing ?? [], target.table, renderIsolate(target.table, current.doc, current.gen));
      // the record can be rewritten with the table: what it says is then no proof
      const foreign = this.foreign(target, current.gen, host.guard);
      if (foreign !== null) {
        state.tampered.unshift(
          `generation ${current.gen} was not made by this controller (the guard kept ${foreign}): the table and its record were replaced past the pack, by root on the host or a tool that does not re-arm the guard; what the record says is not what this controller set`,
        );
      }
      return withGuardReport(state, host.guard, current.gen);
    });
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
    return this.run(target, async (op) => {
      const conn = await this.connection(op);
      const given = await this.resolveUsers(op, conn, parsed);
      // first from what the driver last saw (one exec when it is right: the update claims that
      // generation), then from a fresh read
      let cached = this.known.get(knownKey(target)) ?? undefined;
      for (let attempt = 1; ; attempt++) {
        const current = cached ?? (await this.read(op, conn));
        if (!current) throw new NotIsolatedError(target.host);
        const exceptions = nextExceptions(current.doc.exceptions, opName, given);
        validate(exceptionListSchema, exceptions, 'exceptions');
        assertRenderable(exceptions);
        const doc: StateDoc = { ...current.doc, exceptions };
        // what an exception no longer names is cut, as on isolate
        const kept = new Set(exceptions.map(exceptionKey));
        const narrowed = doc.mode === 'enforce' && current.doc.exceptions.some((e) => !kept.has(exceptionKey(e)));
        const sever = narrowed ? severFilters(doc.management, exceptions) : undefined;
        let out: string;
        try {
          // a persisted isolation's boot unit follows the change, in the same exec
          // and so does the copy the host's guard keeps (through the apply script, under its lock)
          const timer: Timer = { seconds: 'keep', release: null, sever, ...(doc.persist ? { boot: bootOf(target.table, doc, current.gen + 1) } : {}), guard: hostGuard(target.table, doc, current.gen + 1) };
          out = await this.apply(op, conn, renderUpdate(target.table, doc, current.gen, current.doc.exceptions), timer);
        } catch (err) {
          // our generation was gone: someone changed the isolation after we read it
          if (err instanceof IsolationError && err.code === 'NFT_FAILED' && /No such file or directory/.test(String(err.details.stderr))) {
            this.forget(target);
            if (cached) {
              cached = undefined; // it was our cache that was stale, not a race
              continue;
            }
            // another controller changed it between our read and our write: read again and retry
            if (attempt < MAX_RACE_ATTEMPTS) {
              await raceBackoff(attempt);
              continue;
            }
            throw new ConcurrentChangeError(target.host);
          }
          throw err;
        }
        this.remember(target, { doc, gen: current.gen + 1 });
        this.madeHere(target, current.gen + 1);
        const read = 'dropped' in current ? (current as ParsedTable) : null;
        const zero = { packets: 0, bytes: 0 };
        const state = withHostGuard(
          withSevered(
            toHostState(target.host, { doc, gen: current.gen + 1, dropped: read?.dropped ?? { in: zero, out: zero, forward: zero }, observed: read?.observed ?? [], observedOmitted: read?.observedOmitted, fullSets: read?.fullSets }),
            sever,
            out,
          ),
          out,
        );
        const changed = JSON.stringify(current.doc.exceptions) !== JSON.stringify(exceptions);
        // from the cache, counters and observed flows were not read this time: status reads them
        return read ? { ...state, changed } : { ...state, dropped: null, changed };
      }
    }, info);
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
    return this.run(target, async (op) => {
      const conn = await this.connection(op);
      for (let attempt = 1; ; attempt++) {
        const current = await this.read(op, conn);
        if (!current) throw new NotIsolatedError(target.host);
        const doc: StateDoc = { ...current.doc, mode };
        const gen = current.gen + 1;
        // switching to enforce cuts what the exceptions do not name, as isolate does
        const sever = mode === 'enforce' && current.doc.mode !== 'enforce' ? severFilters(doc.management, doc.exceptions) : undefined;
        const timer: Timer = { seconds: 'keep', release: null, sever, ...(doc.persist ? { boot: bootOf(target.table, doc, gen) } : {}), guard: hostGuard(target.table, doc, gen) };
        let out: string;
        try {
          // the rebuilt table claims the generation it was read at: a change made meanwhile (by
          // another controller) is never overwritten with the old exceptions
          out = await this.apply(op, conn, withGuard(guardFor(target.table, current), renderIsolate(target.table, doc, gen)), timer);
        } catch (err) {
          if (err instanceof NftFailedError && /No such file or directory/.test(err.stderr)) {
            if (attempt < MAX_RACE_ATTEMPTS) {
              await raceBackoff(attempt);
              continue;
            }
            throw new ConcurrentChangeError(target.host);
          }
          throw err;
        }
        this.remember(target, { doc, gen });
        this.madeHere(target, gen);
        const zero = { packets: 0, bytes: 0 };
        return { ...withHostGuard(withSevered(toHostState(target.host, { doc, gen, dropped: { in: zero, out: zero, forward: zero }, observed: [] }), sever, out), out), changed: current.doc.mode !== mode };
      }
    }, info);
  }

  /**
   * What the host can do (preflight.ts), asked now in one exec; the answer is also what the next
   * isolate on this connection goes by.
   */
  async capabilities(targetInput: TargetInput): Promise<Capabilities> {
    const target = await this.addressed(validate(targetSchema, targetInput, 'target'));
    return this.run(target, async (op) => {
      const conn = await this.connection(op);
      const caps = this.askCapabilities(op, conn, 'full');
      this.hostCaps.set(conn, caps);
      caps.catch(() => this.hostCaps.delete(conn));
      return caps;
    });
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
    this.checked.add(checked);
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

  // ---------------------------------------------------------------------------------------------

  /**
   * Verify, then commit (like a router's "commit confirmed"): the isolation goes in with a
   * rollback armed on the host, in the same exec; then a fresh SSH connection must reach the host
   * and confirm, which disarms the rollback and arms the real release timer. If the fresh
   * connection fails, the controller rolls back at once over the connection that still works;
   * if even that fails, the host rolls back by itself when the window closes.
   */
  private async applyVerified(
    op: Op,
    conn: SshConnection,
    doc: StateDoc,
    gen: number,
    current: Known | null,
    release: Timer,
    guard: unknown[],
    sever?: Timer['sever'],
    inspect?: Batch,
  ): Promise<string> {
    const { target } = op;
    const nowS = Math.floor(this.now().getTime() / 1000);
    const deadline = nowS + this.verifyWindowS;
    const rollback = renderRollback(target.table, deadline, current ? { doc: current.doc, gen: current.gen } : null);
    // a rollback restores the previous isolation with its own release time, on the host and here
    const prevRelease = current ? renderRelease(target.table, current.doc) : null;
    const prevExpiry = current?.doc.expiresAt ? Math.floor(Date.parse(current.doc.expiresAt) / 1000) : null;
    const then = prevRelease && prevExpiry !== null ? { seconds: Math.max(1, prevExpiry - deadline), batch: prevRelease } : undefined;
    const applied = renderIsolate(target.table, doc, gen, deadline);
    // until confirmed, the host's guard keeps what was applied (the rollback deadline as expiry)
    // if it fires, the host's rollback re-arms the guard with the previous isolation's copy
    const rearm = current ? hostGuard(target.table, current.doc, current.gen + 2) : null;
    // every wait on the host fits the time left: this apply's lock wait leaves more than half of
    // it to the fresh connection and the confirm (which may wait for the lock as long again)
    const first = lockWaitS((this.remaining(op, 'verify: apply') - VERIFY_CONNECT_MS) / 2);
    let out = await this.apply(op, conn, withGuard(guard, applied), { seconds: this.verifyWindowS, release: rollback, then, sever, guard: release.guard ? { gen, batch: applied } : release.guard, rearm, lockWaitS: first, inspect });
    try {
      // through the same bastion, when there is one: a new channel and a new session to the host
      const fresh = await connect(target, this.remaining(op, 'verify: fresh SSH connect'), this.pool.bastions, this.openStream);
      try {
        // its lock wait fits what is left; after a lock held through the whole first wait (the
        // guard ended), one try: the time goes to the confirm, not to waiting on it again
        const left = this.remaining(op, 'verify: confirm');
        const wait = /^nrhi-guard blocked$/m.test(out) ? 1 : lockWaitS(left);
        const { cmd, stdin } = nftInput(target, renderConfirm(target.table, deadline, doc), { ...release, lockWaitS: wait });
        const res = await fresh.exec(cmd, stdin, left);
        if (res.code !== 0) throw applyError(target.host, res, renderConfirm(target.table, deadline, doc), release);
        // the guard is what the confirm left (it re-arms it with the confirmed isolation, or ends
        // it beside a release timer that is a process of the session)
        const guardLines = (text: string) => text.split('\n').filter((l) => /^nrhi-guard /.test(l));
        out = [...out.split('\n').filter((l) => !/^nrhi-guard /.test(l)), ...guardLines(res.stdout)].join('\n');
      } finally {
        fresh.close();
      }
    } catch (err) {
      // the confirm found its rollback deadline gone: another controller released or replaced this
      // isolation while it was being verified. Theirs is the newer change: nothing to roll back
      // (the rollback claims the same element and would fail), and no timer of ours is left to fire
      if (err instanceof NftFailedError && /No such file or directory/.test(err.stderr)) {
        this.forget(target);
        throw new ConcurrentChangeError(target.host, 'it was released or replaced by another controller while being verified');
      }
      let rolledBack = false;
      try {
        const left = prevExpiry !== null ? Math.max(1, prevExpiry - Math.floor(this.now().getTime() / 1000)) : 0;
        // more time than any wait on the host (past the operation's deadline if need be), and a
        // lock wait well inside it: a rollback cut short leaves the host to its own timer
        const budget = fallbackRollback(op.deadline - Date.now());
        const { cmd, stdin } = nftInput(target, rollback, {
          seconds: left,
          release: left > 0 ? prevRelease : null,
          guard: current ? hostGuard(target.table, current.doc, current.gen + 2) : null,
          lockWaitS: budget.lockWaitS,
        });
        const res = await conn.exec(cmd, stdin, budget.timeoutMs);
        rolledBack = res.code === 0;
        // the previous isolation, back as generation + 2 (renderRollback)
        if (rolledBack) {
          if (current) this.madeHere(target, current.gen + 2);
          else this.made.delete(knownKey(target));
        }
      } catch {
        // the link is gone too: the host's own timer rolls back when the window closes
      }
      this.forget(target);
      // the host answered but could not keep the isolation as asked (persist): say that, not "unreachable"
      if (rolledBack && (err instanceof PrivilegeError || err instanceof UnsupportedError)) throw err;
      throw new VerifyFailedError(target.host, rolledBack, new Date(deadline * 1000).toISOString(), { cause: err });
    }
    return out;
  }

  /**
   * Runs `fn` after every earlier operation on the same host has finished. A warm connection that
   * died while idle (the host cut it, say) is noticed only when a command cannot start on it: then
   * the operation runs once more on a new connection, as nothing reached the host.
   */
  private run<T>(target: Target, fn: (op: Op) => Promise<T>, info?: ApplyInfo): Promise<T> {
    const key = `${target.host}:${target.port}`;
    const prev = this.queues.get(key) ?? Promise.resolve();
    // the time limit starts when the operation gets its slot, not while it waits for one
    const start = () =>
      this.slots.run(async () => {
        const deadline = Date.now() + target.timeoutMs;
        for (let attempt = 1; ; attempt++) {
          const op: Op = { target, deadline, info };
          try {
            return await fn(op);
          } catch (err) {
            if (attempt > 1 || !neverStarted(err)) throw err;
            this.pool.discard(target);
          } finally {
            if (op.pooled) this.pool.release(target);
          }
        }
      });
    const result = prev.then(start, start);
    const tail = result.catch(() => undefined);
    this.queues.set(key, tail);
    void tail.then(() => {
      if (this.queues.get(key) === tail) this.queues.delete(key);
    });
    return result;
  }

  private remaining(op: Op, what: string): number {
    const ms = op.deadline - Date.now();
    if (ms <= 0) throw new TimeoutError(op.target.host, what, op.target.timeoutMs);
    return ms;
  }

  private async connection(op: Op): Promise<SshConnection> {
    const conn = await this.pool.get(op.target, this.remaining(op, 'SSH connect'));
    op.pooled = true;
    const jump = op.target.jump;
    const ep = conn.endpoints;
    if (jump && ep) {
      // the address the hosts behind the bastion see it from is the bastion's too: protected from now on
      this.protection.sawJump(jump, ep.clientAddr);
      // a host that sees its session come from its own address is the bastion itself (forwarded to itself)
      const self = parseAddr(ep.clientAddr);
      if (this.checked.has(op.target) && self && self.text === parseAddr(ep.serverAddr)?.text) {
        throw new ProtectedHostError(op.target.host, `it is this target's jump host (bastion ${jump.host}): the session through it comes from its own address ${self.text}`);
      }
    }
    return conn;
  }

  private nft(op: Op, conn: SshConnection, batch: Batch, timer?: Timer): Promise<ExecResult> {
    // the host's lock wait, unless the caller set it, fits the time this exec has
    const { cmd, stdin } = nftInput(op.target, batch, timer && timer.lockWaitS === undefined ? { ...timer, lockWaitS: lockWaitS(op.deadline - Date.now()) } : timer);
    return this.exec(op, conn, cmd, stdin, 'remote command');
  }

  private statusExec(op: Op, conn: SshConnection): Promise<ExecResult> {
    const { cmd, stdin } = statusInput(op.target, renderList(op.target.table));
    return this.exec(op, conn, cmd, stdin, 'remote command');
  }

  /** One command on the host within the operation's time; a dead or flooded connection is dropped from the pool. */
  private async exec(op: Op, conn: SshConnection, cmd: string, stdin: string, what: string, maxOutput?: number): Promise<ExecResult> {
    try {
      return await conn.exec(cmd, stdin, this.remaining(op, what), maxOutput);
    } catch (err) {
      // the connection is dead, or the host flooded it: the next call opens a fresh one
      if (err instanceof TimeoutError || err instanceof UnreachableError || err instanceof OutputLimitError) this.pool.discard(op.target);
      throw err;
    }
  }

  /** Applies one batch (with the apply script when `timer` is given); returns what the host printed. */
  private async apply(op: Op, conn: SshConnection, batch: Batch, timer?: Timer): Promise<string> {
    if (op.info) {
      op.info.batch = JSON.stringify(batch);
      op.info.digest = createHash('sha256').update(op.info.batch).digest('hex');
    }
    const res = await this.nft(op, conn, batch, timer);
    if (res.code !== 0) {
      this.forget(op.target);
      const err = applyError(op.target.host, res, batch, timer);
      // what the host lacks is said with the nft it runs (one more exec, only on this path)
      if (err instanceof UnsupportedError && err.details.nftVersion === undefined && res.code !== EXIT.NO_SYSTEMD) {
        const version = await this.nftVersion(op, conn).catch(() => null);
        if (version) throw new UnsupportedError(op.target.host, err.feature, err.hint, err.stderr, version);
      }
      throw err;
    }
    return res.stdout;
  }

  /** The host's nft version, from the metainfo of a listing of its table names (the constant nft command). */
  private async nftVersion(op: Op, conn: SshConnection): Promise<string | null> {
    const res = await this.nft(op, conn, renderVersionProbe());
    return res.code === 0 ? parseNftVersion(res.stdout) : null;
  }

  /** The host's capabilities, asked once per connection. */
  private preflight(op: Op, conn: SshConnection): Promise<Capabilities> {
    let caps = this.hostCaps.get(conn);
    if (!caps) {
      caps = this.askCapabilities(op, conn, 'gate');
      this.hostCaps.set(conn, caps);
      caps.catch(() => this.hostCaps.delete(conn));
    }
    return caps;
  }

  private async askCapabilities(op: Op, conn: SshConnection, mode: 'gate' | 'full'): Promise<Capabilities> {
    const { cmd, stdin } = preflightInput(op.target, mode);
    const res = await this.exec(op, conn, cmd, stdin, 'preflight', MAX_PREFLIGHT_OUTPUT);
    return parseCapabilities(res.stdout, op.target.sudo ? 'sudo' : 'root', mode, this.now());
  }

  /**
   * The servers each server preset opens to: the request's, else the target's, else the host's own
   * (read from its configuration and resolved there, once per connection). None found: refused.
   */
  private async presetServers(op: Op, conn: SshConnection, presets: readonly PresetName[], given: Servers | undefined): Promise<PresetServers> {
    const out: PresetServers = {};
    for (const kind of serverKindsNeeded(presets)) {
      const named = given?.[kind] ?? op.target.servers?.[kind];
      if (named) {
        out[kind] = { addrs: named, from: 'named by the operator' };
        continue;
      }
      let found = this.hostServers.get(conn);
      if (!found) {
        found = this.discoverServers(op, conn);
        this.hostServers.set(conn, found);
        found.catch(() => this.hostServers.delete(conn));
      }
      const r = (await found)[kind];
      if ('error' in r) throw new ServersUnknownError(op.target.host, kind, r.error);
      out[kind] = r;
    }
    return out;
  }

  private async discoverServers(op: Op, conn: SshConnection): Promise<Record<ServerKind, { addrs: string[]; from: string } | { error: string }>> {
    const res = await conn.exec(DISCOVER_SCRIPT, '', this.remaining(op, 'reading the host\'s servers'));
    const d = parseDiscovery(res.stdout);
    const names = [...new Set(SERVER_KINDS.flatMap((k) => d.names[k]))];
    const resolved = names.length > 0 ? parseLookup((await conn.exec(LOOKUP_SCRIPT, lookupInput(names, []), this.remaining(op, 'resolving the host\'s servers'))).stdout).hosts : new Map<string, string[]>();
    const out = {} as Record<ServerKind, { addrs: string[]; from: string } | { error: string }>;
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

  /** Exceptions with a user name get its uid as the host knows it (nft would read some names as keywords). */
  private async resolveUsers(op: Op, conn: SshConnection, exceptions: readonly Exception[]): Promise<Exception[]> {
    const names = [...new Set(exceptions.flatMap((e) => (typeof e.uid === 'string' ? [e.uid] : [])))];
    if (names.length === 0) return [...exceptions];
    const res = await conn.exec(LOOKUP_SCRIPT, lookupInput([], names), this.remaining(op, 'looking up users'));
    const uids = parseLookup(res.stdout).users;
    const missing = names.filter((n) => !uids.has(n));
    if (missing.length > 0) {
      throw new ValidationError(`invalid exceptions: no user ${missing.map((n) => JSON.stringify(n)).join(', ')} on ${op.target.host}`, [
        { path: 'exceptions.uid', message: `no such user on the host: ${missing.join(', ')}` },
      ]);
    }
    return exceptions.map((e) => (typeof e.uid === 'string' ? { ...e, uid: uids.get(e.uid)!, comment: e.comment ?? `user ${e.uid}` } : e));
  }

  /**
   * The parsed table, or null when the host is not isolated. Remembered for the next change.
   * With `host`, the status read: the host's guard record comes in the same exec.
   */
  private async read(op: Op, conn: SshConnection, host?: { guard: GuardReport | null }): Promise<ParsedTable | null> {
    // always the status read: its answer is bounded whatever the host's users send (the dynamic
    // sets' elements stay on the host, the observed flows come back as the top ones)
    const res = await this.statusExec(op, conn);
    const split = parseGuard(res.stdout);
    if (host) host.guard = split.guard;
    const { json, extras } = splitStateRead(split.json);
    res.stdout = json;
    if (res.code !== 0) {
      if (/No such file or directory/.test(res.stderr) && !/not found/.test(res.stderr)) {
        this.remember(op.target, null);
        return null;
      }
      throw nftError(op.target.host, res);
    }
    try {
      const parsed = withStateRead(parseTable(res.stdout, op.target.table), extras);
      this.remember(op.target, { doc: parsed.doc, gen: parsed.gen });
      return parsed;
    } catch (err) {
      this.forget(op.target);
      if (err instanceof StateParseError) throw new ParseError(op.target.host, err.message);
      throw err;
    }
  }

  /** What the driver last saw on a host (null: not isolated). A guess, always claimed by a guard. */
  private remember(target: Target, known: Known | null): void {
    const key = knownKey(target);
    this.known.delete(key); // re-insert: the map's order is least recently used first
    this.known.set(key, known);
    if (this.known.size > MAX_KNOWN) this.known.delete(this.known.keys().next().value!);
  }

  private forget(target: Target): void {
    this.known.delete(knownKey(target));
  }

  private madeHere(target: Target, gen: number): void {
    const key = knownKey(target);
    this.made.delete(key); // least recently used first, as `known`
    this.made.set(key, gen);
    if (this.made.size > MAX_KNOWN) this.made.delete(this.made.keys().next().value!);
  }

  /**
   * The generation the host's guard kept, when the live one is another that this controller did
   * not make (null: none such). Every change of the pack gives the guard its generation under the
   * guard's lock (another controller's too), or ends the guard: one it was not given came past the
   * pack. Without a guard record there is nothing to compare with.
   */
  private foreign(target: Target, live: number, g: GuardReport | null): number | null {
    if (!g || g.gen === live || this.made.get(knownKey(target)) === live) return null;
    return g.gen;
  }
}

/** Exceptions whose overlaps would need too many set elements are refused before anything is sent. */
function assertRenderable(exceptions: readonly Exception[]): void {
  try {
    renderElements(exceptions);
  } catch (err) {
    if (err instanceof RangeError) throw new ValidationError(`invalid exceptions: ${err.message}`, [{ path: 'exceptions', message: err.message }]);
    throw err;
  }
}

/**
 * The lockout guard: the management channel as the host sees it (SSH_CONNECTION: our address and
 * the sshd port), plus the target's extra management CIDRs on that port. Without a detected
 * channel the isolation is refused, unless the caller forces it.
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

export function nextExceptions(current: readonly Exception[], op: ExceptionOp, given: readonly Exception[]): Exception[] {
  switch (op) {
    case 'add':
      return dedupeExceptions([...current, ...given]);
    case 'remove': {
      const drop = new Set(given.map(exceptionKey));
      return current.filter((e) => !drop.has(exceptionKey(e)));
    }
    case 'replace':
      return dedupeExceptions(given);
  }
}

/**
 * Says so clearly when the host's nft or kernel lacks what a service exception needs: nft
 * refuses `socket cgroupv2` in JSON (1.0.6 and 1.1.3: "Invalid socket key value"), kernels before
 * 5.13 refuse the expression ("Operation not supported").
 */
function unsupportedOr(err: IsolationError, host: string, batch: Batch): IsolationError {
  if (!(err instanceof NftFailedError) || !JSON.stringify(batch).includes('"cgroupv2"')) return err;
  if (/Invalid socket key|socket.*cgroupv2|Operation not supported/i.test(err.stderr)) {
    return new UnsupportedError(
      host,
      'match a systemd unit or cgroup (nft "socket cgroupv2")',
      CGROUPV2_NEEDS,
      err.stderr,
    );
  }
  return err;
}

/** The boot unit for a persisted isolation (its full isolate batch), or `-` to remove any. */
function bootOf(table: string, doc: StateDoc, gen: number): string {
  // an enforced one comes back guarded: the unit re-arms the host's guard with what it loaded
  return doc.persist ? renderBootUnit(table, renderIsolate(table, doc, gen, null), doc.mode === 'enforce' ? bootGuardExec(table, gen) : undefined) : '-';
}

/** The typed error for a failed apply exec: the script's own exit codes first, then nft's. */
function applyError(host: string, res: ExecResult, batch: Batch, timer?: Timer): IsolationError {
  const own = timer ? scriptError(host, res.code, res.stderr) : null;
  if (own) return own;
  const err = unsupportedOr(nftError(host, res), host, batch);
  // a user name that nft reads as a keyword ("tcp") or that does not exist: the request was wrong
  if (err instanceof NftFailedError && /User does not exist|expected user ID/.test(err.stderr)) {
    return new ValidationError(`invalid exceptions: a uid names no user on ${host}`, [{ path: 'exceptions.uid', message: 'no such user on the host' }]);
  }
  return err;
}

/**
 * Most tries of a change that lost a race with another controller (its generation guard failed):
 * each one reads the host again, after a short random pause so that two losers do not collide
 * again in step.
 */
export const MAX_RACE_ATTEMPTS = 6;

function raceBackoff(attempt: number): Promise<void> {
  const ms = Math.round((10 + Math.random() * 40) * attempt);
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** The isolation as the driver last saw it on a host. */
type Known = { doc: StateDoc; gen: number };
const MAX_KNOWN = 10_000;

/**
 * The generation of a first isolation: random (1 .. 2^29), not 1, so that generations of different
 * isolations of one host do not repeat (a guard claims a generation: it must not match an
 * isolation it was not about). Each change adds 1 or 2; nft's mark holds 32 bits, and the host's
 * guard reports a generation in at most 9 digits (hostscript's parseGuard).
 */
function firstGeneration(): number {
  return 1 + randomInt(2 ** 29);
}

/** The names a target's protection depends on: its protected names and its jump host's name. */
function protectedNames(t: Target): string[] {
  return [...t.protectedHosts, ...(t.jump ? [t.jump.host] : [])].filter((h) => parseAddr(h) === null);
}

function knownKey(t: Target): string {
  return `${t.host}:${t.port}:${t.table}`;
}

/** The head of an isolate transaction that claims the state we believe the host is in. */
function guardFor(table: string, current: Known | null): unknown[] {
  if (current === null) return [{ create: { table: { family: 'inet', name: table } } }];
  return [{ delete: { element: { family: 'inet', table, name: 'gen', elem: [current.gen] } } }];
}

/** The state with what the host said about cutting connections (and a warning if it could not). */
function withSevered(state: HostState, sever: Timer['sever'], stdout: string): HostState {
  if (!sever) return state;
  const report: SeverReport = parseSevered(stdout) ?? { cut: 0, left: 0, why: 'ok' };
  const warning = severWarning(report);
  return { ...state, severed: report.why === 'no-ss' ? null : report.cut, warnings: warning ? [...state.warnings, warning] : state.warnings };
}

/** What the host's guard (self-healing, systemd hosts) keeps: an enforced isolation's full batch; null ends it. */
function hostGuard(table: string, doc: StateDoc, gen: number): Timer['guard'] {
  return doc.mode === 'enforce' ? { gen, batch: renderIsolate(table, doc, gen) } : null;
}

/** The state with whether the apply script armed the host's guard. */
function withHostGuard(state: HostState, stdout: string): HostState {
  const blocked = /^nrhi-guard blocked$/m.test(stdout)
    ? ["the host's guard lock was held by another process for as long as this change could wait: the guard was ended, the isolation is not self-healing (isolate again to re-arm it)"]
    : [];
  const armed = parseGuardArmed(stdout);
  // the guard had ended before this change, other than by the pack: said once more, here
  const ended = parseGuardEnded(stdout);
  return { ...state, guard: armed, warnings: [...state.warnings, ...blocked, ...(ended ? [guardEndedWarning(ended, armed)] : [])] };
}

/** The state with the host's guard record (status): whether it runs for this generation, its heals, its giving up. */
function withGuardReport(state: HostState, g: GuardReport | null, gen?: number): HostState {
  if (!g) return state;
  const mine = gen === undefined || g.gen === gen;
  // a stalled guard (its lock held by another process) runs but can heal nothing: not a guard
  const running = g.alive && !g.state.startsWith('gave-up') && g.state !== 'stalled';
  const out: HostState = {
    ...state,
    guard: running && mine && state.state === 'isolated',
    healed: { count: g.count, last: g.last > 0 ? new Date(g.last * 1000).toISOString() : null },
  };
  if (g.state === 'stalled' && g.alive) {
    const since = new Date((g.since ?? 0) * 1000).toISOString();
    out.guardStalledSince = since;
    out.warnings = [...out.warnings, `the host's guard is stalled since ${since}: another process holds its lock, so it heals nothing (and changes wait for the lock) until that lets go`];
  }
  // `superseded` at the live generation: the record of the guard before a re-arm with this one
  // (the new guard rewrites it once started); whether that one runs is the check below
  const stale = g.state === 'superseded' && gen !== undefined && g.gen === gen;
  if (g.state.startsWith('gave-up')) {
    const why = g.state === 'gave-up:nft' ? 're-applying it kept failing' : 'something kept undoing it';
    out.warnings = [...out.warnings, `the host's guard gave up keeping this isolation (${why}): isolate again to re-arm it`];
  } else if (g.state === 'superseded' && !stale) {
    const at = gen !== undefined ? `the table holds generation ${gen}, the guard was given ${g.gen}` : `it kept generation ${g.gen}`;
    out.warnings = [...out.warnings, `the host's guard has stopped at a generation it was not given (${at}; it never reverts one): the isolation is not self-healing, isolate again to re-arm it`];
  } else if (!g.alive) {
    out.warnings = [...out.warnings, `the host's guard is not running (stopped or killed on the host, not by a release; it kept generation ${g.gen}): the isolation is not self-healing, isolate again to re-arm it`];
  }
  return out;
}

function withGuard(guard: unknown[], batch: Batch): Batch {
  return guard.length === 0 ? batch : { nftables: [...guard, ...batch.nftables] };
}
