/**
 * The one rule for a lab suite whose lab, containers, runtime or browser this machine lacks: with
 * CI=true the suite FAILS (a CI run never counts what it did not run as passing); otherwise it is
 * skipped, its tests shown as pending, and the reason printed above them.
 */

/** Whether something a suite needs is here; `why` says what is missing. */
export interface Need {
  ok: boolean;
  why?: string;
}

/**
 * For a mocha `before` hook: nothing when `why` is undefined; else fails with CI=true
 * (`<what> unavailable in CI: <why>`), or prints the reason and skips the suite.
 */
export function skipOrFail(ctx: Mocha.Context, what: string, why: string | undefined): void {
  if (why === undefined) return;
  if (process.env.CI === 'true') throw new Error(`${what} unavailable in CI: ${why}`);
  // printed under the suite's title, above its tests (mocha's pending has no reason of its own)
  console.log(`      (pending: ${what} unavailable: ${why})`);
  ctx.skip();
}

/** The first reason among `needs` (undefined when all are there). */
export function missing(...needs: Need[]): string | undefined {
  const first = needs.find((n) => !n.ok);
  return first ? (first.why ?? 'unavailable') : undefined;
}
