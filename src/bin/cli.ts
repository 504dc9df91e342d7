/**
 * What the pack's two commands share (node-red-host-isolation-sudoers and -host-setup): reading
 * `--flag value` and `--flag=value` arguments, the flags that name an account (user, table,
 * features, program paths), and the entry point that prints the result or the usage.
 */
import { DEFAULT_TABLE } from '../driver/policy';
import { parseFeatures, PROGRAM_PATHS, type SudoersFeature } from '../driver/sudoers';

/** What to do with each flag's value. */
export type Flags = Record<string, (value: string) => void>;

/** Reads `argv` into `flags`; a flag without a value or one not in `flags` is an error. */
export function readFlags(argv: readonly string[], flags: Flags): void {
  for (let i = 0; i < argv.length; i++) {
    const eq = argv[i].startsWith('--') ? argv[i].indexOf('=') : -1;
    const [flag, inline] = eq > 0 ? [argv[i].slice(0, eq), argv[i].slice(eq + 1)] : [argv[i], undefined];
    const handle = Object.hasOwn(flags, flag) ? flags[flag] : undefined;
    if (!handle) throw new Error(`unknown argument ${argv[i]}`);
    const v = inline ?? argv[++i];
    if (v === undefined) throw new Error(`${flag} needs a value`);
    handle(v);
  }
}

/** The account a command prints for, as the flags give it. */
export interface AccountArgs {
  user: string;
  table: string;
  features: SudoersFeature[];
  paths: Record<string, string>;
}

/** The account flags (--user, --table, --features, --path), filling `into`. */
export function accountFlags(into: AccountArgs): Flags {
  return {
    '--user': (v) => (into.user = v),
    '--table': (v) => (into.table = v),
    '--features': (v) => (into.features = parseFeatures(v)),
    '--path': (v) => {
      const m = /^([a-z-]+)=(\/\S+)$/.exec(v);
      if (!m || !(m[1] in PROGRAM_PATHS)) throw new Error(`--path PROGRAM=PATH, PROGRAM one of ${Object.keys(PROGRAM_PATHS).join(', ')}`);
      into.paths[m[1]] = m[2];
    },
  };
}

/** The defaults: the account `isolator`, the default table, isolate only. */
export function defaultAccount(): AccountArgs {
  return { user: 'isolator', table: DEFAULT_TABLE, features: parseFeatures('isolate'), paths: {} };
}

/** Runs a command: --help prints the usage; an error prints its message and the usage, exit code 2. */
export function main(usage: string, run: (argv: readonly string[]) => string): void {
  const args = process.argv.slice(2);
  if (args.includes('--help') || args.includes('-h')) {
    process.stdout.write(`${usage}\n`);
    return;
  }
  try {
    process.stdout.write(run(args));
  } catch (e) {
    process.stderr.write(`${(e as Error).message}\n${usage}\n`);
    process.exitCode = 2;
  }
}
