/**
 * The host's guard (self-healing, issue 13 item 3), controller side: how its copy travels in the
 * apply script's stdin, and how the status read's answer is split into the guard's record and
 * nft's JSON. The guard itself runs on real systemd hosts in test/integration/guard.test.ts.
 */
import { strict as assert } from 'assert';
import { bootGuardExec, COMMANDS, GUARD_MAX_BURST, GUARD_MAX_FAILS, nftInput, parseGuard, parseGuardArmed, statusInput } from '../../src/driver/hostscript';
import { targetSchema, validate } from '../../src/driver/policy';
import { renderBootUnit, renderIsolate, renderUnisolate, type StateDoc } from '../../src/driver/ruleset';

const target = validate(targetSchema, { host: '198.18.0.10', username: 'root', privateKey: 'k', knownHosts: '198.18.0.10 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl', table: 'nrhi_u' }, 'target');
const doc: StateDoc = { v: 1, since: '2026-11-25T10:00:00.000Z', reason: 'émoji ✓ reason', mode: 'enforce', expiresAt: null, management: [{ addr: '198.18.0.1', port: 22 }], exceptions: [] };

describe('the host guard: stdin and status', () => {
  it('sends the guard copy as exactly LEN bytes between the header and the batch', () => {
    const copy = renderIsolate('nrhi_u', doc, 4);
    const now = renderUnisolate('nrhi_u').release;
    const { cmd, stdin } = nftInput(target, now, { seconds: 'keep', release: null, guard: { gen: 4, batch: copy } });
    assert.equal(cmd, COMMANDS.apply);
    const lines = stdin.split('\n');
    assert.equal(lines.length, 14);
    const m = /^(\d+) (\d+)$/.exec(lines[11]);
    assert.ok(m, lines[11]);
    assert.equal(m[1], '4');
    assert.equal(lines[12], '', 'no listing asked');
    const rest = Buffer.from(lines[13], 'utf8');
    const len = Number(m[2]);
    assert.deepEqual(JSON.parse(rest.subarray(0, len).toString('utf8')), copy, 'the copy, measured in bytes (the reason holds multi-byte characters)');
    assert.deepEqual(JSON.parse(rest.subarray(len).toString('utf8')), now);
    // ended, or left alone
    assert.equal(nftInput(target, now, { seconds: 0, release: null, guard: null }).stdin.split('\n')[11], '-');
    assert.equal(nftInput(target, now, { seconds: 0, release: null }).stdin.split('\n')[11], '');
  });

  it("a verify rollback's guard copy travels on its own line, checked by the script and kept with the timer's batches", () => {
    const copy = renderIsolate('nrhi_u', doc, 6);
    const { stdin } = nftInput(target, renderUnisolate('nrhi_u').release, { seconds: 30, release: renderUnisolate('nrhi_u').release, guard: null, rearm: { gen: 6, batch: copy } });
    const lines = stdin.split('\n');
    assert.equal(lines.length, 14);
    const m = /^(\d+) (.+)$/.exec(lines[10]);
    assert.ok(m);
    assert.equal(m[1], '6');
    assert.deepEqual(JSON.parse(m[2]), copy);
    assert.equal(lines[11], '-');
    assert.equal(nftInput(target, renderUnisolate('nrhi_u').release, { seconds: 30, release: null, rearm: null }).stdin.split('\n')[10], '');
    for (const c of [COMMANDS.apply, COMMANDS.sudoApply]) {
      assert.match(c, /IFS= read -r rel2 && IFS= read -r rg && IFS= read -r g/);
      assert.match(c, /"\$rel2" "\$rg" \|/, 'the copy waits with the timer, root-only');
      // the release unit: re-armed only once the rollback applied, else the guard ends as before
      assert.match(c, /if \[ \$ok -eq 0 \] && \[ -n "\$rg" \] && printf "%s\\n" "\$\{rg#\* \}" \| rearm "\$\{rg%% \*\}"; then :; else rm -f /);
      // the previous isolation's own release after a rollback ends the guard it re-armed
      assert.match(c, /sleep "\$s2"; rg=; t=/);
    }
  });

  it('the boot unit of an enforced isolation re-arms the guard; an audit one has none', () => {
    const batch = renderIsolate('nrhi_u', doc, 3, null);
    const post = bootGuardExec('nrhi_u', 3);
    const unit = renderBootUnit('nrhi_u', batch, post);
    const line = /^ExecStartPost=(.+)$/m.exec(unit);
    assert.ok(line, unit);
    assert.ok(unit.indexOf('ExecStart=nft -j -f -') < unit.indexOf('ExecStartPost='));
    // the unit's ordering is unchanged: still before the network, after nftables.service
    assert.match(unit, /^After=nftables\.service$/m);
    assert.match(unit, /^Before=network-pre\.target shutdown\.target$/m);
    // `-`: never fails the boot unit; nothing for systemd to expand but the one `$$`
    const m = /^-\/bin\/bash -c 'eval "\$\$\(echo ([A-Za-z0-9+/=]+) \| base64 -d\)"' nrhi-guard-boot nrhi_u 3$/.exec(line[1]);
    assert.ok(m, line[1]);
    assert.ok(!line[1].includes('%'));
    const script = Buffer.from(m[1], 'base64').toString('utf8');
    assert.match(script, /systemd-run --no-block --quiet --collect --unit="nrhi-guard-\$t" -p Type=simple \/bin\/bash "\$G\/guard\.sh" "\$t"/);
    assert.match(script, /flock -w 10 9/);
    assert.doesNotMatch(renderBootUnit('nrhi_u', batch), /ExecStartPost/);
    assert.throws(() => bootGuardExec('nrhi u', 3));
    assert.throws(() => bootGuardExec('nrhi_u', -1));
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
