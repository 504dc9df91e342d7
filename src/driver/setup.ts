/**
 * Enrolling a host (issue 23): the whole set-up of one target's account, generated from the pack
 * itself, for a user, a table, a feature set and the controller's public key. Two renderings of
 * the same steps:
 *
 * - `sh`: a POSIX shell script, run once as root on the host: creates the account when missing
 *   (a home, the shell /bin/sh, no password: locked), puts the key line in its authorized_keys
 *   (mode 600, owned by it; a line already there is not added again), and writes the sudoers lines
 *   of `sudoersLines` (sudoers.ts) to /etc/sudoers.d/<name> (mode 440), checked by `visudo -cf` in
 *   a private temporary directory BEFORE anything under /etc/sudoers.d is touched (a refused check
 *   changes nothing there), then moved in with one rename. Run twice, the
 *   second run changes nothing (the sudoers file is replaced only when its text differs).
 * - `ansible`: the same as an Ansible task list of ansible.builtin modules only (ansible-core:
 *   getent, user, stat and assert, file, lineinfile, copy with `validate: /usr/sbin/visudo -cf %s`).
 *
 * Every value the output embeds passes the schema below first (the driver's own patterns) and is
 * quoted for its language (single quotes for sh, JSON strings for YAML, and `!unsafe` where free
 * text reaches Ansible, so no Jinja in it is evaluated): no shell or YAML text is made of unchecked
 * input. The user `root` needs no sudoers lines: then only the key is installed.
 */
import { z } from 'zod';
import { DEFAULT_TABLE, tableNameSchema } from './policy';
import { USER_NAME } from './patterns';
import { PROGRAM_PATHS, sudoersLines, SUDOERS_FEATURES, type SudoersFeature } from './sudoers';

export const SETUP_FORMATS = ['sh', 'ansible'] as const;
export type SetupFormat = (typeof SETUP_FORMATS)[number];

/** The key types OpenSSH takes in authorized_keys today (ssh-dss is gone from OpenSSH 9.8). */
export const KEY_TYPES = [
  'ssh-ed25519',
  'ssh-rsa',
  'ecdsa-sha2-nistp256',
  'ecdsa-sha2-nistp384',
  'ecdsa-sha2-nistp521',
  'sk-ssh-ed25519@openssh.com',
  'sk-ecdsa-sha2-nistp256@openssh.com',
] as const;

/** visudo where sudo puts it (Debian, RHEL, SUSE): the Ansible tasks name it (`validate` runs no shell) */
export const VISUDO = '/usr/sbin/visudo';

/** The @includedir line /etc/sudoers needs for sudo to read /etc/sudoers.d (grep -E) */
const INCLUDEDIR_RE = '^[@#]includedir[[:space:]]+/etc/sudoers\\.d/?[[:space:]]*$';

/** The shell a new account gets: plain, fast to start (the design's "Measuring" note). */
export const SETUP_SHELL = '/bin/sh';

/** Where the sudoers lines of `user` for `table` go (a table has no `-`, so no two pairs share a name; no `.`: sudo reads it). */
export function sudoersFileName(user: string, table: string): string {
  return `/etc/sudoers.d/node-red-host-isolation-${table}-${user}`;
}

/**
 * One authorized_keys line without options: `TYPE BASE64 [COMMENT]`, the blob a real key of that
 * type (its first field names the type), the comment printable ASCII. Returned canonical (single
 * spaces, trimmed).
 */
