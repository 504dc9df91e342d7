/**
 * Fault injection on the lab: each fault ends in a correct result or a typed, catchable error,
 * with no unhandled rejection, no leaked connection or process, and never a half-applied
 * ruleset. Faults are real: sshd processes killed, the host's link taken down, `nft` replaced in
 * the host's own mount namespace (missing, failing, slow), the host key regenerated, sudo refused,
 * a wrong password; and 100 concurrent operations over 10 hosts.
 */
import { strict as assert } from 'assert';
import { IsolationDriver, IsolationError, type HostState, type TargetInput } from '../../src/driver';
import { SshConnection } from '../../src/driver/transport';
import { noUnhandledRejections, useDriver, useLab } from '../lab/fixtures';
import { labTarget } from '../lab/lab';

const TABLE = 'nrhi_fault';

async function codeOf(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'OK';
  } catch (err) {
    assert.ok(err instanceof IsolationError, `a typed error, not ${String(err)}`);
    return err.code;
  }
}

describe('faults on the lab', function () {
  this.timeout(300_000);
  const lab = useLab({ hosts: 10, tables: [TABLE] });
  noUnhandledRejections();
  const driver = useDriver();
  const target = (i: number, extra: Partial<TargetInput> = {}): TargetInput => labTarget(lab, i, TABLE, 4000, extra);
  /** the table on the host is absent, or complete and as its record says (never half) */
  const wholeOrNothing = async (i: number): Promise<HostState> => {
    const d = new IsolationDriver();
    try {
      const st = await d.status(target(i, { timeoutMs: 15_000 }));
      if (st.state !== 'free') assert.deepEqual(st.tampered, [], `host ${i}: a complete table`);
      return st;
    } finally {
      await d.close();
    }
  };
  /** the sshd processes (listener and sessions) inside host i's network namespace */
  const sessions = (i: number): number => lab.processes(lab.hosts[i].ns).filter((c) => c.startsWith('sshd')).length;

  it('nft missing, nft failing: typed errors, nothing applied', async () => {
    await lab.wrapNft(0, 'exec /nonexistent/nft "$@"');
    assert.equal(await codeOf(driver.isolate(target(0), {})), 'NFT_MISSING');
    await lab.wrapNft(0, null);
    await lab.wrapNft(0, 'cat >/dev/null; echo "Error: Could not process rule: No buffer space available" >&2; exit 1');
    const d = new IsolationDriver();
    try {
      await d.isolate(target(0), {});
      assert.fail('must fail');
    } catch (err) {
      assert.ok(err instanceof IsolationError);
      assert.equal(err.code, 'NFT_FAILED');
      assert.match(String(err.details.stderr), /No buffer space available/, 'stderr verbatim');
      // unisolate reads only "no such table" and "it exists" as a wrong guess: any other failure is the answer
      const un = await d.unisolate(target(0)).then(
        () => null,
        (e: unknown) => e,
      );
      assert.ok(un instanceof IsolationError && un.code === 'NFT_FAILED', String(un));
      assert.match(String(un.details.stderr), /No buffer space available/);
    } finally {
      await d.close();
    }
    await lab.wrapNft(0, null);
    assert.equal((await wholeOrNothing(0)).isolated, false);
  });

  it('sshd killed in the middle of an isolate: a typed error, then whole or nothing, and the next call works', async () => {
    await lab.wrapNft(1, 'sleep 1.5; exec "$REAL_NFT" "$@"');
    const op = codeOf(driver.isolate(target(1), { reason: 'killed mid-way' }));
    await new Promise((r) => setTimeout(r, 600));
    await lab.killSshd(1);
    assert.ok(['UNREACHABLE', 'TIMEOUT', 'VERIFY_FAILED'].includes(await op), 'the connection died under it');
    await lab.startSshd(1); // a fresh sshd: its mount namespace has the real nft again
    await new Promise((r) => setTimeout(r, 2000)); // a command that outlived its session has finished by now
    await wholeOrNothing(1);
    // the pool dropped the dead connection: the next operation simply reconnects
    assert.equal((await driver.isolate(target(1), { reason: 'after the fault' })).isolated, true);
    assert.equal((await driver.unisolate(target(1))).isolated, false);
  });

  it('the network silenced during an exec: TIMEOUT in bounded time, connection dropped, recovery after', async () => {
    await driver.status(target(2)); // a warm connection to lose
    await lab.wrapNft(2, 'sleep 1; exec "$REAL_NFT" "$@"');
    const started = Date.now();
    const op = codeOf(driver.isolate(target(2), {}));
    await new Promise((r) => setTimeout(r, 300));
    await lab.silence(2, true);
    const code = await op;
    assert.ok(['TIMEOUT', 'UNREACHABLE'].includes(code), code);
    assert.ok(Date.now() - started < 4000 + 3000, 'within the target timeout');
    await lab.silence(2, false);
    await lab.wrapNft(2, null).catch(() => undefined);
    // the isolation may have gone in while we could not hear it: whole or nothing, and the
    // driver finds out by itself on the next call
    const st = await wholeOrNothing(2);
    assert.equal((await driver.status(target(2, { timeoutMs: 15_000 }))).isolated, st.isolated);
    assert.equal((await driver.unisolate(target(2, { timeoutMs: 15_000 }))).isolated, false);
  });

  it('sudo refused and a wrong password: typed errors before anything changes', async () => {
    assert.equal(await codeOf(driver.isolate(target(3, { username: lab.users.nosudo.username, privateKey: lab.users.nosudo.privateKey, passphrase: lab.users.nosudo.passphrase }), {})), 'PRIVILEGE');
    assert.equal(await codeOf(driver.status(target(3, { privateKey: undefined, passphrase: undefined, password: 'not the password' }))), 'AUTH_FAILED');
    assert.equal((await wholeOrNothing(3)).isolated, false);
  });

  it('the host key changes between two operations: the next connection is refused before anything is sent', async () => {
    assert.equal((await driver.isolate(target(4), { verify: false })).isolated, true);
    const newKey = await lab.newHostKey(4); // also kills the pooled session
    assert.equal(await codeOf(driver.unisolate(target(4))), 'HOST_KEY_MISMATCH');
    const st = await (async () => {
      const d = new IsolationDriver();
      try {
        return await d.status(target(4, { knownHosts: newKey }));
      } finally {
        await d.close();
      }
    })();
    assert.equal(st.isolated, true, 'nothing was sent: still isolated');
    // once the operator pins the new key, the same driver carries on
    lab.hosts[4].knownHosts = newKey; // the lab's own record follows the host
    const pinnedNew = target(4);
    assert.equal((await driver.unisolate(pinnedNew)).isolated, false);
    assert.equal((await driver.status(pinnedNew)).isolated, false);
  });

  it('the pool is bounded and expires idle connections; a concurrency limit spans all hosts', async () => {
    const all = lab.hosts.map((_, i) => target(i, { timeoutMs: 30_000 }));
    const bounded = new IsolationDriver({ maxConnections: 3 });
    try {
      for (const t of all) {
        await bounded.status(t);
        assert.ok(bounded.connections <= 3, `pool holds ${bounded.connections}`);
      }
      assert.equal((await bounded.status(all[0])).isolated, false, 'an evicted host simply reconnects');
    } finally {
      await bounded.close();
    }
    const idle = new IsolationDriver({ idleMs: 300 });
    try {
      await Promise.all(all.slice(0, 2).map((t) => idle.status(t)));
      assert.equal(idle.connections, 2);
      await new Promise((r) => setTimeout(r, 800));
      assert.equal(idle.connections, 0, 'idle connections closed by themselves');
    } finally {
      await idle.close();
    }
    // how many operations run at once, across hosts: counted at the exec, with every host's nft slowed
    const peakWith = async (maxConcurrent: number) => {
      const d = new IsolationDriver({ maxConcurrent });
      let running = 0;
      let peak = 0;
      const exec = SshConnection.prototype.exec;
      SshConnection.prototype.exec = async function (this: SshConnection, ...args: Parameters<typeof exec>) {
        peak = Math.max(peak, ++running);
        try {
          return await exec.apply(this, args);
        } finally {
          running--;
        }
      };
      try {
        await Promise.all(all.map((t) => d.isolate(t, { verify: false })));
        await Promise.all(all.map((t) => d.unisolate(t)));
      } finally {
        SshConnection.prototype.exec = exec;
        await d.close();
      }
      return peak;
    };
    for (let i = 0; i < all.length; i++) await lab.wrapNft(i, 'sleep 0.3; exec "$REAL_NFT" "$@"');
    try {
      assert.ok((await peakWith(2)) <= 2, 'never more than the limit');
      assert.ok((await peakWith(64)) > 2, 'the same work overlaps more without it');
    } finally {
      for (let i = 0; i < all.length; i++) await lab.wrapNft(i, null);
    }
  });

  it('100 concurrent operations over 10 hosts: each ends in a result or a typed error, hosts end consistent, nothing leaks', async () => {
    await driver.close(); // the earlier tests' pooled sessions are not this test's
    await new Promise((r) => setTimeout(r, 1500));
    const before = lab.hosts.map((_, i) => sessions(i));
    const d = new IsolationDriver({ maxConcurrent: 16 });
    const ops: Promise<string>[] = [];
    // what an unexpected error said, for the assertion's message (a CI run must say which batch failed)
    const unexpected: string[] = [];
    const record = (k: number, what: string, p: Promise<unknown>): Promise<string> =>
      p.then(
        () => 'OK',
        (err: unknown) => {
          assert.ok(err instanceof IsolationError, `a typed error, not ${String(err)}`);
          if (err.code !== 'NOT_ISOLATED') unexpected.push(`op ${k} (${what}, host ${k % 10}): ${err.code} ${err.message} ${JSON.stringify(err.details)}`);
          return err.code;
        },
      );
    for (let k = 0; k < 100; k++) {
      const i = k % 10;
      const t = target(i, { timeoutMs: 30_000 });
      const pick = (k * 7) % 5;
      const op =
        pick === 0
          ? d.isolate(t, { reason: `op ${k}`, verify: k % 20 === 0 })
          : pick === 1
            ? d.status(t)
            : pick === 2
              ? d.setExceptions(t, 'add', [{ direction: 'in', proto: 'tcp', port: 1000 + k }])
              : pick === 3
                ? d.unisolate(t)
                : d.isolate(t, { mode: 'audit', exceptions: [{ direction: 'out', proto: 'udp', port: 53 }] });
      ops.push(record(k, ['isolate', 'status', 'add exception', 'unisolate', 'isolate audit'][pick], op));
    }
    const codes = await Promise.all(ops);
    const tally = codes.reduce<Record<string, number>>((a, c) => ({ ...a, [c]: (a[c] ?? 0) + 1 }), {});
    // a setExceptions that runs when its host is not isolated is refused, correctly; nothing else fails
    assert.deepEqual(Object.keys(tally).sort().filter((c) => c !== 'OK' && c !== 'NOT_ISOLATED'), [], `${JSON.stringify(tally)}\n${unexpected.join('\n')}`);
    assert.ok(d.connections <= 10, 'one pooled connection per host');
    for (let i = 0; i < 10; i++) await wholeOrNothing(i);
    await Promise.all(lab.hosts.map((_, i) => d.unisolate(target(i))));
    await d.close();
    await new Promise((r) => setTimeout(r, 1500));
    const after = lab.hosts.map((_, i) => sessions(i));
    assert.deepEqual(after, before, `sshd processes per host back to where they were (${before} -> ${after})`);
  });
});
