/** Child processes of the lab: stopping one the same bounded way everywhere. */
import type { ChildProcess } from 'child_process';

/**
 * Stops `p`: SIGTERM, then SIGKILL if it has not exited after `graceMs`; resolves once it exited
 * (at once when it already has).
 */
export function stopChild(p: ChildProcess | null | undefined, graceMs: number): Promise<void> {
  if (!p || p.exitCode !== null || p.signalCode !== null) return Promise.resolve();
  return new Promise<void>((resolve) => {
    const hard = setTimeout(() => p.kill('SIGKILL'), graceMs);
    p.once('exit', () => {
      clearTimeout(hard);
      resolve();
    });
    p.kill('SIGTERM');
  });
}
