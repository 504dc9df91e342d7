/**
 * Issue 23, enrolling a host: the set-up the pack generates (src/driver/setup.ts), run as root on
 * a fresh Debian container host (systemd-nspawn, never this machine), makes an account that the
 * driver logs in to with the given key and whose preflight reports every capability the chosen
 * features need; sudo grants that account exactly the generated lines and nothing more; a second
 * run changes nothing; a set-up whose sudoers lines visudo refuses leaves /etc/sudoers.d as it
 * was; and for root, only the key is installed.
 */
import { strict as assert } from 'assert';
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { IsolationDriver, type TargetInput } from '../../src/driver';
import { hostSetup, renderShell, setupSpec, sudoersFileName } from '../../src/driver/setup';
import { rootCommands, sudoersLines, SUDOERS_FEATURES, type SudoersFeature } from '../../src/driver/sudoers';
import { containerAvailable, createContainer, guardSuites, type ContainerHost } from '../lab/container';
import { createLab, requireLab, type Lab } from '../lab/lab';

const TABLE = 'nrhi_hs';
const ALL = [...SUDOERS_FEATURES];
const CASES: { user: string; features: SudoersFeature[] }[] = [
  { user: 'nrhi-hs1', features: ['isolate'] },
  { user: 'nrhi-hs4', features: ALL },
];

/** A fresh ed25519 key pair (no passphrase) made here, for the account to be enrolled with. */
function keyPair(dir: string, name: string): { publicKey: string; privateKey: string } {
  const f = path.join(dir, name);
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', `nrhi host-setup ${name}`, '-f', f]);
  return { publicKey: fs.readFileSync(`${f}.pub`, 'utf8').trim(), privateKey: fs.readFileSync(f, 'utf8') };
}

/** The commands `sudo -ll -U user` lists for the account (the entries after "may run"), backslashes dropped. */
function listedCommands(text: string): string[] {
  const at = text.search(/may run the following commands/);
  assert.ok(at >= 0, `sudo -ll answered:\n${text}`);
  const out: string[] = [];
  let inCommands = false;
  for (const line of text.slice(at).split('\n').slice(1)) {
    if (/^\s*Commands:\s*$/.test(line)) inCommands = true;
    else if (/^\s*(Sudoers entry|RunAsUsers|RunAsGroups|Options|Defaults)\b/.test(line) || line.trim() === '') inCommands = false;
    else if (inCommands) out.push(line.trim().replace(/\\/g, ''));
    else assert.fail(`an unexpected line in sudo -ll's answer: ${JSON.stringify(line)}\n${text}`);
  }
  return out.sort();
}

