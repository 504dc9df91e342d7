/**
 * The claim rule and its one bounded retry (src/driver/claim.ts) as each action uses it, and the
 * session's one exec path, against the fake host (test/fake/host.ts): no root, no namespace.
 */
import { strict as assert } from 'assert';
import { IsolationDriver, type IsolationError } from '../../src/driver';
import { MAX_RACE_ATTEMPTS } from '../../src/driver/claim';
import { FakeHost, type ExecRecord } from '../fake/host';

describe('claims and retries on the fake host (no root)', function () {
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

  const failure = async (p: Promise<unknown>): Promise<IsolationError | null> => {
    try {
      await p;
    } catch (err) {
      return err as IsolationError;
    }
    return null;
  };
  const kinds = () => host.execs().map((e) => e.kind);
  /** another controller moves the generation on (behind the driver's back) just before this exec is answered */
  const moveOn = (host: FakeHost) =>
    host.edit((t) => {
      const set = t.objs.find((o) => o.kind === 'set' && o.body.name === 'gen')!;
      set.body = { ...set.body, elem: [(set.body.elem as number[])[0] + 5] };
    });
  const applies = (when: (e: ExecRecord, n: number) => boolean, what: (h: FakeHost) => void) => {
    let n = 0;
    return host.script((e, h) => {
      if (e.kind === 'apply' && when(e, ++n)) what(h);
      return undefined; // the model answers, on the table as it is now
    });
  };

  it('setExceptions: a claim lost between the read and the write is read again and applied once more', async () => {
    await driver.isolate(host.target(), { verify: false });
    host.log.length = 0;
    // no belief: the first try reads; another controller changes the isolation right after that read
    const fresh = new IsolationDriver({ openStream: host.openStream, resolve: async () => [host.addr] });
    try {
      const gen = host.gen()!;
      applies((_e, n) => n === 1, moveOn);
      const st = await fresh.setExceptions(host.target(), 'add', [{ direction: 'in', proto: 'tcp', port: 8443 }]);
      assert.equal(st.changed, true);
      assert.deepEqual(kinds().filter((k) => k !== 'whoami'), ['status', 'apply', 'status', 'apply'], 'read, claim lost, read, applied');
      assert.equal(host.gen(), gen + 5 + 1, 'built on the generation the second read saw');
      assert.ok(st.exceptions.some((e) => e.port === 8443));
    } finally {
      await fresh.close();
    }
  });

  it('setExceptions: a stale belief is a guess, tried again at once; a claim lost every time ends in CONCURRENT_CHANGE after the bounded tries', async () => {
    await driver.isolate(host.target(), { verify: false });
    // the belief is stale from the start, and every later read is overtaken too
    moveOn(host);
    host.log.length = 0;
    applies(() => true, moveOn);
    const t0 = Date.now();
    const err = await failure(driver.setExceptions(host.target(), 'add', [{ direction: 'in', proto: 'tcp', port: 8443 }]));
    assert.equal(err?.code, 'CONCURRENT_CHANGE');
    // one try on the belief, then MAX_RACE_ATTEMPTS tries each on a fresh read
    assert.equal(host.execs('apply').length, 1 + MAX_RACE_ATTEMPTS);
    assert.equal(host.execs('status').length, MAX_RACE_ATTEMPTS);
    assert.deepEqual(kinds().slice(0, 3), ['apply', 'status', 'apply'], 'the stale belief first, then a read');
    assert.ok(Date.now() - t0 < 5000, 'the pauses between races are short');
  });

  it('setExceptions: after a lost race nothing is believed, so the next change reads first', async () => {
    await driver.isolate(host.target(), { verify: false });
    const race = applies(() => true, moveOn);
    assert.equal((await failure(driver.setExceptions(host.target(), 'add', [{ direction: 'in', proto: 'tcp', port: 8443 }])))?.code, 'CONCURRENT_CHANGE');
    race();
    host.log.length = 0;
    const st = await driver.setExceptions(host.target(), 'add', [{ direction: 'in', proto: 'tcp', port: 8443 }]);
    assert.equal(st.changed, true);
    assert.deepEqual(kinds(), ['status', 'apply']);
    assert.notEqual(st.dropped, null, 'built on a read: its counters are in the answer');
  });

  it('setMode reads each time: a lost claim is read again and applied; lost every time, CONCURRENT_CHANGE after MAX_RACE_ATTEMPTS', async () => {
    await driver.isolate(host.target(), { verify: false });
    host.log.length = 0;
    const once = applies((_e, n) => n === 1, moveOn);
    const st = await driver.setMode(host.target(), 'audit');
    assert.equal(st.mode, 'audit');
    assert.equal(st.changed, true);
    assert.deepEqual(kinds(), ['status', 'apply', 'status', 'apply']);
    once();
    host.log.length = 0;
    applies(() => true, moveOn);
    const err = await failure(driver.setMode(host.target(), 'enforce'));
    assert.equal(err?.code, 'CONCURRENT_CHANGE');
    assert.equal(host.execs('apply').length, MAX_RACE_ATTEMPTS);
    assert.equal(host.execs('status').length, MAX_RACE_ATTEMPTS);
  });

  it('isolate: a stale belief is read once and applied unclaimed; a second nft refusal is the answer, not a race', async () => {
    await driver.isolate(host.target(), { verify: false });
    moveOn(host);
    host.log.length = 0;
    host.script((e) => (e.kind === 'apply' && host.execs('apply').length >= 2 ? { code: 1, stderr: 'Error: Could not process rule: No such file or directory\n' } : undefined));
    const err = await failure(driver.isolate(host.target(), { verify: false, reason: 'again' }));
    assert.equal(err?.code, 'NFT_FAILED', 'the read-then-apply try is not retried');
    assert.deepEqual(kinds(), ['apply', 'status', 'apply']);
  });

  it('unisolate: a guess refused every time (released and isolated again by others, over and over) ends in CONCURRENT_CHANGE after 2 x MAX_RACE_ATTEMPTS flips', async () => {
    await driver.isolate(host.target(), { verify: false });
    host.log.length = 0;
    // whichever batch comes, the host is in the other state by the time it is answered
    host.script((e) => {
      if (e.kind !== 'apply') return undefined;
      const release = e.stdin.includes('{"nftables":[{"delete":{"table"');
      return { code: 1, stderr: release ? 'Error: Could not process rule: No such file or directory\n' : 'Error: Could not process rule: File exists\n' };
    });
    const err = await failure(driver.unisolate(host.target()));
    assert.equal(err?.code, 'CONCURRENT_CHANGE');
    const batches = host.execs('apply').map((e) => (e.stdin.includes('{"nftables":[{"delete":{"table"') ? 'release' : 'free'));
    assert.equal(batches.length, 2 * MAX_RACE_ATTEMPTS);
    assert.deepEqual(batches.slice(0, 4), ['release', 'free', 'release', 'free'], 'the guess flips on every refusal');
  });

  it('verify-then-commit: the claim lost at the confirm (released by another controller meanwhile) is CONCURRENT_CHANGE, and nothing is rolled back', async () => {
    await driver.isolate(host.target(), { verify: false });
    host.log.length = 0;
    host.script((e, h) => {
      // the confirm comes on the fresh connection: the table is gone by then
      if (e.kind === 'apply' && host.execs('apply').length === 2) h.table = null;
      return undefined;
    });
    const err = await failure(driver.isolate(host.target(), { reason: 'verified' }));
    assert.equal(err?.code, 'CONCURRENT_CHANGE');
    const appliesSeen = host.execs('apply');
    assert.equal(appliesSeen.length, 2, 'the apply and the confirm; no rollback after a lost claim');
    assert.notEqual(appliesSeen[0].conn, appliesSeen[1].conn, 'the confirm came on a fresh connection');
    // the belief is gone: the next isolate guesses "not isolated" (its claim, create table, holds)
    host.log.length = 0;
    const st = await driver.isolate(host.target(), { verify: false });
    assert.equal(st.changed, true);
    assert.deepEqual(kinds(), ['apply']);
    assert.notEqual(host.table, null);
  });

  it("the discovery exec is the session's: a stall there is TIMEOUT and the dead connection leaves the pool", async () => {
    await driver.isolate(host.target(), { verify: false });
    assert.equal(driver.connections, 1);
    host.script((e) => (e.kind === 'discover' ? { hang: true } : undefined));
    const err = await failure(driver.isolate(host.target({ timeoutMs: 800 }), { verify: false, presets: ['dns'] }));
    assert.equal(err?.code, 'TIMEOUT');
    assert.equal(driver.connections, 0, 'dropped from the pool at once, not left for the next action to find dead');
    const stalled = host.execs('discover').at(-1)!.conn;
    host.log.length = 0;
    assert.equal((await driver.status(host.target())).isolated, true);
    assert.notEqual(host.execs('status')[0].conn, stalled, 'the next action starts on a new connection');
  });

  it("a user lookup on a connection the host floods: OUTPUT_LIMIT, dropped from the pool", async () => {
    await driver.isolate(host.target(), { verify: false });
    host.script((e) => (e.kind === 'lookup' ? { flood: 5 * 1024 * 1024 } : undefined));
    const err = await failure(driver.setExceptions(host.target(), 'add', [{ direction: 'out', proto: 'tcp', port: 443, uid: 'backup' }]));
    assert.equal(err?.code, 'OUTPUT_LIMIT');
    assert.equal(driver.connections, 0);
  });
});
