#!/usr/bin/env node
/**
 * `node-red-host-isolation-sudoers`: prints the sudoers lines a sudo target's account needs
 * (src/driver/sudoers.ts, generated from the commands the host scripts run), to put in
 * /etc/sudoers.d/ and check with `visudo -cf`.
 */
import { DEFAULT_TABLE } from '../driver/policy';
import { parseFeatures, PROGRAM_PATHS, sudoersLines, SUDOERS_FEATURES } from '../driver/sudoers';

export const USAGE = `usage: node-red-host-isolation-sudoers [--user NAME] [--table NAME] [--features LIST] [--path PROGRAM=PATH]...
  --user      the target's SSH user (default: isolator)
  --table     the target's table (default: ${DEFAULT_TABLE})
  --features  comma-separated, of ${SUDOERS_FEATURES.join(', ')} (default: isolate)
              isolate: nft and ss -K, what every sudo target needs; persist: the boot unit;
              guard: the self-healing guard; timer: the release timer as a systemd unit
  --path      where the host has a program, if not where Debian puts it (${Object.entries(PROGRAM_PATHS)
    .map(([k, v]) => `${k}=${v}`)
    .join(', ')})
Prints the lines; put them in /etc/sudoers.d/NAME (mode 440) and check with visudo -cf.`;

/** The lines for these command-line arguments (throws with a message on a bad one). */
export function run(argv: readonly string[]): string {
  let user = 'isolator';
  let table = DEFAULT_TABLE;
  let features = parseFeatures('isolate');
  const paths: Record<string, string> = {};
  for (let i = 0; i < argv.length; i++) {
    const [flag, inline] = argv[i].startsWith('--') && argv[i].includes('=') ? [argv[i].slice(0, argv[i].indexOf('=')), argv[i].slice(argv[i].indexOf('=') + 1)] : [argv[i], undefined];
    const value = () => {
      const v = inline ?? argv[++i];
      if (v === undefined) throw new Error(`${flag} needs a value`);
      return v;
    };
    if (flag === '--user') user = value();
    else if (flag === '--table') table = value();
    else if (flag === '--features') features = parseFeatures(value());
    else if (flag === '--path') {
      const m = /^([a-z-]+)=(\/\S+)$/.exec(value());
      if (!m || !(m[1] in PROGRAM_PATHS)) throw new Error(`--path PROGRAM=PATH, PROGRAM one of ${Object.keys(PROGRAM_PATHS).join(', ')}`);
      paths[m[1]] = m[2];
    } else throw new Error(`unknown argument ${argv[i]}`);
  }
  return `${sudoersLines({ user, table, features, paths }).join('\n')}\n`;
}

if (require.main === module) {
  const args = process.argv.slice(2);
  if (args.includes('--help') || args.includes('-h')) {
    process.stdout.write(`${USAGE}\n`);
  } else {
    try {
      process.stdout.write(run(args));
    } catch (e) {
      process.stderr.write(`${(e as Error).message}\n${USAGE}\n`);
      process.exitCode = 2;
    }
  }
}
