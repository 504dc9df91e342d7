/**
 * The case and requester of an isolation on a real lab host: kept with the isolation inside its
 * table (nft takes the longest the request allows), read back by a controller that never saw the
 * request, and refused before anything reaches the host when they are out of bounds.
 */
import { strict as assert } from 'assert';
import { IsolationError, type TargetInput } from '../../src/driver';
import { dropTables, useDriver, useLab, withDriver } from '../lab/fixtures';
import { labTarget } from '../lab/lab';

const TABLE = 'nrhi_case';

describe('the case and requester on the lab host', function () {
  this.timeout(120_000);
  const lab = useLab({ hosts: 1 });
  const driver = useDriver();
  let target: TargetInput;

  before(() => {
    target = labTarget(lab, 0, TABLE, 15_000, {}, 'root');
  });
  afterEach(() => dropTables(lab, TABLE, [0]));

  /** The table as nft lists it on the host, its counters left out (stray traffic moves them); '' when there is none. */
  const listing = async (): Promise<string> => {
    const out = (await lab.nft(lab.hosts[0].ns, ['-j', 'list', 'table', 'inet', TABLE]).catch(() => ({ stdout: '' }))).stdout;
    return out.trim() === '' ? '' : JSON.stringify(JSON.parse(out), (k, v: unknown) => (k === 'packets' || k === 'bytes' ? undefined : v));
  };

  it('isolates with the longest case and requester the request takes; a new driver reads them back; out of bounds is refused with nothing changed', async () => {
    // the costliest the schema allows: 3 UTF-8 bytes a character in the link and the name, the longest reason beside them
    const kase = { id: `INC:2026/12#${'9'.repeat(52)}`, url: `https://cases.example/${'中'.repeat(490)}` };
    const requestedBy = `${'é'.repeat(100)} <analyst@soc.example>`.slice(0, 128);
    const reason = 'ü'.repeat(1024);
    assert.equal(await listing(), '', 'free to begin with');
    await assertRefused(driver.isolate(target, { case: { id: 'X'.repeat(65) } }));
    assert.equal(await listing(), '', 'a refused request made no table');

    const st = await driver.isolate(target, { presets: ['ssh'], reason, case: kase, requestedBy });
    assert.deepEqual([st.isolated, st.case, st.requestedBy, st.reason], [true, kase, requestedBy, reason]);
    const read = await withDriver((fresh) => fresh.status(target));
    assert.deepEqual([read.isolated, read.case, read.requestedBy, read.reason], [true, kase, requestedBy, reason]);

    // isolated: an oversized case (and a bad link, a control character) changes nothing, not even the generation
    const before = await listing();
    await assertRefused(driver.isolate(target, { presets: ['ssh'], case: { id: 'INC-1', url: `https://cases.example/${'a'.repeat(512)}` } }));
    await assertRefused(driver.isolate(target, { case: { id: 'INC-1', url: 'javascript:alert(1)' } }));
    await assertRefused(driver.isolate(target, { requestedBy: 'mallory\u001b[2J' }));
    assert.equal(await listing(), before, 'the table as it was, generation and record included');
    assert.deepEqual((await driver.status(target)).case, kase);
  });
});

/** Refused with VALIDATION (node's assert.rejects, checked by code). */
function assertRefused(p: Promise<unknown>): Promise<void> {
  return assert.rejects(p, (err: unknown) => err instanceof IsolationError && err.code === 'VALIDATION');
}
