/** The pending queue of hosts that are away (common/pending.ts): backoff, bound, cancel, store, on a fake clock. */
import { strict as assert } from 'assert';
import * as sinon from 'sinon';
import { AuthFailedError, HostKeyMismatchError, TimeoutError, UnreachableError, type HostState, type IsolateRequestInput } from '../../src/driver';
import { BACKOFF_CAP_MS, backoffMs, isAway, PENDING_KEY, PENDING_MAX_ENTRIES, PendingQueue, pendingSeconds, pendingStore, type PendingEntry, type PendingOutcome } from '../../src/nodes/common/pending';

function memoryContext(initial?: unknown) {
  const data = new Map<string, unknown>(initial === undefined ? [] : [[PENDING_KEY, initial]]);
  return {
    data,
    get: (k: string, _s: string | undefined, cb: (e: unknown, v: unknown) => void) => cb(null, data.get(k)),
    set: (k: string, v: unknown, _s: string | undefined, cb: (e: unknown) => void) => {
      data.set(k, v);
      cb(null);
    },
  };
}

const away = () => new UnreachableError('h1', 'connect ECONNREFUSED');
const REQ: IsolateRequestInput = { reason: 'r', mode: 'enforce' };

describe('pending isolations: what counts as away, the backoff and the bound', () => {
  it('away is UNREACHABLE or a TIMEOUT of the SSH connect; not auth, host key, a command timeout or a bastion refusing to forward', () => {
    assert.equal(isAway(away()), true);
    assert.equal(isAway(new TimeoutError('h1', 'SSH connect', 5000)), true);
    assert.equal(isAway(new TimeoutError('h1', 'remote command', 5000)), false);
    assert.equal(isAway(new AuthFailedError('h1', 'no')), false);
    assert.equal(isAway(new HostKeyMismatchError('h1', 'x', 'y')), false);
    assert.equal(isAway(new UnreachableError('h1', 'bastion b refused to forward to h1 (x)')), false);
    assert.equal(isAway(new Error('UNREACHABLE')), false);
  });

  it('backs off from the base, doubling, capped at 10 min, with +-20 % jitter', () => {
    assert.equal(backoffMs(1, 15_000, 0.5), 15_000);
    assert.equal(backoffMs(2, 15_000, 0.5), 30_000);
    assert.equal(backoffMs(3, 15_000, 0.5), 60_000);
    assert.equal(backoffMs(30, 15_000, 0.5), BACKOFF_CAP_MS);
    assert.equal(backoffMs(1, 15_000, 0), 12_000);
    assert.equal(backoffMs(1, 15_000, 1), 18_000);
  });

  it('Keep pending is 0 (off) to 7 days in whole seconds', () => {
    assert.equal(pendingSeconds(undefined), 0);
    assert.equal(pendingSeconds(''), 0);
    assert.equal(pendingSeconds('3600'), 3600);
    assert.equal(pendingSeconds(604800), 604800);
    assert.equal(pendingSeconds(604801), null);
    assert.equal(pendingSeconds(-1), null);
    assert.equal(pendingSeconds(1.5), null);
  });

  it('a persistent store is one whose module is not memory', () => {
    assert.deepEqual(pendingStore({}), { store: undefined, persistent: false });
    assert.deepEqual(pendingStore({ isolationTargetPendingStore: 'file', contextStorage: { file: { module: 'localfilesystem' } } }), { store: 'file', persistent: true });
    assert.deepEqual(pendingStore({ contextStorage: { default: 'file', file: { module: 'localfilesystem' } } }), { store: undefined, persistent: true });
    assert.deepEqual(pendingStore({ isolationTargetPendingStore: 'm', contextStorage: { m: { module: 'memory' } } }), { store: 'm', persistent: false });
  });
});

