/**
 * The host set-up renderer (src/driver/setup.ts, issue 23) without a host: both formats carry the
 * generator's sudoers lines exactly, every embedded value is checked and quoted (a shell reads
 * each back as the very string), bad input is refused with a message naming the field, and the
 * command prints what the library renders. The script itself is only parsed here (`sh -n`), never
 * run: test/adversary/host-setup.test.ts runs it on a container host.
 */
import { strict as assert } from 'assert';
import { execFileSync } from 'child_process';
import { randomBytes } from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import * as vm from 'vm';
import { run, USAGE } from '../../src/bin/host-setup';
import { hostSetup, renderAnsible, renderShell, setupSpec, shQuote, sudoersFileName, type HostSetupInput } from '../../src/driver/setup';
import { sudoersLines, SUDOERS_FEATURES } from '../../src/driver/sudoers';
import { REPO_ROOT } from '../lab/nodered';

/** A well-formed public key line of `type` (a random blob: no private half exists). */
function keyLine(type = 'ssh-ed25519', comment = 'ops@controller'): string {
  const name = Buffer.from(type, 'latin1');
  const len = Buffer.alloc(4);
  len.writeUInt32BE(name.length);
  const blob = Buffer.concat([len, name, Buffer.from([0, 0, 0, 32]), randomBytes(32)]);
  return `${type} ${blob.toString('base64')}${comment ? ` ${comment}` : ''}`;
}

const KEY = keyLine();
const ALL = [...SUDOERS_FEATURES];

/** The single-quoted words of the script's sudoers printf, read back as sh would. */
function printedLines(script: string): string[] {
  const block = /printf '%s\\n' \\\n([\s\S]*?) >"\$work\/sudoers"/.exec(script);
  assert.ok(block, 'the sudoers printf');
  return block[1].split(' \\\n').map((w) => {
    const m = /^ {2}'((?:[^']|'\\'')*)'$/.exec(w);
    assert.ok(m, `a single-quoted word: ${w}`);
    return m[1].replace(/'\\''/g, "'");
  });
}

/** js-yaml where it is installed (a dependency of the dev tools), to read the task list back */
function yamlLoad(): ((text: string) => unknown) | null {
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return (require('js-yaml') as { load(text: string): unknown }).load;
  } catch {
    return null;
  }
}

