/**
 * The local release: the one command a root admin at the host's console runs to end an
 * isolation without the controller (issue 23, "the console, without the controller"). It is
 * plain text built from the same constants the host programs use (commands.ts), shown in the
 * wall notice of an isolation, in status (`localRelease`) and in docs/operations.md ("Releasing
 * at the console"). Nothing is installed on the host for it: there is no file a local user could
 * replace, and it works on a host the pack never reached again.
 *
 * Its order, each step run whatever the one before it said (`;`):
 * 1. the guard's unit stopped (it would re-apply the table otherwise);
 * 2. the release timer's units stopped (a timer's batch only ever releases, or restores an
 *    isolation whose expiry element it deletes first: with the table gone it fails and changes
 *    nothing, but it is stopped all the same), then the guard's unit once more: a verify window's
 *    rollback unit that fired between the two may have re-armed it, and is stopped now;
 * 3. the guard's and the timers' files under /run removed, and the boot unit of persist and its
 *    enabling link removed (so a reboot does not bring the table back), systemd told;
 * 4. the table deleted.
 * Run twice, it does nothing more the second time (and answers that the table is not there).
 */
import { BOOT_UNIT, BOOT_WANTS, GUARD_DIR, GUARD_UNIT, TIMER_DIR, TIMER_UNIT } from './commands';

/** The local release of table `table` (validated: it goes into a shell command line as it is). */
export function localReleaseCommand(table: string): string {
  if (!/^[A-Za-z0-9_]+$/.test(table)) throw new Error(`bad table name: ${table}`);
  const t = (s: string) => s.replace(/\$t/g, table);
  return [
    `systemctl stop ${t(GUARD_UNIT)}.service 2>/dev/null`,
    `systemctl stop ${t(TIMER_UNIT)}.timer ${t(TIMER_UNIT)}.service 2>/dev/null`,
    // once more: a verify window's rollback unit, stopped just now, may have re-armed it meanwhile
    `systemctl stop ${t(GUARD_UNIT)}.service 2>/dev/null`,
    `rm -f ${GUARD_DIR}/${table}.* ${TIMER_DIR}/${table}.* ${t(BOOT_UNIT)} ${t(BOOT_WANTS)}`,
    'systemctl daemon-reload 2>/dev/null',
    `nft delete table inet ${table}`,
  ].join('; ');
}

/** The lines the wall notice of an isolation ends with: how root at the console releases it. */
export function localReleaseNotice(table: string): string {
  return `To release this host at its console without the controller, as root run:\n${localReleaseCommand(table)}`;
}
