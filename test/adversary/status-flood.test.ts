/**
 * A local user cannot blind `status`. The dynamic sets record flows by themselves (audit mode's
 * observed flows for 7 days; in enforce, the flows a uid or unit exception opened): 40,000
 * datagrams from `nobody` once made `nft list table` 4.8 MB, past the 4 MiB read limit, and every
 * status, setMode and isolate that had to read failed with OUTPUT_LIMIT. What the pack reads must
 * not grow with what the host's users send: the state read never returns the self-filling sets,
 * observed flows come back as the OBSERVED_TOP with the most packets plus the number left out, and
 * the sets are capped.
 *
 * On the namespace lab: the flood runs in the host's namespace as uid 65534, bounded in count and
 * time (`timeout`), to the lab peer only.
 */
import { strict as assert } from 'assert';
import { IsolationDriver, targetSchema, validate, type TargetInput } from '../../src/driver';
import { COMMANDS } from '../../src/driver/host/programs';
import { statusInput } from '../../src/driver/host/status';
import { renderList } from '../../src/driver/ruleset';
import { OBSERVED_TOP } from '../../src/driver/state';
import { teardown, useLab } from '../lab/fixtures';
import { labTarget } from '../lab/lab';

const TABLE = 'nrhi_sflood';
const KiB = 1024;
/** distinct flows the flood makes (one datagram to each of this many ports) */
const FLOWS = 40_000;
/** what one status answer may carry, whatever the host's users sent: the state and OBSERVED_TOP flows */
const ANSWER_BUDGET = 128 * KiB;

describe('a local user floods the dynamic sets: status, setMode and isolate still read the host', function () {
  this.timeout(180_000);
  const lab = useLab({ hosts: 1, tables: [TABLE] });
  let target: TargetInput;
  const drivers: IsolationDriver[] = [];
  const driver = () => {
    const d = new IsolationDriver();
    drivers.push(d);
    return d;
  };
  teardown(async () => {
    for (const d of drivers) await d.close().catch(() => undefined);
  });

  before(() => {
    target = labTarget(lab, 0, TABLE, 60_000);
  });

  /** `count` datagrams as uid 65534 from the host to the peer: to ports from..from+count-1, or `count` to one port */
  const sendAsNobody = async (count: number, port: number, distinct: boolean) => {
    const dst = distinct ? `$((${port} + i))` : String(port);
    const script = `i=0; while [ $i -lt ${count} ]; do echo x >/dev/udp/${lab.peer.v4}/${dst}; i=$((i + 1)); done 2>/dev/null; exit 0`;
    const r = await lab.exec(lab.hosts[0].ns, ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', 'timeout', '90', 'bash', '-c', script], '', 100_000);
    assert.equal(r.code, 0, `the sender ran: ${r.stderr}`);
  };

  /** The bytes of the status read's answer as the host sends them, and of a full `nft -j list table`. */
  const sizes = async () => {
    const { stdin } = statusInput(validate(targetSchema, { ...target, sudo: false }, 'target'), renderList(TABLE));
    // through a pipe, as over SSH (nft reopens /dev/stdin: a file would be read from its start again)
    const answer = await lab.exec(lab.hosts[0].ns, ['sh', '-c', 'cat | sh -c "$0"', COMMANDS.status], stdin, 60_000);
    assert.equal(answer.code, 0, answer.stderr);
    const full = await lab.exec(lab.hosts[0].ns, ['nft', '-j', 'list', 'table', 'inet', TABLE], '', 60_000);
    return { answer: Buffer.byteLength(answer.stdout), full: Buffer.byteLength(full.stdout) };
  };

  it('audit mode: 40,000 flows from nobody; status answers the top flows and the number left out, a change and setMode read fine', async () => {
    const d = driver();
    await d.isolate(target, { mode: 'audit', reason: 'discovery under a flood' });
    // the flow with the most packets: recorded before the flood fills the set
    await sendAsNobody(20, 7777, false);
    const started = Date.now();
    await sendAsNobody(FLOWS, 20_000, true);
    console.log(`      ${FLOWS} datagrams from nobody in ${Date.now() - started} ms`);

    const size = await sizes();
    console.log(`      full listing ${(size.full / KiB).toFixed(0)} KiB, status answer ${(size.answer / KiB).toFixed(1)} KiB`);
    assert.ok(size.answer < ANSWER_BUDGET, `the status answer is bounded: ${size.answer} bytes`);
    assert.ok(size.full < 2 * 1024 * KiB, `even a full listing of the capped sets stays well under 4 MiB: ${size.full} bytes`);

    const st = await d.status(target);
    assert.equal(st.state, 'audit');
    assert.ok(st.observed.length <= OBSERVED_TOP, `at most ${OBSERVED_TOP} flows: ${st.observed.length}`);
    assert.equal(st.observed.length, OBSERVED_TOP, 'the set holds more than the top: all the top is there');
    assert.ok(st.observedOmitted > 0, `the number left out is said: ${st.observedOmitted}`);
    assert.equal(st.observedFull, true, 'the record is full and says so');
    assert.ok(st.warnings.some((w) => /observed flows is full/.test(w)), JSON.stringify(st.warnings));
    const top = st.observed[0];
    assert.deepEqual([top.direction, top.proto, top.addr, top.port], ['out', 'udp', lab.peer.v4, 7777], `most packets first: ${JSON.stringify(st.observed.slice(0, 3))}`);
    assert.ok(top.packets >= 20, JSON.stringify(top));
    for (let i = 1; i < st.observed.length; i++) assert.ok(st.observed[i - 1].packets >= st.observed[i].packets, 'most packets first');
    assert.deepEqual(st.tampered, [], 'the flows are not tampering');

    // a change from a controller that has not read this host yet must read it first
    const ex = await driver().setExceptions(target, 'add', [{ direction: 'in', proto: 'tcp', port: 9999 }]);
    assert.equal(ex.exceptions.length, 1);
    assert.ok(ex.observed.length <= OBSERVED_TOP);
    const en = await d.setMode(target, 'enforce');
    assert.equal(en.state, 'isolated');
    assert.deepEqual((await d.status(target)).observed, []);
  });

  it('enforce with a uid exception: 40,000 flows of the excepted user; status and an isolate that has to read succeed', async () => {
    const d = driver();
    const req = { exceptions: [{ direction: 'out' as const, proto: 'udp' as const, uid: 65534 }], reason: 'owner flood' };
    await d.isolate(target, req);
    await sendAsNobody(FLOWS, 20_000, true);
    const size = await sizes();
    console.log(`      enforce, owner flows: full listing ${(size.full / KiB).toFixed(0)} KiB, status answer ${(size.answer / KiB).toFixed(1)} KiB`);
    assert.ok(size.answer < ANSWER_BUDGET, `the status answer is bounded: ${size.answer} bytes`);

    const st = await d.status(target);
    assert.equal(st.state, 'isolated');
    assert.deepEqual(st.tampered, []);
    assert.ok(st.warnings.some((w) => /service\/user exceptions is full/.test(w)), JSON.stringify(st.warnings));
    // a fresh controller's isolate guesses "not isolated", fails its claim, then must read
    const again = await driver().isolate(target, { ...req, reason: 'again' });
    assert.equal(again.state, 'isolated');
    assert.equal(again.reason, 'again');
    await d.unisolate(target);
  });
});