describe('host set-up (issue 23: enrolling a host)', () => {
  describe('the shell script', () => {
    it('parses as POSIX sh and dash, and carries the generated sudoers lines exactly, for every feature set', () => {
      for (let m = 1; m < 1 << ALL.length; m++) {
        const features = ALL.filter((_f, i) => m & (1 << i));
        if (!features.includes('isolate')) continue;
        const script = hostSetup({ user: 'isolator', table: 'node_red_isolation', features, publicKey: KEY });
        assert.deepEqual(printedLines(script), sudoersLines({ user: 'isolator', table: 'node_red_isolation', features }), features.join(','));
        for (const sh of ['sh', 'dash'].filter((s) => fs.existsSync(`/bin/${s}`))) execFileSync(sh, ['-n'], { input: script });
      }
    });

    it('embeds each value once, single-quoted, and checks with visudo before it touches /etc/sudoers.d', () => {
      const script = hostSetup({ user: 'svc_nr-1', table: 'T9', features: ['isolate', 'guard'], publicKey: KEY, format: 'sh' });
      assert.ok(script.startsWith('#!/bin/sh\n'));
      assert.ok(script.includes("\nuser='svc_nr-1'\n"));
      assert.ok(script.includes(`\nkey='${KEY}'\n`));
      assert.ok(script.includes(`\nfile='/etc/sudoers.d/node-red-host-isolation-T9-svc_nr-1'\n`));
      assert.equal(sudoersFileName('svc_nr-1', 'T9'), '/etc/sudoers.d/node-red-host-isolation-T9-svc_nr-1');
      assert.match(script, /^set -eu$/m);
      assert.match(script, /useradd --create-home --shell '\/bin\/sh' -- "\$user"/);
      assert.match(script, /usermod --lock -- "\$user"/);
      assert.match(script, /chmod 600 -- "\$ak"/);
      assert.match(script, /grep -qxF -e "\$key" -- "\$ak"/, 'the key is added only when that line is not there');
      assert.match(script, /chmod 440 -- "\$tmp"/);
      const check = script.indexOf('visudo -cf "$work/sudoers"');
      const firstTouch = script.indexOf('mktemp /etc/sudoers.d/');
      assert.ok(check > 0 && firstTouch > check, 'visudo -cf runs before anything is made under /etc/sudoers.d');
      assert.ok(script.indexOf('die "visudo refused') < firstTouch);
      assert.match(script, /cmp -s -- "\$work\/sudoers" "\$file"/, 'an unchanged file is not rewritten');
      // the user and key are nowhere else in the text than their assignments (and the sudoers lines, the comments)
      const bare = script.split('\n').filter((l) => l.includes(KEY.split(' ')[1]));
      assert.equal(bare.length, 1);
    });

    it('quotes what a shell would read otherwise: each value reads back as itself', () => {
      for (const s of ["it's", '$(touch /tmp/nrhi-x)', '`id`', 'a"b', '\\n', "'", "''", 'a b  c', '; rm -rf /', '*']) {
        assert.equal(execFileSync('sh', ['-c', `printf %s ${shQuote(s)}`], { encoding: 'utf8' }), s, s);
      }
      // a key comment with quotes and a command substitution: kept as text, quoted
      const odd = keyLine('ssh-ed25519', `it's $(id) "x"`);
      const script = hostSetup({ user: 'isolator', publicKey: odd });
      assert.ok(script.includes(`\nkey=${shQuote(odd)}\n`));
      execFileSync('sh', ['-n'], { input: script });
    });

    it('root: only the key, no account and no sudoers (and says so)', () => {
      const script = hostSetup({ user: 'root', table: 'T', features: ALL, publicKey: KEY });
      assert.match(script, /root needs no sudoers lines: this only installs the key/);
      assert.doesNotMatch(script, /useradd|usermod|visudo|sudoers\.d/);
      assert.ok(script.includes(`\nkey='${KEY}'\n`));
      assert.equal(setupSpec({ user: 'root', publicKey: KEY }).sudoers, null);
      execFileSync('sh', ['-n'], { input: script });
    });

    it('the internal renderer takes other lines (the adversary test passes a broken one); the public input has no such option', () => {
      const spec = setupSpec({ user: 'isolator', publicKey: KEY });
      const broken = renderShell({ ...spec, sudoers: { file: spec.sudoers!.file, lines: ['isolator ALL=(root) NOPASSWD /usr/sbin/nft'] } });
      assert.deepEqual(printedLines(broken), ['isolator ALL=(root) NOPASSWD /usr/sbin/nft']);
      assert.throws(() => hostSetup({ user: 'isolator', publicKey: KEY, sudoers: ['x'] } as unknown as HostSetupInput), /sudoers/);
    });
  });

  describe('the Ansible task list', () => {
    type Task = Record<string, unknown> & { name?: string };
    /** the module a task calls (its one key with a dot) */
    const moduleOf = (t: Task) => Object.keys(t).find((k) => k.includes('.'));
    /**
     * The task list as Ansible reads it: js-yaml, with `!unsafe` (Ansible's tag: a string never
     * templated) read as the plain string it tags. Also returns what each `!unsafe` tagged.
     */
    const tasksOf = (load: (text: string) => unknown, text: string) => {
      const unsafe: string[] = [];
      for (const m of text.matchAll(/^ +(\w+): !unsafe /gm)) unsafe.push(m[1]);
      return { tasks: load(text.replace(/: !unsafe /g, ': ')) as Task[], unsafe };
    };

    it('the same steps with ansible.builtin modules only: sudo present, user when missing, ~/.ssh 0700, the key once (0600), copy with visudo validate and mode 0440', function () {
      const text = hostSetup({ user: 'isolator', table: 'node_red_isolation', features: ['isolate', 'persist'], publicKey: KEY, format: 'ansible' });
      const lines = sudoersLines({ user: 'isolator', table: 'node_red_isolation', features: ['isolate', 'persist'] });
      assert.match(text, /^ {4}validate: "\/usr\/sbin\/visudo -cf %s"$/m);
      assert.match(text, /^ {4}mode: "0440"$/m);
      assert.doesNotMatch(text, /ansible\.posix|community\./, 'no collection: ansible-core has them all');
      const load = yamlLoad();
      if (!load) this.skip();
      const { tasks, unsafe } = tasksOf(load!, text);
      assert.deepEqual(unsafe, ['line', 'content'], 'the key line and the sudoers text are never templated');
      const mods = tasks.map(moduleOf);
      assert.ok(
        mods.every((m) => m?.startsWith('ansible.builtin.')),
        mods.join(', '),
      );
      assert.ok(
        tasks.every((t) => typeof t.name === 'string' && t.name.startsWith('node-red-host-isolation: ')),
        'every task named',
      );
      const one = (mod: string, pick: (t: Task) => boolean = () => true) => {
        const found = tasks.filter((t) => moduleOf(t) === mod && pick(t));
        assert.equal(found.length, 1, `one ${mod}`);
        return { task: found[0], args: found[0][mod] as Record<string, unknown>, at: tasks.indexOf(found[0]) };
      };
      // sudo first: the account is not made on a host that cannot take its sudoers lines
      const visudo = one('ansible.builtin.stat', (t) => (t['ansible.builtin.stat'] as Record<string, unknown>).path === '/usr/sbin/visudo');
      assert.equal(visudo.at, 0);
      const look = tasks.findIndex((t) => moduleOf(t) === 'ansible.builtin.getent');
      assert.deepEqual(tasks[look]['ansible.builtin.getent'], { database: 'passwd', key: 'isolator', fail_key: false });
      const user = one('ansible.builtin.user');
      assert.ok(user.at > look && look > visudo.at);
      assert.deepEqual(user.args, { name: 'isolator', shell: '/bin/sh', create_home: true, password_lock: true });
      assert.equal(user.task.when, 'ansible_facts.getent_passwd["isolator"] is none', 'an existing account is kept as it is, as the script does');
      const dir = one('ansible.builtin.file');
      assert.deepEqual(dir.args, { path: '{{ node_red_host_isolation_setup_home }}/.ssh', state: 'directory', owner: 'isolator', group: '{{ node_red_host_isolation_setup_gid }}', mode: '0700' });
      const key = one('ansible.builtin.lineinfile');
      assert.deepEqual(key.args, { path: '{{ node_red_host_isolation_setup_home }}/.ssh/authorized_keys', line: KEY, create: true, owner: 'isolator', group: '{{ node_red_host_isolation_setup_gid }}', mode: '0600' });
      // the links are refused before anything is written through them
      const links = one('ansible.builtin.assert', (t) => /symbolic link/.test(String(t.name)));
      assert.ok(links.at < dir.at && dir.at < key.at);
      // stat's name for a link is islnk (an unknown name would be undefined, and default(false) would pass it)
      assert.deepEqual((links.args.that as string[]).filter((c) => /\.stat\.islnk \| default\(false\)\)$/.test(c)).length, 2, String(links.args.that));
      assert.ok(
        tasks.filter((t) => moduleOf(t) === 'ansible.builtin.stat').every((t) => typeof (t['ansible.builtin.stat'] as Record<string, unknown>).follow === 'boolean' || (t['ansible.builtin.stat'] as Record<string, unknown>).path === '/usr/sbin/visudo'),
      );
      const copy = one('ansible.builtin.copy');
      assert.deepEqual(copy.args, {
        dest: '/etc/sudoers.d/node-red-host-isolation-node_red_isolation-isolator',
        content: `${lines.join('\n')}\n`,
        owner: 'root',
        group: 'root',
        mode: '0440',
        validate: '/usr/sbin/visudo -cf %s',
      });
      assert.equal(copy.at, tasks.length - 1, 'the sudoers file last, as in the script');
      // the includedir check only reads
      const grep = one('ansible.builtin.command');
      assert.equal(grep.task.changed_when, false);
      assert.equal(grep.task.failed_when, false);
      assert.deepEqual((grep.args.argv as string[]).slice(-1), ['/etc/sudoers']);
      // names YAML would read as something else stay strings; a key comment with Jinja is tagged !unsafe
      const oddKey = keyLine('ssh-ed25519', "null: it's #1 {{ lookup('pipe', 'id') }}");
      const odd = tasksOf(load!, hostSetup({ user: 'no', publicKey: oddKey, format: 'ansible' })).tasks;
      assert.equal((odd.find((t) => moduleOf(t) === 'ansible.builtin.user')!['ansible.builtin.user'] as Record<string, unknown>).name, 'no');
      assert.equal((odd.find((t) => moduleOf(t) === 'ansible.builtin.lineinfile')!['ansible.builtin.lineinfile'] as Record<string, unknown>).line, oddKey);
      // root: only the key (no sudo check, no user, no sudoers)
      const root = tasksOf(load!, hostSetup({ user: 'root', publicKey: KEY, format: 'ansible' })).tasks;
      assert.deepEqual(root.map(moduleOf), [
        'ansible.builtin.getent',
        'ansible.builtin.set_fact',
        'ansible.builtin.stat',
        'ansible.builtin.stat',
        'ansible.builtin.stat',
        'ansible.builtin.assert',
        'ansible.builtin.file',
        'ansible.builtin.lineinfile',
      ]);
      assert.equal((root[6]['ansible.builtin.file'] as Record<string, unknown>).owner, 'root');
    });

    it('refuses a sudoers line a YAML block would read otherwise', () => {
      const spec = setupSpec({ user: 'isolator', publicKey: KEY, format: 'ansible' });
      assert.throws(() => renderAnsible({ ...spec, sudoers: { file: spec.sudoers!.file, lines: [' x'] } }), /YAML/);
    });
  });

  describe('bad input is refused with a message naming the field', () => {
    const ok: HostSetupInput = { user: 'isolator', table: 'node_red_isolation', features: ['isolate'], publicKey: KEY };
    const refused = (patch: Record<string, unknown>, message: RegExp) => assert.throws(() => hostSetup({ ...ok, ...patch } as HostSetupInput), message, JSON.stringify(patch));

    it('the user', () => {
      for (const user of ['Isolator', 'ALL', 'a;b', 'a b', '-x', '1abc', '', 'a'.repeat(33), "x'y", 'a.b', '$(id)']) refused({ user }, /host-setup: user: must be a local user name/);
    });
    it('the table, the features, the format, the paths', () => {
      for (const table of ['a-b', '1a', 'a b', "x'", '']) refused({ table }, /host-setup: table: /);
      refused({ features: ['guard'] }, /features: must include isolate/);
      refused({ features: [] }, /features: at least isolate/);
      refused({ features: ['isolate', 'root'] }, /features\.1: each one of isolate, persist, guard, timer/);
      refused({ format: 'yaml' }, /format: one of sh, ansible/);
      refused({ paths: { nft: 'nft' } }, /paths\.nft: an absolute path/);
      refused({ paths: { sh: '/bin/sh' } }, /paths/);
      refused({ paths: { nft: "/usr/sbin/nft'; id" } }, /paths\.nft: an absolute path/);
    });
    it('the key: one OpenSSH public key line of a known type whose blob is that type', () => {
      refused({ publicKey: '-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----' }, /publicKey: this looks like a private key/);
      refused({ publicKey: `${KEY}\n${keyLine()}` }, /publicKey: must be one key line/);
      refused({ publicKey: `restrict ${KEY}` }, /publicKey: key type "restrict"|publicKey: must be an OpenSSH public key line/);
      refused({ publicKey: `from="10.0.0.1" ${KEY}` }, /publicKey: must be an OpenSSH public key line/);
      refused({ publicKey: keyLine('ssh-dss') }, /publicKey: key type "ssh-dss" is not one of/);
      refused({ publicKey: `ssh-rsa ${KEY.split(' ')[1]}` }, /publicKey: the base64 blob is not a ssh-rsa key/);
      refused({ publicKey: 'ssh-ed25519 AAAA' }, /publicKey: the base64 blob is not a ssh-ed25519 key/);
      refused({ publicKey: 'ssh-ed25519 !!!!' }, /publicKey: must be an OpenSSH public key line/);
      refused({ publicKey: `${KEY} caf\u00e9` }, /publicKey: must be an OpenSSH public key line/);
      refused({ publicKey: `${KEY} a\u0007b` }, /publicKey: must be an OpenSSH public key line/);
      refused({ publicKey: '' }, /publicKey: /);
      // every failing field at once
      assert.throws(() => hostSetup({ user: 'A', table: '-', publicKey: 'x' }), /user: .*; table: .*; publicKey: /);
      // what is taken: trimmed, the comment optional, each listed type
      assert.equal(setupSpec({ ...ok, publicKey: `  ${KEY}  \n` }).publicKey, KEY);
      assert.equal(setupSpec({ ...ok, publicKey: KEY.split(' ').slice(0, 2).join(' ') }).publicKey, KEY.split(' ').slice(0, 2).join(' '));
      for (const type of ['ssh-rsa', 'ecdsa-sha2-nistp256', 'sk-ssh-ed25519@openssh.com']) assert.ok(setupSpec({ ...ok, publicKey: keyLine(type) }));
    });
    it('defaults: the table, the features and the format (the user is required)', () => {
      const spec = setupSpec({ user: 'nr', publicKey: KEY });
      assert.equal(spec.table, 'node_red_isolation');
      assert.deepEqual(spec.features, ['isolate']);
      assert.equal(spec.format, 'sh');
      assert.throws(() => setupSpec({ publicKey: KEY } as HostSetupInput), /host-setup: user: /);
      // the features in the generator's order, once
      assert.deepEqual(setupSpec({ user: 'nr', publicKey: KEY, features: ['timer', 'isolate', 'timer'] }).features, ['isolate', 'timer']);
    });
  });

  describe('the command', () => {
    it('prints what hostSetup renders for its arguments', () => {
      assert.equal(run(['--key', KEY]), hostSetup({ user: 'isolator', publicKey: KEY }));
      const files: Record<string, string> = { '/k.pub': `${KEY}\n` };
      const read = (f: string) => {
        if (!(f in files)) throw new Error('ENOENT');
        return files[f];
      };
      assert.equal(
        run(['--key-file', '/k.pub', '--user=nr', '--table', 't1', '--features', 'isolate,guard', '--format', 'ansible', '--path', 'ss=/usr/sbin/ss'], read),
        hostSetup({ user: 'nr', table: 't1', features: ['isolate', 'guard'], publicKey: KEY, format: 'ansible', paths: { ss: '/usr/sbin/ss' } }),
      );
      assert.throws(() => run([]), /--key or --key-file is required/);
      assert.throws(() => run(['--key-file', '/nope'], read), /--key-file \/nope: ENOENT/);
      assert.throws(() => run(['--key', KEY, '--format', 'yaml']), /--format: one of sh, ansible/);
      assert.throws(() => run(['--key', KEY, '--features', 'nope']), /nope/);
      assert.throws(() => run(['--key', KEY, '--user', 'A']), /user: must be/);
      assert.throws(() => run(['--key', KEY, '--bogus']), /unknown argument --bogus/);
    });

    it('is the package\'s bin node-red-host-isolation-host-setup, with --help', () => {
      const pkg = JSON.parse(fs.readFileSync(path.join(REPO_ROOT, 'package.json'), 'utf8')) as { bin: Record<string, string> };
      assert.equal(pkg.bin['node-red-host-isolation-host-setup'], 'dist/src/bin/host-setup.js');
      const bin = path.join(REPO_ROOT, pkg.bin['node-red-host-isolation-host-setup']);
      assert.equal(execFileSync(process.execPath, [bin, '--help'], { encoding: 'utf8' }), `${USAGE}\n`);
      assert.equal(execFileSync(process.execPath, [bin, '--key-file', '-', '--features', 'isolate,timer'], { encoding: 'utf8', input: `${KEY}\n` }), hostSetup({ user: 'isolator', features: ['isolate', 'timer'], publicKey: KEY }));
      let err = '';
      try {
        execFileSync(process.execPath, [bin, '--key', 'nope'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
      } catch (e) {
        err = String((e as { stderr: string; status: number }).stderr);
        assert.equal((e as { status: number }).status, 2);
      }
      assert.match(err, /^host-setup: publicKey: must be an OpenSSH public key line/);
    });
  });

  it("the editor's bundle (resources/host-setup.js) runs alone, without node's Buffer, and renders exactly what the library renders", () => {
    const file = path.join(REPO_ROOT, 'resources', 'host-setup.js');
    // what a browser has: a window, atob and btoa; no Buffer, no require
    const window: { hostIsolationSetup?: { hostSetup(i: HostSetupInput): string; FEATURES: string[]; DEFAULT_TABLE: string } } = {};
    vm.runInNewContext(fs.readFileSync(file, 'utf8'), { window, atob, btoa }, { filename: file });
    const S = window.hostIsolationSetup;
    assert.ok(S, 'window.hostIsolationSetup');
    assert.deepEqual([...S.FEATURES], ALL);
    assert.equal(S.DEFAULT_TABLE, setupSpec({ user: 'isolator', publicKey: KEY }).table);
    for (const type of ['ssh-ed25519', 'ssh-rsa', 'ecdsa-sha2-nistp256']) {
      const inputs: HostSetupInput[] = [
        { user: 'isolator', publicKey: keyLine(type) },
        { user: 'soc_iso', table: 'fleet_b', features: ALL, publicKey: keyLine(type, ''), format: 'ansible' },
        { user: 'root', features: ['isolate', 'guard'], publicKey: keyLine(type), format: 'sh' },
      ];
      for (const input of inputs) {
        assert.equal(S.hostSetup(input), hostSetup(input), JSON.stringify(input));
      }
    }
    // refusals: the same messages
    const refused: HostSetupInput[] = [
      { user: 'Root', publicKey: KEY },
      { user: 'isolator', publicKey: 'ssh-ed25519 AAAAA' },
      { user: 'isolator', publicKey: KEY.replace(/^ssh-ed25519/, 'ssh-rsa') },
      { user: 'isolator', table: 'a-b', publicKey: '-----BEGIN OPENSSH PRIVATE KEY-----' },
    ];
    for (const input of refused) {
      const msg = (f: () => unknown) => {
        try {
          f();
        } catch (e) {
          return (e as Error).message;
        }
        return '(rendered)';
      };
      const want = msg(() => hostSetup(input));
      assert.match(want, /^host-setup: /);
      assert.equal(msg(() => S.hostSetup(input)), want);
    }
  });
});
