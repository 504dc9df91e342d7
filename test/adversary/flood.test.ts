/**
 * The host we isolate is compromised and answers with a flood, or with text made for a terminal.
 * What it sends back per command is bounded (MAX_EXEC_OUTPUT): the controller fails that command
 * with OUTPUT_LIMIT in bounded time and memory, drops the connection, leaves the host whole, and
 * carries on, in the driver and in a real Node-RED runtime. Host text in errors is bounded and clean.
 *
 * First against ssh2's own in-process server (exact bounds, the connect-time exec; no root), then
 * on real lab hosts (real sshd, `nft` replaced in the host's own mount namespace by a script that
 * floods), then in Node-RED. Every flood on a host runs under `timeout`, and every loop here is
 * bounded in count and time.
 */
import { strict as assert } from 'assert';
import * as fs from 'fs';
import type { AddressInfo } from 'net';
import * as path from 'path';
import { Server, type ServerChannel } from 'ssh2';
import { IsolationDriver, IsolationError, MAX_ERROR_MESSAGE, MAX_HOST_TEXT, targetSchema, validate, type HostState, type TargetInput } from '../../src/driver';
import { COMMANDS, connect, MAX_EXEC_OUTPUT } from '../../src/driver/transport';
import { ed25519KeyPair } from '../fake/host';
import { noUnhandledRejections, teardown, useLab, useNodeRed } from '../lab/fixtures';
import { labTarget } from '../lab/lab';
import { httpAnswerNodes, httpIn } from '../lab/nodered';

const TABLE = 'nrhi_flood';
const MiB = 1024 * 1024;
/** "a few tens of MB": what one flooded command may add to a process's resident memory, at most */
const RSS_BUDGET = 48 * MiB;
/** what must never reach an error, a record or a status: C0 but newline and tab, DEL, C1 (so no ESC) */
// eslint-disable-next-line no-control-regex
const UNSAFE = /[\x00-\x08\x0b-\x1f\x7f-\x9f]/;

async function failure(p: Promise<unknown>): Promise<IsolationError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof IsolationError, `a typed error, not ${String(err).slice(0, 300)}`);
    return err;
  }
  assert.fail('expected the call to fail');
}

/** Samples a resident set size every 10 ms; `stop` gives the growth of the peak over the start. */
function rssSampler(read: () => number): { stop(): number } {
  const start = read();
  let peak = start;
  const t = setInterval(() => (peak = Math.max(peak, read())), 10);
  return {
    stop() {
      clearInterval(t);
      peak = Math.max(peak, read());
      return peak - start;
    },
  };
}