for (const suite of guardSuites()) {
  describe(`adversary: enrolling a ${suite} host with the generated set-up (issue 23)`, function () {
    this.timeout(300_000);
    let lab: Lab;
    let h: ContainerHost;
    let driver: IsolationDriver;
    let dir: string;
    let key: { publicKey: string; privateKey: string };

    /** the script run inside the container as root (its stdin) */
    const setUp = (script: string) => h.exec(['sh', '-s'], script, 60_000);
    const sh = async (script: string, ...args: string[]) => {
      const r = await h.exec(['sh', '-c', script, 'sh', ...args]);
      assert.equal(r.code, 0, `${script}: ${r.stdout}${r.stderr}`);
      return r.stdout;
    };
    /** all that the set-up may change, as text: the account, its key file, /etc/sudoers.d (names, modes, times, contents) */
    const snapshot = (user: string) =>
      sh(
        [
          'getent passwd "$1"; getent shadow "$1" | cut -d: -f1-2',
          'home=$(getent passwd "$1" | cut -d: -f6)',
          'if [ -n "$home" ]; then stat -c "%n %a %U %G %s %Y" "$home/.ssh" "$home/.ssh/authorized_keys" 2>&1; cat "$home/.ssh/authorized_keys" 2>&1; fi',
          'ls -la --time-style=full-iso /etc/sudoers.d; sha256sum /etc/sudoers.d/* /etc/sudoers.d/.[!.]* 2>&1 || true',
        ].join('\n'),
        user,
      );
    const target = (user: string, privateKey: string, sudo = true): TargetInput => ({ host: h.v4, username: user, privateKey, knownHosts: h.knownHosts, sudo, table: TABLE, timeoutMs: 15_000 });

    before(async function () {
      requireLab(this, containerAvailable());
      dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nrhi-hs-'));
      key = keyPair(dir, 'id');
      lab = await createLab({ hosts: 1 });
      h = await createContainer(lab, suite, 0);
      driver = new IsolationDriver();
    });
    after(async () => {
      await driver?.close();
      await h?.close();
      await lab?.close();
      if (dir) fs.rmSync(dir, { recursive: true, force: true });
    });

    for (const { user, features } of CASES) {
      it(`${features.join(',')}: makes ${user}, whose preflight finds what the features need; sudo grants exactly the generated lines; a second run changes nothing`, async () => {
        const script = hostSetup({ user, table: TABLE, features, publicKey: key.publicKey });
        assert.equal((await h.exec(['id', user])).code, 1, 'a fresh host: no such account yet');
        const first = await setUp(script);
        assert.equal(first.code, 0, first.stdout + first.stderr);
        assert.match(first.stdout, new RegExp(`account ${user} created`));
        assert.match(first.stdout, /key added/);
        assert.match(first.stdout, /written/);

        // the account: /bin/sh, a home, password locked; the key once, mode 600, its own
        const pw = (await sh('getent passwd "$1"', user)).trim().split(':');
        assert.equal(pw[6], '/bin/sh');
        assert.equal(pw[5], `/home/${user}`);
        assert.match(await sh('passwd -S "$1"', user), new RegExp(`^${user} L `), 'the password is locked');
        assert.equal((await sh('stat -c "%a %U" "$1/.ssh" "$1/.ssh/authorized_keys"', pw[5])).trim(), `700 ${user}\n600 ${user}`);
        assert.equal(await sh('cat "$1/.ssh/authorized_keys"', pw[5]), `${key.publicKey}\n`);
        // the sudoers file: the generator's lines, byte for byte, mode 440, root's, and nothing left beside it
        const file = sudoersFileName(user, TABLE);
        assert.equal((await sh('stat -c "%a %U %G" "$1"', file)).trim(), '440 root root');
        assert.equal(await sh('cat "$1"', file), `${sudoersLines({ user, table: TABLE, features }).join('\n')}\n`);
        assert.equal((await sh('ls -A /etc/sudoers.d')).split('\n').filter((f) => f.startsWith('.')).length, 0, 'no temporary file left');

        // the driver logs in with the key; the preflight reports what these features need
        const t = target(user, key.privateKey);
        const c = await driver.capabilities(t);
        assert.equal(c.privilege, 'sudo');
        assert.equal(c.root, false);
        assert.equal(c.nft.json, true, JSON.stringify(c.unknown));
        assert.equal(c.ss.kill, true);
        assert.equal(c.systemd.running, true);
        assert.deepEqual(c.sudo, { nft: true, ss: true, persist: features.includes('persist') });
        assert.equal(c.limits.some((l) => /sudo/.test(l)), !features.includes('persist'), c.limits.join('; '));

        // sudo grants every command line of the chosen features, and none of the others (sudo -l runs nothing)
        const asUser = (argv: string[]) => h.exec(['setpriv', `--reuid=${user}`, `--regid=${user}`, '--init-groups', '--', ...argv]);
        const wrong: string[] = [];
        for (const cmd of rootCommands({ table: TABLE, features: ALL })) {
          const granted = (await asUser(['sudo', '-n', '-l', ...cmd.argv])).code === 0;
          if (granted !== features.includes(cmd.feature)) wrong.push(`${cmd.feature} ${granted ? 'granted' : 'refused'}: ${cmd.argv.join(' ')}`);
        }
        assert.deepEqual(wrong, []);
        // and sudo's own list of what the account may run is exactly the generated lines
        // (no terminal: sudo wraps its list at $COLUMNS, else 80 columns)
        const listed = await h.exec(['env', 'COLUMNS=4096', 'sudo', '-ll', '-U', user]);
        assert.equal(listed.code, 0, listed.stderr);
        const expected = rootCommands({ table: TABLE, features })
          .map((x) => x.cmnd.replace(/\\/g, ''))
          .sort();
        assert.deepEqual(listedCommands(listed.stdout), expected, listed.stdout);
        assert.equal((listed.stdout.match(/RunAsUsers: root$/gm) ?? []).length, expected.length, 'as root only, one entry a line');
        assert.equal((listed.stdout.match(/Options: !authenticate$/gm) ?? []).length, expected.length, 'NOPASSWD on each');

        // what the features are for works through them
        if (features.includes('persist')) {
          const st = await driver.isolate(t, { presets: ['ssh'], persist: true, reason: 'host-setup', verify: false });
          assert.equal(st.state, 'isolated');
          assert.equal(st.guard, true, 'the guard keeps it');
          assert.equal(st.persist, true);
          assert.equal((await h.exec(['systemctl', 'is-active', `nrhi-guard-${TABLE}.service`])).stdout.trim(), 'active');
          assert.equal((await h.exec(['test', '-f', `/etc/systemd/system/node-red-isolation-${TABLE}.service`])).code, 0, 'the boot unit');
          // a timed isolation (persist is for untimed ones): its release timer is a systemd unit
          const timed = await driver.isolate(t, { presets: ['ssh'], duration: 120, reason: 'host-setup', verify: false });
          assert.equal(timed.state, 'isolated');
          assert.ok(timed.expiresAt);
          assert.equal((await h.exec(['systemctl', 'is-active', `nrhi-release-${TABLE}.timer`])).stdout.trim(), 'active', 'the release timer is a systemd unit');
        } else {
          const st = await driver.isolate(t, { presets: ['ssh'], verify: false });
          assert.equal(st.state, 'isolated');
          assert.equal(st.guard, false, 'no guard lines: no guard');
        }
        assert.equal((await driver.unisolate(t)).state, 'free');
        assert.equal((await h.exec(['nft', 'list', 'table', 'inet', TABLE])).code, 1, 'released');

        // run again: everything is found as it should be, nothing changes
        const before = await snapshot(user);
        const second = await setUp(script);
        assert.equal(second.code, 0, second.stdout + second.stderr);
        assert.match(second.stdout, /exists: kept as it is/);
        assert.match(second.stdout, /key already in/);
        assert.match(second.stdout, /unchanged/);
        assert.equal(await snapshot(user), before);
      });
    }

    it('a sudoers line visudo refuses: the script stops and /etc/sudoers.d is untouched (a new file, and one that exists)', async () => {
      for (const [user, features] of [
        ['nrhi-hs4', ['isolate']],
        ['nrhi-hsx', ['isolate']],
      ] as [string, SudoersFeature[]][]) {
        const spec = setupSpec({ user, table: TABLE, features, publicKey: key.publicKey });
        // the test-only way in: the renderer given one broken line (no `:` after NOPASSWD)
        const broken = { ...spec, sudoers: { file: spec.sudoers!.file, lines: [...spec.sudoers!.lines, `${user} ALL=(root) NOPASSWD /usr/sbin/nft`] } };
        // the directory itself (its time: nothing added or removed in it, even for a moment), its files, their contents
        const listing = () => sh('stat -c "%n %a %U %y" /etc/sudoers.d; ls -lA --time-style=full-iso /etc/sudoers.d; sha256sum /etc/sudoers.d/*');
        const before = await listing();
        const r = await setUp(renderShell(broken));
        assert.notEqual(r.code, 0, r.stdout);
        assert.match(r.stderr, /visudo refused the sudoers lines: nothing changed/);
        assert.match(r.stderr, /syntax error|parse error/i, 'visudo says why');
        assert.equal(await listing(), before);
      }
      assert.equal((await h.exec(['test', '-e', sudoersFileName('nrhi-hsx', TABLE)])).code, 1);
    });

    it('root: only the key is installed (no sudoers); the driver logs in as root with it', async () => {
      const rootKey = keyPair(dir, 'root');
      const script = hostSetup({ user: 'root', table: TABLE, features: ALL, publicKey: rootKey.publicKey });
      assert.doesNotMatch(script, /sudoers\.d|visudo|useradd/);
      const sudoersBefore = await sh('ls -la --time-style=full-iso /etc/sudoers.d');
      const labKey = await sh('cat /root/.ssh/authorized_keys');
      const first = await setUp(script);
      assert.equal(first.code, 0, first.stdout + first.stderr);
      assert.equal(await sh('cat /root/.ssh/authorized_keys'), `${labKey}${rootKey.publicKey}\n`, "the lab's key kept, the new one added once");
      assert.equal(await sh('ls -la --time-style=full-iso /etc/sudoers.d'), sudoersBefore);
      const c = await driver.capabilities(target('root', rootKey.privateKey, false));
      assert.equal(c.privilege, 'root');
      assert.equal(c.root, true);
      assert.equal(c.nft.json, true);
      const before = await snapshot('root');
      const second = await setUp(script);
      assert.equal(second.code, 0, second.stdout + second.stderr);
      assert.match(second.stdout, /key already in/);
      assert.equal(await snapshot('root'), before);
    });
  });
}
