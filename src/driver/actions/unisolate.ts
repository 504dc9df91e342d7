/** unisolate: deletes the pack's table in one transaction; a no-op when the host is not isolated. */
import type { unisolateRequestSchema } from '../policy';
import { renderUnisolate } from '../ruleset';
import { notIsolated, type HostState } from '../state';
import type { ApplyHeader } from '../host/apply-input';
import { isClaimLost, isTableThere, MAX_RACE_ATTEMPTS, retryClaim } from '../claim';
import type { HostSession } from '../session';

/** the request as validated */
type UnisolateRequest = ReturnType<typeof unisolateRequestSchema.parse>;

export async function unisolate(s: HostSession, req: UnisolateRequest): Promise<HostState> {
  const { target } = s;
  // the same script cancels any release timer of this table on the host (unless it is known
  // that there is none), and removes a boot unit
  const known = s.ctx.beliefs.get(target);
  const noTimer = known === null || (known !== undefined && known.doc.expiresAt === null);
  const timer: ApplyHeader = { seconds: noTimer ? 'keep' : 0, release: null, notice: req.wall, boot: '-', guard: null };
  // Whether it changed the host (released now, or was not isolated) is told by which of the
  // two batches nft accepts (release: the table was there; free: it was not). The script arms,
  // cancels or removes nothing after a batch nft refused, so a wrong guess changes nothing. The
  // driver's belief only picks which one goes first: one exec when it is right, two when it is
  // wrong. No generation is claimed: whoever's isolation it is, unisolate removes it.
  const { release, free } = renderUnisolate(target.table);
  const firstGuess = known !== null; // unknown (undefined): released is the more useful first guess
  // the guess flips on every try: a guess refused is the other one's answer
  const isolatedAt = (attempt: number) => (attempt % 2 === 1 ? firstGuess : !firstGuess);
  const changed = await retryClaim(
    {
      host: target.host,
      // released, then isolated again by someone else (or the other way round), every time
      tries: 2 * MAX_RACE_ATTEMPTS,
      guesses: 2,
      // only the answer the batch asks about flips the guess; any other failure is the answer
      lost: (err, attempt) => (isolatedAt(attempt) ? isClaimLost(err) : isTableThere(err)),
    },
    async (attempt) => {
      const isolated = isolatedAt(attempt);
      // after a wrong belief, cancel the host's timers whatever the driver believed of them
      await s.apply(isolated ? release : free, attempt > 1 ? { ...timer, seconds: 0 } : timer);
      return isolated;
    },
  );
  s.ctx.beliefs.remember(target, null);
  s.ctx.beliefs.unmade(target);
  return { ...notIsolated(target.host), changed };
}
