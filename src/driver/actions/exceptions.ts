/**
 * setExceptions: changes the exceptions of a live isolation in one transaction (set elements and
 * the record only). `remove` ignores exceptions that are not there; the comment is not part of
 * identity.
 */
import { NotIsolatedError } from '../errors';
import { dedupeExceptions, exceptionKey, exceptionListSchema, validate, type Exception, type ExceptionOp } from '../policy';
import { renderUpdate, type StateDoc } from '../ruleset';
import type { HostState, ParsedTable } from '../state';
import { type ApplyHeader } from '../host/apply-input';
import { severFilters } from '../host/sever';
import { MAX_RACE_ATTEMPTS, retryClaim, type Known } from '../claim';
import { resolveUsers, type HostSession } from '../session';
import { appliedState, assertRenderable, bootOf, guardUnitCopy, readTable } from './common';

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

export async function setExceptions(s: HostSession, op: ExceptionOp, parsed: readonly Exception[]): Promise<HostState> {
  const { target } = s;
  const given = await resolveUsers(s, parsed);
  // first from what the driver last saw (one exec when it is right: the update claims that
  // generation), then from a fresh read. A stale belief is a guess, not a race: tried again at
  // once, and the races still get their MAX_RACE_ATTEMPTS tries
  const cached = s.ctx.beliefs.get(target) ?? undefined;
  const guesses = cached ? 1 : 0;
  return retryClaim({ host: target.host, tries: guesses + MAX_RACE_ATTEMPTS, guesses }, async (attempt) => {
    const read = attempt > guesses ? await readTable(s) : null;
    const current: Known | null = read ?? (attempt > guesses ? null : cached!);
    if (!current) throw new NotIsolatedError(target.host);
    return update(s, op, given, current, read);
  });
}

/** One update of `current` (claimed: its generation goes, the next one comes); `read`: when it was read just now. */
async function update(s: HostSession, op: ExceptionOp, given: readonly Exception[], current: Known, read: ParsedTable | null): Promise<HostState> {
  const { target } = s;
  const exceptions = nextExceptions(current.doc.exceptions, op, given);
  validate(exceptionListSchema, exceptions, 'exceptions');
  assertRenderable(exceptions);
  const doc: StateDoc = { ...current.doc, exceptions };
  const gen = current.gen + 1;
  // what an exception no longer names is cut, as on isolate
  const kept = new Set(exceptions.map(exceptionKey));
  const narrowed = doc.mode === 'enforce' && current.doc.exceptions.some((e) => !kept.has(exceptionKey(e)));
  const sever = narrowed ? severFilters(doc.management, exceptions) : undefined;
  // a persisted isolation's boot unit follows the change, in the same exec, and so does the
  // copy the host's guard unit keeps (through the apply script, under its lock)
  const timer: ApplyHeader = { seconds: 'keep', release: null, sever, ...(doc.persist ? { boot: bootOf(target.table, doc, gen) } : {}), guard: guardUnitCopy(target.table, doc, gen) };
  const out = await s.apply(renderUpdate(target.table, doc, current.gen, current.doc.exceptions), timer);
  s.ctx.beliefs.remember(target, { doc, gen });
  s.ctx.beliefs.madeHere(target, gen);
  const state = appliedState(target, doc, gen, sever, out, read);
  const changed = JSON.stringify(current.doc.exceptions) !== JSON.stringify(exceptions);
  // from the cache, counters and observed flows were not read this time: status reads them
  return read ? { ...state, changed } : { ...state, dropped: null, changed };
}
