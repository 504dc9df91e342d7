/**
 * The host's guard (self-healing, issue 13 item 3), controller side: how its copy travels in the
 * apply script's stdin, and how the status read's answer is split into the guard's record and
 * nft's JSON. The guard itself runs on real systemd hosts in test/integration/guard.test.ts.
 */
import { strict as assert } from 'assert';
import { COMMANDS, GUARD_MAX_BURST, GUARD_MAX_FAILS, nftInput, parseGuard, parseGuardArmed, statusInput } from '../../src/driver/hostscript';
import { targetSchema, validate } from '../../src/driver/policy';
import { renderIsolate, renderUnisolate, type StateDoc } from '../../src/driver/ruleset';

const target = validate(targetSchema, { host: '198.18.0.10', username: 'root', privateKey: 'k', knownHosts: '198.18.0.10 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl', table: 'nrhi_u' }, 'target');
const doc: StateDoc = { v: 1, since: '2026-11-25T10:00:00.000Z', reason: 'émoji ✓ reason', mode: 'enforce', expiresAt: null, management: [{ addr: '198.18.0.1', port: 22 }], exceptions: [] };

describe('the host guard: stdin and status', () => {
  it('sends the guard copy as exactly LEN bytes between the header and the batch', () => {
    const copy = renderIsolate('nrhi_u', doc, 4);
    const now = renderUnisolate('nrhi_u').release;
    const { cmd, stdin } = nftInput(target, now, { seconds: 'keep', release: null, guard: { gen: 4, batch: copy } });
    assert.equal(cmd, COMMANDS.apply);
    const lines = stdin.split('\n');
    assert.equal(lines.length, 12);
    const m = /^(\d+) (\d+)$/.exec(lines[10]);
    assert.ok(m, lines[10]);
    assert.equal(m[1], '4');
    const rest = Buffer.from(lines[11], 'utf8');
    const len = Number(m[2]);
    assert.deepEqual(JSON.parse(rest.subarray(0, len).toString('utf8')), copy, 'the copy, measured in bytes (the reason holds multi-byte characters)');
    assert.deepEqual(JSON.parse(rest.subarray(len).toString('utf8')), now);
    // ended, or left alone
    assert.equal(nftInput(target, now, { seconds: 0, release: null, guard: null }).stdin.split('\n')[10], '-');
    assert.equal(nftInput(target, now, { seconds: 0, release: null }).stdin.split('\n')[10], '');
  });

  it('reads the guard record of the status read, and nothing from an answer without one', () => {
    const json = '{"nftables":[{"metainfo":{"version":"1.0.6"}}]}';
    const { cmd, stdin } = statusInput(target, { nftables: [] });
    assert.equal(cmd, COMMANDS.status);
    assert.equal(stdin.split('\n')[0], 'nrhi_u');
    assert.deepEqual(parseGuard(`nrhi-guard 5 2 1764064800 ok 1\n${json}\n`), {
      guard: { gen: 5, count: 2, last: 1764064800, state: 'ok', alive: true },
      json: `${json}\n`,
    });
    assert.equal(parseGuard(`nrhi-guard 5 21 1764064800 gave-up:fought 0\n${json}`).guard?.state, 'gave-up:fought');
    assert.deepEqual(parseGuard(json), { guard: null, json });
    // a line the script would never print is not believed, and never reaches the JSON parser
    const odd = parseGuard(`nrhi-guard 5 x 1 ok 1\n${json}`);
    assert.equal(odd.guard, null);
    assert.equal(odd.json, json);
    assert.equal(parseGuardArmed('nrhi-timer systemd\nnrhi-guard on\n'), true);
    assert.equal(parseGuardArmed('nrhi-timer systemd\n'), false);
  });

  it('the guard is bounded and its unit gets nothing but the table name', () => {
    assert.ok(GUARD_MAX_FAILS > 0 && GUARD_MAX_FAILS <= 10);
    assert.ok(GUARD_MAX_BURST > 0 && GUARD_MAX_BURST <= 50);
    for (const c of [COMMANDS.apply, COMMANDS.sudoApply]) {
      assert.match(c, /systemd-run --quiet --collect --unit="nrhi-guard-\$t" -p Type=simple \/bin\/bash "\$G\/guard\.sh" "\$t"/);
      assert.match(c, /flock -w 10 9/);
    }
  });
});