const publicKeySchema = z
  .string()
  .max(16 * 1024, 'too long for one key line')
  .transform((s, ctx) => {
    const text = s.trim();
    const fail = (message: string) => {
      ctx.addIssue({ code: 'custom', message });
      return z.NEVER;
    };
    if (/PRIVATE KEY/.test(text)) return fail('this looks like a private key: give the public key line (the .pub file)');
    if (/[\r\n]/.test(text)) return fail('must be one key line (TYPE BASE64 [COMMENT])');
    const m = /^(\S+) ([A-Za-z0-9+/]+={0,2})(?: +([ -~]{0,256}))?$/.exec(text);
    if (!m) return fail('must be an OpenSSH public key line: TYPE BASE64 [COMMENT], without options, printable ASCII');
    const [, type, b64, comment] = m;
    if (!(KEY_TYPES as readonly string[]).includes(type)) return fail(`key type ${JSON.stringify(type.slice(0, 40))} is not one of ${KEY_TYPES.join(', ')}`);
    // atob and btoa (one byte a character), not Buffer: the editor runs this renderer in the browser too
    let blob: string;
    try {
      blob = atob(b64);
    } catch {
      return fail(`the base64 blob is not a ${type} key`);
    }
    const n = blob.length >= 4 ? ((blob.charCodeAt(0) << 24) | (blob.charCodeAt(1) << 16) | (blob.charCodeAt(2) << 8) | blob.charCodeAt(3)) >>> 0 : -1;
    if (btoa(blob) !== b64 || n !== type.length || blob.slice(4, 4 + n) !== type || blob.length < 4 + n + 16) {
      return fail(`the base64 blob is not a ${type} key`);
    }
    const c = comment?.trim();
    return c ? `${type} ${b64} ${c}` : `${type} ${b64}`;
  });

const setupSchema = z.strictObject({
  user: z
    .string()
    .regex(USER_NAME, 'must be a local user name as useradd takes it (lower case letters, digits, _ and -, at most 32, not starting with - or a digit)'),
  table: tableNameSchema.default(DEFAULT_TABLE),
  features: z
    .array(z.enum(SUDOERS_FEATURES, { message: `each one of ${SUDOERS_FEATURES.join(', ')}` }))
    .min(1, 'at least isolate')
    .default(['isolate'])
    .refine((f) => f.includes('isolate'), 'must include isolate (what every sudo target needs)'),
  publicKey: publicKeySchema,
  format: z.enum(SETUP_FORMATS, { message: `one of ${SETUP_FORMATS.join(', ')}` }).default('sh'),
  /** where the host has a program, if not where Debian puts it (sudoers.ts PROGRAM_PATHS) */
  paths: z.partialRecord(z.enum(Object.keys(PROGRAM_PATHS) as [string, ...string[]]), z.string().regex(/^\/[A-Za-z0-9_./-]{1,200}$/, 'an absolute path')).optional(),
});
export type HostSetupInput = z.input<typeof setupSchema>;

/** A checked set-up: what the renderers take. */
export interface SetupSpec {
  user: string;
  table: string;
  features: SudoersFeature[];
  publicKey: string;
  format: SetupFormat;
  /** null for root (no sudoers needed), else the file and its lines */
  sudoers: { file: string; lines: string[] } | null;
}

/** Validates the input (throws an Error naming every bad field) and derives the sudoers lines. */
export function setupSpec(input: HostSetupInput): SetupSpec {
  const r = setupSchema.safeParse(input);
  if (!r.success) {
    throw new Error(`host-setup: ${r.error.issues.map((i) => `${i.path.length ? `${i.path.join('.')}: ` : ''}${i.message}`).join('; ')}`);
  }
  const { user, table, publicKey, format } = r.data;
  // a partial record: only the programs named, each a checked string
  const paths = r.data.paths as Record<string, string> | undefined;
  const features = SUDOERS_FEATURES.filter((f) => r.data.features.includes(f));
  const sudoers = user === 'root' ? null : { file: sudoersFileName(user, table), lines: sudoersLines({ user, table, features, paths }) };
  return { user, table, features, publicKey, format, sudoers };
}

/**
 * The set-up for one target's account, as a shell script (`format: 'sh'`, the default) or an
 * Ansible task list (`'ansible'`). Throws an Error with a message on any bad input.
 */
export function hostSetup(input: HostSetupInput): string {
  const spec = setupSpec(input);
  return spec.format === 'ansible' ? renderAnsible(spec) : renderShell(spec);
}

/** A word in single quotes for a POSIX shell (a `'` inside as `'\''`). */
export function shQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

