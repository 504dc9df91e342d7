/**
 * Property-based tests (fast-check) over every schema and the renderer: whatever an alert puts
 * in a request, it is rejected with a ValidationError or rendered as data that never changes the
 * remote command line. A fast run here; `npm run fuzz` runs 100,000 cases, and the lab test
 * has nft's check mode accept every rendered batch.
 */
import { strict as assert } from 'assert';
import fc from 'fast-check';
import { exceptionListSchema, exceptionSchema, targetSchema, validate, ValidationError } from '../../src/driver';
import { checkCase, exceptionArb, requestArb, targetArb } from '../fuzz/properties';

const RUNS = Number(process.env.FUZZ_RUNS ?? 400);

function rejectsOrParses(schema: Parameters<typeof validate>[0], value: unknown): boolean {
  try {
    validate(schema, value, 'x');
    return true;
  } catch (err) {
    if (err instanceof ValidationError) return false;
    throw err;
  }
}

describe('fuzz: schemas and renderer', function () {
  this.timeout(120_000);

  it('every request is either a ValidationError or a batch that stays data', () => {
    let rendered = 0;
    fc.assert(
      fc.property(targetArb, requestArb, (t, r) => {
        if (checkCase(t, r).batch) rendered++;
      }),
      { numRuns: RUNS },
    );
    assert.ok(rendered > RUNS / 20, `enough valid requests were generated to mean something (${rendered})`);
  });

  it('every exception and target is parsed or refused, never anything else', () => {
    fc.assert(
      fc.property(exceptionArb, targetArb, (e, t) => {
        const ok = rejectsOrParses(exceptionSchema, e);
        rejectsOrParses(exceptionListSchema, [e, e]);
        rejectsOrParses(targetSchema, t);
        if (ok) {
          // what is accepted is canonical: parsing it again gives the same thing
          const once = validate(exceptionSchema, e, 'x');
          assert.deepEqual(validate(exceptionSchema, once, 'x'), once);
        }
      }),
      { numRuns: RUNS },
    );
  });

  it('refuses whatever is not exactly an identifier, a canonical address or a number where one is due', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 30 }), (s) => {
        const t = { host: '198.18.0.2', username: 'isolator', password: 'x', knownHosts: 'x', table: s };
        if (rejectsOrParses(targetSchema, t)) assert.match(s, /^[A-Za-z][A-Za-z0-9_]{0,31}$/);
        const e = { direction: 'in', proto: 'tcp', port: s };
        if (rejectsOrParses(exceptionSchema, e)) assert.match(s.trim(), /^\d{1,5}(-\d{1,5})?$/);
      }),
      { numRuns: RUNS },
    );
  });
});
