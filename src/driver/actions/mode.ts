/**
 * setMode: switches a live isolation between audit and enforce in one transaction, keeping its
 * exceptions, reason, since and expiry (the release timer stays armed). The table is rebuilt, so
 * flows recorded in audit mode are gone afterwards: read them with `status` first.
 */
import { NotIsolatedError } from '../errors';
import type { Mode } from '../policy';
import { renderIsolate, type StateDoc } from '../ruleset';
import type { HostState } from '../state';
import { type ApplyHeader } from '../host/apply-input';
import { severFilters } from '../host/sever';
import { claimOf, MAX_RACE_ATTEMPTS, retryClaim } from '../claim';
import type { HostSession } from '../session';
import { appliedState, bootOf, claimed, guardUnitCopy, readTable } from './common';

export function setMode(s: HostSession, mode: Mode): Promise<HostState> {
  const { target } = s;
  // read each time: the mode is switched on what the host holds now
  return retryClaim({ host: target.host, tries: MAX_RACE_ATTEMPTS }, async () => {
    const current = await readTable(s);
    if (!current) throw new NotIsolatedError(target.host);
    const doc: StateDoc = { ...current.doc, mode };
    const gen = current.gen + 1;
    // switching to enforce cuts what the exceptions do not name, as isolate does
    const sever = mode === 'enforce' && current.doc.mode !== 'enforce' ? severFilters(doc.management, doc.exceptions) : undefined;
    const timer: ApplyHeader = { seconds: 'keep', release: null, sever, ...(doc.persist ? { boot: bootOf(target.table, doc, gen) } : {}), guard: guardUnitCopy(target.table, doc, gen) };
    // the rebuilt table claims the generation it was read at: a change made meanwhile (by
    // another controller) is never overwritten with the old exceptions
    const out = await s.apply(claimed(claimOf(target.table, current), renderIsolate(target.table, doc, gen)), timer);
    s.ctx.beliefs.remember(target, { doc, gen });
    s.ctx.beliefs.madeHere(target, gen);
    return { ...appliedState(target, doc, gen, sever, out), changed: current.doc.mode !== mode };
  });
}