function about(spec: SetupSpec): string[] {
  return [
    `node-red-host-isolation host set-up: user ${spec.user}, table ${spec.table}, features ${spec.features.join(',')}`,
    spec.sudoers
      ? `the account gets exactly the sudoers lines of \`node-red-host-isolation-sudoers --user ${spec.user} --table ${spec.table} --features ${spec.features.join(',')}\``
      : 'root needs no sudoers lines: this only installs the key (sshd must allow root to log in with a key: PermitRootLogin prohibit-password, the default)',
  ];
}

/**
 * The shell script. Internal: `hostSetup` is the public way in; a test passes other sudoers lines
 * (a broken one) to prove that a refused check changes nothing.
 */
export function renderShell(spec: SetupSpec): string {
  const q = shQuote;
  const out = [
    '#!/bin/sh',
    ...about(spec).map((l) => `# ${l}`),
    '# Run it as root on the host; running it again changes nothing.',
    'set -eu',
    'umask 077',
    'PATH=/usr/sbin:/usr/bin:/sbin:/bin',
    `user=${q(spec.user)}`,
    `key=${q(spec.publicKey)}`,
    'say() { printf \'host-setup: %s\\n\' "$*"; }',
    'die() { printf \'host-setup: %s\\n\' "$*" >&2; exit 1; }',
    '[ "$(id -u)" = 0 ] || die "run this as root"',
  ];
  if (spec.user !== 'root') {
    out.push(
      'command -v sudo >/dev/null 2>&1 && command -v visudo >/dev/null 2>&1 || die "sudo is not installed (apt-get install sudo)"',
      '',
      '# the account: created when missing (a home, a shell, no password: locked); an existing one is kept as it is',
      'if id -u "$user" >/dev/null 2>&1; then',
      '  say "account $user exists: kept as it is"',
      'else',
      `  useradd --create-home --shell ${q(SETUP_SHELL)} -- "$user"`,
      '  usermod --lock -- "$user"',
      '  say "account $user created"',
      'fi',
    );
  }
  out.push(
    '',
    '# the key, in the account\'s authorized_keys (mode 600, owned by it), once',
    'home=$(getent passwd "$user" | cut -d: -f6)',
    'group=$(id -gn -- "$user")',
    'case "$home" in /?*) ;; *) die "$user has no home directory";; esac',
    '[ -d "$home" ] || die "the home of $user ($home) does not exist"',
    'ssh="$home/.ssh"; ak="$ssh/authorized_keys"',
    '[ ! -L "$ssh" ] && [ ! -L "$ak" ] || die "$ssh or $ak is a symbolic link: not followed as root"',
    '[ -d "$ssh" ] || mkdir -m 700 -- "$ssh"',
    'chown -- "$user:$group" "$ssh"; chmod 700 -- "$ssh"',
    '[ -e "$ak" ] || : >"$ak"',
    'chown -- "$user:$group" "$ak"; chmod 600 -- "$ak"',
    'if grep -qxF -e "$key" -- "$ak"; then',
    '  say "key already in $ak"',
    'else',
    '  if [ -s "$ak" ] && [ -n "$(tail -c 1 -- "$ak")" ]; then printf \'\\n\' >>"$ak"; fi',
    '  printf \'%s\\n\' "$key" >>"$ak"',
    '  say "key added to $ak"',
    'fi',
  );
  if (spec.sudoers) {
    const { file, lines } = spec.sudoers;
    out.push(
      '',
      '# the sudoers lines: written to a private temporary directory and checked there by visudo -cf;',
      '# a refused check stops here, before anything under /etc/sudoers.d is touched. Only then are they',
      '# copied beside the file (a name with a dot: sudo skips it) and moved in, in one rename',
      `file=${q(file)}`,
      `grep -Eq ${q(INCLUDEDIR_RE)} /etc/sudoers || say "warning: /etc/sudoers has no @includedir /etc/sudoers.d: sudo will not read $file"`,
      'work=$(mktemp -d); tmp=',
      'trap \'rm -rf -- "$work"; [ -z "$tmp" ] || rm -f -- "$tmp"\' EXIT',
      'trap \'exit 1\' HUP INT TERM',
      `printf '%s\\n' \\\n${lines.map((l) => `  ${q(l)}`).join(' \\\n')} >"$work/sudoers"`,
      'chmod 440 -- "$work/sudoers"',
      'if ! check=$(visudo -cf "$work/sudoers" 2>&1); then',
      '  printf \'%s\\n\' "$check" >&2',
      '  die "visudo refused the sudoers lines: nothing changed in /etc/sudoers.d"',
      'fi',
      'if [ -f "$file" ] && [ ! -L "$file" ] && cmp -s -- "$work/sudoers" "$file"; then',
      '  chown root:root -- "$file"; chmod 440 -- "$file"',
      '  say "$file unchanged"',
      'else',
      '  tmp=$(mktemp /etc/sudoers.d/.node-red-host-isolation.XXXXXX)',
      '  cat -- "$work/sudoers" >"$tmp"',
      '  chown root:root -- "$tmp"; chmod 440 -- "$tmp"',
      '  mv -f -- "$tmp" "$file"; tmp=',
      '  say "$file written"',
      'fi',
    );
  }
  out.push('say done', '');
  return out.join('\n');
}

