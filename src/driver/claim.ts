/**
 * The claim rule. Every change the driver makes is built on what it believes the host holds (a
 * belief: the isolation it last saw there, or "not isolated"), and the same transaction claims that
 * belief at its head: `create table` fails if the table exists; deleting the generation element
 * we saw fails if the generation moved on. A refused claim changed nothing (nft applies the batch
 * as one transaction): the belief was stale or another controller won a race, and the action reads
 * the host and tries again, a bounded number of times (`retryClaim`).
 *
 * Not to be confused with the host's guard unit (the self-healing systemd unit, `Timer.guard`) or
 * the management channel (the lockout protection, `managementOf`).
 */
import { randomInt } from 'crypto';
import { ConcurrentChangeError, NftFailedError } from './errors';
import type { Target } from './policy';
import type { StateDoc } from './ruleset';
import type { GuardReport } from './host/status';

/** The isolation as the driver last saw it on a host. */
export type Known = { doc: StateDoc; gen: number };

/** nft's refusal of a claim on a table or generation element that is not there */
const MISSING = /No such file or directory/;
/** nft's refusal of `create table` on a table that is there */
const EXISTS = /File exists/;

/** The head of a transaction that claims the state we believe the host is in. */
export function claimOf(table: string, current: Known | null): unknown[] {
  if (current === null) return [{ create: { table: { family: 'inet', name: table } } }];
  return [{ delete: { element: { family: 'inet', table, name: 'gen', elem: [current.gen] } } }];
}

/**
 * Whether a failed change lost its claim: nft refused it because what it claimed (the table, the
 * generation element) is not there. The one place that reads nft's words for it.
 */
export function isClaimLost(err: unknown): boolean {
  return err instanceof NftFailedError && MISSING.test(err.stderr);
}

/** Whether nft refused a batch because the table it creates is there already (unisolate's "free" guess). */
export function isTableThere(err: unknown): boolean {
  return err instanceof NftFailedError && EXISTS.test(err.stderr);
}

/** Whether a read's stderr says the table is not there (not isolated), rather than nft missing. */
export function isTableMissing(stderr: string): boolean {
  return MISSING.test(stderr) && !/not found/.test(stderr);
}

/**
 * Most tries of a change that lost a race with another controller (its claim failed): each one
 * reads the host again, after a short random pause so that two losers do not collide again in step.
 */
export const MAX_RACE_ATTEMPTS = 6;

function raceBackoff(attempt: number): Promise<void> {
  const ms = Math.round((10 + Math.random() * 40) * attempt);
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export interface RetryPolicy {
  /** the host, for CONCURRENT_CHANGE */
  host: string;
  /** most tries in all; the last lost claim is CONCURRENT_CHANGE */
  tries: number;
  /** the first tries that are guesses, not races: tried again at once (the pauses count from after them) */
  guesses?: number;
  /** whether this failure of try `attempt` lost the claim (default: isClaimLost) */
  lost?: (err: unknown, attempt: number) => boolean;
}

/**
 * Runs `step(1)`, `step(2)`, ... until one succeeds or fails otherwise than by losing its claim.
 * After a lost guess it tries again at once; after a lost race, after raceBackoff(the races lost
 * so far). Losing try `tries` is CONCURRENT_CHANGE.
 */
export async function retryClaim<T>(policy: RetryPolicy, step: (attempt: number) => Promise<T>): Promise<T> {
  const lost = policy.lost ?? isClaimLost;
  const guesses = policy.guesses ?? 0;
  for (let attempt = 1; ; attempt++) {
    try {
      return await step(attempt);
    } catch (err) {
      if (!lost(err, attempt)) throw err;
      if (attempt >= policy.tries) throw new ConcurrentChangeError(policy.host);
      if (attempt > guesses) await raceBackoff(attempt - guesses);
    }
  }
}

/**
 * The generation of a first isolation: random (1 .. 2^29), not 1, so that generations of different
 * isolations of one host do not repeat (a claim names a generation: it must not match an
 * isolation it was not about). Each change adds 1 or 2; nft's mark holds 32 bits, and the host's
 * guard unit reports a generation in at most 9 digits (host/status.ts's parseGuard).
 */
export function firstGeneration(): number {
  return 1 + randomInt(2 ** 29);
}

const MAX_KNOWN = 10_000;

function keyOf(t: Target): string {
  return `${t.host}:${t.port}:${t.table}`;
}

/**
 * What the driver believes of each host (three-valued: an isolation, null for "not isolated", or
 * nothing known), always claimed before it is acted on; and the generation this controller last
 * applied there, which with the generation the host's guard unit was given tells a table replaced
 * past the pack (status) from a change of ours. Both bounded, least recently used first.
 */
export class Beliefs {
  private readonly known = new Map<string, Known | null>();
  private readonly made = new Map<string, number>();

  /** undefined: nothing known; null: not isolated */
  get(target: Target): Known | null | undefined {
    return this.known.get(keyOf(target));
  }

  remember(target: Target, known: Known | null): void {
    touch(this.known, keyOf(target), known);
  }

  forget(target: Target): void {
    this.known.delete(keyOf(target));
  }

  /** This controller applied generation `gen` on the host. */
  madeHere(target: Target, gen: number): void {
    touch(this.made, keyOf(target), gen);
  }

  /** This controller's last change there is gone (released, or rolled back to none). */
  unmade(target: Target): void {
    this.made.delete(keyOf(target));
  }

  /**
   * The generation the host's guard unit kept, when the live one is another that this controller
   * did not make (null: none such). Every change of the pack gives the guard unit its generation
   * under its lock (another controller's too), or ends it: one it was not given came past the
   * pack. Without a guard record there is nothing to compare with.
   */
  foreign(target: Target, live: number, g: GuardReport | null): number | null {
    if (!g || g.gen === live || this.made.get(keyOf(target)) === live) return null;
    return g.gen;
  }
}

function touch<V>(map: Map<string, V>, key: string, value: V): void {
  map.delete(key); // re-insert: the map's order is least recently used first
  map.set(key, value);
  if (map.size > MAX_KNOWN) map.delete(map.keys().next().value!);
}
