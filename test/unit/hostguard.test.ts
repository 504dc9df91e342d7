/**
 * The host's guard (self-healing, issue 13 item 3), controller side: how its copy travels in the
 * apply script's stdin, and how the status read's answer is split into the guard's record and
 * nft's JSON. The guard itself runs on real systemd hosts in test/integration/guard.test.ts.
 */
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as path from 'path';
import { guardEndedWarning, nftInput, parseGuardArmed, parseGuardEnded } from '../../src/driver/host/apply';
import { APPLY_FIELDS, decodeApplyInput } from '../../src/driver/host/apply-input';
import { bootGuardExec } from '../../src/driver/host/boot';
import { GUARD_SUDO } from '../../src/driver/host/commands';
import { fallbackRollback, GUARD_LOCK_WAIT_MAX_S, GUARD_MAX_BURST, GUARD_MAX_FAILS, HOST_SLACK_MS, lockWaitS } from '../../src/driver/host/guard';
import { COMMANDS } from '../../src/driver/host/programs';
import { parseGuard, statusInput } from '../../src/driver/host/status';
import { sudoersLines } from '../../src/driver/sudoers';
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
    assert.equal(stdin.split('\n').length, APPLY_FIELDS.length + 1, 'the header a line per field, then the copy and the batch on one line');
    assert.equal(APPLY_FIELDS.length, 14);
    const { fields, guardCopy, batch } = decodeApplyInput(stdin);
    const m = /^(\d+) (\d+)$/.exec(fields.guard);
    assert.ok(m, fields.guard);
    assert.equal(m[1], '4');
    assert.equal(fields.inspect, '', 'no listing asked');
    assert.equal(Buffer.byteLength(guardCopy, 'utf8'), Number(m[2]));
    assert.deepEqual(JSON.parse(guardCopy), copy, 'the copy, measured in bytes (the reason holds multi-byte characters)');
    assert.deepEqual(JSON.parse(batch), now);
    // ended, or left alone
    assert.equal(decodeApplyInput(nftInput(target, now, { seconds: 0, release: null, guard: null }).stdin).fields.guard, '-');
    assert.equal(decodeApplyInput(nftInput(target, now, { seconds: 0, release: null }).stdin).fields.guard, '');
  });

  it("a verify rollback's guard copy travels on its own line, checked by the script and kept with the timer's batches", () => {
    const copy = renderIsolate('nrhi_u', doc, 6);
    const { stdin } = nftInput(target, renderUnisolate('nrhi_u').release, { seconds: 30, release: renderUnisolate('nrhi_u').release, guard: null, rearm: { gen: 6, batch: copy } });
    assert.equal(stdin.split('\n').length, APPLY_FIELDS.length + 1);
    const { fields } = decodeApplyInput(stdin);
    const m = /^(\d+) (.+)$/.exec(fields.rearm);
    assert.ok(m);
    assert.equal(m[1], '6');
    assert.deepEqual(JSON.parse(m[2]), copy);
    assert.equal(fields.guard, '-');
    assert.equal(decodeApplyInput(nftInput(target, renderUnisolate('nrhi_u').release, { seconds: 30, release: null, rearm: null }).stdin).fields.rearm, '');
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
    assert.equal(stdin.split('\n')[0], 'nrhi_u', 'the status read: the table name, then the listing');
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
      // the lock is taken by a root process (one pinned line), as many 1 s tries as the seconds sent
      assert.ok(c.includes(GUARD_SUDO.lock), 'the pinned lock line');
      assert.match(c, /while \[ \$n -lt "\$1" \] && \[ "\$hr" -eq 75 \]; do/);
      assert.match(c, /if hold "\$lw"; then gk=1;/);
    }
  });

  it('a change says when it found the guard ended other than by the pack (issue 20, item 2)', () => {
    assert.equal(parseGuardEnded('nrhi-guard on\n'), null);
    assert.equal(parseGuardEnded('nrhi-guard-ended blocked 4\n'), null, 'only the states the script prints');
    assert.deepEqual(parseGuardEnded('nrhi-severed 0 0 ok\nnrhi-guard-ended superseded 41\nnrhi-guard on\n'), { how: 'superseded', gen: 41 });
    for (const how of ['superseded', 'gave-up:nft', 'gave-up:fought', 'stopped'] as const) {
      const w = guardEndedWarning({ how, gen: 7 }, true);
      assert.match(w, /guard had ended before this change/);
      assert.match(w, /generation 7, and is re-armed/);
      assert.match(guardEndedWarning({ how, gen: 7 }, false), /no guard keeps the isolation now$/);
    }
    for (const c of [COMMANDS.apply, COMMANDS.sudoApply]) {
      // read under the guard's lock, before the batch: the guard is not mid-write, nor re-armed yet
      const at = c.indexOf("printf 'nrhi-guard-ended %s %s\\n'");
      assert.ok(at > c.indexOf('if hold "$lw"; then gk=1;') && at < c.indexOf('rc=$?'), 'between the lock and the batch');
      assert.match(c, /if \[ -n "\$gk" \]; then\n {2}e0=; grec; k0=\$rk; s0=\$rs; q0=\$rq/);
    }
  });

  it('a session timer is found by its record (pid and start time), never by a process name (issue 20, item 6)', () => {
    for (const c of [COMMANDS.apply, COMMANDS.sudoApply]) {
      assert.doesNotMatch(c, /pgrep/, 'any user can name a process like a timer');
      // field 22 of /proc/PID/stat, after the command name (which may hold spaces and parentheses)
      assert.match(c, /read -r pst <"\/proc\/\$1\/stat"[^\n]*pst=\$\{pst##\*\) \}; set -- \$pst; \[ \$# -lt 20 \] \|\| \{ shift 19; sv=\$1; \}/);
      // a record is believed only when this account owns it and it is no link
      assert.match(c, /\[ ! -L "\$tf" \] && \[ -O "\$tf" \]/);
      assert.match(c, /tdir; tlive; for q in \$tl; do kill -- "-\$q"/);
      assert.match(c, /if \[ "\$secs" = keep \]; then tdir; tlive; \[ -z "\$tl" \] \|\| pt=1;/);
    }
  });

  // issue 20, item 1: the guard's lock is root's, its waits fit the time left, a stalled guard says so
  it('a stalled guard is read as stalled, with since when, never as ok', () => {
    const json = '{"nftables":[]}';
    assert.deepEqual(parseGuard(`nrhi-guard 5 2 1764064800 stalled 1 1764065000\n${json}`).guard, { gen: 5, count: 2, last: 1764064800, state: 'stalled', alive: true, since: 1764065000 });
    // the record's SINCE field is 0 when not stalled, and absent from an older script's line
    assert.deepEqual(parseGuard(`nrhi-guard 5 2 1764064800 ok 1 0\n${json}`).guard, { gen: 5, count: 2, last: 1764064800, state: 'ok', alive: true });
    for (const c of [COMMANDS.status, COMMANDS.sudoStatus]) {
      assert.ok(c.includes(GUARD_SUDO.read), 'the record is read through the pinned line');
      assert.doesNotMatch(c, /<"\$G\/\$t\.(key|heal|pid)"/, 'never opened by the SSH user itself');
    }
    assert.ok(COMMANDS.sudoStatus.includes(`sudo -n ${GUARD_SUDO.read}`));
  });

  it('every wait on the host fits the time left; the fallback rollback gets more than any of them', () => {
    assert.equal(lockWaitS(0), 1, 'at least one try');
    assert.equal(lockWaitS(9_000), 7);
    assert.equal(lockWaitS(600_000), GUARD_LOCK_WAIT_MAX_S, 'capped');
    for (let ms = 0; ms <= 60_000; ms += 250) {
      const w = lockWaitS(ms);
      if (ms >= HOST_SLACK_MS + 1000) assert.ok(w * 1000 + HOST_SLACK_MS <= ms, `${w} s fits ${ms} ms`);
      const fb = fallbackRollback(ms);
      assert.ok(fb.timeoutMs >= ms, 'never less than the time left');
      assert.ok(fb.timeoutMs > GUARD_LOCK_WAIT_MAX_S * 1000 + HOST_SLACK_MS, `the rollback (${fb.timeoutMs} ms) outlasts any wait on the host`);
      assert.ok(fb.lockWaitS * 1000 + HOST_SLACK_MS < fb.timeoutMs, 'and its own lock wait fits inside it');
    }
    // the wait travels on its own line, capped on the host too
    const { stdin } = nftInput(target, renderUnisolate('nrhi_u').release, { seconds: 0, release: null, lockWaitS: 3 });
    assert.equal(decodeApplyInput(stdin).fields.lockWait, '3');
    assert.equal(decodeApplyInput(nftInput(target, renderUnisolate('nrhi_u').release, { seconds: 0, release: null, lockWaitS: 99 }).stdin).fields.lockWait, String(GUARD_LOCK_WAIT_MAX_S));
    for (const c of [COMMANDS.apply, COMMANDS.sudoApply]) {
      assert.match(c, /IFS= read -r g && IFS= read -r lw && IFS= read -r li \|\| exit 90/);
      assert.ok(c.includes(`[ "$lw" -le ${GUARD_LOCK_WAIT_MAX_S} ] || lw=${GUARD_LOCK_WAIT_MAX_S}`));
      assert.doesNotMatch(c, /exec 9<"\$G\/\$t\.lock"; flock -w 10 9 && gk=1/, 'no fixed 10 s wait by the SSH user');
    }
  });

  it("the guard's files are root's alone; the guard's sudoers block (docs/preparing-hosts.md) holds the very lines the scripts run", () => {
    for (const c of [COMMANDS.apply, COMMANDS.sudoApply]) {
      assert.doesNotMatch(c, /mkdir -p -m 755/);
      assert.doesNotMatch(c, /chmod 644/);
      assert.ok(c.includes('umask 077'));
    }
    assert.ok(COMMANDS.sudoApply.includes(`(umask 077; exec sudo -n ${GUARD_SUDO.lock})`));
    assert.ok(COMMANDS.sudoApply.includes(`sudo -n ${GUARD_SUDO.mkdir}`));
    const page = fs.readFileSync(path.join(__dirname, '../../../docs/preparing-hosts.md'), 'utf8');
    const lines = sudoersLines({ user: 'isolator', table: 'node_red_isolation', features: ['guard'] });
    for (const want of ['/usr/bin/mkdir -p -m 700 /run/nrhi-guard', '/usr/bin/flock -w 1 -E 75 /run/nrhi-guard/node_red_isolation.lock cat', '/usr/bin/grep -s -H . /run/nrhi-guard/node_red_isolation.key /run/nrhi-guard/node_red_isolation.heal /run/nrhi-guard/node_red_isolation.pid']) {
      const line = `isolator ALL=(root) NOPASSWD: ${want}`;
      assert.ok(lines.includes(line), `the generated guard lines hold ${want}`);
      assert.ok(page.includes(line), `the guard block of docs/preparing-hosts.md holds ${want}`);
    }
  });
});
