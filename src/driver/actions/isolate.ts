/**
 * isolate: one transaction that replaces the pack's table and nothing else. On a warm connection
 * this is ONE exec: the state the driver last saw on the host (or, first time, "not isolated") is
 * claimed at the head of the same transaction. Only when that guess was refused does the driver
 * read the host and apply again, once.
 */
import { NftFailedError, ParseError, ValidationError } from '../errors';
import { dedupeExceptions, probeConflict, type Exception, type IsolateRequest, type Target } from '../policy';
import { expandPresets } from '../presets';
import { renderIsolate, renderRelease, type ManagementEndpoint, type StateDoc } from '../ruleset';
import { editFindings, inspectCommands, parseInspected } from '../tamper';
import type { HostState } from '../state';
import { type ApplyHeader } from '../host/apply-input';
import { severFilters } from '../host/sever';
import { localReleaseNotice } from '../host/local-release';
import { refusal } from '../host/preflight';
import { claimOf, firstGeneration, retryClaim, type Known } from '../claim';
import { presetServers, resolveUsers, type HostSession } from '../session';
import { appliedState, assertRenderable, bootOf, claimed, readTable } from './common';
import { applyVerified } from './verify';
import { assertProbeTool, probeRecord } from './probe';

/** What the host's users are told when a timed isolation they were told about ends by itself. */
export const RELEASE_NOTICE = 'The network isolation of this host has ended (timed release).';

/** What one isolate applies, whatever the host holds now. */
interface Plan {
  req: IsolateRequest;
  management: ManagementEndpoint[];
  exceptions: Exception[];
  sever: ApplyHeader['sever'];
}

export async function isolate(s: HostSession, req: IsolateRequest): Promise<HostState> {
  const plan = await planOf(s, req);
  return retryClaim(
    // the first try claims the driver's guess; any nft refusal of it (the claim, or a table the
    // guess did not know of) changed nothing: read the host and apply once more, built on the read
    { host: s.host, tries: 2, guesses: 1, lost: (err, attempt) => attempt === 1 && err instanceof NftFailedError },
    async (attempt) => {
      if (attempt === 1) return applyIsolation(s, plan, s.ctx.beliefs.get(s.target) ?? null, true);
      s.ctx.beliefs.forget(s.target);
      // a damaged or tampered table of ours is replaced, not an obstacle to isolating
      const current = await readTable(s).catch((err: unknown) => {
        if (err instanceof ParseError) return null;
        throw err;
      });
      return applyIsolation(s, plan, current, false, current?.listing);
    },
  );
}

/**
 * The exceptions as this host makes them: presets resolve to its own servers and management
 * networks, uid names to numbers, all read from the host (once per connection) before anything is
 * applied; refused when the host cannot do what they need.
 */
async function planOf(s: HostSession, req: IsolateRequest): Promise<Plan> {
  const management = s.management(req.force);
  // what the host can do: asked in the first isolate of each connection (alongside the lookups
  // below), then known; a warm isolate pays nothing for it
  const caps = s.capabilities();
  caps.catch(() => undefined);
  const servers = await presetServers(s, req.presets, req.servers);
  const own = await resolveUsers(s, req.exceptions);
  const exceptions = dedupeExceptions([...expandPresets(req.presets, { management, servers }), ...own]);
  assertRenderable(exceptions);
  const refused = refusal(s.host, await caps, { persist: req.persist === true, exceptions });
  if (refused) throw refused;
  if (req.probe) {
    // a probe the exceptions or the management channel let through proves nothing: refused, and
    // so is a host without the probe's tool, both before anything is applied
    const conflict = probeConflict(req.probe, exceptions, management);
    if (conflict) throw new ValidationError(`invalid request: probe ${req.probe.addr} port ${req.probe.port} proves nothing: ${conflict}`, [{ path: 'request.probe.addr', message: conflict }]);
    await assertProbeTool(s);
  }
  const sever = req.mode === 'enforce' ? severFilters(management, exceptions) : undefined;
  return { req, management, exceptions, sever };
}

/**
 * One apply of the plan over `current` (what the host is believed, or was just read, to hold):
 * with `claim`, that belief is claimed. `listing`: the host's table as read just now.
 */
