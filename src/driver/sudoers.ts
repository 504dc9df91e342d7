/**
 * The sudoers lines a sudo (non-root) account needs, generated from the commands the host scripts
 * themselves run (host/commands.ts: NFT_CMD, SS_KILL, ROOT_COMMANDS), never written by hand: the
 * README, the nodes' help, the lab and the `node-red-host-isolation-sudoers` command all print
 * this. Each command's shell text is evaluated as the script's shell would (quotes removed, `$t`
 * the table, `$G` the guard's directory, ...) and pinned to exactly that command line: a literal
 * line with sudoers' special characters escaped, or, where the script puts a number only the host
 * knows (a pid, the seconds of a timer, a namespace's inode), a regular expression (sudo 1.9.10 or
 * later) that admits digits there and nothing else. A bare `nft` line is never among them: it
 * would let the account run `sudo nft -f /etc/shadow`, which prints the file's lines.
 */
import { BOOT_UNIT, GUARD_DIR, NFT_CMD, ROOT_COMMANDS, SS_KILL, TIMER_FILE, TIMER_TAG } from './host/commands';
import { TABLE_NAME } from './patterns';

/** What the account may do: isolate (nft, `ss -K`), and optionally persist, guard, the systemd release timer. */
export const SUDOERS_FEATURES = ['isolate', 'persist', 'guard', 'timer'] as const;
export type SudoersFeature = (typeof SUDOERS_FEATURES)[number];

/** Where sudo finds each program on Debian and Ubuntu (sudo also accepts another path to the same file). */
export const PROGRAM_PATHS: Readonly<Record<string, string>> = {
  nft: '/usr/sbin/nft',
  ss: '/usr/bin/ss',
  tee: '/usr/bin/tee',
  mv: '/usr/bin/mv',
  ln: '/usr/bin/ln',
  rm: '/usr/bin/rm',
  mkdir: '/usr/bin/mkdir',
  flock: '/usr/bin/flock',
  grep: '/usr/bin/grep',
  systemctl: '/usr/bin/systemctl',
  'systemd-run': '/usr/bin/systemd-run',
};

/** What each feature is, for the comment above its lines. */
const ABOUT: Record<SudoersFeature, string> = {
  isolate: 'nft reads the batch on stdin; ss -K cuts open connections (its filter on stdin)',
  persist: 'the boot unit. Root rights: tee writes a unit that systemd runs as root at boot',
  guard: 'the self-healing guard (systemd hosts). Root rights: tee writes the script that systemd-run runs as root',
  timer:
    'the release timer as a systemd unit, which outlives the SSH session (regular expressions: sudo 1.9.10 or later). Root rights: tee writes the script that systemd-run runs as root',
};

/** A piece of a shell word: literal text, or a value the host chooses (matched by `re`; `sample`: one). */
type Piece = { lit: string } | { re: string; sample: string };
type Word = Piece[];

const digits = (sample: string): Piece => ({ re: '[0-9]+', sample });

/**
 * The words of one simple command as the script's shell makes them: single and double quotes
 * removed, `$name`, `${name}` and `$$` replaced from `vars` (an unknown one is an error). Anything
 * else a shell would act on (a pipe, a redirection, a backslash, `$@`) is an error: a root command
 * is one command with constant words. An unquoted `*` or `?` stays as it is: the account's shell
 * cannot list the root-only directories it names, so sudo gets the pattern unexpanded.
 */
