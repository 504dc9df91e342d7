/**
 * What the lab scripts (bench.ts, soak.ts) share: their numeric options, and the one way they end
 * (the driver and the lab closed whatever happened; a failure printed, exit code 1).
 */
import type { IsolationDriver } from '../src/driver';
import type { Lab } from '../test/lab/lab';

/** The number after `name` on the command line, or `fallback`. */
export function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(name);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
}

/** Runs `body`, then closes `drivers` and `lab` whatever happened. */
export async function closing(lab: Lab, drivers: IsolationDriver[], body: () => Promise<void>): Promise<void> {
  try {
    await body();
  } finally {
    for (const d of drivers) await d.close();
    await lab.close();
  }
}

/** The script's entry: a failure is printed with its stack and ends the process with 1. */
export function runMain(main: () => Promise<void>): void {
  main().catch((err) => {
    console.error(err instanceof Error ? err.stack : err);
    process.exit(1);
  });
}
