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
 * default 5: each run is some 90 ssh processes), --hosts N (fan-out, default 50), --json. Every
 * loop is bounded by its count and by a deadline.
 */
import { execFileSync, spawn } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { performance } from 'perf_hooks';
import { IsolationDriver, type ApplyInfo, type IsolateRequestInput, type TargetInput } from '../src/driver';
import { createLab, labAvailable, type Lab, type LabHost } from '../test/lab/lab';

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
  if (!Number.isInteger(RUNS) || RUNS < 1 || RUNS > 1000 || !Number.isInteger(NAIVE_RUNS) || NAIVE_RUNS < 1 || NAIVE_RUNS > 100 || !Number.isInteger(FANOUT) || FANOUT < 1 || FANOUT > 200) {
    console.error('--runs must be 1..1000, --naive-runs 1..100 and --hosts 1..200');
    process.exit(2);
  }
  const log = (s: string) => process.stderr.write(`${s}\n`);
  log(`starting a lab with ${FANOUT} hosts ...`);
  const lab: Lab = await createLab({ hosts: FANOUT });
  const user = lab.users.root; // a uid-0 login: no sudo in the way of either side
  const targetOf = (h: LabHost): TargetInput => ({ host: h.v4, username: user.username, privateKey: user.privateKey, knownHosts: h.knownHosts, table: TABLE, timeoutMs: 60_000 });
  const h0 = lab.hosts[0];
  const t0 = targetOf(h0);
  // the same isolation on every side: what an EDR playbook would keep
  const req: IsolateRequestInput = { presets: ['ssh', 'dns', 'ntp', 'icmp'], reason: 'bench', verify: false };
  const reset = (h: LabHost) => lab.nft(h.ns, ['delete', 'table', 'inet', TABLE]).catch(() => undefined);
  const driver = new IsolationDriver({ maxConcurrent: 64 });
  try {
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
    const isoWarm: number[] = [];
    const stWarm: number[] = [];
    const unWarm: number[] = [];
    const floor: number[] = [];
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
    const isoVerify = await sample(RUNS, () => driver.isolate(t0, { ...req, verify: true }), async () => {
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
    const commands = [
      ...all.map((c) => (c.add?.chain?.policy === 'drop' ? { add: { chain: { ...c.add.chain, policy: 'accept' } } } : c)),
      ...drops,
    ];
    // a careful playbook: `ssh host nft -j -f - < batch`, the very batch the driver and the floor send
    const peer = await sample(RUNS, () => sshOnce(sshArgs, batch), () => reset(h0));
    await reset(h0);
    log(`peer, naive: one OpenSSH process per nft command (${NAIVE_RUNS} runs) ...`);
    const peerNaive = await sample(
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
    const isoCold = await sample(
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

    // ---- fan-out: every lab host at once through the pool ---------------------------------
    log(`fan-out over ${FANOUT} hosts ...`);
    const targets = lab.hosts.map(targetOf);
    const coldFan = new IsolationDriver({ maxConcurrent: 64 });
    const fanoutCold = await timed(() => Promise.all(targets.map((t) => coldFan.isolate(t, req))));
    await Promise.all(targets.map((t) => coldFan.unisolate(t)));
    await coldFan.close();
    await Promise.all(targets.map((t) => driver.status(t))); // warm the pool
    const fan: number[] = [];
    let rss = 0;
    for (let i = 0; i < RUNS; i++) {
      check();
      fan.push(await timed(() => Promise.all(targets.map((t) => driver.isolate(t, req)))));
      rss = Math.max(rss, process.memoryUsage().rss);
      await Promise.all(targets.map((t) => driver.unisolate(t)));
    }
    const openConnections = driver.connections;

    const res = {
      isolate_warm_p50_ms: r1(pct(isoWarm, 50)),
      isolate_warm_p95_ms: r1(pct(isoWarm, 95)),
      isolate_cold_p50_ms: r1(pct(isoCold, 50)),
      status_warm_p50_ms: r1(pct(stWarm, 50)),
      unisolate_warm_p50_ms: r1(pct(unWarm, 50)),
      floor_p50_ms: r1(pct(floor, 50)),
      peer_p50_ms: r1(pct(peer, 50)),
      ratio_floor: Math.round((pct(isoWarm, 50) / pct(floor, 50)) * 100) / 100,
      ratio_peer: Math.round((pct(isoWarm, 50) / pct(peer, 50)) * 1000) / 1000,
      // the default path (verify-then-commit) against the same floor and peer
      ratio_floor_default: Math.round((pct(isoVerify, 50) / pct(floor, 50)) * 100) / 100,
      ratio_peer_default: Math.round((pct(isoVerify, 50) / pct(peer, 50)) * 1000) / 1000,
      fanout_hosts: FANOUT,
      fanout_total_ms: r1(pct(fan, 50)),
      rss_mb: Math.round((rss / 2 ** 20) * 10) / 10,
      // beyond the required keys
      isolate_verify_warm_p50_ms: r1(pct(isoVerify, 50)),
      fanout_total_p95_ms: r1(pct(fan, 95)),
      fanout_cold_total_ms: r1(fanoutCold),
      fanout_connections_open: openConnections,
      peer_naive_p50_ms: r1(pct(peerNaive, 50)),
      peer_naive_ssh_processes: commands.length,
      peer_naive_runs: NAIVE_RUNS,
      runs: RUNS,
      machine: machine(),
    };
    const rows: [string, string, string][] = [
      ['isolate, warm (1 exec, verify off)', `${res.isolate_warm_p50_ms}`, `${res.isolate_warm_p95_ms}`],
      ['isolate, warm, default (verify-then-commit)', `${res.isolate_verify_warm_p50_ms}`, `${r1(pct(isoVerify, 95))}`],
      ['  floor: bare ssh2 exec, same batch', `${res.floor_p50_ms}`, `${r1(pct(floor, 95))}`],
      ['  peer: 1 ssh process, same batch on stdin', `${res.peer_p50_ms}`, `${r1(pct(peer, 95))}`],
      [`  peer, naive: ${commands.length} ssh processes (${NAIVE_RUNS} runs)`, `${res.peer_naive_p50_ms}`, `${r1(pct(peerNaive, 95))}`],
      ['isolate, cold (connect + 1 exec)', `${res.isolate_cold_p50_ms}`, `${r1(pct(isoCold, 95))}`],
      ['status, warm', `${res.status_warm_p50_ms}`, `${r1(pct(stWarm, 95))}`],
      ['unisolate, warm', `${res.unisolate_warm_p50_ms}`, `${r1(pct(unWarm, 95))}`],
      [`fan-out: isolate ${FANOUT} hosts, warm pool`, `${res.fanout_total_ms}`, `${res.fanout_total_p95_ms}`],
      [`fan-out: isolate ${FANOUT} hosts, cold (once)`, `${res.fanout_cold_total_ms}`, '-'],
    ];
    const w = Math.max(...rows.map((r) => r[0].length));
    console.log(`machine: ${res.machine}; ${RUNS} runs per figure`);
    console.log(`${'figure'.padEnd(w)}  p50 ms  p95 ms`);
    for (const [a, b, c] of rows) console.log(`${a.padEnd(w)}  ${b.padStart(6)}  ${c.padStart(6)}`);
    console.log(`ratio_floor ${res.ratio_floor} (target <= 1.25)   ratio_peer ${res.ratio_peer} (target <= 0.2)`);
    console.log(`default path (verify-then-commit): ratio_floor_default ${res.ratio_floor_default}   ratio_peer_default ${res.ratio_peer_default}`);
    console.log(
      `fanout_total_ms ${res.fanout_total_ms} = ${Math.round((res.fanout_total_ms / res.isolate_cold_p50_ms) * 100) / 100} x isolate_cold_p50 (target <= 4)   rss_mb ${res.rss_mb} with ${openConnections} connections open (target < 150)`,
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
