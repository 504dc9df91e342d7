#!/usr/bin/env node
/**
 * `node-red-host-isolation-sudoers`: prints the sudoers lines a sudo target's account needs
 * (src/driver/sudoers.ts, generated from the commands the host scripts run), to put in
 * /etc/sudoers.d/ and check with `visudo -cf`.
 */
import { DEFAULT_TABLE } from '../driver/policy';
import { PROGRAM_PATHS, sudoersLines, SUDOERS_FEATURES } from '../driver/sudoers';
import { accountFlags, defaultAccount, main, readFlags } from './cli';

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
  const a = defaultAccount();
  readFlags(argv, accountFlags(a));
  return `${sudoersLines({ user: a.user, table: a.table, features: a.features, paths: a.paths }).join('\n')}\n`;
}

if (require.main === module) main(USAGE, run);