function shellWords(text: string, vars: Record<string, Word>): Word[] {
  const words: Word[] = [];
  let cur: Word | null = null;
  let quote: '' | '"' | "'" = '';
  const push = (p: Piece) => {
    cur ??= [];
    const last = cur[cur.length - 1];
    if ('lit' in p && last && 'lit' in last) last.lit += p.lit;
    else cur.push({ ...p });
  };
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quote === "'") {
      if (c === "'") quote = '';
      else push({ lit: c });
      continue;
    }
    if (c === '$') {
      let name: string;
      if (text[i + 1] === '$') name = '$';
      else if (text[i + 1] === '{') name = text.slice(i + 2, text.indexOf('}', i));
      else name = /^[A-Za-z_][A-Za-z0-9_]*/.exec(text.slice(i + 1))?.[0] ?? '';
      const v = vars[name];
      if (!/^(\$|[A-Za-z_][A-Za-z0-9_]*)$/.test(name) || !v) throw new Error(`sudoers: no value for $${name || text[i + 1]} in \`${text}\``);
      if (!quote && v.some((p) => 'lit' in p && /\s/.test(p.lit))) throw new Error(`sudoers: $${name} would be split in \`${text}\``);
      v.forEach(push);
      i += text[i + 1] === '{' ? name.length + 2 : name.length;
      cur ??= [];
      continue;
    }
    if (c === '"') {
      quote = quote ? '' : '"';
      cur ??= [];
      continue;
    }
    if (quote) {
      if (c === '\\' || c === '`') throw new Error(`sudoers: \`${c}\` in double quotes in \`${text}\``);
      push({ lit: c });
      continue;
    }
    if (c === "'") {
      quote = "'";
      cur ??= [];
    } else if (c === ' ' || c === '\t') {
      if (cur) words.push(cur);
      cur = null;
    } else if (/[;&|<>()`\\\n{}~#]/.test(c)) {
      throw new Error(`sudoers: \`${c}\` in \`${text}\`: a root command is one simple command`);
    } else push({ lit: c });
  }
  if (quote) throw new Error(`sudoers: unterminated quote in \`${text}\``);
  if (cur) words.push(cur);
  return words;
}

/** The values the scripts' shell variables take: the table, constant paths, and numbers the host picks. */
function shellVars(table: string): Record<string, Word> {
  const v: Record<string, Word> = {
    t: [{ lit: table }],
    G: [{ lit: GUARD_DIR }],
    $: [digits('4242')],
    ns: [digits('4026531840')],
    secs: [digits('30')],
  };
  const one = (text: string) => {
    const w = shellWords(`"${text}"`, v);
    if (w.length !== 1) throw new Error(`sudoers: ${text} is not one word`);
    return w[0];
  };
  v.u = one(BOOT_UNIT);
  v.f = one(TIMER_FILE);
  v.tag = one(TIMER_TAG);
  return v;
}

/** One literal argument, escaped for sudoers: `\`, `,`, `:`, `=` and the wildcards `*`, `?`, `[`, `]`. */
export function escapeArg(arg: string): string {
  // nothing else reaches a line: no space, quote, `#` or `!` to be read otherwise
  if (!/^[A-Za-z0-9_./=:,@%+*?[\]\\-]+$/.test(arg)) throw new Error(`sudoers: cannot pin the argument ${JSON.stringify(arg)}`);
  return arg.replace(/[\\,:=*?[\]]/g, (c) => `\\${c}`);
}

/** Literal text inside a POSIX extended regular expression. */
const reEscape = (s: string) => s.replace(/[.[\]()*+?{}|^$\\]/g, (c) => `\\${c}`);

export interface RootCommand {
  feature: SudoersFeature;
  /** the command as the script writes it (after `sudo -n `) */
  shell: string;
  /** the command line, with a sample for each number the host picks: `sudo -n -l ARGV` must be allowed */
  argv: string[];
  /** the sudoers Cmnd that allows exactly it */
  cmnd: string;
}

