#!/usr/bin/env node
/**
 * `node-red-host-isolation-host-setup`: prints the whole set-up of one target's account
 * (src/driver/setup.ts): a shell script to run as root on the host, or the same as an Ansible task
 * list. It creates the account, installs the key and writes the sudoers lines checked by visudo.
 */
import * as fs from 'fs';
import { DEFAULT_TABLE } from '../driver/policy';
import { hostSetup, SETUP_FORMATS, type SetupFormat } from '../driver/setup';
import { PROGRAM_PATHS, SUDOERS_FEATURES } from '../driver/sudoers';
import { accountFlags, defaultAccount, main, readFlags } from './cli';

export const USAGE = `usage: node-red-host-isolation-host-setup (--key LINE | --key-file FILE) [--user NAME] [--table NAME]
         [--features LIST] [--format sh|ansible] [--path PROGRAM=PATH]...
  --key       the controller's public key, one authorized_keys line (TYPE BASE64 [COMMENT])
  --key-file  a file holding it (the .pub file; - reads stdin)
  --user      the target's SSH user (default: isolator); root: only the key is installed (no sudoers)
  --table     the target's table (default: ${DEFAULT_TABLE})
  --features  comma-separated, of ${SUDOERS_FEATURES.join(', ')} (default: isolate); isolate is needed
              isolate: nft and ss -K; persist: the boot unit; guard: the self-healing guard;
              timer: the release timer as a systemd unit
  --format    sh (default): a POSIX shell script to run as root on the host;
              ansible: the same steps as an Ansible task list (for a play with become: true)
  --path      where the host has a program, if not where Debian puts it (${Object.keys(PROGRAM_PATHS).join(', ')})
The script creates the account when missing (a home, /bin/sh, password locked), adds the key to its
authorized_keys once (mode 600), and writes the sudoers lines to /etc/sudoers.d/ (mode 440) only
after visudo -cf has accepted them. Running it again changes nothing.
Example: npx node-red-host-isolation-host-setup --key-file ~/.ssh/isolator.pub --features isolate,persist | ssh root@HOST sh`;

/** The set-up for these command-line arguments (throws with a message on a bad one). */
export function run(argv: readonly string[], readFile: (file: string) => string = (f) => fs.readFileSync(f === '-' ? 0 : f, 'utf8')): string {
  const a = defaultAccount();
  let format: SetupFormat = 'sh';
  let key: string | undefined;
  readFlags(argv, {
    ...accountFlags(a),
    '--key': (v) => (key = v),
    '--key-file': (file) => {
      try {
        key = readFile(file);
      } catch (e) {
        throw new Error(`--key-file ${file}: ${(e as Error).message}`, { cause: e });
      }
    },
    '--format': (f) => {
      if (!(SETUP_FORMATS as readonly string[]).includes(f)) throw new Error(`--format: one of ${SETUP_FORMATS.join(', ')}`);
      format = f as SetupFormat;
    },
  });
  if (key === undefined) throw new Error('--key or --key-file is required: the public key the controller logs in with');
  return hostSetup({ user: a.user, table: a.table, features: a.features, publicKey: key, format, paths: Object.keys(a.paths).length ? a.paths : undefined });
}

if (require.main === module) main(USAGE, run);
