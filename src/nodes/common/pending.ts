/**
 * Pending isolations (issue 23, "hosts that are away"): an isolate-host whose "Keep pending for" is
 * set answers at once that the isolation is pending when the host is away (UNREACHABLE, or a
 * TIMEOUT of the SSH connect), and the host's isolation-target keeps the request and retries it
 * with backoff until the host answers or the bound passes. One queue per isolation-target config
 * node, kept in that node's context (the store settings.js names in isolationTargetPendingStore),
 * so that every node using the target sees the same entries and they survive a restart where the
 * store is persistent. Entries hold the validated isolate request, never credentials.
 */
import { IsolationError, type HostState, type IsolateRequestInput } from '../../driver';

/** The longest a node may keep an isolation pending: 7 days. */
export const PENDING_MAX_SECONDS = 7 * 24 * 3600;
/** Most pending entries one isolation-target keeps; beyond, a new one is PENDING_FULL. */
export const PENDING_MAX_ENTRIES = 1000;
/** First retry after this (settings.js isolationTargetPendingBackoff, in seconds, changes it), doubling. */
export const DEFAULT_BACKOFF_MS = 15_000;
/** The backoff never waits longer than this between two attempts. */
export const BACKOFF_CAP_MS = 600_000;
/** The context key of the entries in the isolation-target's context. */
export const PENDING_KEY = 'pendingIsolations';

/** The queue is full: the typed error of a pending isolation refused beyond PENDING_MAX_ENTRIES. */
export class PendingFullError extends IsolationError {
  constructor(host: string, max: number) {
    super('PENDING_FULL', `${host} is away and the target already keeps ${max} pending isolations (the most it keeps): not kept pending`, { host });
  }
}

/** A pending isolation that passed its bound without the host answering: never applied. */
export class PendingExpiredError extends IsolationError {
  constructor(host: string, expires: number) {
    super('PENDING_EXPIRED', `the pending isolation of ${host} expired at ${new Date(expires).toISOString()} before the host answered: not applied`, { host });
  }
}

/**
 * Whether an error means the host is away (worth waiting for): UNREACHABLE (no route, refused or
 * lost connection, a name that does not resolve), or a TIMEOUT of the SSH connect. Not a bastion
 * that refuses to forward (its policy), nor authentication, host key, allowlist, protected host or
 * any error of the host's own answer: those end the message (or the entry) in their error.
 */
export function isAway(e: unknown): boolean {
  if (!(e instanceof IsolationError)) return false;
  if (e.code === 'UNREACHABLE') return !/refused to forward/.test(e.message);
  if (e.code === 'TIMEOUT') return /^(SSH connect|forward through bastion) on /.test(e.message);
  return false;
}

/** The wait before attempt `failed + 1`: base doubling per failed attempt, capped, +-20 % jitter. */
export function backoffMs(failed: number, baseMs: number, rand: number = Math.random()): number {
  const d = Math.min(BACKOFF_CAP_MS, baseMs * 2 ** Math.max(0, failed - 1));
  return Math.max(1, Math.round(d * (0.8 + 0.4 * rand)));
}

/** "Keep pending for" in seconds: 0 (off) to PENDING_MAX_SECONDS; anything else is null (invalid). */
export function pendingSeconds(v: unknown): number | null {
  if (v === undefined || v === null || v === '') return 0;
  const n = typeof v === 'number' ? v : typeof v === 'string' ? Number(v.trim()) : NaN;
  return Number.isInteger(n) && n >= 0 && n <= PENDING_MAX_SECONDS ? n : null;
}

export interface PendingEntry {
  host: string;
  /** the isolate-host node that asked (its outcome goes out there) */
  nodeId: string;
  /** the isolate request as validated by the node (no credentials: those stay in the target) */
  request: IsolateRequestInput;
  since: number;
  expires: number;
  attempts: number;
  next: number;
  lastError: { code: string; message: string };
}

/** What a message says of a pending entry (times as ISO strings). */
export interface PendingView {
  since: string;
  expires: string;
  nextAttempt: string;
  attempts: number;
  lastError: { code: string; message: string };
}

