/**
 * What the actions share: the host's table read (the beliefs follow it), the pieces of an apply
 * (the claim at the head of a batch, the boot unit, the guard unit's copy) and the answer built
 * from what the host printed.
 */
import { ParseError, ValidationError } from '../errors';
import type { Exception, Target } from '../policy';
import { renderBootUnit, renderElements, renderIsolate, renderList, type Batch, type StateDoc } from '../ruleset';
import { parseTable, StateParseError, toHostState, withStateRead, type HostState, type ParsedTable } from '../state';
import { guardEndedWarning, parseGuardArmed, parseGuardBlocked, parseGuardEnded } from '../host/apply';
import { type ApplyHeader } from '../host/apply-input';
import { bootGuardExec } from '../host/boot';
import { localReleaseCommand } from '../host/local-release';
import { parseSevered, severWarning, type SeverReport } from '../host/sever';
import { parseGuard, splitStateRead, statusInput, type GuardReport } from '../host/status';
import { nftError } from '../transport';
import { isTableMissing } from '../claim';
import type { HostSession } from '../session';

/**
 * The parsed table, or null when the host is not isolated; the belief follows what was read.
 * Always the status read: its answer is bounded whatever the host's users send (the dynamic sets'
 * elements stay on the host, the observed flows come back as the top ones). With `host`, the
 * host's guard unit record, from the same exec.
 */
export async function readTable(s: HostSession, host?: { guard: GuardReport | null }): Promise<ParsedTable | null> {
  const { target } = s;
  const { cmd, stdin } = statusInput(target, renderList(target.table));
  const res = await s.exec(cmd, stdin, 'remote command');
  const split = parseGuard(res.stdout);
  if (host) host.guard = split.guard;
  const { json, extras } = splitStateRead(split.json);
  res.stdout = json;
  if (res.code !== 0) {
    if (isTableMissing(res.stderr)) {
      s.ctx.beliefs.remember(target, null);
      return null;
    }
    throw nftError(target.host, res);
  }
  try {
    const parsed = withStateRead(parseTable(res.stdout, target.table), extras);
    s.ctx.beliefs.remember(target, { doc: parsed.doc, gen: parsed.gen });
    return parsed;
  } catch (err) {
    s.ctx.beliefs.forget(target);
    if (err instanceof StateParseError) throw new ParseError(target.host, err.message);
    throw err;
  }
}

/** Exceptions whose overlaps would need too many set elements are refused before anything is sent. */
export function assertRenderable(exceptions: readonly Exception[]): void {
  try {
    renderElements(exceptions);
  } catch (err) {
    if (err instanceof RangeError) throw new ValidationError(`invalid exceptions: ${err.message}`, [{ path: 'exceptions', message: err.message }]);
    throw err;
  }
}

/** The batch with a claim (claim.ts's claimOf) at its head. */
export function claimed(claim: unknown[], batch: Batch): Batch {
  return claim.length === 0 ? batch : { nftables: [...claim, ...batch.nftables] };
}

/** The boot unit for a persisted isolation (its full isolate batch), or `-` to remove any. */
export function bootOf(table: string, doc: StateDoc, gen: number): string {
  // an enforced one comes back guarded: the unit re-arms the host's guard unit with what it loaded
  return doc.persist ? renderBootUnit(table, renderIsolate(table, doc, gen, null), doc.mode === 'enforce' ? bootGuardExec(table, gen) : undefined) : '-';
}

/** What the host's guard unit (self-healing, systemd hosts) keeps: an enforced isolation's full batch; null ends it. */
export function guardUnitCopy(table: string, doc: StateDoc, gen: number): ApplyHeader['guard'] {
  return doc.mode === 'enforce' ? { gen, batch: renderIsolate(table, doc, gen) } : null;
}

/** The state with what the host said about cutting connections (and a warning if it could not). */
export function withSevered(state: HostState, sever: ApplyHeader['sever'], stdout: string): HostState {
  if (!sever) return state;
  const report: SeverReport = parseSevered(stdout) ?? { cut: 0, left: 0, why: 'ok' };
  const warning = severWarning(report);
  return { ...state, severed: report.why === 'no-ss' ? null : report.cut, warnings: warning ? [...state.warnings, warning] : state.warnings };
}

/** The state with whether the apply script armed the host's guard unit. */
export function withGuardUnit(state: HostState, stdout: string): HostState {
  const blocked = parseGuardBlocked(stdout)
    ? ["the host's guard lock was held by another process for as long as this change could wait: the guard was ended, the isolation is not self-healing (isolate again to re-arm it)"]
    : [];
  const armed = parseGuardArmed(stdout);
  // the guard unit had ended before this change, other than by the pack: said once more, here
  const ended = parseGuardEnded(stdout);
  return { ...state, guard: armed, warnings: [...state.warnings, ...blocked, ...(ended ? [guardEndedWarning(ended, armed)] : [])] };
}

const ZERO = { packets: 0, bytes: 0 };

/**
 * The answer to a change that applied `doc` as generation `gen`: what the host printed (severed
 * connections, the guard unit) on the counters of `read` (a read of this operation), else zero.
 */
export function appliedState(target: Target, doc: StateDoc, gen: number, sever: ApplyHeader['sever'], out: string, read?: ParsedTable | null): HostState {
  const base = toHostState(target.host, {
    doc,
    gen,
    dropped: read?.dropped ?? { in: ZERO, out: ZERO, forward: ZERO },
    observed: read?.observed ?? [],
    ...(read ? { observedOmitted: read.observedOmitted, fullSets: read.fullSets } : {}),
  });
  // the console's own way out, in every answer that leaves the table on the host (as status says it)
  return withGuardUnit(withSevered({ ...base, localRelease: localReleaseCommand(target.table) }, sever, out), out);
}
