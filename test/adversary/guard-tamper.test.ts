/**
 * Issue 20, item 2: one root transaction used to stop the guard for good and leave `tampered`
 * empty. Root replaces the table with a higher generation and a record that matches it (an extra
 * outbound exception to a C2, or audit mode): the guard sees a generation it was not given and
 * stops (it never reverts a newer isolation), and the record-against-table comparison finds
 * nothing, because the record was rewritten too. A generation that neither this controller made
 * nor the guard was given is tampering, said in words; and whenever the guard ended other than by
 * a release (superseded, killed, stopped), the next answer warns. A generation the guard was given
 * (another controller's change, through the apply script) is never tampering.
 */
import { strict as assert } from 'assert';
import type { TargetInput } from '../../src/driver';
import { renderIsolate, type StateDoc } from '../../src/driver/ruleset';
import { containerTarget, guardSuites, unitActive, type ContainerHost } from '../lab/container';
import { useContainers, useDriver } from '../lab/fixtures';

const TABLE = 'nrhi_gt';
const UNIT = `nrhi-guard-${TABLE}`;
const C2 = '198.18.0.66';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const suites = guardSuites();

describe('adversary: root rewrites the table past the guard (issue 20, item 2)', function () {
  this.timeout(300_000);
  const { hosts } = useContainers(suites);
  const driver = useDriver();
  const other = useDriver();

  const targetOf = (h: ContainerHost): TargetInput => containerTarget(h, TABLE);

  for (const [i, suite] of suites.entries()) {
    describe(suite, () => {
      const h = () => hosts[i];
      const guardActive = () => unitActive(h(), `${UNIT}.service`);
      const liveGen = async () => {
        const line = (await h().exec(['nft', 'list', 'set', 'inet', TABLE, 'gen'])).stdout;
        const gen = Number(/elements = \{ (0x[0-9a-f]+|\d+) \}/.exec(line)?.[1]);
        assert.ok(gen > 0, line);
        return gen;
      };
      /** as root on the host, one transaction: the table replaced with generation `gen` and a record that matches it */
      const rootRewrite = async (doc: StateDoc, gen: number) => {
        const r = await h().exec(['sh', '-c', 'cat | nft -j -f -'], JSON.stringify(renderIsolate(TABLE, doc, gen)));
        assert.equal(r.code, 0, r.stderr);
      };
      const guardStops = async () => {
        for (let n = 0; n < 60 && (await guardActive()); n++) await sleep(100);
        assert.equal(await guardActive(), false, 'the guard stopped (it never reverts a generation it was not given)');
      };
      afterEach(async () => {
        await driver.unisolate(targetOf(h())).catch(() => undefined);
      });

      it('a higher generation with a matching record and an extra outbound exception: tampered names it, and the guard ending is warned of', async () => {
        const t = targetOf(h());
        const iso = await driver.isolate(t, { presets: ['ssh'], reason: 'guarded', verify: false });
        assert.equal(iso.guard, true);
        const gen = await liveGen();
        const forged: StateDoc = {
          v: 1,
          since: iso.since!,
          reason: iso.reason,
          mode: 'enforce',
          expiresAt: null,
          management: iso.management,
          exceptions: [...iso.exceptions, { direction: 'out', proto: 'tcp', addr: C2, port: 443 }],
        };
        await rootRewrite(forged, gen + 1);
        await guardStops();
        const st = await driver.status(t);
        assert.equal(st.state, 'isolated');
        assert.ok(st.exceptions.some((e) => e.addr === C2), 'the forged record is what the host holds');
        assert.equal(st.guard, false);
        assert.ok(
          st.tampered.some((f) => f.includes(`generation ${gen + 1}`) && /not made by this controller/.test(f) && f.includes(String(gen))),
          `tampered names the foreign generation: ${JSON.stringify(st.tampered)}`,
        );
        assert.ok(st.warnings.some((w) => /guard/.test(w) && /stopped|ended/.test(w)), `a warning says the guard ended: ${JSON.stringify(st.warnings)}`);
        // the next change warns too, and re-arms the guard with what it applies
        const again = await driver.isolate(t, { presets: ['ssh'], reason: 'guarded', verify: false });
        assert.ok(again.warnings.some((w) => /guard/.test(w) && /stopped|ended/.test(w)), `the isolate answer warns: ${JSON.stringify(again.warnings)}`);
        assert.equal(again.guard, true);
        assert.equal(await guardActive(), true);
        const after = await driver.status(t);
        assert.deepEqual(after.tampered, [], after.tampered.join('; '));
        assert.deepEqual(after.warnings, [], after.warnings.join('; '));
        assert.equal(after.exceptions.some((e) => e.addr === C2), false, 'the C2 exception is gone');
      });

      it('audit mode written by root the same way: tampered, and the guard ending is warned of', async () => {
        const t = targetOf(h());
        const iso = await driver.isolate(t, { presets: ['ssh'], verify: false });
        const gen = await liveGen();
        await rootRewrite({ v: 1, since: iso.since!, reason: iso.reason, mode: 'audit', expiresAt: null, management: iso.management, exceptions: iso.exceptions }, gen + 1);
        await guardStops();
        const st = await driver.status(t);
        assert.equal(st.state, 'audit');
        assert.ok(st.tampered.some((f) => f.includes(`generation ${gen + 1}`) && /not made by this controller/.test(f)), JSON.stringify(st.tampered));
        assert.ok(st.warnings.some((w) => /guard/.test(w) && /stopped|ended/.test(w)), JSON.stringify(st.warnings));
      });

      it('a guard killed or stopped on the host: status and the next change warn', async () => {
        const t = targetOf(h());
        await driver.isolate(t, { presets: ['ssh'], verify: false });
        await h().exec(['systemctl', 'kill', '-s', 'KILL', `${UNIT}.service`]);
        for (let n = 0; n < 40 && (await guardActive()); n++) await sleep(50);
        let st = await driver.status(t);
        assert.equal(st.guard, false);
        assert.deepEqual(st.tampered, [], 'the table is as the pack left it');
        assert.ok(st.warnings.some((w) => /guard/.test(w) && /not running/.test(w)), JSON.stringify(st.warnings));
        const ch = await driver.setExceptions(t, 'add', [{ direction: 'in', proto: 'tcp', addr: '198.18.0.5', port: 7001 }]);
        assert.ok(ch.warnings.some((w) => /guard/.test(w) && /stopped|ended/.test(w)), `the change warns: ${JSON.stringify(ch.warnings)}`);
        assert.equal(ch.guard, true, 're-armed');
        // stopped by root this time, then the mode switch answers
        await h().exec(['systemctl', 'stop', `${UNIT}.service`]);
        st = await driver.status(t);
        assert.ok(st.warnings.some((w) => /not running/.test(w)), JSON.stringify(st.warnings));
        const mode = await driver.setMode(t, 'audit');
        assert.ok(mode.warnings.some((w) => /guard/.test(w) && /stopped|ended/.test(w)), `the mode switch warns: ${JSON.stringify(mode.warnings)}`);
        assert.equal(mode.guard, false, 'audit: no guard');
        st = await driver.status(t);
        assert.deepEqual(st.warnings, [], 'once ended by the pack, nothing left to warn about');
      });

      it("another controller's change is a generation the guard was given: never tampering, no warning", async () => {
        const t = targetOf(h());
        await driver.isolate(t, { presets: ['ssh'], reason: 'first', verify: false });
        await other.isolate(t, { presets: ['ssh'], reason: 'second', exceptions: [{ direction: 'out', proto: 'tcp', addr: C2, port: 443 }], verify: false });
        await other.setExceptions(t, 'remove', [{ direction: 'out', proto: 'tcp', addr: C2, port: 443 }]);
        const st = await driver.status(t);
        assert.equal(st.reason, 'second');
        assert.equal(st.guard, true);
        assert.deepEqual(st.tampered, [], st.tampered.join('; '));
        assert.deepEqual(st.warnings, [], st.warnings.join('; '));
        const mine = await driver.isolate(t, { presets: ['ssh'], reason: 'first again', verify: false });
        assert.deepEqual(mine.warnings, [], mine.warnings.join('; '));
        assert.equal(mine.guard, true);
      });
    });
  }
});