export function pendingView(e: PendingEntry): PendingView {
  const iso = (t: number) => new Date(t).toISOString();
  return { since: iso(e.since), expires: iso(e.expires), nextAttempt: iso(Math.min(e.next, e.expires)), attempts: e.attempts, lastError: e.lastError };
}

/** An answer for a host that is away and pending: shaped like a host state, `state: 'pending'`, nothing applied. */
export function pendingState(e: PendingEntry): HostState {
  return {
    host: e.host,
    isolated: false,
    state: 'pending',
    changed: false,
    mode: e.request.mode ?? 'enforce',
    since: null,
    expiresAt: null,
    reason: e.request.reason ?? null,
    case: (e.request.case as HostState['case']) ?? null,
    requestedBy: (e.request.requestedBy as string | undefined) ?? null,
    exceptions: [],
    management: [],
    dropped: null,
    observed: [],
    observedOmitted: 0,
    tampered: [],
    warnings: [],
    pending: pendingView(e),
  } as unknown as HostState;
}

export type PendingOutcome = { outcome: 'applied'; state: HostState; digest?: string } | { outcome: 'failed' | 'expired' | 'cancelled'; error?: IsolationError | Error };

export interface QueueOptions {
  /** the config node's context (node.context()) */
  context: { get: (key: string, store: string | undefined, cb: (err: unknown, v: unknown) => void) => void; set: (key: string, v: unknown, store: string | undefined, cb: (err: unknown) => void) => void };
  store: string | undefined;
  baseMs: number;
  /** isolate the host now (the target built from the config node at that moment) */
  apply: (e: PendingEntry, info: { digest?: string }) => Promise<HostState>;
  report: (e: PendingEntry, outcome: PendingOutcome) => void;
  log: (text: string) => void;
  now?: () => number;
}

/** The pending isolations of one isolation-target, their timers and their store. */
export class PendingQueue {
  private readonly entries = new Map<string, PendingEntry>();
  private readonly timers = new Map<string, NodeJS.Timeout>();
  private closed = false;
  readonly loaded: Promise<void>;

  constructor(private readonly o: QueueOptions) {
    this.loaded = this.load();
  }

  private now(): number {
    return (this.o.now ?? Date.now)();
  }

  get size(): number {
    return this.entries.size;
  }

  get(host: string): PendingEntry | undefined {
    return this.entries.get(host);
  }

  /** Entries kept before (a restart, a redeploy): expired ones are dropped and reported, the others resume. */
  private async load(): Promise<void> {
    const saved = await new Promise<unknown>((resolve) => this.o.context.get(PENDING_KEY, this.o.store, (err, v) => resolve(err ? undefined : v)));
    if (!saved || typeof saved !== 'object') return;
    const expired: PendingEntry[] = [];
    for (const e of Object.values(saved as Record<string, PendingEntry>)) {
      if (!e || typeof e.host !== 'string' || typeof e.expires !== 'number' || this.entries.has(e.host)) continue;
      if (e.expires <= this.now()) expired.push(e);
      else {
        this.entries.set(e.host, e);
        // the flow's nodes start after their config node: the first attempt a moment later at least
        this.schedule(e, Math.max(500, e.next - this.now()));
      }
    }
    if (expired.length > 0) {
      this.persist();
      setTimeout(() => {
        for (const e of expired) this.o.report(e, { outcome: 'expired', error: new PendingExpiredError(e.host, e.expires) });
      }, 500).unref?.();
    }
  }

  /** A new pending isolation (replacing one for the same host); PENDING_FULL beyond the bound. */
  add(host: string, nodeId: string, request: IsolateRequestInput, boundS: number, error: IsolationError): PendingEntry {
    if (!this.entries.has(host) && this.entries.size >= PENDING_MAX_ENTRIES) throw new PendingFullError(host, PENDING_MAX_ENTRIES);
    const now = this.now();
    const e: PendingEntry = { host, nodeId, request, since: now, expires: now + boundS * 1000, attempts: 1, next: 0, lastError: { code: error.code, message: error.message } };
    e.next = Math.min(e.expires, now + backoffMs(1, this.o.baseMs));
    this.entries.set(host, e);
    this.schedule(e, e.next - now);
    this.persist();
    return e;
  }

