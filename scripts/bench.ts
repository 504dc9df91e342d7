/**
 * `npm run bench` (as root): measures the driver on lab hosts and prints a table; `--json` also
 * prints one JSON object as the last line. Not a test: it asserts nothing, it reports figures,
 * all from one run, side by side with
 *   - the floor: on the driver's own warm connection, a bare ssh2 exec of `nft -j -f -` with the
 *     very batch the driver's isolate sent, no driver logic around it;
 *   - the peer: what a careful shell playbook does, one OpenSSH `ssh` process per action piping the
 *     same batch (`ssh host nft -j -f - < batch`); and, labelled apart, the naive playbook, one
 *     `ssh` process per nft command of the same isolation.
 * The default path, verify-then-commit, is what users run: with a plain key and with a
 * passphrase key (the same key, encrypted: decrypted once, when the "flow" starts, prepareKey).
 * Every ratio divides figures of one phase, taken interleaved: the warm isolate, the floor, the
 * default path (both keys) and the peer in turn; the cold isolate and the cold floor (a bare ssh2
 * connect with the same key and default algorithms, plus one exec of the same batch) in turn.
 * A second lab puts a bastion between the controller and one host: the warm isolate through it is
 * measured interleaved with the direct one (`bastion` rows and keys).
 * The fan-out measures the controller (on this machine the lab hosts' sshd and nft share its
 * cores, so absolute fleet times measure the hosts): its CPU per host (process.cpuUsage over the
 * fan-out / N) warm, cold and cold with verify, plain and passphrase key; the event loop's
 * utilization; RSS with the connections open; and the fan-out against its floor, alternating in
 * pairs (warm: a bare exec of each host's own batch on the pooled connections; cold: a bare
 * connect plus that exec; the same N and concurrency), the median of the per-pair ratios. A phase
 * in which any host failed is invalid: its failures are reported, its figures are not.
 * `host_programs_per_isolate`: the programs a lab host's sshd starts for one warm isolate (every
 * successful execve under its sshd processes, sshd's own re-exec left out, counted by strace).
 * Options: --runs N (default 30, at least 30 for the report), --naive-runs N (the per-command peer,
 * default 5: each run is some 90 ssh processes), --hosts N (fan-out, default 50, at most 600 lab
 * hosts), --pairs N (fan-out pairs, default 5), --fanout-only (the fan-out figures alone),
 * --concurrency N (the driver's maxConcurrent, default 64), --json. Every loop is bounded by its
 * count and by a deadline.
 */
import { execFileSync, spawn } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { performance } from 'perf_hooks';
import { Client } from 'ssh2';
import { IsolationDriver, type ApplyInfo, type IsolateRequestInput, type TargetInput } from '../src/driver';
import { createLab, labAvailable, MAX_LAB_HOSTS, PREFIX, type Lab, type LabHost } from '../test/lab/lab';
import { arg, closing, runMain } from './common';

const TABLE = 'nrhi_bench';
const DEADLINE = Date.now() + 30 * 60_000; // the whole benchmark stops by itself after 30 minutes

const RUNS = arg('--runs', 30);
const PAIRS = arg('--pairs', 5);
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
const r1OrNull = (x: number | null) => (x === null ? null : r1(x));

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

/**
 * The cold floor's login: a bare ssh2 connect (the same key and ssh2's default algorithms, as the
 * driver's), Nagle off as the driver does, the host key taken as it comes; nothing else.
 */
function bareConnect(host: string, username: string, privateKey: string): Promise<Client> {
  return new Promise((resolve, reject) => {
    const c = new Client();
    const timer = setTimeout(() => {
      c.destroy();
      reject(new Error(`bare connect to ${host}: timed out`));
    }, 60_000);
    c.once('ready', () => {
      clearTimeout(timer);
      c.setNoDelay(true);
      resolve(c);
    });
    c.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    c.connect({ host, port: 22, username, privateKey, readyTimeout: 60_000, hostVerifier: () => true });
  });
}

/** The cold floor for one host: connect, one exec of its batch, goodbye. */
async function bareColdExec(host: string, username: string, privateKey: string, batch: string): Promise<void> {
  const c = await bareConnect(host, username, privateKey);
  try {
    const code = await bareExec(c, 'nft -j -f -', batch);
    if (code !== 0) throw new Error(`cold floor on ${host}: nft exited ${code}`);
  } finally {
    c.end();
  }
}