describe('the pending queue on a fake clock', () => {
  let clock: sinon.SinonFakeTimers;
  beforeEach(() => {
    clock = sinon.useFakeTimers({ now: 1_000_000 });
    sinon.stub(Math, 'random').returns(0.5);
  });
  afterEach(() => {
    sinon.restore();
    clock.restore();
  });

  function queue(apply: (e: PendingEntry) => Promise<HostState>, initial?: unknown) {
    const ctx = memoryContext(initial);
    const reports: [string, PendingOutcome][] = [];
    const q = new PendingQueue({ context: ctx, store: undefined, baseMs: 1000, apply, report: (e, o) => reports.push([e.host, o]), log: () => {} });
    return { q, ctx, reports };
  }

  it('retries with backoff while away, applies when the host answers, and reports it once', async () => {
    const times: number[] = [];
    let up = false;
    const { q, ctx, reports } = queue(async () => {
      times.push(Date.now());
      if (!up) throw away();
      return { host: 'h1', state: 'isolated' } as HostState;
    });
    await q.loaded;
    const e = q.add('h1', 'node1', REQ, 60, away());
    assert.equal(e.next - e.since, 1000);
    await Promise.resolve();
    assert.ok((ctx.data.get(PENDING_KEY) as Record<string, unknown>).h1, 'stored');
    await clock.tickAsync(1000 + 2000 + 4000);
    assert.deepEqual(times.map((t) => t - 1_000_000), [1000, 3000, 7000]);
    up = true;
    await clock.tickAsync(8000);
    assert.equal(reports.length, 1);
    assert.equal(reports[0][1].outcome, 'applied');
    assert.equal(q.size, 0);
    assert.deepEqual(ctx.data.get(PENDING_KEY), {});
  });

  it('never applies past the bound: the last attempt is at the bound and reports expired', async () => {
    let applied = 0;
    const { q, reports } = queue(async () => {
      applied++;
      throw away();
    });
    q.add('h1', 'node1', REQ, 5, away());
    await clock.tickAsync(60_000);
    // attempts at 1 s and 3 s; then the bound (5 s): expired, not tried
    assert.equal(applied, 2);
    assert.deepEqual(reports.map(([, o]) => o.outcome), ['expired']);
    assert.equal(q.size, 0);
  });

  it('a cancelled entry is never tried; a refusal that is not away ends it as failed', async () => {
    let applied = 0;
    const { q, reports } = queue(async () => {
      applied++;
      throw new AuthFailedError('h1', 'denied');
    });
    q.add('h1', 'node1', REQ, 60, away());
    assert.ok(q.cancel('h1'));
    await clock.tickAsync(10_000);
    assert.equal(applied, 0);
    q.add('h2', 'node1', REQ, 60, away());
    await clock.tickAsync(10_000);
    assert.equal(applied, 1);
    assert.deepEqual(reports.map(([h, o]) => [h, o.outcome]), [['h2', 'failed']]);
  });

  it('a new request replaces the one kept; beyond the most entries it is PENDING_FULL', () => {
    const { q } = queue(async () => {
      throw away();
    });
    q.add('h1', 'node1', { reason: 'old' }, 60, away());
    q.add('h1', 'node2', { reason: 'new' }, 60, away());
    assert.equal(q.size, 1);
    assert.equal(q.get('h1')?.request.reason, 'new');
    for (let i = 2; i <= PENDING_MAX_ENTRIES; i++) q.add(`h${i}`, 'node1', REQ, 60, away());
    assert.throws(() => q.add('one-more', 'node1', REQ, 60, away()), { code: 'PENDING_FULL' });
    q.add('h1', 'node1', REQ, 60, away()); // replacing one is fine when full
    q.close();
  });

  it('at start, entries of the store resume and the expired ones are dropped and reported, never applied', async () => {
    const now = Date.now();
    const kept = (host: string, expires: number): PendingEntry => ({ host, nodeId: 'n', request: REQ, since: now - 10_000, expires, attempts: 3, next: now - 1000, lastError: { code: 'UNREACHABLE', message: 'x' } });
    const applied: string[] = [];
    const { q, ctx, reports } = queue(
      async (e) => {
        applied.push(e.host);
        return { host: e.host, state: 'isolated' } as HostState;
      },
      { old: kept('old', now - 1), live: kept('live', now + 60_000) },
    );
    await q.loaded;
    await Promise.resolve();
    assert.deepEqual(Object.keys(ctx.data.get(PENDING_KEY) as object), ['live'], 'the expired entry is dropped from the store');
    await clock.tickAsync(1000);
    assert.deepEqual(applied, ['live']);
    assert.deepEqual(reports.map(([h, o]) => [h, o.outcome]).sort(), [['live', 'applied'], ['old', 'expired']]);
  });
});
