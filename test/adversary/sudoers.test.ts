/**
 * Adversary: the pack's sudo account, with the generated sudoers lines (every feature) installed
 * on a lab host, tries to use its root rights for more than isolation. Each command the apply
 * script runs is allowed (asked with `sudo -n -l`, which runs nothing), and the near misses an
 * attacker would try (another file for nft, tee or mv, an extra argument, an option slipped into
 * the timer's systemd-run, a file name where the host puts a number) are refused. Beside it, the
 * line the generator never writes (a bare `nft`) shows why: with it, the account makes nft print
 * a root-only file. The lines go in the host's own /etc (an overlay private to the lab host);
 * nothing is applied outside the lab's namespaces.
 */
import { strict as assert } from 'assert';
import { randomBytes } from 'crypto';
import { IsolationDriver } from '../../src/driver';
import { teardown, useLab } from '../lab/fixtures';
import { PREFIX, labTarget, SUDOERS_LINES, type ExecResult } from '../lab/lab';
import { rootCommands, sudoersLines, SUDOERS_FEATURES } from '../../src/driver/sudoers';
import { SS_NOTHING } from '../../src/driver/host/preflight';

const TABLE = 'nrhi_sdo';
const ALL = [...SUDOERS_FEATURES];

describe('adversary: the sudo account and its generated sudoers lines', function () {
  this.timeout(120_000);
  const lab = useLab({ hosts: 1 });
  let user: string;
  let file: string;
  /** a root-only file under the host's own /etc, holding a token no other file has */
  const secret = '/etc/nrhi-sdo-secret';
  const token = `nrhi${randomBytes(12).toString('hex')}`;

  /** argv run on the lab host (its network and mount namespaces) as the sudo account */
  const asUser = (argv: string[], stdin?: string): Promise<ExecResult> => lab.hostExec(0, ['setpriv', `--reuid=${user}`, `--regid=${user}`, '--init-groups', '--', ...argv], stdin);
  /** whether sudo's policy allows exactly this command line (sudo -l runs nothing) */
  const allowed = async (argv: string[]) => (await asUser(['sudo', '-n', '-l', ...argv])).code === 0;

  // undone before the lab goes (also when the set-up below fails half-way)
  teardown(async () => {
    await lab.hostFile(0, secret, null).catch(() => undefined);
    await lab.hostFile(0, file, `${SUDOERS_LINES(user)}\n`).catch(() => undefined);
  });
  before(async () => {
    user = lab.users.sudo.username;
    file = `/etc/sudoers.d/${PREFIX}${lab.id}`;
    await lab.hostFile(0, file, `${sudoersLines({ user, table: TABLE, features: ALL }).join('\n')}\n`);
    const check = await lab.hostExec(0, ['visudo', '-cf', file]);
    assert.equal(check.code, 0, check.stdout + check.stderr);
    await lab.hostFile(0, secret, `${token}\n`);
    assert.equal((await lab.hostExec(0, ['chmod', '600', secret])).code, 0);
    assert.notEqual((await asUser(['cat', secret])).code, 0, 'the account cannot read the secret itself');
  });

  it('allows every command line the apply script runs as root, for every feature', async () => {
    const cmds = rootCommands({ table: TABLE, features: ALL });
    assert.ok(cmds.length >= 25, `${cmds.length} commands`);
    const refused: string[] = [];
    for (const c of cmds) if (!(await allowed(c.argv))) refused.push(`${c.feature}: ${c.argv.join(' ')}`);
    assert.deepEqual(refused, []);
    // and they run: nft takes a listing on stdin, ss -K a filter no socket matches (in the lab host's namespace)
    const list = await asUser(['sudo', '-n', 'nft', '-j', '-f', '-'], '{"nftables":[{"list":{"tables":null}}]}');
    assert.equal(list.code, 0, list.stderr);
    assert.match(list.stdout, /"nftables"/);
    const ss = await asUser(['sudo', '-n', 'ss', '-K', '-H', '-n', '-t', '-u', 'state', 'connected', '-F', '-'], `${SS_NOTHING}\n`);
    assert.equal(ss.code, 0, ss.stderr);
    // the preflight asks sudo -l for the same persist commands: it finds them granted
    const d = new IsolationDriver();
    try {
      const c = await d.capabilities(labTarget(lab, 0, TABLE, 15_000));
      assert.deepEqual(c.sudo, { nft: true, ss: true, persist: true });
      const other = await d.capabilities(labTarget(lab, 0, 'nrhi_other', 15_000));
      assert.equal(other.sudo?.persist, false, "another table's boot unit is not granted");
    } finally {
      await d.close();
    }
  });

  it('refuses what an attacker would ask instead', async () => {
    const unit = `/etc/systemd/system/node-red-isolation-${TABLE}.service`;
    const G = `/run/nrhi-guard/${TABLE}`;
    const R = `/run/nrhi-release/${TABLE}`;
    const near: string[][] = [
      // nft: another file, another option, an extra argument, no argument
      ['nft', '-f', secret],
      ['nft', '-j', '-f', secret],
      ['nft', '-f', '-'],
      ['nft', '-j', '-f', '-', secret],
      ['nft', 'list', 'ruleset'],
      ['nft'],
      // ss: every socket (no filter), a filter file
      ['ss', '-K'],
      ['ss', '-K', '-H', '-n', '-t', '-u', 'state', 'connected', '-F', secret],
      // tee, mv, rm, ln on other files, or with one more
      ['tee', '/etc/shadow'],
      ['tee', `${unit}.new`, '/etc/shadow'],
      ['tee', `${G}.key`, '/etc/sudoers.d/x'],
      ['tee', '/run/nrhi-guard/other.key'],
      ['mv', '-f', '/etc/shadow', `${G}.batch`],
      ['mv', '-f', `${unit}.new`, '/etc/shadow'],
      ['ln', '-sf', '/bin/sh', `/etc/systemd/system/sysinit.target.wants/node-red-isolation-${TABLE}.service`],
      ['rm', '-f', '/etc/shadow'],
      ['rm', '-f', `${G}.key`, '/etc/shadow'],
      // the literal pattern of the timer's rm is not a wildcard
      ['rm', '-f', `${R}.1`],
      // the guard's unit running another script, or another command
      ['systemd-run', '--quiet', '--collect', `--unit=nrhi-guard-${TABLE}`, '-p', 'Type=simple', '/bin/bash', '/tmp/x.sh', TABLE],
      ['systemd-run', '/bin/sh', '-c', 'id'],
      ['systemctl', 'stop', 'sshd.service'],
      // the timer's regular expressions: digits where the host puts a number, nothing else
      ['tee', `${R}.12`, '/etc/shadow'],
      ['tee', `${R}.x`],
      ['tee', `${R}.12/../../../etc/shadow`],
      [
        'systemd-run', '--quiet', '--collect', `--unit=nrhi-release-${TABLE}`, '--on-active=30', '-p', 'ExecStartPre=/bin/sh', '--timer-property=AccuracySec=100ms',
        '-p', 'Type=oneshot', '-p', 'TimeoutStartSec=infinity', '/bin/sh', `${R}.1.sh`, `${R}.1`, `nrhi-release:${TABLE}:1:`,
      ],
      [
        'systemd-run', '--quiet', '--collect', `--unit=nrhi-release-${TABLE}`, '--on-active=30', '--timer-property=AccuracySec=100ms',
        '-p', 'Type=oneshot', '-p', 'TimeoutStartSec=infinity', '/bin/sh', '/tmp/evil.sh', `${R}.1`, `nrhi-release:${TABLE}:1:`,
      ],
    ];
    const let_through: string[] = [];
    for (const argv of near) if (await allowed(argv)) let_through.push(argv.join(' '));
    assert.deepEqual(let_through, [], 'allowed though no script runs them');
    // the sanity of the probe: the same rm with the literal pattern is allowed
    assert.ok(await allowed(['rm', '-f', `${R}.*`]));
  });

  it('makes nft read no root-only file, where a bare nft line would', async () => {
    const refused = await asUser(['sudo', '-n', 'nft', '-f', secret]);
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /sudo: .*(not allowed|password is required)/);
    assert.ok(!`${refused.stdout}${refused.stderr}`.includes(token), 'the secret stays unread');
    // the line the generator never writes (the README's warning, shown): nft prints the file's lines in its errors
    try {
      await lab.hostFile(0, file, `${user} ALL=(root) NOPASSWD: /usr/sbin/nft\n`);
      const leaked = await asUser(['sudo', '-n', 'nft', '-f', secret]);
      assert.notEqual(leaked.code, 0, 'nft refuses the file as a ruleset');
      assert.ok(`${leaked.stdout}${leaked.stderr}`.includes(token), 'with a bare nft line the account reads a root-only file');
    } finally {
      await lab.hostFile(0, file, `${sudoersLines({ user, table: TABLE, features: ALL }).join('\n')}\n`);
    }
    assert.ok(!`${(await asUser(['sudo', '-n', 'nft', '-f', secret])).stderr}`.includes(token), 'refused again with the generated lines');
  });
});
