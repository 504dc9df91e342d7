/**
 * Issue 23, enrolling a host: the set-up the pack generates (src/driver/setup.ts), run as root on
 * a fresh Debian container host (systemd-nspawn, never this machine), makes an account that the
 * driver logs in to with the given key and whose preflight reports every capability the chosen
 * features need; sudo grants that account exactly the generated lines and nothing more; a second
 * run changes nothing; a set-up whose sudoers lines visudo refuses leaves /etc/sudoers.d as it
 * was; and for root, only the key is installed. The same for the Ansible task list (format
 * `ansible`): ansible-playbook on this machine, over SSH to the container as root with the lab's
 * key and the container's pinned host key, then the same checks, and a second run reports
 * changed=0. Without ansible-playbook that suite is skipped, or fails with CI=true.
 */
import { strict as assert } from 'assert';
import { execFile, execFileSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { IsolationDriver, type TargetInput } from '../../src/driver';
import { hostSetup, renderShell, setupSpec, sudoersFileName } from '../../src/driver/setup';
import { rootCommands, sudoersLines, SUDOERS_FEATURES, type SudoersFeature } from '../../src/driver/sudoers';
import { containerAvailable, createContainer, guardSuites, type ContainerHost } from '../lab/container';
import { createLab, requireLab, type Lab } from '../lab/lab';
import { skipOrFail } from '../lab/need';

const TABLE = 'nrhi_hs';
const ALL = [...SUDOERS_FEATURES];
const CASES: { user: string; features: SudoersFeature[] }[] = [
  { user: 'nrhi-hs1', features: ['isolate'] },
  { user: 'nrhi-hs4', features: ALL },
];
/** the same, through the Ansible task list (other accounts: each suite boots a fresh container anyway) */
const ANSIBLE_CASES: { user: string; features: SudoersFeature[] }[] = [
  { user: 'nrhi-ha1', features: ['isolate'] },
  { user: 'nrhi-ha4', features: ALL },
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

/** What a suite shares with the checks below: its container, driver and table. */
interface Ctx {
  h: ContainerHost;
  driver: IsolationDriver;
  sh(script: string, ...args: string[]): Promise<string>;
  target(user: string, privateKey: string, sudo?: boolean): TargetInput;
}

function context(h: ContainerHost, driver: IsolationDriver): Ctx {
  return {
    h,
    driver,
    async sh(script, ...args) {
      const r = await h.exec(['sh', '-c', script, 'sh', ...args]);
      assert.equal(r.code, 0, `${script}: ${r.stdout}${r.stderr}`);
      return r.stdout;
    },
    target: (user, privateKey, sudo = true) => ({ host: h.v4, username: user, privateKey, knownHosts: h.knownHosts, sudo, table: TABLE, timeoutMs: 15_000 }),
  };
}

/** all that the set-up may change, as text: the account, its key file, /etc/sudoers.d (names, modes, times, contents) */
function snapshotOf(c: Ctx, user: string): Promise<string> {
  return c.sh(
    [
      'getent passwd "$1"; getent shadow "$1" | cut -d: -f1-2',
      'home=$(getent passwd "$1" | cut -d: -f6)',
      'if [ -n "$home" ]; then stat -c "%n %a %U %G %s %Y" "$home/.ssh" "$home/.ssh/authorized_keys" 2>&1; cat "$home/.ssh/authorized_keys" 2>&1; fi',
      'ls -la --time-style=full-iso /etc/sudoers.d; sha256sum /etc/sudoers.d/* /etc/sudoers.d/.[!.]* 2>&1 || true',
    ].join('\n'),
    user,
  );
}

/**
 * The account `user` as a set-up for `features` leaves it, whichever rendering made it: /bin/sh,
 * a home, a locked password, the key once; the sudoers file byte for byte; the driver logs in with
 * the key and its preflight reports what the features need; sudo grants exactly the generated
 * lines; what the features are for works through them.
 */
async function enrolled(c: Ctx, user: string, features: SudoersFeature[], key: { publicKey: string; privateKey: string }): Promise<void> {
  const { h, driver, sh, target } = c;
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
  const caps = await driver.capabilities(t);
  assert.equal(caps.privilege, 'sudo');
  assert.equal(caps.root, false);
  assert.equal(caps.nft.json, true, JSON.stringify(caps.unknown));
  assert.equal(caps.ss.kill, true);
  assert.equal(caps.systemd.running, true);
  assert.deepEqual(caps.sudo, { nft: true, ss: true, persist: features.includes('persist') });
  assert.equal(caps.limits.some((l) => /sudo/.test(l)), !features.includes('persist'), caps.limits.join('; '));

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
}

/** The recap line of ansible-playbook's output for the one host: its counts. */
function recap(out: string): Record<string, number> {
  const m = /^target\s+:\s+(.*)$/m.exec(out.slice(out.lastIndexOf('PLAY RECAP')));
  assert.ok(m, `no recap in:\n${out}`);
  return Object.fromEntries([...m[1].matchAll(/(\w+)=(\d+)/g)].map(([, k, n]) => [k, Number(n)]));
}

/** Whether ansible-playbook is on this machine (Debian: ansible-core). */
function ansibleAvailable(): { ok: boolean; why?: string } {
  const found = ['/usr/bin', '/usr/local/bin', '/usr/sbin'].some((d) => fs.existsSync(path.join(d, 'ansible-playbook')));
  return found ? { ok: true } : { ok: false, why: 'ansible-playbook not found (apt-get install ansible-core)' };
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
    const ctx = () => context(h, driver);
    const sh = (script: string, ...args: string[]) => ctx().sh(script, ...args);
    const snapshot = (user: string) => snapshotOf(ctx(), user);
    const target = (user: string, privateKey: string, sudo = true) => ctx().target(user, privateKey, sudo);

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

        await enrolled(ctx(), user, features, key);

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

  describe(`adversary: enrolling a ${suite} host with the generated Ansible tasks, run by ansible-playbook (issue 23)`, function () {
    this.timeout(300_000);
    let lab: Lab;
    let h: ContainerHost;
    let driver: IsolationDriver;
    let dir: string;
    let key: { publicKey: string; privateKey: string };
    const ctx = () => context(h, driver);

    /**
     * ansible-playbook on `tasks` (the rendered task list, imported as it is by a play with
     * `become: true`), over SSH as root to the container only: the inventory names its lab
     * address, the login is the lab's key, the host key the container's pinned one (strict
     * checking, no other known_hosts, no ssh config, no agent, no control master left running).
     */
    const playbook = async (name: string, tasks: string) => {
      const run = path.join(dir, name);
      fs.mkdirSync(run, { recursive: true });
      fs.writeFileSync(path.join(run, 'tasks.yml'), tasks);
      fs.writeFileSync(
        path.join(run, 'play.yml'),
        ['- hosts: target', '  gather_facts: false', '  become: true', '  tasks:', '    - ansible.builtin.import_tasks: tasks.yml', ''].join('\n'),
      );
      const r = await new Promise<{ code: number; out: string }>((resolve) => {
        execFile(
          'ansible-playbook',
          ['-i', path.join(dir, 'inventory'), path.join(run, 'play.yml')],
          {
            cwd: run,
            timeout: 240_000,
            maxBuffer: 16 * 1024 * 1024,
            env: {
              PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin',
              HOME: dir,
              LANG: 'C.UTF-8',
              ANSIBLE_CONFIG: path.join(dir, 'ansible.cfg'),
              ANSIBLE_HOME: path.join(dir, 'ansible-home'),
            },
          },
          (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, out: `${stdout}${stderr}` }),
        );
      });
      return { ...r, recap: recap(r.out) };
    };

    before(async function () {
      requireLab(this, containerAvailable());
      skipOrFail(this, 'ansible', ansibleAvailable().why);
      dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nrhi-ha-'));
      key = keyPair(dir, 'id');
      lab = await createLab({ hosts: 1 });
      // python3: what Ansible runs its modules with (a tree flavour of its own: container.ts ensureTree)
      h = await createContainer(lab, suite, 0, { packages: ['python3'] });
      driver = new IsolationDriver();
      // the container's address is on the lab's link from this namespace (a connected route):
      // ansible's SSH goes there and nowhere else
      const route = execFileSync('ip', ['-o', 'route', 'get', h.v4], { encoding: 'utf8' });
      assert.match(route, new RegExp(`\\bdev ${lab.controller.link}\\b`), `the route to ${h.v4}: ${route}`);
      assert.doesNotMatch(route, /\bvia\b/, `the route to ${h.v4} is the lab's connected one: ${route}`);
      fs.writeFileSync(path.join(dir, 'root-id'), h.privateKey, { mode: 0o600 });
      fs.writeFileSync(path.join(dir, 'known_hosts'), h.knownHosts, { mode: 0o600 });
      fs.writeFileSync(
        path.join(dir, 'inventory'),
        `target ansible_host=${h.v4} ansible_user=root ansible_ssh_private_key_file=${path.join(dir, 'root-id')} ansible_python_interpreter=/usr/bin/python3\n`,
      );
      const ssh = [
        '-F /dev/null',
        `-o UserKnownHostsFile=${path.join(dir, 'known_hosts')}`,
        '-o GlobalKnownHostsFile=/dev/null',
        '-o StrictHostKeyChecking=yes',
        '-o IdentitiesOnly=yes',
        '-o IdentityAgent=none',
        '-o BatchMode=yes',
        '-o ControlMaster=no',
        '-o ConnectTimeout=10',
      ].join(' ');
      fs.writeFileSync(
        path.join(dir, 'ansible.cfg'),
        [
          '[defaults]',
          'host_key_checking = True',
          'nocolor = True',
          'retry_files_enabled = False',
          `local_tmp = ${path.join(dir, 'ansible-local')}`,
          'interpreter_python = /usr/bin/python3',
          '[ssh_connection]',
          `ssh_args = ${ssh}`,
          'pipelining = True',
          '',
        ].join('\n'),
      );
    });
    after(async () => {
      await driver?.close();
      await h?.close();
      await lab?.close();
      if (dir) fs.rmSync(dir, { recursive: true, force: true });
    });

    it('refuses a host whose key is not the pinned one (host key checking is on)', async () => {
      const pinned = fs.readFileSync(path.join(dir, 'known_hosts'), 'utf8');
      const other = path.join(dir, 'other');
      execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', other]);
      const otherKey = fs.readFileSync(`${other}.pub`, 'utf8').trim().split(' ').slice(0, 2).join(' ');
      fs.writeFileSync(path.join(dir, 'known_hosts'), `${h.v4} ${otherKey}\n`);
      try {
        const r = await playbook('wrong-key', hostSetup({ user: 'nrhi-hax', table: TABLE, publicKey: key.publicKey, format: 'ansible' }));
        assert.notEqual(r.code, 0, r.out);
        assert.equal(r.recap.unreachable, 1, r.out);
        assert.match(r.out, /HOST IDENTIFICATION HAS CHANGED|Host key verification failed/, r.out);
      } finally {
        fs.writeFileSync(path.join(dir, 'known_hosts'), pinned);
      }
      assert.equal((await h.exec(['id', 'nrhi-hax'])).code, 1, 'nothing done');
    });

    for (const { user, features } of ANSIBLE_CASES) {
      it(`${features.join(',')}: makes ${user}, whose preflight finds what the features need; sudo grants exactly the generated lines; a second run reports changed=0`, async () => {
        const tasks = hostSetup({ user, table: TABLE, features, publicKey: key.publicKey, format: 'ansible' });
        assert.equal((await h.exec(['id', user])).code, 1, 'a fresh host: no such account yet');
        const first = await playbook(`${user}-1`, tasks);
        assert.equal(first.code, 0, first.out);
        assert.equal(first.recap.failed, 0, first.out);
        assert.ok(first.recap.changed >= 4, `user, ~/.ssh, the key, the sudoers file: ${first.out}`);
        assert.doesNotMatch(first.out, /warning: \/etc\/sudoers has no @includedir/);

        await enrolled(ctx(), user, features, key);

        // run again: nothing to change, nothing changed
        const before = await snapshotOf(ctx(), user);
        const second = await playbook(`${user}-2`, tasks);
        assert.equal(second.code, 0, second.out);
        assert.equal(second.recap.changed, 0, second.out);
        assert.equal(second.recap.failed, 0, second.out);
        assert.equal(await snapshotOf(ctx(), user), before);
      });
    }

    it('a ~/.ssh or authorized_keys that is a symbolic link: stops before anything is written through it', async () => {
      for (const [user, link] of [
        ['nrhi-hal', 'ln -s /etc "/home/$1/.ssh"'],
        ['nrhi-hak', 'install -d -m 700 -o "$1" "/home/$1/.ssh" && ln -s /etc/nrhi-ak "/home/$1/.ssh/authorized_keys"'],
      ]) {
        await ctx().sh(`useradd --create-home --shell /bin/sh -- "$1" && ${link}`, user);
        const listing = () => ctx().sh('ls -la --time-style=full-iso /etc /etc/sudoers.d "/home/$1" "/home/$1/.ssh/"', user);
        const before = await listing();
        const r = await playbook(`link-${user}`, hostSetup({ user, table: TABLE, publicKey: key.publicKey, format: 'ansible' }));
        assert.notEqual(r.code, 0, r.out);
        assert.equal(r.recap.failed, 1, r.out);
        assert.equal(r.recap.changed, 0, r.out);
        assert.match(r.out, /is a symbolic link/);
        assert.equal(await listing(), before);
        assert.equal((await h.exec(['sh', '-c', 'test -e /etc/authorized_keys || test -e /etc/nrhi-ak'])).code, 1);
      }
    });

    it('root: only the key is installed (no sudoers); the driver logs in as root with it; a second run reports changed=0', async () => {
      const rootKey = keyPair(dir, 'root');
      const tasks = hostSetup({ user: 'root', table: TABLE, features: ALL, publicKey: rootKey.publicKey, format: 'ansible' });
      assert.doesNotMatch(tasks, /sudoers\.d|visudo|ansible\.builtin\.user/);
      const sudoersBefore = await ctx().sh('ls -la --time-style=full-iso /etc/sudoers.d');
      const labKey = await ctx().sh('cat /root/.ssh/authorized_keys');
      const first = await playbook('root-1', tasks);
      assert.equal(first.code, 0, first.out);
      assert.equal(first.recap.changed, 1, `only the key line: ${first.out}`);
      assert.equal(await ctx().sh('cat /root/.ssh/authorized_keys'), `${labKey}${rootKey.publicKey}\n`, "the lab's key kept, the new one added once");
      assert.equal((await ctx().sh('stat -c "%a %U" /root/.ssh /root/.ssh/authorized_keys')).trim(), '700 root\n600 root');
      assert.equal(await ctx().sh('ls -la --time-style=full-iso /etc/sudoers.d'), sudoersBefore);
      const c = await driver.capabilities(ctx().target('root', rootKey.privateKey, false));
      assert.equal(c.privilege, 'root');
      assert.equal(c.root, true);
      assert.equal(c.nft.json, true);
      const before = await snapshotOf(ctx(), 'root');
      const second = await playbook('root-2', tasks);
      assert.equal(second.code, 0, second.out);
      assert.equal(second.recap.changed, 0, second.out);
      assert.equal(await snapshotOf(ctx(), 'root'), before);
    });
  });
}
