/**
 * Verify, then commit (like a router's "commit confirmed"): the isolation goes in with a rollback
 * armed on the host, in the same exec; then a fresh SSH connection must reach the host and
 * confirm, which disarms the rollback and arms the real release timer. If the fresh connection
 * fails, the controller rolls back at once over the connection that still works; if even that
 * fails, the host rolls back by itself when the window closes.
 *
 * With a blocking probe, the host first tries to reach the probe address over the connection that
 * applied: reached, and it is the same rollback (PROBE_REACHED). Without verify, a probe uses the
 * same armed rollback and confirms over that same connection (no fresh one is asked for).
 */
import { ConcurrentChangeError, IsolationError, PrivilegeError, ProbeReachedError, UnsupportedError, VerifyFailedError } from '../errors';
import type { Probe } from '../policy';
import { reached } from '../host/probe';
import { tryProbe, type ProbeResult } from './probe';
import { renderConfirm, renderIsolate, renderRelease, renderRollback, type Batch, type StateDoc } from '../ruleset';
import { guardLines, nftInput, parseGuardBlocked, withoutGuardLines } from '../host/apply';
import { type ApplyHeader } from '../host/apply-input';
import { fallbackRollback, lockWaitS } from '../host/guard';
import { isClaimLost, type Known } from '../claim';
import { applyError, type HostSession } from '../session';
import { claimed, guardUnitCopy } from './common';

/** what a verify's fresh SSH connection may take, kept out of the first apply's lock wait (ms) */
const VERIFY_CONNECT_MS = 2000;

export interface Verified {
  doc: StateDoc;
  gen: number;
  /** what the host held before (the rollback restores it) */
  current: Known | null;
  /** what the apply script does once the isolation is confirmed */
  release: ApplyHeader;
  /** the claim at the head of the first apply */
  claim: unknown[];
  sever?: ApplyHeader['sever'];
  inspect?: Batch;
  /** the blocking probe, tried once the isolation is in and before the confirm */
  probe?: Probe;
  /** prove a fresh SSH connection (verify); false: a probe alone, confirmed over this connection */
  fresh: boolean;
}

/** A probe that got through: rolled back like a failed verify, said as PROBE_REACHED. */
class Reached extends Error {
  constructor(readonly result: ProbeResult) {
    super(`probe reached (${result.outcome})`);
  }
}

/** The rollback the first apply arms, and what restores the previous isolation's own release time. */
interface Rollback {
  /** epoch s: the host rolls back by itself then */
  deadline: number;
  batch: Batch;
  prevRelease: Batch | null;
  prevExpiry: number | null;
}

