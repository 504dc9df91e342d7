/**
 * The driver's own logic against the fake host (test/fake/host.ts): a real ssh2 client and server
 * in this process, no root, no namespace. What the host itself does is the lab tier's.
 */
import { strict as assert } from 'assert';
import { DEFAULT_TABLE, IsolationDriver, type IsolationError } from '../../src/driver';
import { decodeApplyInput } from '../../src/driver/host/apply-input';
import { localReleaseCommand } from '../../src/driver/host/local-release';
import { FakeHost } from '../fake/host';

describe('driver logic on the fake host (no root)', function () {
  this.timeout(20_000);
  let host: FakeHost;
  let driver: IsolationDriver;

  beforeEach(async () => {
    host = await new FakeHost().start();
    driver = new IsolationDriver({ openStream: host.openStream, resolve: async () => [host.addr] });
  });
  afterEach(async () => {
    await driver.close();
    await host.close();
  });

  const code = async (p: Promise<unknown>): Promise<string> => {
    try {
      await p;
    } catch (err) {
      return (err as IsolationError).code;
    }
    return 'no error';
  };

  it('a cold isolate logs in, asks what the host can do, and applies in one transaction; a warm one is one exec', async () => {
    const st = await driver.isolate(host.target(), { verify: false, reason: 'fake' });
    assert.equal(st.isolated, true);
    assert.equal(st.reason, 'fake');
    assert.deepEqual(
      host.execs().map((e) => e.kind),
      ['whoami', 'preflight', 'apply'],
    );
    const gen = host.gen();
    assert.ok(gen !== null && gen > 0, 'the table holds a generation');
    host.log.length = 0;
    const again = await driver.isolate(host.target(), { verify: false, reason: 'fake' });
    assert.equal(again.changed, false, 'the same request again changes nothing');
    assert.deepEqual(host.execs().map((e) => e.kind), ['apply'], 'warm: one exec');
    assert.equal(host.gen(), gen, 'the same generation');
  });

  it("the local release (issue 23): the wall notice ends with it, status shows it for an isolated host and not for a free one", async () => {
    const t = host.target();
    const cmd = localReleaseCommand(t.table ?? DEFAULT_TABLE);
    await driver.isolate(t, { verify: false, wall: 'isolated by the SOC' });
    const notice = Buffer.from(decodeApplyInput(host.execs('apply')[0].stdin).fields.notice, 'base64').toString('utf8');
    assert.ok(notice.startsWith('isolated by the SOC\n\n'), notice);
    assert.ok(notice.endsWith(`as root run:\n${cmd}`), notice);
    assert.equal((await driver.status(t)).localRelease, cmd);
    host.log.length = 0;
    await driver.unisolate(t);
    assert.equal(decodeApplyInput(host.execs('apply')[0].stdin).fields.notice, '', 'no wall asked: no notice');
    assert.equal((await driver.status(t)).localRelease, undefined, 'free: nothing to release');
  });

  it('a stale belief (another controller moved the generation on) is claimed, refused, read and applied once more', async () => {
    await driver.isolate(host.target(), { verify: false });
    const mine = host.gen()!;
    // another controller's isolation: a newer generation behind our back
    host.edit((t) => {
      const set = t.objs.find((o) => o.kind === 'set' && o.body.name === 'gen')!;
      set.body = { ...set.body, elem: [mine + 7] };
    });
    host.log.length = 0;
    const st = await driver.isolate(host.target(), { verify: false, reason: 'second' });
    assert.equal(st.reason, 'second');
    assert.deepEqual(host.execs().map((e) => e.kind), ['apply', 'status', 'apply'], 'claim refused, read (the bounded state read), apply');
    assert.equal(host.gen(), mine + 8, 'built on the generation it read');
  });

  it('unisolate flips a wrong belief once: the table removed behind its back is "was free", changed false', async () => {
    await driver.isolate(host.target(), { verify: false });
    host.table = null; // removed behind the driver's back
    host.log.length = 0;
    const st = await driver.unisolate(host.target());
    assert.equal(st.isolated, false);
    assert.equal(st.changed, false);
    assert.equal(host.execs('apply').length, 2, 'the release batch, refused, then the free batch');
    // and the other way round: believed free, but isolated meanwhile
    await driver.isolate(host.target(), { verify: false });
    const other = new IsolationDriver({ openStream: host.openStream, resolve: async () => [host.addr] });
    try {
      await other.unisolate(host.target()); // another controller releases...
      await other.isolate(host.target(), { verify: false }); // ...and isolates again
    } finally {
      await other.close();
    }
    const rel = await driver.unisolate(host.target());
    assert.equal(rel.changed, true);
    assert.equal(host.table, null);
  });

  it('a real nft refusal is the answer, never a wrong guess to flip', async () => {
    host.script((e) => (e.kind === 'apply' ? { code: 1, stderr: 'Error: Could not process rule: Operation not supported\n' } : undefined));
    assert.equal(await code(driver.unisolate(host.target())), 'NFT_FAILED');
    assert.equal(host.execs('apply').length, 1);
  });

  it('a warm connection the host cut while idle: the command never started, so the action runs once on a new connection', async () => {
    await driver.isolate(host.target(), { verify: false });
    host.dropConnections();
    await new Promise((r) => setTimeout(r, 100));
    host.log.length = 0;
    const st = await driver.status(host.target());
    assert.equal(st.isolated, true);
    assert.deepEqual(host.execs().map((e) => e.kind), ['whoami', 'status']);
  });

  it('a host that floods: OUTPUT_LIMIT, the connection is dropped, the next action starts clean', async () => {
    await driver.isolate(host.target(), { verify: false });
    let flooded = false;
    host.script((e) => {
      if (e.kind !== 'status' || flooded) return undefined;
      flooded = true;
      return { flood: 5 * 1024 * 1024 };
    });
    assert.equal(await code(driver.status(host.target())), 'OUTPUT_LIMIT');
    const conns = new Set(host.execs().map((e) => e.conn));
    const st = await driver.status(host.target());
    assert.equal(st.isolated, true);
    assert.ok(!conns.has(host.execs().at(-1)!.conn), 'a new connection');
  });

  it('a host that stalls: TIMEOUT within the target\'s time, and the stalled connection is not reused', async () => {
    await driver.isolate(host.target(), { verify: false });
    const unscript = host.script((e) => (e.kind === 'status' ? { hang: true } : undefined));
    const t0 = Date.now();
    assert.equal(await code(driver.status(host.target({ timeoutMs: 800 }))), 'TIMEOUT');
    assert.ok(Date.now() - t0 < 2000, `answered in ${Date.now() - t0} ms`);
    const stalled = host.execs('status').at(-1)!.conn;
    unscript();
    assert.equal((await driver.status(host.target())).isolated, true);
    assert.notEqual(host.execs('status').at(-1)!.conn, stalled, 'a new connection after the stall');
  });

  it('verify-then-commit: no fresh connection gets through, so the controller rolls back over the one that works', async () => {
    await driver.isolate(host.target(), { verify: false, reason: 'before' });
    const before = host.gen();
    host.refuseConnections(true);
    const err = await driver.isolate(host.target(), { reason: 'after', exceptions: [{ direction: 'in', proto: 'tcp', port: 8080 }] }).catch((e: IsolationError) => e);
    assert.equal((err as IsolationError).code, 'VERIFY_FAILED');
    assert.equal((err as IsolationError).details.rolledBack, true);
    host.refuseConnections(false);
    const st = await driver.status(host.target());
    assert.equal(st.reason, 'before', 'the previous isolation is back');
    assert.ok(host.gen() !== null && host.gen() !== before, 'restored under a new generation');
  });

  it('bad input is refused before anything reaches the host', async () => {
    assert.equal(await code(driver.isolate(host.target(), { exceptions: [{ direction: 'sideways' }] } as never)), 'VALIDATION');
    assert.equal(await code(driver.isolate({ ...host.target(), table: 'x;rm' })), 'VALIDATION');
    assert.equal(await code(driver.isolate(host.target(), { case: { id: 'C'.repeat(65) } })), 'VALIDATION');
    assert.equal(await code(driver.isolate(host.target(), { case: { id: 'C-1', url: 'file:///etc/passwd' } })), 'VALIDATION');
    assert.equal(await code(driver.isolate(host.target(), { requestedBy: 'a\nb' })), 'VALIDATION');
    assert.equal(host.log.length, 0);
  });

  it('the case and requester are kept on the host with the isolation: a new driver reads them back, an isolate without them keeps them, the same again changes nothing', async () => {
    const kase = { id: 'INC-42', url: 'https://cases.example/INC-42' };
    const st = await driver.isolate(host.target(), { verify: false, reason: 'r', case: kase, requestedBy: 'alice@soc' });
    assert.deepEqual([st.case, st.requestedBy], [kase, 'alice@soc']);
    const fresh = new IsolationDriver({ openStream: host.openStream, resolve: async () => [host.addr] });
    try {
      const read = await fresh.status(host.target());
      assert.deepEqual([read.case, read.requestedBy, read.reason], [kase, 'alice@soc', 'r']);
      // built on what it read: the record it writes is the same, key for key
      const again = await fresh.isolate(host.target(), { verify: false });
      assert.equal(again.changed, false, 'carried over like the reason: the same isolation');
      assert.deepEqual([again.case, again.requestedBy], [kase, 'alice@soc']);
      const other = await fresh.isolate(host.target(), { verify: false, case: { id: 'INC-43' } });
      assert.equal(other.changed, true);
      assert.deepEqual([other.case, other.requestedBy], [{ id: 'INC-43' }, 'alice@soc']);
    } finally {
      await fresh.close();
    }
    const free = await driver.unisolate(host.target());
    assert.deepEqual([free.case, free.requestedBy], [null, null]);
  });
});
