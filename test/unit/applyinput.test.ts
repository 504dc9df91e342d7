/**
 * The apply script's stdin, declared once (src/driver/host/apply-input.ts): the controller's
 * encoder, the script's reading and checking lines and the timers' re-packing all come from
 * APPLY_FIELDS, and a sent stdin reads back by field name.
 */
import { strict as assert } from 'assert';
import { APPLY, guardLines, nftInput, parseGuardBlocked, withoutGuardLines } from '../../src/driver/host/apply';
import { APPLY_FIELDS, applyField, decodeApplyInput, encodeApplyInput, fieldVar, readApplyInput, type ApplyFieldName, type ApplyHeader } from '../../src/driver/host/apply-input';
import { EXIT } from '../../src/driver/host/commands';
import { processTimer, TIMER_FIELDS, timerPacking, UNIT_SCRIPT } from '../../src/driver/host/release';
import { targetSchema } from '../../src/driver/policy';
import { renderIsolate, renderRelease, renderUnisolate, type StateDoc } from '../../src/driver/ruleset';
import { severFilters } from '../../src/driver/host/sever';

const target = targetSchema.parse({ host: '198.18.0.10', username: 'isolator', password: 'x', knownHosts: 'k', sudo: true, table: 'nrhi_fields' });
const doc: StateDoc = {
  v: 1,
  since: '2026-12-02T00:00:00.000Z',
  reason: 'fields ✓',
  mode: 'enforce',
  expiresAt: '2026-12-02T00:15:00.000Z',
  management: [{ addr: '198.18.0.1', port: 22 }],
  exceptions: [{ direction: 'in', proto: 'tcp', addr: '198.18.0.3', port: 8443 }],
};
const batch = renderIsolate(target.table, doc, 7);
const header: ApplyHeader = {
  seconds: 900,
  release: renderRelease(target.table, doc),
  then: { seconds: 4.2, batch: renderUnisolate(target.table).release },
  boot: '[Unit]\nDescription=x\n',
  notice: 'isolated',
  releaseNotice: 'released',
  sever: severFilters(doc.management, doc.exceptions),
  guard: { gen: 7, batch },
  rearm: { gen: 5, batch },
  lockWaitS: 3,
  inspect: { nftables: [{ list: { table: { family: 'inet', name: target.table } } }] },
};

