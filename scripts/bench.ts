/**
 * `npm run bench` (as root): measures the driver on lab hosts and prints a table; `--json` also
 * prints one JSON object as the last line. Not a test: it asserts nothing, it reports figures,
 * all from one run, side by side with
 *   - the floor: on the driver's own warm connection, a bare ssh2 exec of `nft -j -f -` with the
 *     very batch the driver's isolate sent, no driver logic around it;
 *   - the peer: what a careful shell playbook does, one OpenSSH `ssh` process per action piping the
 *     same batch (`ssh host nft -j -f - < batch`); and, labelled apart, the naive playbook, one
 *     `ssh` process per nft command of the same isolation.
 * The default path, verify-then-commit, is reported beside the floor too: it is what users run.
 * Options: --runs N (default 30, at least 30 for the report), --naive-runs N (the per-command peer,
 * default 5: each run is some 90 ssh processes), --hosts N (fan-out, default 50, at most 600 lab
 * hosts), --fanout-only (the fan-out figures alone: cold and warm, verify-then-commit and
 * `verify: false`, per-host cost, controller CPU and RSS), --concurrency N (the driver's
 * maxConcurrent, default 64), --json. Every loop is bounded by its count and by a deadline.
 */
import { execFileSync, spawn } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { performance } from 'perf_hooks';
import { IsolationDriver, type ApplyInfo, type IsolateRequestInput, type TargetInput } from '../src/driver';
import { createLab, labAvailable, MAX_LAB_HOSTS, type Lab, type LabHost } from '../test/lab/lab';

const TABLE = 'nrhi_bench';
const DEADLINE = Date.now() + 30 * 60_000; // the whole benchmark stops by itself after 30 minutes

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(name);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
}
const RUNS = arg('--runs', 30);
const NAIVE_RUNS = arg('--naive-runs', 5);
const FANOUT = arg('--hosts', 50);
const JSON_OUT = process.argv.includes('--json');
const FANOUT_ONLY = process.argv.includes('--fanout-only');
const CONCURRENCY = arg('--concurrency', 64);

function check(): void {
  if (Date.now() > DEADLINE) throw new Error('benchmark deadline reached');
}

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))];
}
const r1 = (x: number) => Math.round(x * 10) / 10;

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const t = performance.now();
  await fn();
  return performance.now() - t;
}

/** Runs `fn` n times (bounded), after `setup` each time (not timed); returns the times in ms. */
async function sample(n: number, fn: () => Promise<unknown>, setup?: () => Promise<unknown>): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    check();
    if (setup) await setup();
    out.push(await timed(fn));
  }
  return out;
}

/** A bare ssh2 exec with stdin, nothing around it: the floor. */
function bareExec(client: import('ssh2').Client, command: string, stdin: string): Promise<number | null> {
  return new Promise((resolve, reject) => {
    client.exec(command, (err, ch) => {
      if (err) return reject(err);
      ch.on('data', () => undefined);
      ch.stderr.on('data', () => undefined);
      ch.on('close', (code: number | null) => resolve(code));
      ch.end(stdin);
    });
  });
}

/** One OpenSSH client process: `ssh host nft -j -f -` with this stdin. */
function sshOnce(argv: string[], stdin: string): Promise<number | null> {
  return new Promise((resolve, reject) => {
    const p = spawn('ssh', argv, { stdio: ['pipe', 'ignore', 'pipe'] });
    let err = '';
    p.stderr.on('data', (d) => (err += d));
    const timer = setTimeout(() => p.kill('SIGKILL'), 20_000);
    p.on('error', reject);
    p.on('close', (code) => {
      clearTimeout(timer);
      if (code !== 0) reject(new Error(`ssh exited ${code}: ${err.trim()}`));
      else resolve(code);
    });
    p.stdin.end(stdin);
  });
}

function machine(): string {
  const cpu = os.cpus();
  let nft = '?';
  try {
    nft = execFileSync('nft', ['--version'], { encoding: 'utf8' }).trim();
  } catch {
    /* reported as ? */
  }
  return `${cpu.length} x ${cpu[0]?.model ?? '?'}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, Linux ${os.release()}, Node ${process.version}, ${nft}`;
}