/** Every root command of these features for `table`, with the sudoers Cmnd that pins it. */
export function rootCommands(opts: { table: string; features: readonly SudoersFeature[]; paths?: Readonly<Record<string, string>> }): RootCommand[] {
  if (!TABLE_NAME.test(opts.table)) throw new Error(`sudoers: table name must be an identifier (letters, digits, _): ${JSON.stringify(opts.table)}`);
  const paths = { ...PROGRAM_PATHS, ...opts.paths };
  const vars = shellVars(opts.table);
  const shells: Record<SudoersFeature, readonly string[]> = {
    isolate: [NFT_CMD, SS_KILL.both, SS_KILL.tcp, SS_KILL.udp],
    persist: Object.values(ROOT_COMMANDS.persist),
    guard: Object.values(ROOT_COMMANDS.guard),
    timer: Object.values(ROOT_COMMANDS.timer),
  };
  const out: RootCommand[] = [];
  for (const feature of SUDOERS_FEATURES) {
    if (!opts.features.includes(feature)) continue;
    for (const shell of new Set(shells[feature])) {
      const [prog, ...args] = shellWords(shell, vars);
      const name = prog.length === 1 && 'lit' in prog[0] ? prog[0].lit : '';
      const path = paths[name];
      if (!path) throw new Error(`sudoers: no path for the program of \`${shell}\` (add it to PROGRAM_PATHS)`);
      if (!/^\/[A-Za-z0-9_./-]+$/.test(path)) throw new Error(`sudoers: ${name}'s path must be absolute: ${JSON.stringify(path)}`);
      const literal = args.every((w) => w.every((p) => 'lit' in p));
      const text = (w: Word, f: (p: Piece) => string) => w.map(f).join('');
      let cmnd: string;
      if (literal) {
        cmnd = [path, ...args.map((w) => escapeArg(text(w, (p) => ('lit' in p ? p.lit : ''))))].join(' ');
      } else {
        const re = `^${args.map((w) => text(w, (p) => ('lit' in p ? reEscape(p.lit) : p.re))).join(' ')}$`;
        // sudoers reads a regular expression as it is but for `#`; it takes at most 1024 characters
        if (re.includes('#') || re.length > 1024) throw new Error(`sudoers: cannot pin \`${shell}\` as a regular expression`);
        cmnd = `${path} ${re}`;
      }
      const argv = [path, ...args.map((w) => text(w, (p) => ('lit' in p ? p.lit : p.sample)))];
      out.push({ feature, shell, argv, cmnd });
    }
  }
  return out;
}

/** sudoers words this module does not write: keywords, and all-capitals names (aliases). */
const RESERVED_USER = /^(ALL|Defaults|[A-Z][A-Z0-9_]*)$/;

/**
 * The sudoers lines that let `user` run exactly the pack's commands as root, for `table` (the
 * target's table; `persist`, `guard` and `timer` name it): a comment per feature, then a line per
 * command. `isolate` is what every sudo target needs; the others only where the target uses them.
 */
export function sudoersLines(opts: { user: string; table: string; features: readonly SudoersFeature[]; paths?: Readonly<Record<string, string>> }): string[] {
  if (!/^[A-Za-z_][A-Za-z0-9_.-]{0,31}$/.test(opts.user) || RESERVED_USER.test(opts.user)) {
    throw new Error(`sudoers: user must be a plain user name (not a sudoers keyword or an all-capitals alias): ${JSON.stringify(opts.user)}`);
  }
  const unknown = opts.features.filter((f) => !SUDOERS_FEATURES.includes(f));
  if (unknown.length > 0) throw new Error(`sudoers: unknown feature ${unknown.join(', ')} (one of ${SUDOERS_FEATURES.join(', ')})`);
  const cmds = rootCommands(opts);
  const lines: string[] = [];
  for (const feature of SUDOERS_FEATURES) {
    const mine = cmds.filter((c) => c.feature === feature);
    if (mine.length === 0) continue;
    lines.push(`# node-red-host-isolation, ${feature}${feature === 'isolate' ? '' : ` (table ${opts.table})`}: ${ABOUT[feature]}`);
    for (const c of mine) lines.push(`${opts.user} ALL=(root) NOPASSWD: ${c.cmnd}`);
  }
  return lines;
}

/** The features a command line names (`isolate,persist`), checked. */
export function parseFeatures(text: string): SudoersFeature[] {
  const list = text.split(',').map((s) => s.trim()).filter(Boolean);
  const bad = list.filter((f) => !(SUDOERS_FEATURES as readonly string[]).includes(f));
  if (bad.length > 0 || list.length === 0) throw new Error(`features: ${bad.join(', ') || '(none)'}: each one of ${SUDOERS_FEATURES.join(', ')}`);
  return [...new Set(list)] as SudoersFeature[];
}