describe('the apply script input, declared once', () => {
  it('names each field once, with a shell variable of its own', () => {
    const names = APPLY_FIELDS.map((f) => f.name);
    const vars = APPLY_FIELDS.map((f) => f.v);
    assert.equal(new Set(names).size, names.length);
    assert.equal(new Set(vars).size, vars.length);
    for (const v of vars) assert.match(v, /^[a-z][a-z0-9]*$/);
  });

  it('the script reads every field in the table order, then checks each one: by itself, with another, or says why not', () => {
    const read = readApplyInput();
    for (const script of [APPLY.root, APPLY.sudo]) {
      assert.ok(script.startsWith(`PATH="$PATH:/usr/sbin:/sbin"\n${read.join('\n')}\n`), 'the script opens with the generated lines');
    }
    const reads = [...read.slice(0, 2).join(' ').matchAll(/IFS= read -r ([a-z0-9]+)/g)].map((m) => m[1]);
    assert.deepEqual(reads, APPLY_FIELDS.map((f) => f.v));
    assert.match(read[1], new RegExp(`\\|\\| exit ${EXIT.SHORT_INPUT}$`));
    const ranks: number[] = [];
    for (const f of APPLY_FIELDS) {
      const c = f.check;
      if ('rank' in c) {
        ranks.push(c.rank);
        assert.ok(c.sh.some((l) => l.includes(`"$${f.v}`) || l.includes(`$${f.v}"`)), `${f.name}: its check reads $${f.v}`);
        assert.ok(c.sh.some((l) => l.includes(`exit ${EXIT.BAD_INPUT}`)), `${f.name}: its check refuses`);
        for (const l of c.sh) assert.ok(read.includes(l), `${f.name}: its check is in the script`);
      } else if ('by' in c) {
        const other = APPLY_FIELDS.find((o) => o.name === c.by);
        assert.ok(other && 'rank' in other.check, `${f.name} is checked by ${c.by}, a field with a check`);
        assert.ok(other.check.sh.some((l) => l.includes(`$${f.v}`)), `${c.by}'s check covers $${f.v}`);
      } else {
        assert.ok(c.none.length > 10, `${f.name} says why the shell does not check it`);
      }
    }
    assert.equal(new Set(ranks).size, ranks.length, 'one place each in the order of the checks');
  });

  it("the controller's encoder writes a line per field, and a sent stdin reads back by name", () => {
    const stdin = encodeApplyInput(target.table, batch, header);
    assert.equal(nftInput(target, batch, header).stdin, stdin);
    const { fields, guardCopy, batch: now } = decodeApplyInput(stdin);
    for (const f of APPLY_FIELDS) assert.equal(fields[f.name as ApplyFieldName], f.encode(header, target.table), f.name);
    assert.equal(fields.table, 'nrhi_fields');
    assert.equal(fields.seconds, '900');
    assert.equal(fields.thenSeconds, '5', 'whole seconds, rounded up');
    assert.equal(Buffer.from(fields.boot, 'base64').toString('utf8'), header.boot);
    assert.equal(fields.lockWait, '3');
    assert.equal(fields.guard, `7 ${Buffer.byteLength(JSON.stringify(batch), 'utf8')}`);
    assert.deepEqual(JSON.parse(guardCopy), batch);
    assert.deepEqual(JSON.parse(now), batch);
    assert.throws(() => decodeApplyInput('nrhi_fields\n900\n'), /not 14/);
    assert.equal(fieldVar('lockWait'), 'lw');
    assert.equal(applyField('boot').v, 'p');
  });

  it("the timers carry apply fields by name: the script's packing and the timer's reading agree", () => {
    const names = new Set<string>(APPLY_FIELDS.map((f) => f.name));
    for (const t of TIMER_FIELDS) assert.ok(names.has(t.from), `${t.v} carries ${t.from}`);
    const unitPack = timerPacking(true);
    const processPack = timerPacking(false);
    assert.equal(unitPack, `0 ${TIMER_FIELDS.slice(1).map((t) => `"$${fieldVar(t.from)}"`).join(' ')}`, 'systemd counts the unit\'s seconds');
    assert.equal(processPack, TIMER_FIELDS.filter((t) => !t.unitOnly).map((t) => `"$${fieldVar(t.from)}"`).join(' '));
    for (const script of [APPLY.root, APPLY.sudo]) {
      assert.ok(script.includes(`printf '%s\\n' ${unitPack} |`));
      assert.ok(script.includes(`printf '%s\\n' ${processPack} | setsid sh -c `));
    }
    const reads = (text: string) => [...text.split('\n').find((l) => l.startsWith('IFS= read -r s;'))!.matchAll(/IFS= read -r ([a-z0-9]+);/g)].map((m) => m[1]);
    assert.deepEqual(reads(UNIT_SCRIPT), TIMER_FIELDS.map((t) => t.v));
    assert.deepEqual(reads(processTimer('nft -j -f -')), TIMER_FIELDS.filter((t) => !t.unitOnly).map((t) => t.v));
  });

  it("the apply script's guard lines are read here: blocked, and the lines a confirm hands on", () => {
    const out = 'nrhi-severed 0 0 ok\nnrhi-guard blocked\nnrhi-timer systemd\n';
    assert.equal(parseGuardBlocked(out), true);
    assert.equal(parseGuardBlocked('nrhi-guard on\n'), false);
    assert.equal(parseGuardBlocked('x nrhi-guard blocked\n'), false);
    assert.deepEqual(guardLines(out), ['nrhi-guard blocked']);
    assert.deepEqual(withoutGuardLines(out), ['nrhi-severed 0 0 ok', 'nrhi-timer systemd', '']);
  });
});