async function applyIsolation(s: HostSession, plan: Plan, current: Known | null, claim: boolean, listing?: Record<string, unknown>[]): Promise<HostState> {
  const { target } = s;
  const { req, sever } = plan;
  const doc = docOf(plan, current, s.ctx.now());
  // the same isolation again: the same generation, so the table is byte for byte the same
  // (still re-asserted: a table removed behind our back is put back, and that is a change).
  // A first isolation starts at a random generation, so that a belief about an earlier
  // isolation of this host (released and isolated again since, by anyone) cannot match it
  const same = current !== null && JSON.stringify(current.doc) === JSON.stringify(doc);
  const gen = same ? current.gen : current ? current.gen + 1 : firstGeneration();
  const batch = renderIsolate(target.table, doc, gen);
  const release = timerOf(target, req, doc, gen, current, batch);
  // the same generation again: the same exec first lists what the table holds now (just
  // before the batch replaces it), so that an edit made in place (by root on the host) is
  // seen, and said, as it is undone. After a read, that read's listing is compared
  const head = claim ? claimOf(target.table, current) : [];
  const inspect = same && claim ? { nftables: inspectCommands(target.table) } : undefined;
  const { out, probe } = req.verify || req.probe
    ? await applyVerified(s, { doc, gen, current, release, claim: head, sever, inspect, probe: req.probe, fresh: req.verify })
    : { out: await s.apply(claimed(head, batch), { ...release, sever, inspect }), probe: undefined };
  s.ctx.beliefs.remember(target, { doc, gen });
  s.ctx.beliefs.madeHere(target, gen);
  const applied = appliedState(target, doc, gen, sever, out);
  const state = probe && req.probe ? { ...applied, probe: probeRecord(req.probe, probe) } : applied;
  const edited = same ? editFindings(claim ? parseInspected(out) : (listing ?? null), target.table, renderIsolate(target.table, current.doc, current.gen)) : [];
  if (edited.length === 0) return { ...state, changed: !same };
  return {
    ...state,
    tampered: edited,
    warnings: [...state.warnings, `the isolation (generation ${gen}) had been edited in place by something other than this controller (${edited.join('; ')}): re-applied as recorded`],
    changed: true,
  };
}

/**
 * The record the isolation keeps on the host: since, and each of reason, case and requester
 * when the request leaves it out, carried over from `current`.
 */
function docOf(plan: Plan, current: Known | null, now: Date): StateDoc {
  const { req } = plan;
  const kase = req.case ?? current?.doc.case;
  const requestedBy = req.requestedBy ?? current?.doc.requestedBy;
  return {
    v: 1,
    since: current?.doc.since ?? now.toISOString(),
    reason: req.reason ?? current?.doc.reason ?? null,
    // absent when none: the record (and the table) of an isolation without them is as before
    ...(kase !== undefined ? { case: kase } : {}),
    ...(requestedBy !== undefined ? { requestedBy } : {}),
    mode: req.mode,
    expiresAt: req.duration > 0 ? new Date(now.getTime() + req.duration * 1000).toISOString() : null,
    management: plan.management,
    exceptions: plan.exceptions,
    ...(req.persist ? { persist: true } : {}),
  };
}

/** What the apply script does beside the batch: the release timer, notices, the boot unit, the guard unit. */
function timerOf(target: Target, req: IsolateRequest, doc: StateDoc, gen: number, current: Known | null, batch: ReturnType<typeof renderIsolate>): ApplyHeader {
  return {
    // no timer to arm and none known to cancel: leave the host's timers alone
    seconds: req.duration === 0 && !req.verify && !req.probe && (current === null || current.doc.expiresAt === null) ? 'keep' : req.duration,
    release: renderRelease(target.table, doc),
    // the notice ends with how root at the console releases the host without the controller
    notice: req.wall !== undefined ? `${req.wall}\n\n${localReleaseNotice(target.table)}` : undefined,
    releaseNotice: req.wall !== undefined && req.duration > 0 ? RELEASE_NOTICE : undefined,
    // a new isolation replaces the old one's boot unit too: installed, or removed
    boot: bootOf(target.table, doc, gen),
    // the host's guard unit keeps an enforced isolation (systemd hosts): its copy, this batch
    guard: req.mode === 'enforce' ? { gen, batch } : null,
  };
}