async function main(): Promise<void> {
  const avail = labAvailable();
  if (!avail.ok) {
    console.error(`the benchmark needs the lab (root, ip, nft, sshd): ${avail.why}`);
    process.exit(2);
  }
  if (!Number.isInteger(RUNS) || RUNS < 1 || RUNS > 1000 || !Number.isInteger(NAIVE_RUNS) || NAIVE_RUNS < 1 || NAIVE_RUNS > 100 || !Number.isInteger(FANOUT) || FANOUT < 1 || FANOUT > MAX_LAB_HOSTS || !Number.isInteger(CONCURRENCY) || CONCURRENCY < 1 || CONCURRENCY > 1024) {
    console.error(`--runs must be 1..1000, --naive-runs 1..100, --hosts 1..${MAX_LAB_HOSTS}, --concurrency 1..1024`);
    process.exit(2);
  }
  const log = (s: string) => process.stderr.write(`${s}\n`);
  const loadStart = os.loadavg()[0];
  log(`starting a lab with ${FANOUT} hosts (load average ${loadStart.toFixed(2)}) ...`);
  const labStart = performance.now();
  const lab: Lab = await createLab({ hosts: FANOUT });
  const labBuildMs = performance.now() - labStart;
  const user = lab.users.root; // a uid-0 login: no sudo in the way of either side
  const targetOf = (h: LabHost): TargetInput => ({ host: h.v4, username: user.username, privateKey: user.privateKey, knownHosts: h.knownHosts, table: TABLE, timeoutMs: 60_000 });
  const h0 = lab.hosts[0];
  const t0 = targetOf(h0);
  // the same isolation on every side: what an EDR playbook would keep
  const req: IsolateRequestInput = { presets: ['ssh', 'dns', 'ntp', 'icmp'], reason: 'bench', verify: false };
  const reset = (h: LabHost) => lab.nft(h.ns, ['delete', 'table', 'inet', TABLE]).catch(() => undefined);
  const driver = new IsolationDriver({ maxConcurrent: CONCURRENCY, maxConnections: Math.max(256, FANOUT) });
  const isoWarm: number[] = [];
  const stWarm: number[] = [];
  const unWarm: number[] = [];
  const floor: number[] = [];
  let isoVerify: number[] = [];
  let peer: number[] = [];
  let peerNaive: number[] = [];
  let isoCold: number[] = [];
  let commands: unknown[] = [];
  try {
    if (!FANOUT_ONLY) {
    // ---- warm: one driver, one pooled connection; the floor interleaved with it ------------
    // Each isolate and each floor run starts from the same state, reached the same way (the
    // driver's unisolate, then a short settle), so the kernel's own cleanup of the previous table
    // weighs on both alike.
    log('warm isolate / status / unisolate, side by side with the floor ...');
    const settle = () => new Promise((r) => setTimeout(r, 25));
    await driver.status(t0);
    const first: ApplyInfo = {};
    await driver.isolate(t0, req, first); // the very batch the floor will send
    const batch = first.batch!;
    await driver.unisolate(t0);
    const conn = await driver.pooledConnection(t0);
    const runIsolate = async () => isoWarm.push(await timed(() => driver.isolate(t0, req)));
    const runFloor = async () =>
      floor.push(
        await timed(async () => {
          const code = await bareExec(conn.sshClient, 'nft -j -f -', batch);
          if (code !== 0) throw new Error(`floor: nft exited ${code}`);
        }),
      );
    for (let i = 0; i < RUNS; i++) {
      check();
      // alternate which goes first, so that neither gains from its place in the loop
      for (const step of i % 2 === 0 ? [runIsolate, runFloor] : [runFloor, runIsolate]) {
        await driver.unisolate(t0);
        await settle();
        await step();
      }
      await driver.unisolate(t0);
    }
    for (let i = 0; i < RUNS; i++) {
      check();
      await driver.isolate(t0, req);
      await settle();
      stWarm.push(await timed(() => driver.status(t0)));
      unWarm.push(await timed(() => driver.unisolate(t0)));
    }
    log('verify-then-commit (measured on its own) ...');
    isoVerify = await sample(RUNS, () => driver.isolate(t0, { ...req, verify: true }), async () => {
      await driver.unisolate(t0);
      await settle();
    });
    await driver.unisolate(t0);

    // ---- peer: OpenSSH processes ---------------------------------------------------------------
    log('peer: one OpenSSH process per action, the same batch on stdin ...');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nrhi-bench-'));
    const key = path.join(dir, 'id');
    fs.writeFileSync(key, user.privateKey, { mode: 0o600 });
    fs.writeFileSync(path.join(dir, 'known_hosts'), h0.knownHosts, { mode: 0o600 });
    const sshArgs = ['-i', key, '-o', `UserKnownHostsFile=${path.join(dir, 'known_hosts')}`, '-o', 'StrictHostKeyChecking=yes', '-o', 'BatchMode=yes', '-o', 'IdentitiesOnly=yes', '-o', 'ConnectTimeout=10', '-F', '/dev/null', `${user.username}@${h0.v4}`, 'nft -j -f -'];
    // the commands of the very batch the driver sent, minus its guard: one transaction each. As a
    // careful playbook must, base chains start with policy accept and turn to drop last (a drop
    // policy before the management rule would cut its next ssh off)
    type Cmd = { add?: { chain?: { policy?: string } } } & Record<string, unknown>;
    const all = (JSON.parse(batch) as { nftables: Cmd[] }).nftables.filter((c) => !('create' in c));
    const drops = all.filter((c) => c.add?.chain?.policy === 'drop');
    commands = [
      ...all.map((c) => (c.add?.chain?.policy === 'drop' ? { add: { chain: { ...c.add.chain, policy: 'accept' } } } : c)),
      ...drops,
    ];
    // a careful playbook: `ssh host nft -j -f - < batch`, the very batch the driver and the floor send
    peer = await sample(RUNS, () => sshOnce(sshArgs, batch), () => reset(h0));
    await reset(h0);
    log(`peer, naive: one OpenSSH process per nft command (${NAIVE_RUNS} runs) ...`);
    peerNaive = await sample(
      NAIVE_RUNS,
      async () => {
        for (const c of commands) await sshOnce(sshArgs, JSON.stringify({ nftables: [c] }));
      },
      () => reset(h0),
    );
    await reset(h0);
    fs.rmSync(dir, { recursive: true, force: true });

    // ---- cold: a new driver each time: connect, then the action ---------------------------
    log('cold isolate ...');
    isoCold = await sample(
      RUNS,
      async () => {
        const d = new IsolationDriver();
        try {
          await d.isolate(t0, req);
        } finally {
          await d.close();
        }
      },
      () => reset(h0),
    );
    await reset(h0);

    }

    // ---- fan-out: every lab host at once through the pool ---------------------------------
    log(`fan-out over ${FANOUT} hosts (at most ${CONCURRENCY} operations at once) ...`);
    const targets = lab.hosts.map(targetOf);
    let failed = 0;
    /** every host at once; a host that fails is counted, not fatal */
    const all = async (fn: (t: TargetInput) => Promise<unknown>) => {
      const r = await Promise.allSettled(targets.map(fn));
      const bad = r.filter((x) => x.status === 'rejected') as PromiseRejectedResult[];
      failed += bad.length;
      if (bad.length > 0) log(`  ${bad.length} hosts failed: ${String(bad[0].reason).slice(0, 200)}`);
    };
    /** a new driver (empty pool): the time, and the controller's own CPU time, for `fn` on all hosts */
    const cold = async (fn: (d: IsolationDriver, t: TargetInput) => Promise<unknown>) => {
      check();
      const d = new IsolationDriver({ maxConcurrent: CONCURRENCY, maxConnections: Math.max(256, FANOUT) });
      try {
        const cpu0 = process.cpuUsage();
        const ms = await timed(() => all((t) => fn(d, t)));
        const cpu = process.cpuUsage(cpu0);
        await all((t) => d.unisolate(t));
        return { ms, cpuMs: (cpu.user + cpu.system) / 1000 };
      } finally {
        await d.close();
      }
    };
    const connectOnly = await cold((d, t) => d.pooledConnection(t));
    const fanCold = await cold((d, t) => d.isolate(t, req));
    const fanColdVerify = await cold((d, t) => d.isolate(t, { ...req, verify: true }));
    await all((t) => driver.status(t)); // warm the pool
    const fan: number[] = [];
    const fanCpu: number[] = [];
    const fanVerify: number[] = [];
    let rss = 0;
    for (let i = 0; i < RUNS; i++) {
      check();
      const cpu0 = process.cpuUsage();
      fan.push(await timed(() => all((t) => driver.isolate(t, req))));
      const cpu = process.cpuUsage(cpu0);
      fanCpu.push((cpu.user + cpu.system) / 1000);
      rss = Math.max(rss, process.memoryUsage().rss);
      await all((t) => driver.unisolate(t));
    }
    for (let i = 0; i < Math.min(RUNS, 5); i++) {
      check();
      fanVerify.push(await timed(() => all((t) => driver.isolate(t, { ...req, verify: true }))));
      rss = Math.max(rss, process.memoryUsage().rss);
      await all((t) => driver.unisolate(t));
    }
    const openConnections = driver.connections;
    const perHost = (ms: number) => Math.round((ms / FANOUT) * 100) / 100;
    const p50 = (xs: number[]) => (xs.length > 0 ? r1(pct(xs, 50)) : null);
    const p95 = (xs: number[]) => (xs.length > 0 ? r1(pct(xs, 95)) : null);

    const res = {
      isolate_warm_p50_ms: p50(isoWarm),
      isolate_warm_p95_ms: p95(isoWarm),
      isolate_cold_p50_ms: p50(isoCold),
      status_warm_p50_ms: p50(stWarm),
      unisolate_warm_p50_ms: p50(unWarm),
      floor_p50_ms: p50(floor),
      peer_p50_ms: p50(peer),
      ratio_floor: isoWarm.length > 0 ? Math.round((pct(isoWarm, 50) / pct(floor, 50)) * 100) / 100 : null,
      ratio_peer: isoWarm.length > 0 ? Math.round((pct(isoWarm, 50) / pct(peer, 50)) * 1000) / 1000 : null,
      // the default path (verify-then-commit) against the same floor and peer
      ratio_floor_default: isoVerify.length > 0 ? Math.round((pct(isoVerify, 50) / pct(floor, 50)) * 100) / 100 : null,
      ratio_peer_default: isoVerify.length > 0 ? Math.round((pct(isoVerify, 50) / pct(peer, 50)) * 1000) / 1000 : null,
      fanout_hosts: FANOUT,
      /** warm pool, verify: false (as every fan-out figure without "verify"), p50 over the runs */
      fanout_total_ms: p50(fan),
      /** max RSS of this process with FANOUT connections open */
      rss_mb: Math.round((rss / 2 ** 20) * 10) / 10,
      // beyond the required keys
      isolate_verify_warm_p50_ms: p50(isoVerify),
      fanout_total_p95_ms: p95(fan),
      fanout_cold_total_ms: r1(fanCold.ms),
      fanout_verify_total_ms: p50(fanVerify),
      fanout_verify_cold_total_ms: r1(fanColdVerify.ms),
      fanout_connect_cold_total_ms: r1(connectOnly.ms),
      fanout_per_host_ms: perHost(pct(fan, 50)),
      fanout_cold_per_host_ms: perHost(fanCold.ms),
      fanout_verify_per_host_ms: perHost(pct(fanVerify, 50)),
      fanout_verify_cold_per_host_ms: perHost(fanColdVerify.ms),
      /** the controller's own CPU time (user + system) during the fan-out */
      fanout_cpu_ms: r1(pct(fanCpu, 50)),
      fanout_cold_cpu_ms: r1(fanCold.cpuMs),
      fanout_connect_cold_cpu_ms: r1(connectOnly.cpuMs),
      fanout_failed: failed,
      fanout_connections_open: openConnections,
      fanout_concurrency: CONCURRENCY,
      lab_build_ms: Math.round(labBuildMs),
      load_avg_1m_start: Math.round(loadStart * 100) / 100,
      load_avg_1m_end: Math.round(os.loadavg()[0] * 100) / 100,
      peer_naive_p50_ms: p50(peerNaive),
      peer_naive_ssh_processes: commands.length,
      peer_naive_runs: NAIVE_RUNS,
      runs: RUNS,
      machine: machine(),
    };
    const rows: [string, string, string][] = [];
    if (!FANOUT_ONLY) {
      rows.push(
        ['isolate, warm (1 exec, verify off)', `${res.isolate_warm_p50_ms}`, `${res.isolate_warm_p95_ms}`],
        ['isolate, warm, default (verify-then-commit)', `${res.isolate_verify_warm_p50_ms}`, `${p95(isoVerify)}`],
        ['  floor: bare ssh2 exec, same batch', `${res.floor_p50_ms}`, `${p95(floor)}`],
        ['  peer: 1 ssh process, same batch on stdin', `${res.peer_p50_ms}`, `${p95(peer)}`],
        [`  peer, naive: ${commands.length} ssh processes (${NAIVE_RUNS} runs)`, `${res.peer_naive_p50_ms}`, `${p95(peerNaive)}`],
        ['isolate, cold (connect + 1 exec)', `${res.isolate_cold_p50_ms}`, `${p95(isoCold)}`],
        ['status, warm', `${res.status_warm_p50_ms}`, `${p95(stWarm)}`],
        ['unisolate, warm', `${res.unisolate_warm_p50_ms}`, `${p95(unWarm)}`],
      );
    }
    rows.push(
      [`fan-out: isolate ${FANOUT} hosts, warm pool`, `${res.fanout_total_ms}`, `${res.fanout_total_p95_ms}`],
      [`fan-out: isolate ${FANOUT} hosts, cold (once)`, `${res.fanout_cold_total_ms}`, '-'],
      [`fan-out: isolate ${FANOUT} hosts, warm, verify`, `${res.fanout_verify_total_ms}`, `${p95(fanVerify)}`],
      [`fan-out: isolate ${FANOUT} hosts, cold, verify (once)`, `${res.fanout_verify_cold_total_ms}`, '-'],
      [`fan-out: connect only, ${FANOUT} hosts (once)`, `${res.fanout_connect_cold_total_ms}`, '-'],
    );
    const w = Math.max(...rows.map((r) => r[0].length));
    console.log(`machine: ${res.machine}; ${RUNS} runs per figure; load average ${res.load_avg_1m_start} at start, ${res.load_avg_1m_end} at end`);
    console.log(`${'figure'.padEnd(w)}  p50 ms  p95 ms`);
    for (const [a, b, c] of rows) console.log(`${a.padEnd(w)}  ${b.padStart(6)}  ${c.padStart(6)}`);
    if (!FANOUT_ONLY) {
      console.log(`ratio_floor ${res.ratio_floor} (target <= 1.25)   ratio_peer ${res.ratio_peer} (target <= 0.2)`);
      console.log(`default path (verify-then-commit): ratio_floor_default ${res.ratio_floor_default}   ratio_peer_default ${res.ratio_peer_default}`);
    }
    console.log(
      `per host: warm ${res.fanout_per_host_ms} ms, cold ${res.fanout_cold_per_host_ms} ms, warm verify ${res.fanout_verify_per_host_ms} ms, cold verify ${res.fanout_verify_cold_per_host_ms} ms; ` +
        `controller CPU ${res.fanout_cpu_ms} ms warm, ${res.fanout_cold_cpu_ms} ms cold (${res.fanout_connect_cold_cpu_ms} ms of it connecting); ` +
        `rss_mb ${res.rss_mb} with ${openConnections} connections open; ${failed} host operations failed; lab built in ${res.lab_build_ms} ms`,
    );
    if (JSON_OUT) console.log(JSON.stringify(res));
  } finally {
    await driver.close();
    await lab.close();
  }
}

main().catch((err) => {
  console.error(err instanceof Error ? err.stack : err);
  process.exit(1);
});
