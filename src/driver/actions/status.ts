/** status: reads the state kept on the host, with the host's guard unit record, and says what was done past the pack. */
import { renderIsolate } from '../ruleset';
import { tamperFindings } from '../tamper';
import { notIsolated, toHostState, type HostState } from '../state';
import type { GuardReport } from '../host/status';
import type { HostSession } from '../session';
import { localReleaseCommand } from '../host/local-release';
import { readTable } from './common';

export async function status(s: HostSession): Promise<HostState> {
  const { target } = s;
  const { beliefs } = s.ctx;
  const before = beliefs.get(target);
  const host: { guard: GuardReport | null } = { guard: null };
  let current = await readTable(s, host);
  // a generation this controller did not make and the guard unit was not given: read once more,
  // so that a change another controller made between the read of the guard's key and the
  // listing (it re-arms the guard unit with its own generation) is not taken for one
  if (current && beliefs.foreign(target, current.gen, host.guard) !== null) current = await readTable(s, host);
  if (!current) {
    const free = notIsolated(target.host);
    // gone, though this controller left it isolated and no release time had come
    const expiry = before?.doc.expiresAt ? Date.parse(before.doc.expiresAt) : Infinity;
    if (before && s.ctx.now().getTime() < expiry - 2000) {
      free.tampered = [`the isolation since ${before.doc.since} was removed by something other than this controller (root on the host: its local release, or tampering)`];
    }
    // the host's guard unit still holds an isolation that is not there: removed behind the pack's back
    if (host.guard && host.guard.state !== 'superseded') free.tampered.push(missingFinding(host.guard));
    return withGuardReport(free, host.guard);
  }
  const state: HostState = { ...toHostState(target.host, current), localRelease: localReleaseCommand(target.table) };
  state.tampered = tamperFindings(current.listing ?? [], target.table, renderIsolate(target.table, current.doc, current.gen));
  // the record can be rewritten with the table: what it says is then no proof
  const foreign = beliefs.foreign(target, current.gen, host.guard);
  if (foreign !== null) {
    state.tampered.unshift(
      `generation ${current.gen} was not made by this controller (the guard kept ${foreign}): the table and its record were replaced past the pack, by root on the host or a tool that does not re-arm the guard; what the record says is not what this controller set`,
    );
  }
  return withGuardReport(state, host.guard, current.gen);
}

/** What a missing isolation the host's guard unit still holds says about it. */
function missingFinding(g: GuardReport): string {
  if (g.alive && g.state === 'stalled') return `the isolation (generation ${g.gen}) is missing; the host's guard cannot re-apply it: it is stalled, its lock held by another process`;
  if (g.alive && !g.state.startsWith('gave-up')) return `the isolation (generation ${g.gen}) is missing; the host's guard is re-applying it`;
  return `the isolation (generation ${g.gen}) was removed and the host's guard is not running to re-apply it (stopped, or it gave up)`;
}

/** The state with the host's guard unit record: whether it runs for this generation, its heals, its giving up. */
function withGuardReport(state: HostState, g: GuardReport | null, gen?: number): HostState {
  if (!g) return state;
  const mine = gen === undefined || g.gen === gen;
  // a stalled guard unit (its lock held by another process) runs but can heal nothing: not a guard
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
  // `superseded` at the live generation: the record of the guard unit before a re-arm with this
  // one (the new one rewrites it once started); whether that one runs is the check below
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
