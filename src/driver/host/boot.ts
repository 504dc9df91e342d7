/**
 * The boot unit's share of the host side: the ExecStartPost that re-arms the guard after a reboot.
 * The unit itself (its ExecStart loads the isolate batch before the network comes up) is rendered
 * by renderBootUnit (src/driver/ruleset.ts) and travels to the host in the apply script's `boot`
 * field (apply-input.ts), which writes, installs or removes it.
 */
import { GUARD_DIR } from './commands';
import { GUARD_REARM } from './guard';

/**
 * The boot unit's ExecStartPost for an enforced isolation (bash, as root; arguments: the table
 * and the generation it loaded; stdin: the same batch its ExecStart loaded): arms the guard again
 * after a reboot, whose /run no longer holds its files. Never fails the boot unit (`-`).
 */
const BOOT_GUARD_SCRIPT = [
  't=$1; gen=$2',
  "case \"$t\" in ''|*[!A-Za-z0-9_]*) exit 0;; esac",
  "case \"$gen\" in ''|*[!0-9]*) exit 0;; esac",
  'export PATH="$PATH:/usr/sbin:/sbin:/usr/bin:/bin"',
  '[ -d /run/systemd/system ] && command -v flock >/dev/null 2>&1 && command -v systemd-run >/dev/null 2>&1 || exit 0',
  `G=${GUARD_DIR}`,
  'mkdir -p -m 700 "$G" && chmod 700 "$G" && { [ -e "$G/$t.lock" ] || (umask 077; : >>"$G/$t.lock"); } || exit 0',
  'exec 9<"$G/$t.lock"; flock -w 10 9 || exit 0',
  GUARD_REARM,
  'rearm "$gen"',
].join('\n');

/**
 * The boot unit's line that re-arms the guard of an enforced isolation of generation `gen` (see
 * BOOT_GUARD_SCRIPT): the script travels base64 (no $, % or quote for systemd to expand).
 */
export function bootGuardExec(table: string, gen: number): string {
  if (!/^[A-Za-z0-9_]+$/.test(table) || !Number.isInteger(gen) || gen < 0) throw new Error(`bad table or generation: ${table} ${gen}`);
  const b64 = Buffer.from(BOOT_GUARD_SCRIPT, 'utf8').toString('base64');
  return `-/bin/bash -c 'eval "$$(echo ${b64} | base64 -d)"' nrhi-guard-boot ${table} ${gen}`;
}
