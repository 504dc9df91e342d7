/**
 * `npm run soak` (as root, not in CI): 1,000 isolate/unisolate cycles (or `--cycles N`) on one lab
 * host through one driver, with a status and an exception change in every tenth cycle. Prints the
 * process's memory, its open sockets and the processes on the lab host at the start and at the
 * end (after the pool is idle again), and exits 1 if sockets or processes did not come back to
 * where they started or the heap grew by more than 10 MiB. Bounded by its count and a deadline.
 */
import * as fs from 'fs';
import { IsolationDriver, type TargetInput } from '../src/driver';
import { createLab } from '../test/lab/lab';
import { arg, closing, runMain } from './common';

function sockets(): number {
  return fs.readdirSync('/proc/self/fd').filter((fd) => {
    try {
      return fs.readlinkSync(`/proc/self/fd/${fd}`).startsWith('socket:');
    } catch {
      return false;
    }
  }).length;
}

async function main(): Promise<void> {
  const cycles = arg('--cycles', 1000);
  const deadline = Date.now() + 60 * 60_000;
  const lab = await createLab({ hosts: 1 });
  const h = lab.hosts[0];
  const u = lab.users.sudo; // the least-privileged path, as in production
  const target: TargetInput = { host: h.v4, username: u.username, privateKey: u.privateKey, passphrase: u.passphrase, knownHosts: h.knownHosts, sudo: true, table: 'nrhi_soak' };
  const driver = new IsolationDriver({ idleMs: 2000 });
  const gc = (global as { gc?: () => void }).gc;
  const snapshot = async () => {
    gc?.();
    // the processes in the lab host's network namespace: its sshd, sessions, timers
    const names = lab.processes(h.ns);
    const m = process.memoryUsage();
    return { rss_mb: +(m.rss / 2 ** 20).toFixed(1), heap_mb: +(m.heapUsed / 2 ** 20).toFixed(1), sockets: sockets(), host_processes: names.length, host_process_names: names.join(' '), pool: driver.connections };
  };
  await closing(lab, [driver], async () => {
    await driver.status(target); // the first connection's own setup is not a leak
    await driver.close();
    await new Promise((r) => setTimeout(r, 500));
    const start = await snapshot();
    console.log(`start: ${JSON.stringify(start)}`);
    const t0 = Date.now();
    let done = 0;
    for (let i = 0; i < cycles && Date.now() < deadline; i++) {
      await driver.isolate(target, { presets: ['ssh', 'dns'], reason: `soak ${i}`, verify: i % 50 === 0 });
      if (i % 10 === 0) {
        await driver.setExceptions(target, 'add', [{ direction: 'out', proto: 'tcp', port: 443, comment: `c${i}` }]);
        await driver.status(target);
      }
      await driver.unisolate(target);
      done++;
      if (done % 100 === 0) console.log(`${done} cycles, ${((Date.now() - t0) / done).toFixed(1)} ms per cycle, rss ${(process.memoryUsage().rss / 2 ** 20).toFixed(1)} MiB`);
    }
    await driver.close();
    await new Promise((r) => setTimeout(r, 2500)); // sshd reaps its session processes
    const end = await snapshot();
    console.log(`end:   ${JSON.stringify(end)}`);
    const ok = end.sockets === start.sockets && end.host_processes === start.host_processes && end.pool === 0 && end.heap_mb - start.heap_mb < 10;
    console.log(`${done} cycles: ${ok ? 'back to where it started' : 'DID NOT come back to where it started'}${gc ? '' : ' (run with node --expose-gc for a heap after GC)'}`);
    if (!ok) process.exitCode = 1;
  });
}

runMain(main);