/** Runs every task with at most `n` in flight (the driver's own bound, for the floors); a failure is counted, not fatal. */
async function limited(n: number, tasks: (() => Promise<unknown>)[]): Promise<PromiseSettledResult<unknown>[]> {
  const out: PromiseSettledResult<unknown>[] = new Array(tasks.length);
  let next = 0;
  const lane = async () => {
    while (next < tasks.length) {
      const i = next++;
      try {
        out[i] = { status: 'fulfilled', value: await tasks[i]() };
      } catch (reason) {
        out[i] = { status: 'rejected', reason };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(n, tasks.length) }, lane));
  return out;
}

/** The same private key, encrypted with `passphrase` (ssh-keygen -p on a copy). */
function withPassphrase(privateKey: string, passphrase: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nrhi-bench-key-'));
  try {
    const file = path.join(dir, 'id');
    fs.writeFileSync(file, privateKey, { mode: 0o600 });
    execFileSync('ssh-keygen', ['-q', '-p', '-P', '', '-N', passphrase, '-f', file], { stdio: 'ignore', timeout: 20_000 });
    return fs.readFileSync(file, 'utf8');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * The programs a lab host's sshd starts while `fn` runs: strace follows every sshd process in the
 * host's network namespace (listener and sessions) and their children, and each successful execve
 * is one program (sshd's own re-exec for a new connection left out). Null where strace is missing.
 */
async function hostPrograms(ns: string, fn: () => Promise<unknown>): Promise<{ count: number; names: string[] } | null> {
  if (!ns.startsWith(PREFIX)) throw new Error(`not a lab namespace: ${ns}`);
  const pids = execFileSync('ip', ['netns', 'pids', ns], { encoding: 'utf8' })
    .split('\n')
    .filter(Boolean)
    .filter((pid) => {
      try {
        return fs.readFileSync(`/proc/${pid}/comm`, 'utf8').startsWith('sshd');
      } catch {
        return false;
      }
    });
  if (pids.length === 0) return null;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nrhi-bench-strace-'));
  try {
    const p = spawn('strace', ['-f', '-ff', '-z', '-e', 'trace=execve', '-e', 'signal=none', '-o', path.join(dir, 'x'), ...pids.flatMap((pid) => ['-p', pid])], { stdio: ['ignore', 'ignore', 'pipe'] });
    const ended = new Promise<void>((resolve) => p.once('close', () => resolve()));
    let err = '';
    let failed = false;
    p.once('error', () => (failed = true));
    p.stderr.on('data', (d) => (err += d));
    // attached to every one of them (bounded)
    for (let i = 0; i < 100 && !failed && (err.match(/attached/g) ?? []).length < pids.length; i++) await new Promise((r) => setTimeout(r, 50));
    if (failed) return null;
    try {
      await fn();
      await new Promise((r) => setTimeout(r, 300)); // what the session started after its answer
    } finally {
      p.kill('SIGINT');
      const killer = setTimeout(() => p.kill('SIGKILL'), 5000);
      await ended;
      clearTimeout(killer);
    }
    const names: string[] = [];
    for (const f of fs.readdirSync(dir)) {
      for (const m of fs.readFileSync(path.join(dir, f), 'utf8').matchAll(/^execve\("([^"]+)".*= 0$/gm)) {
        const name = path.basename(m[1]);
        if (!name.startsWith('sshd')) names.push(name);
      }
    }
    return { count: names.length, names: names.sort() };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

const median = (xs: number[]): number | null => (xs.length > 0 ? pct(xs, 50) : null);
const r2 = (x: number | null) => (x === null ? null : Math.round(x * 100) / 100);

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
  if (!Number.isInteger(RUNS) || RUNS < 1 || RUNS > 1000 || !Number.isInteger(NAIVE_RUNS) || NAIVE_RUNS < 1 || NAIVE_RUNS > 100 || !Number.isInteger(FANOUT) || FANOUT < 1 || FANOUT > MAX_LAB_HOSTS || !Number.isInteger(CONCURRENCY) || CONCURRENCY < 1 || CONCURRENCY > 1024 || !Number.isInteger(PAIRS) || PAIRS < 1 || PAIRS > 100) {
    console.error(`--runs must be 1..1000, --naive-runs 1..100, --hosts 1..${MAX_LAB_HOSTS}, --concurrency 1..1024, --pairs 1..100`);
    process.exit(2);
  }
  const log = (s: string) => process.stderr.write(`${s}\n`);
  const loadStart = os.loadavg()[0];
  log(`starting a lab with ${FANOUT} hosts (load average ${loadStart.toFixed(2)}) ...`);
  const labStart = performance.now();
  const lab: Lab = await createLab({ hosts: FANOUT });
  const labBuildMs = performance.now() - labStart;
  const user = lab.users.root; // a uid-0 login: no sudo in the way of either side
  // the same key with a passphrase: what many teams keep for automation
  const PASSPHRASE = 'nrhi bench passphrase';
  const encrypted = withPassphrase(user.privateKey, PASSPHRASE);
  const targetOf = (h: LabHost): TargetInput => ({ host: h.v4, username: user.username, privateKey: user.privateKey, knownHosts: h.knownHosts, table: TABLE, timeoutMs: 60_000 });
  const passOf = (h: LabHost): TargetInput => ({ ...targetOf(h), privateKey: encrypted, passphrase: PASSPHRASE });
  const h0 = lab.hosts[0];
  const t0 = targetOf(h0);
  const p0 = passOf(h0);
  // the same isolation on every side: what an EDR playbook would keep
  const req: IsolateRequestInput = { presets: ['ssh', 'dns', 'ntp', 'icmp'], reason: 'bench', verify: false };
  const reqDefault: IsolateRequestInput = { ...req, verify: true };
  const reset = (h: LabHost) => lab.nft(h.ns, ['delete', 'table', 'inet', TABLE]).catch(() => undefined);
  const driver = new IsolationDriver({ maxConcurrent: CONCURRENCY, maxConnections: Math.max(256, 2 * FANOUT) });
  const isoWarm: number[] = [];
  const stWarm: number[] = [];
  const unWarm: number[] = [];
  const floor: number[] = [];
  const isoDefault: number[] = [];
  const isoDefaultPass: number[] = [];
  const peer: number[] = [];
  let peerNaive: number[] = [];
  const isoCold: number[] = [];
  const coldFloor: number[] = [];
  let commands: unknown[] = [];
  let keyPrepareMs: number | null = null;
  const programs: Record<string, { count: number; names: string[] } | null> = {};
  await closing(lab, [driver], async () => {
    if (!FANOUT_ONLY) {
      // ---- warm: one driver, pooled connections; the floor, the default path and the peer in turn --
      // Each step starts from the same state, reached the same way (the driver's unisolate, then a
      // short settle), so the kernel's own cleanup of the previous table weighs on all alike.
      log('warm isolate, floor, default path (plain and passphrase key), peer, in turn ...');
      const settle = () => new Promise((r) => setTimeout(r, 25));
      const kp = performance.now();
      await driver.prepareKey(p0); // when the flow starts
      keyPrepareMs = performance.now() - kp;
      await driver.status(t0);
      await driver.status(p0);
      const first: ApplyInfo = {};
      await driver.isolate(t0, req, first); // the very batch the floor will send
      const batch = first.batch!;
      await driver.unisolate(t0);
      const conn = await driver.pooledConnection(t0);
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nrhi-bench-'));
      const key = path.join(dir, 'id');
      fs.writeFileSync(key, user.privateKey, { mode: 0o600 });
      fs.writeFileSync(path.join(dir, 'known_hosts'), h0.knownHosts, { mode: 0o600 });
      const sshArgs = ['-i', key, '-o', `UserKnownHostsFile=${path.join(dir, 'known_hosts')}`, '-o', 'StrictHostKeyChecking=yes', '-o', 'BatchMode=yes', '-o', 'IdentitiesOnly=yes', '-o', 'ConnectTimeout=10', '-F', '/dev/null', `${user.username}@${h0.v4}`, 'nft -j -f -'];
      const steps: (() => Promise<unknown>)[] = [
        async () => isoWarm.push(await timed(() => driver.isolate(t0, req))),
        async () =>
          floor.push(
            await timed(async () => {
              const code = await bareExec(conn.sshClient, 'nft -j -f -', batch);
              if (code !== 0) throw new Error(`floor: nft exited ${code}`);
            }),
          ),
        async () => isoDefault.push(await timed(() => driver.isolate(t0, reqDefault))),
        async () => isoDefaultPass.push(await timed(() => driver.isolate(p0, reqDefault))),
        // a careful playbook: `ssh host nft -j -f - < batch`, the very batch the driver and the floor send
        async () => peer.push(await timed(() => sshOnce(sshArgs, batch))),
      ];
      for (let i = 0; i < RUNS; i++) {
        check();
        // each run starts at another step, so that none gains from its place in the loop
        for (let j = 0; j < steps.length; j++) {
          await driver.unisolate(t0);
          await reset(h0);
          await settle();
          await steps[(i + j) % steps.length]();
        }
        await driver.unisolate(t0);
      }
      await reset(h0);
      for (let i = 0; i < RUNS; i++) {
        check();
        await driver.isolate(t0, req);
        await settle();
        stWarm.push(await timed(() => driver.status(t0)));
        unWarm.push(await timed(() => driver.unisolate(t0)));
      }

      // ---- peer, naive: one OpenSSH process per nft command ------------------------------------
      // the commands of the very batch the driver sent, minus its guard: one transaction each. As a
      // careful playbook must, base chains start with policy accept and turn to drop last (a drop
      // policy before the management rule would cut its next ssh off)
      type Cmd = { add?: { chain?: { policy?: string } } } & Record<string, unknown>;
      const all = (JSON.parse(batch) as { nftables: Cmd[] }).nftables.filter((c) => !('create' in c));
      const drops = all.filter((c) => c.add?.chain?.policy === 'drop');
      commands = [...all.map((c) => (c.add?.chain?.policy === 'drop' ? { add: { chain: { ...c.add.chain, policy: 'accept' } } } : c)), ...drops];
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

      // ---- cold: a new driver each time (connect, then the action), the cold floor in turn ------
      log('cold isolate and the cold floor (bare ssh2 connect + the same exec), in turn ...');
      const coldSteps = [
        async () =>
          isoCold.push(
            await timed(async () => {
              const d = new IsolationDriver();
              try {
                await d.isolate(t0, req);
              } finally {
                await d.close();
              }
            }),
          ),
        async () => coldFloor.push(await timed(() => bareColdExec(h0.v4, user.username, user.privateKey, batch))),
      ];
      for (let i = 0; i < RUNS; i++) {
        check();
        for (const step of i % 2 === 0 ? coldSteps : [...coldSteps].reverse()) {
          await reset(h0);
          await settle();
          await step();
        }
      }
      await reset(h0);

      // ---- what one isolate starts on the host ---------------------------------------------
      log('programs started on the host per isolate (strace on its sshd) ...');
      // a warm isolate is one on a connection that has isolated before (the first asks what the
      // host can do): the loops above may have left it idle past the pool's time, so prime it
      await driver.isolate(t0, req);
      await driver.unisolate(t0);
      const count = async (name: string, fn: () => Promise<unknown>) => {
        await driver.unisolate(t0);
        await reset(h0);
        await settle();
        programs[name] = await hostPrograms(h0.ns, fn);
      };
      await count('warm', () => driver.isolate(t0, req));
      // the pooled connection again: the one of the loop above may have closed, idle, since
      const warmConn = await driver.pooledConnection(t0);
      await count('floor', () => bareExec(warmConn.sshClient, 'nft -j -f -', batch));
      await count('default', () => driver.isolate(t0, reqDefault));
      await count('cold', async () => {
        const d = new IsolationDriver();
        try {
          await d.isolate(t0, req);
        } finally {
          await d.close();
        }
      });
      await count('cold_floor', () => bareColdExec(h0.v4, user.username, user.privateKey, batch));
      await driver.unisolate(t0);
      await reset(h0);
    }

    // ---- fan-out: every lab host at once; each figure against its floor, in pairs ---------------
    log(`fan-out over ${FANOUT} hosts (at most ${CONCURRENCY} operations at once, ${PAIRS} pairs) ...`);
    const targets = lab.hosts.map(targetOf);
    const passTargets = lab.hosts.map(passOf);
    const invalid: string[] = [];
    let failed = 0;
    interface Phase {
      ms: number;
      cpuMs: number;
      elu: number;
      failed: number;
    }
    /** one fan-out: its time, the controller's CPU and event-loop utilization over it; a host that fails is counted */
    const phase = async (name: string, tasks: (() => Promise<unknown>)[], max = Number.MAX_SAFE_INTEGER): Promise<Phase> => {
      check();
      const cpu0 = process.cpuUsage();
      const elu0 = performance.eventLoopUtilization();
      const t = performance.now();
      const r = await limited(max, tasks);
      const ms = performance.now() - t;
      const cpu = process.cpuUsage(cpu0);
      const elu = performance.eventLoopUtilization(elu0).utilization;
      const bad = r.filter((x) => x.status === 'rejected') as PromiseRejectedResult[];
      if (bad.length > 0) {
        failed += bad.length;
        if (!invalid.includes(name)) invalid.push(name);
        log(`  ${name}: ${bad.length} hosts failed (the run is invalid, not timed): ${String(bad[0].reason).slice(0, 200)}`);
      }
      return { ms, cpuMs: (cpu.user + cpu.system) / 1000, elu, failed: bad.length };
    };
    const each = (ts: TargetInput[], fn: (t: TargetInput, i: number) => Promise<unknown>) => ts.map((t, i) => () => fn(t, i));
    /** untimed clean-up: no host keeps a table (the driver's release; a table it did not make is read and released) */
    const releaseAll = async (d: IsolationDriver, ts = targets) => {
      const r = await limited(CONCURRENCY, each(ts, (t) => d.unisolate(t)));
      const bad = r.filter((x) => x.status === 'rejected').length;
      if (bad > 0) log(`  ${bad} hosts failed to release`);
    };
    const valid = (ps: Phase[]) => ps.filter((p) => p.failed === 0);
    const med = (ps: Phase[], f: (p: Phase) => number) => median(valid(ps).map(f));
    /** the median of the per-pair ratios, over the pairs whose both sides are valid */
    const pairRatio = (a: Phase[], b: Phase[]) => r2(median(a.map((x, i) => (x.failed === 0 && b[i].failed === 0 ? x.ms / b[i].ms : NaN)).filter((x) => !Number.isNaN(x))));

    // each host's own batch (its own management address), as the driver sends it
    await releaseAll(driver);
    const infos: ApplyInfo[] = targets.map(() => ({}));
    const learn = await phase('learn', each(targets, (t, i) => driver.isolate(t, req, infos[i])));
    await releaseAll(driver);
    let rss = 0;
    const warm: Phase[] = [];
    const warmFloor: Phase[] = [];
    for (let i = 0; i < PAIRS && learn.failed === 0; i++) {
      const runs = [
        async () => {
          warm.push(await phase('warm', each(targets, (t) => driver.isolate(t, req))));
          rss = Math.max(rss, process.memoryUsage().rss);
          await releaseAll(driver);
        },
        async () => {
          // the pooled connections, as the driver's isolate would find them (untimed)
          const conns = await Promise.all(targets.map((t) => driver.pooledConnection(t)));
          warmFloor.push(
            await phase(
              'warm floor',
              each(targets, async (_t, j) => {
                const code = await bareExec(conns[j].sshClient, 'nft -j -f -', infos[j].batch!);
                if (code !== 0) throw new Error(`warm floor: nft exited ${code}`);
              }),
              CONCURRENCY,
            ),
          );
          rss = Math.max(rss, process.memoryUsage().rss);
          await releaseAll(driver);
        },
      ];
      for (const run of i % 2 === 0 ? runs : [...runs].reverse()) await run();
    }
    const openConnections = driver.connections;

    /** a new driver (an empty pool) for one cold fan-out, released and closed after; `prepare`: the keys warmed first, as when a flow starts */
    const coldRun = async (name: string, ts: TargetInput[], r: IsolateRequestInput, after?: (d: IsolationDriver) => Promise<void>): Promise<Phase> => {
      const d = new IsolationDriver({ maxConcurrent: CONCURRENCY, maxConnections: Math.max(256, FANOUT) });
      try {
        if (ts[0].passphrase) await d.prepareKey(ts[0]);
        const ph = await phase(name, each(ts, (t) => d.isolate(t, r)));
        await releaseAll(d, ts);
        if (after) await after(d);
        return ph;
      } finally {
        await d.close();
      }
    };
    const cold: Phase[] = [];
    const coldFloorFan: Phase[] = [];
    for (let i = 0; i < PAIRS && learn.failed === 0; i++) {
      const runs = [
        async () => cold.push(await coldRun('cold', targets, req)),
        async () => {
          coldFloorFan.push(await phase('cold floor', each(targets, (_t, j) => bareColdExec(lab.hosts[j].v4, user.username, user.privateKey, infos[j].batch!)), CONCURRENCY));
          await releaseAll(driver);
        },
      ];
      for (const run of i % 2 === 0 ? runs : [...runs].reverse()) await run();
    }
    const coldVerify = await coldRun('cold verify', targets, reqDefault);
    // the passphrase key: cold, then warm on the same pool; cold with verify on a new one
    let warmPass: Phase | null = null;
    const coldPass = await coldRun('cold passphrase', passTargets, req, async (d) => {
      warmPass = await phase('warm passphrase', each(passTargets, (t) => d.isolate(t, req)));
      await releaseAll(d, passTargets);
    });
    const coldVerifyPass = await coldRun('cold verify passphrase', passTargets, reqDefault);
    // warm, verify-then-commit (the default path) on the pooled connections
    const warmVerify = await phase('warm verify', each(targets, (t) => driver.isolate(t, reqDefault)));
    await releaseAll(driver);
    const perHost = (ms: number | null) => (ms === null ? null : Math.round((ms / FANOUT) * 100) / 100);
    const only = (p: Phase | null) => (p && p.failed === 0 ? [p] : []);
    const p50 = (xs: number[]) => (xs.length > 0 ? r1(pct(xs, 50)) : null);
    const p95 = (xs: number[]) => (xs.length > 0 ? r1(pct(xs, 95)) : null);
    // ---- through a bastion: the same warm isolate, interleaved with the direct one ----------
    const isoBastion: number[] = [];
    const isoDirectPaired: number[] = [];
    const floorBastion: number[] = [];
    let isoBastionCold: number[] = [];
    let bastionSessions = 0;
    if (!FANOUT_ONLY) {
      const settle = () => new Promise((r) => setTimeout(r, 25));
      log('warm isolate through a bastion, side by side with the direct one ...');
      const blab: Lab = await createLab({ hosts: 1, bastion: true });
      const bdriver = new IsolationDriver();
      try {
        const b = blab.bastion!;
        const bh = blab.hosts[0];
        const tb: TargetInput = {
          host: bh.v4,
          username: blab.users.root.username,
          privateKey: blab.users.root.privateKey,
          knownHosts: bh.knownHosts,
          table: TABLE,
          timeoutMs: 60_000,
          jump: { host: b.v4, username: b.user.username, privateKey: b.user.privateKey, knownHosts: b.knownHosts },
        };
        const breset = () => blab.nft(bh.ns, ['delete', 'table', 'inet', TABLE]).catch(() => undefined);
        await bdriver.status(tb);
        // the floor through the bastion sends this host's own batch (the direct host's would keep
        // the wrong management address and cut the floor's own session)
        const bfirst: ApplyInfo = {};
        await bdriver.isolate(tb, req, bfirst);
        await bdriver.unisolate(tb);
        const bconn = await bdriver.pooledConnection(tb);
        const runBastion = async () => isoBastion.push(await timed(() => bdriver.isolate(tb, req)));
        const runDirect = async () => isoDirectPaired.push(await timed(() => driver.isolate(t0, req)));
        for (let i = 0; i < RUNS; i++) {
          check();
          for (const step of i % 2 === 0 ? [runBastion, runDirect] : [runDirect, runBastion]) {
            await bdriver.unisolate(tb);
            await driver.unisolate(t0);
            await settle();
            await step();
          }
        }
        await bdriver.unisolate(tb);
        await driver.unisolate(t0);
        for (let i = 0; i < RUNS; i++) {
          check();
          await breset();
          await settle();
          floorBastion.push(
            await timed(async () => {
              const code = await bareExec(bconn.sshClient, 'nft -j -f -', bfirst.batch!);
              if (code !== 0) throw new Error(`floor via bastion: nft exited ${code}`);
            }),
          );
        }
        await breset();
        bastionSessions = await b.sessions();
        isoBastionCold = await sample(
          RUNS,
          async () => {
            const d = new IsolationDriver();
            try {
              await d.isolate(tb, req);
            } finally {
              await d.close();
            }
          },
          breset,
        );
        await breset();
      } finally {
        await bdriver.close();
        await blab.close();
      }
    }


    const ratio = (a: number[], b: number[]) => (a.length > 0 && b.length > 0 ? Math.round((pct(a, 50) / pct(b, 50)) * 100) / 100 : null);
    const warmCpu = med(warm, (p) => p.cpuMs);
    const coldCpu = med(cold, (p) => p.cpuMs);
    const res = {
      isolate_warm_p50_ms: p50(isoWarm),
      isolate_warm_p95_ms: p95(isoWarm),
      isolate_cold_p50_ms: p50(isoCold),
      status_warm_p50_ms: p50(stWarm),
      unisolate_warm_p50_ms: p50(unWarm),
      floor_p50_ms: p50(floor),
      peer_p50_ms: p50(peer),
      // every single-host ratio: p50 over p50 of samples taken in turn, in the same loop
      ratio_floor: ratio(isoWarm, floor),
      ratio_peer: isoWarm.length > 0 ? Math.round((pct(isoWarm, 50) / pct(peer, 50)) * 1000) / 1000 : null,
      // the default path (verify-then-commit), interleaved with the same floor and peer
      isolate_default_p50_ms: p50(isoDefault),
      isolate_default_passphrase_p50_ms: p50(isoDefaultPass),
      ratio_floor_default: ratio(isoDefault, floor),
      ratio_floor_default_passphrase: ratio(isoDefaultPass, floor),
      ratio_peer_default: isoDefault.length > 0 ? Math.round((pct(isoDefault, 50) / pct(peer, 50)) * 1000) / 1000 : null,
      // cold: a new driver per isolate, against a bare ssh2 connect + the same exec, in turn
      isolate_cold_floor_p50_ms: p50(coldFloor),
      ratio_cold_floor: ratio(isoCold, coldFloor),
      /** programs the lab host's sshd started for one warm isolate (verify off) */
      host_programs_per_isolate: programs.warm?.count ?? null,
      host_programs_floor: programs.floor?.count ?? null,
      host_programs_default: programs.default?.count ?? null,
      host_programs_cold: programs.cold?.count ?? null,
      host_programs_cold_floor: programs.cold_floor?.count ?? null,
      host_programs_names: Object.fromEntries(Object.entries(programs).map(([k, v]) => [k, v?.names.join(' ') ?? null])),
      key_prepare_ms: keyPrepareMs === null ? null : r1(keyPrepareMs),
      fanout_hosts: FANOUT,
      fanout_pairs: PAIRS,
      /** warm pool, verify: false, the median over the valid runs */
      fanout_total_ms: r1OrNull(med(warm, (p) => p.ms)),
      fanout_floor_ms: r1OrNull(med(warmFloor, (p) => p.ms)),
      fanout_ratio_floor: pairRatio(warm, warmFloor),
      fanout_cold_total_ms: r1OrNull(med(cold, (p) => p.ms)),
      fanout_cold_floor_ms: r1OrNull(med(coldFloorFan, (p) => p.ms)),
      fanout_cold_ratio_floor: pairRatio(cold, coldFloorFan),
      /** the controller's CPU (user + system, process.cpuUsage over the fan-out) per host */
      cpu_ms_per_host_warm: perHost(warmCpu),
      cpu_ms_per_host_cold: perHost(coldCpu),
      cpu_ms_per_host_cold_verify: perHost(med(only(coldVerify), (p) => p.cpuMs)),
      cpu_ms_per_host_warm_passphrase: perHost(med(only(warmPass), (p) => p.cpuMs)),
      cpu_ms_per_host_cold_passphrase: perHost(med(only(coldPass), (p) => p.cpuMs)),
      cpu_ms_per_host_cold_verify_passphrase: perHost(med(only(coldVerifyPass), (p) => p.cpuMs)),
      cpu_ms_per_host_warm_floor: perHost(med(warmFloor, (p) => p.cpuMs)),
      cpu_ms_per_host_cold_floor: perHost(med(coldFloorFan, (p) => p.cpuMs)),
      /** the event loop's utilization during the warm fan-out (1: the controller's loop is what limits) */
      elu_fanout: r2(med(warm, (p) => p.elu)),
      elu_fanout_cold: r2(med(cold, (p) => p.elu)),
      elu_fanout_cold_verify: r2(med(only(coldVerify), (p) => p.elu)),
      elu_fanout_cold_passphrase: r2(med(only(coldPass), (p) => p.elu)),
      /** max RSS of this process with FANOUT connections open */
      rss_mb: Math.round((rss / 2 ** 20) * 10) / 10,
      // beyond the required keys
      isolate_verify_warm_p50_ms: p50(isoDefault),
      fanout_verify_total_ms: r1OrNull(med(only(warmVerify), (p) => p.ms)),
      fanout_verify_cold_total_ms: r1OrNull(med(only(coldVerify), (p) => p.ms)),
      fanout_cold_passphrase_total_ms: r1OrNull(med(only(coldPass), (p) => p.ms)),
      fanout_per_host_ms: perHost(med(warm, (p) => p.ms)),
      fanout_cold_per_host_ms: perHost(med(cold, (p) => p.ms)),
      fanout_cpu_ms: r1OrNull(warmCpu),
      fanout_cold_cpu_ms: r1OrNull(coldCpu),
      /** phases in which a host failed: their figures are left out (null where no valid run is left) */
      fanout_failed: failed,
      fanout_invalid: invalid,
      fanout_connections_open: openConnections,
      fanout_concurrency: CONCURRENCY,
      lab_build_ms: Math.round(labBuildMs),
      load_avg_1m_start: Math.round(loadStart * 100) / 100,
      load_avg_1m_end: Math.round(os.loadavg()[0] * 100) / 100,
      peer_naive_p50_ms: p50(peerNaive),
      peer_naive_ssh_processes: commands.length,
      peer_naive_runs: NAIVE_RUNS,
      // through a bastion (one host behind it), interleaved with the direct warm isolate
      isolate_warm_bastion_p50_ms: p50(isoBastion),
      isolate_warm_bastion_p95_ms: p95(isoBastion),
      isolate_warm_direct_paired_p50_ms: p50(isoDirectPaired),
      floor_bastion_p50_ms: p50(floorBastion),
      isolate_cold_bastion_p50_ms: p50(isoBastionCold),
      bastion_sessions_open: bastionSessions,
      runs: RUNS,
      machine: machine(),
    };
    const rows: [string, string, string][] = [];
    if (!FANOUT_ONLY) {
      rows.push(
        ['isolate, warm (1 exec, verify off)', `${res.isolate_warm_p50_ms}`, `${res.isolate_warm_p95_ms}`],
        ['isolate, warm, default (verify-then-commit)', `${res.isolate_default_p50_ms}`, `${p95(isoDefault)}`],
        ['isolate, warm, default, passphrase key', `${res.isolate_default_passphrase_p50_ms}`, `${p95(isoDefaultPass)}`],
        ['  floor: bare ssh2 exec, same batch', `${res.floor_p50_ms}`, `${p95(floor)}`],
        ['  peer: 1 ssh process, same batch on stdin', `${res.peer_p50_ms}`, `${p95(peer)}`],
        [`  peer, naive: ${commands.length} ssh processes (${NAIVE_RUNS} runs)`, `${res.peer_naive_p50_ms}`, `${p95(peerNaive)}`],
        ['isolate, cold (connect + 1 exec)', `${res.isolate_cold_p50_ms}`, `${p95(isoCold)}`],
        ['  cold floor: bare ssh2 connect + exec', `${res.isolate_cold_floor_p50_ms}`, `${p95(coldFloor)}`],
        ['status, warm', `${res.status_warm_p50_ms}`, `${p95(stWarm)}`],
        ['unisolate, warm', `${res.unisolate_warm_p50_ms}`, `${p95(unWarm)}`],
      );
    }
    rows.push(
      [`fan-out: isolate ${FANOUT} hosts, warm pool`, `${res.fanout_total_ms}`, '-'],
      [`  warm floor: bare exec of each batch`, `${res.fanout_floor_ms}`, '-'],
      [`fan-out: isolate ${FANOUT} hosts, cold`, `${res.fanout_cold_total_ms}`, '-'],
      [`  cold floor: bare connect + exec`, `${res.fanout_cold_floor_ms}`, '-'],
      [`fan-out: isolate ${FANOUT} hosts, warm, verify (once)`, `${res.fanout_verify_total_ms}`, '-'],
      [`fan-out: isolate ${FANOUT} hosts, cold, verify (once)`, `${res.fanout_verify_cold_total_ms}`, '-'],
      [`fan-out: isolate ${FANOUT} hosts, cold, passphrase (once)`, `${res.fanout_cold_passphrase_total_ms}`, '-'],
    );
    if (!FANOUT_ONLY) {
      rows.push(
        ['bastion: isolate, warm (1 exec via the bastion)', `${res.isolate_warm_bastion_p50_ms}`, `${res.isolate_warm_bastion_p95_ms}`],
        ['  direct, interleaved with it', `${res.isolate_warm_direct_paired_p50_ms}`, `${p95(isoDirectPaired)}`],
        ['  floor via the bastion: bare ssh2 exec', `${res.floor_bastion_p50_ms}`, `${p95(floorBastion)}`],
        ['bastion: isolate, cold (bastion + host connect)', `${res.isolate_cold_bastion_p50_ms}`, `${p95(isoBastionCold)}`],
      );
    }
    const w = Math.max(...rows.map((r) => r[0].length));
    console.log(`machine: ${res.machine}; ${RUNS} runs per figure, ${PAIRS} fan-out pairs; load average ${res.load_avg_1m_start} at start, ${res.load_avg_1m_end} at end`);
    console.log(`${'figure'.padEnd(w)}  p50 ms  p95 ms`);
    for (const [a, b, c] of rows) console.log(`${a.padEnd(w)}  ${b.padStart(6)}  ${c.padStart(6)}`);
    if (!FANOUT_ONLY) {
      console.log(`ratio_floor ${res.ratio_floor} (target <= 1.15)   ratio_floor_default ${res.ratio_floor_default} (target <= 2.5)   ratio_cold_floor ${res.ratio_cold_floor} (target <= 1.3)   ratio_peer ${res.ratio_peer}`);
      console.log(`host programs per isolate: warm ${res.host_programs_per_isolate} (floor ${res.host_programs_floor}), default ${res.host_programs_default}, cold ${res.host_programs_cold} (cold floor ${res.host_programs_cold_floor})`);
    }
    console.log(
      `fan-out against its floor: warm ${res.fanout_ratio_floor} (target <= 1.25), cold ${res.fanout_cold_ratio_floor} (target <= 1.5); ` +
        `controller CPU per host: warm ${res.cpu_ms_per_host_warm} ms (<= 2), cold ${res.cpu_ms_per_host_cold} ms (<= 8), cold verify ${res.cpu_ms_per_host_cold_verify} ms (<= 10); ` +
        `passphrase key: warm ${res.cpu_ms_per_host_warm_passphrase}, cold ${res.cpu_ms_per_host_cold_passphrase}, cold verify ${res.cpu_ms_per_host_cold_verify_passphrase}; ` +
        `elu_fanout ${res.elu_fanout}; rss_mb ${res.rss_mb} with ${openConnections} connections open; ${failed} host operations failed${invalid.length ? ` (invalid: ${invalid.join(', ')})` : ''}; lab built in ${res.lab_build_ms} ms`,
    );
    if (JSON_OUT) console.log(JSON.stringify(res));
  });
}

runMain(main);