  /** Ends the pending isolation of a host (unisolate-host): the entry, or undefined when none was. */
  cancel(host: string): PendingEntry | undefined {
    const e = this.entries.get(host);
    if (!e) return undefined;
    this.drop(host);
    this.persist();
    return e;
  }

  private drop(host: string): void {
    this.entries.delete(host);
    const t = this.timers.get(host);
    if (t) clearTimeout(t);
    this.timers.delete(host);
  }

  private schedule(e: PendingEntry, ms: number): void {
    if (this.closed) return;
    const old = this.timers.get(e.host);
    if (old) clearTimeout(old);
    this.timers.set(e.host, setTimeout(() => void this.attempt(e), Math.max(1, Math.min(ms, 2 ** 31 - 1))));
  }

  private async attempt(e: PendingEntry): Promise<void> {
    this.timers.delete(e.host);
    if (this.closed || this.entries.get(e.host) !== e) return;
    // never an entry older than its bound: checked right before applying
    if (this.now() >= e.expires) {
      this.drop(e.host);
      this.persist();
      this.o.report(e, { outcome: 'expired', error: new PendingExpiredError(e.host, e.expires) });
      return;
    }
    const info: { digest?: string } = {};
    try {
      const state = await this.o.apply(e, info);
      if (this.entries.get(e.host) === e) {
        this.drop(e.host);
        this.persist();
      }
      this.o.report(e, { outcome: 'applied', state, digest: info.digest });
    } catch (err) {
      if (this.entries.get(e.host) !== e) return; // cancelled or replaced meanwhile
      if (isAway(err)) {
        const x = err as IsolationError;
        e.attempts++;
        e.lastError = { code: x.code, message: x.message };
        e.next = Math.min(e.expires, this.now() + backoffMs(e.attempts, this.o.baseMs));
        this.schedule(e, e.next - this.now());
        this.persist();
        return;
      }
      this.drop(e.host);
      this.persist();
      this.o.report(e, { outcome: 'failed', error: err instanceof Error ? err : new Error(String(err)) });
    }
  }

  private writing = false;

  /** The entries to the store: one write per turn of the event loop however many changed (a fleet of 1000 at once). */
  private persist(): void {
    if (this.closed || this.writing) return;
    this.writing = true;
    void Promise.resolve().then(() => {
      this.writing = false;
      const all = Object.fromEntries(this.entries);
      this.o.context.set(PENDING_KEY, JSON.parse(JSON.stringify(all)), this.o.store, (err) => {
        if (err) this.o.log(`pending isolations not saved: ${String(err)}`);
      });
    });
  }

  /** The config node closes (redeploy, stop): timers stop; the entries stay in the store for the next start. */
  close(): void {
    this.closed = true;
    for (const t of this.timers.values()) clearTimeout(t);
    this.timers.clear();
  }
}

/** The context store settings.js names for pending isolations (isolationTargetPendingStore), and whether it keeps them over a restart. */
export function pendingStore(settings: Record<string, unknown>): { store: string | undefined; persistent: boolean } {
  const name = typeof settings.isolationTargetPendingStore === 'string' && settings.isolationTargetPendingStore !== '' ? settings.isolationTargetPendingStore : undefined;
  const stores = (settings.contextStorage ?? {}) as Record<string, unknown>;
  let s: unknown = stores[name ?? 'default'];
  if (typeof s === 'string') s = stores[s];
  const module = (s as { module?: unknown } | undefined)?.module;
  return { store: name, persistent: module !== undefined && module !== 'memory' };
}

/** The first retry's wait (settings.js isolationTargetPendingBackoff, seconds; 0.1 to 600). */
export function pendingBackoffMs(settings: Record<string, unknown>): number {
  const v = settings.isolationTargetPendingBackoff;
  return typeof v === 'number' && v >= 0.1 && v <= 600 ? Math.round(v * 1000) : DEFAULT_BACKOFF_MS;
}