/** Applies, tries the probe, proves a fresh connection gets through, confirms; returns what the host printed and the probe's result. */
export async function applyVerified(s: HostSession, v: Verified): Promise<{ out: string; probe?: ProbeResult }> {
  const { target } = s;
  const { doc, gen, current, release } = v;
  const nowS = Math.floor(s.ctx.now().getTime() / 1000);
  const deadline = nowS + s.ctx.verifyWindowS;
  const rb: Rollback = {
    deadline,
    batch: renderRollback(target.table, deadline, current ? { doc: current.doc, gen: current.gen } : null),
    // a rollback restores the previous isolation with its own release time, on the host and here
    prevRelease: current ? renderRelease(target.table, current.doc) : null,
    prevExpiry: current?.doc.expiresAt ? Math.floor(Date.parse(current.doc.expiresAt) / 1000) : null,
  };
  const then = rb.prevRelease && rb.prevExpiry !== null ? { seconds: Math.max(1, rb.prevExpiry - deadline), batch: rb.prevRelease } : undefined;
  const applied = renderIsolate(target.table, doc, gen, deadline);
  // until confirmed, the host's guard unit keeps what was applied (the rollback deadline as expiry)
  // if it fires, the host's rollback re-arms the guard unit with the previous isolation's copy
  const rearm = current ? guardUnitCopy(target.table, current.doc, current.gen + 2) : null;
  // every wait on the host fits the time left: this apply's lock wait leaves more than half of
  // it to the fresh connection and the confirm (which may wait for the lock as long again)
  const first = lockWaitS((s.remaining('verify: apply') - VERIFY_CONNECT_MS) / 2);
  const out = await s.apply(claimed(v.claim, applied), {
    seconds: s.ctx.verifyWindowS,
    release: rb.batch,
    then,
    sever: v.sever,
    guard: release.guard ? { gen, batch: applied } : release.guard,
    rearm,
    lockWaitS: first,
    inspect: v.inspect,
  });
  let probed: ProbeResult | undefined;
  try {
    if (v.probe) {
      probed = await tryProbe(s, v.probe);
      if (reached(probed.outcome)) throw new Reached(probed);
    }
    return { out: await confirm(s, v, deadline, out), probe: probed };
  } catch (err) {
    // the confirm found its rollback deadline gone: another controller released or replaced this
    // isolation while it was being verified. Theirs is the newer change: nothing to roll back
    // (the rollback claims the same element and would fail), and no timer of ours is left to fire
    if (isClaimLost(err)) {
      s.ctx.beliefs.forget(target);
      throw new ConcurrentChangeError(target.host, 'it was released or replaced by another controller while being verified');
    }
    const rolledBack = await rollBack(s, current, rb);
    s.ctx.beliefs.forget(target);
    const rollbackAt = new Date(deadline * 1000).toISOString();
    if (err instanceof Reached && v.probe) throw new ProbeReachedError(target.host, v.probe, err.result.outcome, rolledBack, rollbackAt);
    // the host answered but could not keep the isolation as asked (persist): say that, not "unreachable"
    if (rolledBack && (err instanceof PrivilegeError || err instanceof UnsupportedError)) throw err;
    // no fresh connection was asked for: what failed is said as it is, once it is rolled back
    if (!v.fresh && rolledBack && err instanceof IsolationError) throw err;
    throw new VerifyFailedError(target.host, rolledBack, rollbackAt, { cause: err });
  }
}

/** Over a fresh connection (through the same bastion, when there is one), or for a probe alone this one: the confirm. */
async function confirm(s: HostSession, v: Verified, deadline: number, out: string): Promise<string> {
  const fresh = v.fresh ? await s.fresh('verify: fresh SSH connect') : s;
  try {
    // its lock wait fits what is left; after a lock held through the whole first wait (the
    // guard unit ended), one try: the time goes to the confirm, not to waiting on it again
    const left = fresh.remaining('verify: confirm');
    const wait = parseGuardBlocked(out) ? 1 : lockWaitS(left);
    const batch = renderConfirm(s.target.table, deadline, v.doc);
    const { cmd, stdin } = nftInput(s.target, batch, { ...v.release, lockWaitS: wait });
    const res = await fresh.exec(cmd, stdin, 'verify: confirm', { timeoutMs: left });
    if (res.code !== 0) throw applyError(s.host, res, batch, v.release);
    // the guard unit is what the confirm left (it re-arms it with the confirmed isolation, or
    // ends it beside a release timer that is a process of the session)
    return [...withoutGuardLines(out), ...guardLines(res.stdout)].join('\n');
  } finally {
    if (fresh !== s) fresh.close();
  }
}

/** The controller's own rollback over the connection that still works; whether it went in. */
async function rollBack(s: HostSession, current: Known | null, rb: Rollback): Promise<boolean> {
  const { target } = s;
  try {
    const left = rb.prevExpiry !== null ? Math.max(1, rb.prevExpiry - Math.floor(s.ctx.now().getTime() / 1000)) : 0;
    // more time than any wait on the host (past the operation's deadline if need be), and a
    // lock wait well inside it: a rollback cut short leaves the host to its own timer
    const budget = fallbackRollback(s.deadline.msLeft);
    const { cmd, stdin } = nftInput(target, rb.batch, {
      seconds: left,
      release: left > 0 ? rb.prevRelease : null,
      guard: current ? guardUnitCopy(target.table, current.doc, current.gen + 2) : null,
      lockWaitS: budget.lockWaitS,
    });
    const res = await s.exec(cmd, stdin, 'verify: rollback', { timeoutMs: budget.timeoutMs });
    const rolledBack = res.code === 0;
    // the previous isolation, back as generation + 2 (renderRollback)
    if (rolledBack) {
      if (current) s.ctx.beliefs.madeHere(target, current.gen + 2);
      else s.ctx.beliefs.unmade(target);
    }
    return rolledBack;
  } catch {
    // the link is gone too: the host's own timer rolls back when the window closes
    return false;
  }
}