/** The variables the task list sets (set_fact, register), all under one prefix so a play's own names are not touched. */
const ANSIBLE_VAR = 'node_red_host_isolation_setup';

/**
 * The Ansible task list (YAML), ansible.builtin modules only (ansible-core, nothing from a
 * collection), the same steps as the script: sudo present; the account created when missing
 * (getent, then user); its home and primary group read back (getent); ~/.ssh and authorized_keys
 * refused when they are symbolic links (stat, assert); ~/.ssh 0700 (file); the key line once in
 * authorized_keys, 0600, the account's (lineinfile, which adds a line only when no line equals it);
 * the warning about a missing @includedir (command, read only); the sudoers file 0440 root's (copy,
 * whose `validate` runs visudo -cf on the new text before it is moved into /etc/sudoers.d, and
 * which leaves a file with the same text alone). Every scalar is a JSON string, which YAML reads
 * as the same string; the values inside Jinja expressions are checked names (a user name has no
 * quote or brace).
 */
export function renderAnsible(spec: SetupSpec): string {
  const j = (s: string) => JSON.stringify(s);
  const v = (name: string) => `${ANSIBLE_VAR}_${name}`;
  const jinja = (expr: string) => j(`{{ ${expr} }}`);
  const task = (name: string) => `- name: ${j(`node-red-host-isolation: ${name}`)}`;
  if (spec.sudoers?.lines.some((l) => !/^[ -~]*$/.test(l) || /^\s|\s$/.test(l))) throw new Error('host-setup: a sudoers line YAML would read otherwise');
  const user = spec.user;
  const entry = `ansible_facts.getent_passwd[${j(user)}]`;
  const home = `{{ ${v('home')} }}`;
  const out = [
    ...about(spec).map((l) => `# ${l}`),
    '# Tasks for a play that runs as root on the host (become: true); ansible.builtin modules only (ansible-core).',
    `# They set facts named ${ANSIBLE_VAR}_*. Running them again changes nothing (changed=0).`,
  ];
  if (spec.sudoers) {
    out.push(
      task('sudo is installed'),
      '  ansible.builtin.stat:',
      `    path: ${j(VISUDO)}`,
      `  register: ${v('visudo')}`,
      task('sudo is installed (else stop before anything changes)'),
      '  ansible.builtin.assert:',
      `    that: ${j(`${v('visudo')}.stat.exists`)}`,
      `    fail_msg: ${j(`sudo is not installed (apt-get install sudo): no ${VISUDO}`)}`,
      '    quiet: true',
      task(`look up the account ${user}`),
      '  ansible.builtin.getent:',
      '    database: passwd',
      `    key: ${j(user)}`,
      '    fail_key: false',
      task(`create the account ${user} when missing (a home, a shell, no password: locked); an existing one is kept as it is`),
      '  ansible.builtin.user:',
      `    name: ${j(user)}`,
      `    shell: ${j(SETUP_SHELL)}`,
      '    create_home: true',
      '    password_lock: true',
      `  when: ${j(`${entry} is none`)}`,
    );
  }
  out.push(
    task(`the home and group of ${user}`),
    '  ansible.builtin.getent:',
    '    database: passwd',
    `    key: ${j(user)}`,
    task(`the home and group of ${user}, as facts`),
    '  ansible.builtin.set_fact:',
    // getent's fields after the name: password, uid, gid, gecos, home, shell
    `    ${v('home')}: ${jinja(`${entry}[4]`)}`,
    `    ${v('gid')}: ${jinja(`${entry}[2]`)}`,
  );
  // the home as the script's `[ -d ]` sees it (through a link); ~/.ssh and authorized_keys themselves (stat's `islnk`)
  for (const [name, path, follow] of [
    ['home_stat', home, true],
    ['ssh_stat', `${home}/.ssh`, false],
    ['ak_stat', `${home}/.ssh/authorized_keys`, false],
  ] as const) {
    out.push(
      task(`look at ${path.replace(home, '~')}${follow ? '' : ' (not following links)'}`),
      '  ansible.builtin.stat:',
      `    path: ${j(path)}`,
      `    follow: ${follow}`,
      `  register: ${v(name)}`,
    );
  }
  out.push(
    task(`the home of ${user} is a directory, and neither ~/.ssh nor its authorized_keys a symbolic link (not followed as root)`),
    '  ansible.builtin.assert:',
    '    that:',
    `      - ${j(`${v('home')} is match("/.")`)}`,
    `      - ${j(`${v('home_stat')}.stat.isdir | default(false)`)}`,
    `      - ${j(`not (${v('ssh_stat')}.stat.islnk | default(false))`)}`,
    `      - ${j(`not (${v('ak_stat')}.stat.islnk | default(false))`)}`,
    `    fail_msg: ${j(`${user} has no home directory, or ~/.ssh or ~/.ssh/authorized_keys is a symbolic link`)}`,
    '    quiet: true',
    task(`~/.ssh of ${user}: mode 0700, the account's`),
    '  ansible.builtin.file:',
    `    path: ${j(`${home}/.ssh`)}`,
    '    state: directory',
    `    owner: ${j(user)}`,
    `    group: ${j(`{{ ${v('gid')} }}`)}`,
    '    mode: "0700"',
    task(`the controller's key for ${user}, once, in authorized_keys (mode 0600, the account's)`),
    '  ansible.builtin.lineinfile:',
    `    path: ${j(`${home}/.ssh/authorized_keys`)}`,
    // !unsafe: the key's comment is the caller's text; Ansible must not read a {{ }} in it as a template
    `    line: !unsafe ${j(spec.publicKey)}`,
    '    create: true',
    `    owner: ${j(user)}`,
    `    group: ${j(`{{ ${v('gid')} }}`)}`,
    '    mode: "0600"',
  );
  if (spec.sudoers) {
    out.push(
      task('does /etc/sudoers read /etc/sudoers.d? (read only)'),
      '  ansible.builtin.command:',
      '    argv:',
      '      - grep',
      '      - -Eq',
      `      - ${j(INCLUDEDIR_RE)}`,
      '      - /etc/sudoers',
      `  register: ${v('includedir')}`,
      '  changed_when: false',
      '  failed_when: false',
      '  check_mode: false',
      task('warn when sudo would not read the file'),
      '  ansible.builtin.debug:',
      `    msg: ${j(`warning: /etc/sudoers has no @includedir /etc/sudoers.d: sudo will not read ${spec.sudoers.file}`)}`,
      `  when: ${j(`${v('includedir')}.rc != 0`)}`,
      task(`sudoers lines for ${user}, table ${spec.table} (${spec.features.join(', ')}), checked by visudo -cf before they are moved in`),
      '  ansible.builtin.copy:',
      `    dest: ${j(spec.sudoers.file)}`,
      // a literal block: every line as it is (printable ASCII, checked), indented under `content`
      '    content: !unsafe |',
      ...spec.sudoers.lines.map((l) => `      ${l}`),
      '    owner: root',
      '    group: root',
      '    mode: "0440"',
      `    validate: ${j(`${VISUDO} -cf %s`)}`,
    );
  }
  return `${out.join('\n')}\n`;
}