/** Polls `fn` every 100 ms until it is true, for at most `ms`. */
async function eventually(fn: () => boolean | Promise<boolean>, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  for (let i = 0; i < ms / 100 + 1; i++) {
    if (await fn()) return;
    if (Date.now() > deadline) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.fail(`not within ${ms} ms: ${what}`);
}

describe('a host that floods: against an in-process SSH server', function () {
  this.timeout(60_000);
  const hostKey = ed25519KeyPair();
  /** how the server answers: whoami normally or flooding; other commands by `nft` */
  const mode = { whoami: 'ok' as 'ok' | 'flood', nft: 'none' as 'none' | 'split' | 'flood-stdout' | 'flood-stderr' | 'not-isolated', bytes: 0 };
  const clients = { opened: 0, closed: 0 };
  let server: Server;
  let port = 0;

  /** writes up to `max` bytes (bounded) to `out`, respecting back-pressure, until the channel closes */
  const flood = (ch: ServerChannel, out: NodeJS.WritableStream, max = 256 * MiB) => {
    const chunk = Buffer.alloc(64 * 1024, 'A');
    let sent = 0;
    let closed = false;
    ch.on('close', () => (closed = true));
    const pump = () => {
      while (!closed && sent < max) {
        sent += chunk.length;
        if (!out.write(chunk)) return;
      }
    };
    out.on('drain', pump);
    pump();
  };

  before(async () => {
    server = new Server({ hostKeys: [hostKey.private] }, (client) => {
      clients.opened++;
      client.on('close', () => clients.closed++);
      client.on('error', () => undefined);
      client.on('authentication', (ctx) => (ctx.method === 'password' && ctx.password === 'pw' ? ctx.accept() : ctx.reject(['password'])));
      client.on('ready', () => {
        client.on('session', (accept) => {
          accept().on('exec', (acceptExec, _reject, info) => {
            const ch = acceptExec();
            ch.on('error', () => undefined);
            const end = (code: number) => {
              ch.exit(code);
              ch.end();
            };
            if (info.command === COMMANDS.whoami) {
              if (mode.whoami === 'flood') return flood(ch, ch);
              ch.write(`127.0.0.1 50000 127.0.0.1 ${port}\n`);
              return end(0);
            }
            ch.on('data', () => undefined); // stdin, ignored
            switch (mode.nft) {
              case 'split': {
                // exactly `bytes`, half on stdout, the rest on stderr
                const half = Math.floor(mode.bytes / 2);
                ch.write(Buffer.alloc(half, 'o'), () => ch.stderr.write(Buffer.alloc(mode.bytes - half, 'e'), () => end(0)));
                return;
              }
              case 'flood-stdout':
                return flood(ch, ch);
              case 'flood-stderr':
                return flood(ch, ch.stderr);
              case 'not-isolated':
                ch.stderr.write('Error: No such file or directory; did you mean table ‘x’?\n');
                return end(1);
              default:
                return end(0);
            }
          });
        });
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
    port = (server.address() as AddressInfo).port;
  });
  after(async () => {
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  const target = (): TargetInput => ({
    host: '127.0.0.1',
    port,
    username: 'isolator',
    password: 'pw',
    knownHosts: `[127.0.0.1]:${port} ${hostKey.public.split(' ').slice(0, 2).join(' ')}\n`,
    timeoutMs: 10_000,
  });

  it('reads exactly MAX_EXEC_OUTPUT bytes whole; one byte more is OUTPUT_LIMIT and the connection is dropped', async () => {
    assert.equal(MAX_EXEC_OUTPUT, 4 * MiB);
    mode.whoami = 'ok';
    const t = validate(targetSchema, target(), 'target');
    const conn = await connect(t, 10_000);
    try {
      mode.nft = 'split';
      mode.bytes = MAX_EXEC_OUTPUT;
      const res = await conn.exec(COMMANDS.nft, '{}', 10_000);
      assert.equal(res.stdout.length + res.stderr.length, MAX_EXEC_OUTPUT, 'all of it, and no more');
      assert.equal(res.code, 0);
      assert.ok(conn.alive);
      const closedBefore = clients.closed;
      mode.bytes = MAX_EXEC_OUTPUT + 1;
      const err = await failure(conn.exec(COMMANDS.nft, '{}', 10_000));
      assert.equal(err.code, 'OUTPUT_LIMIT');
      assert.equal(err.host, `127.0.0.1:${port}`);
      assert.match(err.message, /4194304 bytes/);
      assert.equal(conn.alive, false, 'the connection is no longer used');
      await eventually(() => clients.closed > closedBefore, 5000, 'the server sees the connection closed');
      // a smaller bound per call is honoured too
      const again = await connect(t, 10_000);
      try {
        mode.bytes = 1001;
        assert.equal((await failure(again.exec(COMMANDS.nft, '{}', 10_000, 1000))).code, 'OUTPUT_LIMIT');
      } finally {
        again.close();
      }
    } finally {
      conn.close();
    }
  });

  it('the connect-time exec (SSH_CONNECTION) is bounded too', async () => {
    mode.whoami = 'flood';
    const closedBefore = clients.closed;
    const started = Date.now();
    try {
      const err = await failure(connect(validate(targetSchema, target(), 'target'), 10_000));
      assert.equal(err.code, 'OUTPUT_LIMIT');
      assert.ok(Date.now() - started < 10_000, 'within the time limit');
      await eventually(() => clients.closed > closedBefore, 5000, 'the connection is closed');
    } finally {
      mode.whoami = 'ok';
    }
  });

  it('the driver discards the pooled connection on OUTPUT_LIMIT; the next call opens a fresh one', async () => {
    const d = new IsolationDriver();
    try {
      mode.nft = 'not-isolated';
      assert.equal((await d.status(target())).isolated, false);
      assert.equal(d.connections, 1);
      for (const flooding of ['flood-stdout', 'flood-stderr'] as const) {
        mode.nft = flooding;
        const opened = clients.opened;
        assert.equal((await failure(d.status(target()))).code, 'OUTPUT_LIMIT', flooding);
        assert.equal(d.connections, 0, 'the flooded connection left the pool');
        mode.nft = 'not-isolated';
        assert.equal((await d.status(target())).isolated, false);
        assert.equal(clients.opened, opened + 1, 'a fresh connection');
      }
    } finally {
      await d.close();
    }
  });
});

describe('a host that floods: real lab hosts, the driver, and a Node-RED runtime', function () {
  this.timeout(240_000);
  const lab = useLab({ hosts: 2, tables: [TABLE] });
  noUnhandledRejections();
  teardown(async () => {
    for (const h of lab.hosts) await lab.wrapNft(h.index, null).catch(() => undefined);
  });
  const TIMEOUT_MS = 8000;
  const target = (i: number, extra: Partial<TargetInput> = {}): TargetInput => labTarget(lab, i, TABLE, TIMEOUT_MS, extra);
  const procs = (i: number) => lab.processes(lab.hosts[i].ns);
  const sshdCount = (i: number) => procs(i).filter((c) => c.startsWith('sshd')).length;
  /** an endless flood, bounded on the host by `timeout` in case the controller never hangs up */
  const FLOODS: [string, string][] = [
    ['stdout', 'exec timeout 30 yes AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA'],
    ['stderr', 'exec timeout 30 cat /dev/zero >&2'],
    ['both', 'timeout 30 yes BBBBBBBBBBBBBBBB >&2 & exec timeout 30 yes AAAAAAAAAAAAAAAA'],
  ];
  const HOSTILE_STDERR = [
    'cat >/dev/null',
    String.raw`printf '\033[2J\033[H\033[1;31mError:\033[0m Could not process rule: \033]0;owned\007\033[1A\r\b\001\177evil\n' >&2`,
    "head -c 1048576 /dev/zero | tr '\\000' E >&2",
    'exit 1',
  ].join('\n');

  /** the host has no table of ours (the wrapper never ran the real nft), no timer, no flood left */
  const hostIsClean = async (i: number) => {
    await eventually(() => !procs(i).some((c) => ['yes', 'cat', 'timeout', 'head', 'tr'].includes(c)), 5000, `no flood process left on host ${i}: ${procs(i)}`);
    const tables = await lab.nft(lab.hosts[i].ns, ['list', 'tables']);
    assert.ok(!tables.stdout.includes(TABLE), 'no half state: the table is absent');
    assert.ok(!procs(i).includes('sleep'), 'no release or rollback timer armed');
  };


  for (const [name, script] of FLOODS) {
    it(`nft floods ${name}: isolate fails with OUTPUT_LIMIT in time and memory, the host stays whole, work goes on`, async () => {
      const sessionsBefore = sshdCount(0);
      const d = new IsolationDriver();
      try {
        await d.status(target(0)); // a warm pooled connection, as a runtime has
        await lab.wrapNft(0, script);
        const rss = rssSampler(() => process.memoryUsage.rss());
        const started = Date.now();
        // a healthy host is served at the same time
        const [flooded, healthy] = await Promise.allSettled([d.isolate(target(0), { reason: `flood ${name}` }), d.status(target(1))]);
        const ms = Date.now() - started;
        const grew = rss.stop();
        assert.equal(flooded.status, 'rejected');
        const err = (flooded as PromiseRejectedResult).reason;
        assert.ok(err instanceof IsolationError, String(err));
        assert.equal(err.code, 'OUTPUT_LIMIT', err.message);
        assert.ok(ms < TIMEOUT_MS, `within the target's timeout (${ms} ms)`);
        assert.ok(grew < RSS_BUDGET, `the controller's RSS grew by ${(grew / MiB).toFixed(1)} MiB`);
        assert.equal(healthy.status, 'fulfilled', 'the healthy host answered');
        assert.equal((healthy as PromiseFulfilledResult<HostState>).value.isolated, false);
        assert.equal(d.connections, 1, "only the healthy host's connection is left in the pool");
        console.log(`      flood ${name}: OUTPUT_LIMIT after ${ms} ms, RSS +${(grew / MiB).toFixed(1)} MiB`);
        await hostIsClean(0);
        await eventually(() => sshdCount(0) <= sessionsBefore, 5000, `the flooded session ends on the host (${sshdCount(0)} > ${sessionsBefore})`);
      } finally {
        await lab.wrapNft(0, null);
      }
      try {
        // the same driver reconnects to the host once it behaves
        assert.equal((await d.isolate(target(0), { reason: 'after the flood' })).isolated, true);
        assert.equal((await d.unisolate(target(0))).isolated, false);
      } finally {
        await d.close();
      }
    });
  }

  it('a flood at login (before the first command) fails the connect with OUTPUT_LIMIT', async () => {
    // sshd runs ~/.ssh/rc before every command, its output on the session's stdout
    const sshDir = path.join(lab.dir, 'home-a', '.ssh');
    fs.mkdirSync(sshDir, { recursive: true, mode: 0o755 });
    fs.writeFileSync(path.join(sshDir, 'rc'), 'exec timeout 30 yes CCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCC\n', { mode: 0o644 });
    const d = new IsolationDriver();
    try {
      const started = Date.now();
      const err = await failure(d.status(target(0)));
      assert.equal(err.code, 'OUTPUT_LIMIT', err.message);
      assert.ok(Date.now() - started < TIMEOUT_MS);
      assert.equal(d.connections, 0);
      await hostIsClean(0);
    } finally {
      fs.rmSync(path.join(sshDir, 'rc'), { force: true });
    }
    try {
      assert.equal((await d.status(target(0))).isolated, false, 'fine again once the host behaves');
    } finally {
      await d.close();
    }
  });

  it('hostile stderr (escapes, control characters, a megabyte) then exit 1: NFT_FAILED, bounded and clean', async () => {
    await lab.wrapNft(0, HOSTILE_STDERR);
    const d = new IsolationDriver();
    try {
      const err = await failure(d.isolate(target(0), { reason: 'hostile text' }));
      assert.equal(err.code, 'NFT_FAILED');
      assert.ok(err.message.length <= MAX_ERROR_MESSAGE, `${err.message.length}`);
      const stderr = String(err.details.stderr);
      assert.ok(stderr.length <= MAX_HOST_TEXT, `${stderr.length}`);
      for (const s of [err.message, stderr, JSON.stringify(err.toJSON())]) assert.ok(!UNSAFE.test(s) && !s.includes('\\u001b'), s.slice(0, 200));
      assert.match(err.message, /Error: Could not process rule: evil\nE+…\[cut: \d+ characters\]$/);
      assert.equal(d.connections, 1, 'an answer, not a flood: the connection stays');
      await hostIsClean(0);
    } finally {
      await lab.wrapNft(0, null);
      await d.close();
    }
  });

  describe('in a real Node-RED runtime', () => {
    const red = useNodeRed({ flows: () => flows() });
    const auditFile = () => path.join(red.userDir, 'audit.jsonl');
    /** the resident set of a process (0 once it is gone: a runtime that died is caught by the asserts) */
    const rssOf = (pid: number) => {
      try {
        return Number(/VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) * 1024;
      } catch {
        return 0;
      }
    };

    const flows = () => {
      const h = lab.hosts[0];
      const nodes: Record<string, unknown>[] = [
        { id: 'tab', type: 'tab', label: 'flood' },
        {
          id: 'tgt',
          type: 'isolation-target',
          host: h.v4,
          port: 22,
          username: lab.users.sudo.username,
          allowedHosts: [h.v4],
          knownHosts: h.knownHosts,
          sudo: true,
          timeout: TIMEOUT_MS / 1000,
          credentials: { privateKey: lab.users.sudo.privateKey, passphrase: lab.users.sudo.passphrase },
        },
        httpIn('in-iso', 'post', '/isolate', 'm-iso'),
        { id: 'm-iso', type: 'change', z: 'tab', rules: [{ t: 'set', p: 'reason', pt: 'msg', to: 'payload.reason', tot: 'msg' }], wires: [['iso']] },
        { id: 'iso', type: 'isolate-host', z: 'tab', target: 'tgt', presets: ['ssh'], exceptions: [], mode: 'enforce', duration: 0, verify: true, wires: [['resp'], ['audit']] },
        httpIn('in-un', 'post', '/unisolate', 'un'),
        { id: 'un', type: 'unisolate-host', z: 'tab', target: 'tgt', wires: [['resp'], ['audit']] },
        httpIn('in-ping', 'get', '/ping', 'pong'),
        { id: 'pong', type: 'change', z: 'tab', rules: [{ t: 'set', p: 'payload', pt: 'msg', to: 'pong', tot: 'str' }], wires: [['resp']] },
        { id: 'audit', type: 'file', z: 'tab', filename: '', filenameType: 'str', appendNewline: true, createDir: false, overwriteFile: 'false', encoding: 'none' },
        ...httpAnswerNodes(),
      ];
      return nodes.map((n) => (n.id === 'audit' ? { ...n, filename: auditFile() } : n)).map((n, i) => (n.z ? { x: 200, y: 40 + 40 * i, ...n } : n));
    };


    it('an isolate-host against a flooding host ends in OUTPUT_LIMIT at a Catch node; the runtime serves HTTP throughout', async () => {
      assert.equal((await red.request('GET', '/ping')).body, 'pong');
      await lab.wrapNft(0, FLOODS[0][1]);
      const pid = red.process.pid!;
      const rss = rssSampler(() => rssOf(pid));
      const started = Date.now();
      let settled = false;
      const pending = red.request('POST', '/isolate', { reason: 'flooding host' }).finally(() => (settled = true));
      // the runtime keeps answering while the flood comes in: an endpoint of the flow and the admin API
      const answers: { status: number; ms: number }[] = [];
      let res: Awaited<typeof pending>;
      let ms: number;
      let grew: number;
      try {
        for (let i = 0; i < 300 && !settled && Date.now() - started < 30_000; i++) {
          const t0 = Date.now();
          const [ping, admin] = await Promise.all([red.request('GET', '/ping'), red.request('GET', '/flows/state')]);
          answers.push({ status: ping.body === 'pong' && admin.status === 200 ? 200 : ping.status, ms: Date.now() - t0 });
          await new Promise((r) => setTimeout(r, 25));
        }
        res = await pending;
        ms = Date.now() - started;
      } finally {
        grew = rss.stop();
      }
      try {
        assert.equal(res.status, 500, JSON.stringify(res.body));
        assert.equal((res.body as { code: string }).code, 'OUTPUT_LIMIT', JSON.stringify(res.body));
        assert.ok(ms < TIMEOUT_MS + 1000, `within the target's timeout (${ms} ms)`);
        assert.ok(answers.length >= 1, 'asked during the flood');
        assert.ok(answers.every((a) => a.status === 200), JSON.stringify(answers));
        assert.ok(Math.max(...answers.map((a) => a.ms)) < 2000, `answers in time: ${JSON.stringify(answers)}`);
        assert.ok(grew < RSS_BUDGET, `Node-RED's RSS grew by ${(grew / MiB).toFixed(1)} MiB`);
        console.log(`      Node-RED: OUTPUT_LIMIT after ${ms} ms, ${answers.length} requests answered meanwhile, RSS +${(grew / MiB).toFixed(1)} MiB`);
        await hostIsClean(0);
      } finally {
        await lab.wrapNft(0, null);
      }
      // after the flood: still running, still serving, and the same node works against the host
      assert.equal(red.process.exitCode, null, 'Node-RED still running');
      assert.equal((await red.request('GET', '/ping')).body, 'pong');
      const iso = await red.request('POST', '/isolate', { reason: 'after the flood' });
      assert.equal(iso.status, 200, JSON.stringify(iso.body));
      assert.equal((iso.body as HostState).isolated, true);
      const un = await red.request('POST', '/unisolate', {});
      assert.equal((un.body as HostState).isolated, false);
      const lines = () => fs.readFileSync(auditFile(), 'utf8').trim().split('\n');
      await eventually(() => lines().length >= 3, 5000, 'three audit records written');
      const records = lines().map((l) => JSON.parse(l) as { action: string; result: string; error?: { code: string } });
      assert.deepEqual(records.map((r) => [r.action, r.result, r.error?.code ?? null]), [
        ['isolate', 'error', 'OUTPUT_LIMIT'],
        ['isolate', 'ok', null],
        ['unisolate', 'ok', null],
      ]);
    });

    it('hostile stderr: the Catch node and the audit record get a bounded, clean message', async () => {
      await lab.wrapNft(0, HOSTILE_STDERR);
      const lines = () => (fs.existsSync(auditFile()) ? fs.readFileSync(auditFile(), 'utf8').trim().split('\n').filter(Boolean) : []);
      const before = lines().length;
      try {
        const res = await red.request('POST', '/isolate', { reason: 'hostile text' });
        assert.equal(res.status, 500);
        const e = res.body as { code: string; message: string };
        assert.equal(e.code, 'NFT_FAILED');
        assert.ok(e.message.length <= MAX_ERROR_MESSAGE + 64, `${e.message.length}`);
        assert.ok(!UNSAFE.test(e.message), e.message.slice(0, 200));
        assert.match(e.message, /evil/);
        // the HTTP answer can come before the file node has written its line: wait for it
        await eventually(() => lines().length > before, 5000, 'the audit record written');
        const last = JSON.parse(lines()[before]) as { result: string; error: { code: string; message: string } };
        assert.equal(last.result, 'error');
        assert.equal(last.error.code, 'NFT_FAILED');
        assert.ok(last.error.message.length <= MAX_ERROR_MESSAGE);
        assert.ok(!UNSAFE.test(last.error.message));
        assert.equal(red.process.exitCode, null);
        assert.equal((await red.request('GET', '/ping')).body, 'pong');
      } finally {
        await lab.wrapNft(0, null);
      }
    });
  });
});
