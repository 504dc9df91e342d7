/**
 * The apply script: one constant program per privilege path that applies an isolation change,
 * (re)arms its release timer (release.ts), keeps its boot unit, takes the guard's lock and keeps
 * or ends the guard (guard.ts), and cuts open connections (sever.ts), in one exec. Its input is
 * declared in apply-input.ts; its exit codes are EXIT (commands.ts); its tagged answers
 * (`nrhi-guard on|blocked`, `nrhi-guard-ended`, `nrhi-timer`, `nrhi-severed`) are read here and in
 * sever.ts, and nowhere else.
 */
import { NftFailedError, PrivilegeError, UnsupportedError, type IsolationError } from '../errors';
import type { Target } from '../policy';
import type { Batch } from '../ruleset';
import { INSPECT_MAX_BYTES } from '../tamper';
import { encodeApplyInput, readApplyInput, type ApplyHeader } from './apply-input';
import { BOOT_UNIT, BOOT_UNIT_DIR, BOOT_WANTS, EXIT, GUARD_DIR, GUARD_LOCK_BUSY, GUARD_UNIT, NFT, NFT_EXEC, ROOT_COMMANDS, sq, SUDO_NFT } from './commands';
import { endGuard, GUARD_SCRIPT, guardRecordReader } from './guard';
import { timerLines } from './release';
import { severLines } from './sever';

/**
 * Applies an isolation change, (re)arms its auto-release, keeps its boot unit and cuts open
 * connections, in one exec. Stdin: the header APPLY_FIELDS declares (apply-input.ts), a line
 * per field, then the guard's copy and the batch to apply now.
 * - Guard (where systemd runs, see GUARD_DIR): under its lock, the new copy is staged, the batch
 *   applied, then the copy put in place and the guard started if it is not running (`nrhi-guard
 *   on`), or (`-`) its files removed and the unit stopped, before the lock is let go: the guard
 *   never sees a change of ours half made, and never re-applies an older copy. The lock is held
 *   by a root process (GUARD_SUDO.lock, a coprocess on two fifos in a private temporary
 *   directory): the script writes a line and reads it back once the lock is held, and closes its
 *   end to let it go. A lock still held after the seconds of `lockWait` (another root process holds
 *   it) ends the guard first, without it (`nrhi-guard blocked`).
 * - Timer: after a successful apply, timers of this table are cancelled, then a new one is armed as
 *   a detached process on the host, so it fires even if the controller is gone. Its batches reach it
 *   on a pipe (no argument-size limit). A stale timer is harmless: its batch first deletes the
 *   expiry element it was armed for, which a newer isolation no longer holds, so the whole
 *   transaction fails and nothing changes. The second batch (a rollback's: the previous
 *   isolation's own release) runs only if the first applied.
 * - Boot unit (persist): written BEFORE the batch is applied (to `.new`, so a failure to write
 *   changes nothing), moved into place and enabled after it; removed after a successful apply
 *   that does not persist. Exit 93: the host has no systemd; 94: it could not be written.
 * - Cutting: once the batch is in, every connected TCP/UDP socket outside the filters is destroyed
 *   (`ss -K`: the kernel's sock_diag destroy), the filters' words `accepted` / `initiated` filled
 *   in from the host's listening sockets (see severFilters); the script
 *   answers `nrhi-severed CUT LEFT WHY` with how many were cut, how many established ones outside
 *   the filters are still there when none could be cut, and why not all (ok, no-ss, refused).
 * - Notices go through `wall` as the SSH user; a host without wall just gets none.
 */
function applyScript(nft: string, priv: string): string {
  return [
    'PATH="$PATH:/usr/sbin:/sbin"',
    ...readApplyInput(),
    ...bootBefore(priv),
    ...guardLock(priv),
    ...applyNow(nft, priv),
    ...guardAfter(priv),
    ...bootAfter(priv),
    ...timerLines(nft, priv),
    ...guardBesideTimer(priv),
    ...severLines(priv),
    'if [ -n "$w" ]; then printf %s "$w" | base64 -d | wall >/dev/null 2>&1; fi',
    'exit 0',
  ].join('\n');
}

/** persist: the boot unit sent in `boot` written to `.new` before the batch (a failure changes nothing). */
function bootBefore(priv: string): string[] {
  const P = ROOT_COMMANDS.persist;
  return [
    `u="${BOOT_UNIT}"`,
    'if [ -n "$p" ] && [ "$p" != - ]; then',
    `  [ -d ${BOOT_UNIT_DIR} ] || exit ${EXIT.NO_SYSTEMD}`,
    `  printf %s "$p" | base64 -d | ${priv}${P.write} >/dev/null || exit ${EXIT.BOOT_UNIT}`,
    'fi',
  ];
}

/**
 * The guard's lock (systemd hosts), taken before the batch by a root process, and the guard's
 * copy sent after the header staged under it; says when the guard had ended past the pack.
 */
function guardLock(priv: string): string[] {
  const R = ROOT_COMMANDS.guard;
  return [
    // the guard (systemd hosts): its lock is held from here until its copy matches the table,
    // by a root process (see GUARD_SUDO.lock); what is written here is root's alone (umask 077)
    `G=${GUARD_DIR}; gk=; gs=; hd=; hp=; hr=; um=$(umask)`,
    guardRecordReader(priv),
    'hold() {',
    '  hd=$(mktemp -d 2>/dev/null) && mkfifo "$hd/i" "$hd/o" || return 1',
    `  n=0; hr=${GUARD_LOCK_BUSY}`,
    `  while [ $n -lt "$1" ] && [ "$hr" -eq ${GUARD_LOCK_BUSY} ]; do`,
    '    n=$((n + 1))',
    `    (umask 077; exec ${priv}${R.lock}) <"$hd/i" >"$hd/o" 2>/dev/null & hp=$!`,
    '    exec 7>"$hd/i" 6<"$hd/o"',
    // the holder may be gone already (busy, refused): no SIGPIPE for that
    "    trap '' PIPE; echo locked >&7 2>/dev/null; trap - PIPE",
    '    a=; IFS= read -r a <&6',
    '    [ "$a" != locked ] || return 0',
    '    exec 7>&- 6<&-; wait $hp; hr=$?; hp=',
    '  done',
    '  return 1',
    '}',
    'unhold() { exec 7>&- 6<&-; [ -z "$hp" ] || wait $hp; hp=; [ -z "$hd" ] || rm -rf "$hd"; hd=; umask "$um"; }',
    'if [ -n "$g" ] && [ -d /run/systemd/system ] && [ -x /bin/bash ] && command -v flock >/dev/null 2>&1 && command -v systemd-run >/dev/null 2>&1; then',
    '  umask 077',
    `  if [ -n "$gn" ] && [ ! -d "$G" ]; then ${priv}${R.dir} >/dev/null 2>&1; fi`,
    // a lock held for all the seconds this change may wait (by another root process: nobody else
    // can open it) ends the guard before the batch, without it: what this change does (a release
    // above all) is never undone by a guard that kept an older copy; the isolation goes on
    // unguarded, and says so. Refused (no sudo rights for it) or no directory: no guard here
    `  if [ -d "$G" ]; then if hold "$lw"; then gk=1; elif [ "$hr" = ${GUARD_LOCK_BUSY} ]; then ${endGuard(priv)}; gs=blocked; fi; fi`,
    'fi',
    'if [ -n "$gn" ]; then',
    '  gb=$(head -c "$gl")',
    `  [ -z "$gk" ] || printf '%s\\n' "$gb" | (umask 077; ${priv}${R.stage} >/dev/null 2>&1) || gk=`,
    '  gb=',
    'fi',
    // a guard that ended since the last change other than by the pack (which removes its files):
    // at a generation it was not given, given up, or stopped or killed on the host. This answer
    // says so (`nrhi-guard-ended STATE GEN`) before the change re-arms or ends it
    'if [ -n "$gk" ]; then',
    '  e0=; grec; k0=$rk; s0=$rs; q0=$rq',
    `  case "$s0" in superseded|gave-up:nft|gave-up:fought) e0=$s0;; *) case "$q0" in ''|*[!0-9]*) q0=0;; esac; [ -d "/proc/$q0" ] || systemctl is-active --quiet "${GUARD_UNIT}.service" || e0=stopped;; esac`,
    `  case "$k0" in ''|*[!0-9]*) ;; *) [ -z "$e0" ] || printf 'nrhi-guard-ended %s %s\\n' "$e0" "$k0";; esac`,
    'fi',
  ];
}

/** The listing asked (`inspect`), then the batch; on failure the staged boot unit and guard copy are dropped. */
function applyNow(nft: string, priv: string): string[] {
  const { persist: P, guard: R } = ROOT_COMMANDS;
  return [
    // the table as it is, before the batch replaces it (bounded: its dynamic sets can be large)
    `if [ -n "$li" ]; then printf '%s\\n' "$li" | ${nft} 2>/dev/null | head -c ${INSPECT_MAX_BYTES}; echo; fi`,
    `${nft}`,
    'rc=$?',
    'if [ $rc -ne 0 ]; then',
    `  if [ -n "$p" ] && [ "$p" != - ]; then ${priv}${P.discard}; fi`,
    `  if [ -n "$gk" ] && [ -n "$gn" ]; then ${priv}${R.unstage}; fi`,
    '  unhold',
    '  exit $rc',
    'fi',
  ];
}

/** Under the lock still: the guard ended (`-`), or its new copy put in place and the guard started; then the lock let go. */
function guardAfter(priv: string): string[] {
  const R = ROOT_COMMANDS.guard;
  return [
    'if [ -n "$gk" ] && [ "$g" = - ]; then',
    `  ${endGuard(priv)}`,
    'elif [ -n "$gk" ]; then',
    // the new copy, then no expected listing: the guard adopts the table as it is now, once it
    // sees this generation there
    `  ${priv}${R.commit} && printf '%s\\n' "$gn" | ${priv}${R.key} >/dev/null 2>&1 && ${priv}${R.unfp} && gs=on`,
    `  if [ -n "$gs" ] && ! systemctl is-active --quiet "${GUARD_UNIT}.service"; then`,
    `    printf '%s\\n' ${sq(GUARD_SCRIPT)} | ${priv}${R.script} >/dev/null 2>&1 &&`,
    `      ${priv}${R.start} >/dev/null 2>&1 || { gs=; ${priv}${R.unkey}; }`,
    '  fi',
    'fi',
    'unhold',
  ];
}

/** persist: the boot unit moved into place and enabled, or (`-`) removed. */
function bootAfter(priv: string): string[] {
  const P = ROOT_COMMANDS.persist;
  return [
    'if [ "$p" = - ]; then',
    `  if [ -e "$u" ] || [ -L "${BOOT_WANTS}" ]; then ${priv}${P.remove} || exit ${EXIT.BOOT_UNIT}; fi`,
    'elif [ -n "$p" ]; then',
    `  ${priv}${P.install} && ${priv}${P.enable} || exit ${EXIT.BOOT_UNIT}`,
    'fi',
  ];
}

/** No guard beside a release timer that is a process of the session; answers `nrhi-guard on|blocked`. */
function guardBesideTimer(priv: string): string[] {
  return [
    // a release timer that is a process of the session (no systemd-run for this account), new or
    // kept, knows nothing of the guard: the guard would undo its release. No guard beside it
    // (a new one: armed as a process; a kept one: found by its record. Replaced ones were killed above)
    "pt=; if [ \"$gs\" = on ]; then if [ \"$secs\" = keep ]; then tdir; tlive; [ -z \"$tl\" ] || pt=1; elif [ \"$armed\" = process ]; then pt=1; fi; fi",
    `if [ -n "$pt" ]; then ${endGuard(priv)}; gs=; fi`,
    '[ -z "$gs" ] || printf "nrhi-guard %s\\n" "$gs"',
  ];
}

/** The apply script, as root and through `sudo -n`. */
export const APPLY = {
  root: applyScript(NFT, ''),
  sudo: applyScript(SUDO_NFT, 'sudo -n '),
} as const;

/** The constant command and its stdin: the batch alone (the bare nft program), or with the apply script's header. */
export function nftInput(target: Target, batch: Batch, header?: ApplyHeader): { cmd: string; stdin: string } {
  if (!header) return { cmd: target.sudo ? NFT_EXEC.sudo : NFT_EXEC.root, stdin: JSON.stringify(batch) };
  return { cmd: target.sudo ? APPLY.sudo : APPLY.root, stdin: encodeApplyInput(target.table, batch, header) };
}

// ---- its answers ---------------------------------------------------------------------------------


/** Whether the apply script armed (or kept) a guard for the isolation it applied. */
export function parseGuardArmed(stdout: string): boolean {
  return /^nrhi-guard on$/m.test(stdout);
}

/** Whether the guard's lock stayed held for all the seconds the change could wait (`nrhi-guard blocked`): the guard was ended. */
export function parseGuardBlocked(stdout: string): boolean {
  return /^nrhi-guard blocked$/m.test(stdout);
}

/** The answer's `nrhi-guard ...` lines (what a change said of the guard), in order. */
export function guardLines(stdout: string): string[] {
  return stdout.split('\n').filter((l) => /^nrhi-guard /.test(l));
}

/** The answer without its `nrhi-guard ...` lines. */
export function withoutGuardLines(stdout: string): string[] {
  return stdout.split('\n').filter((l) => !/^nrhi-guard /.test(l));
}

/** How a guard ended other than by the pack (superseded, gave up, stopped or killed on the host). */
export type GuardEnd = 'superseded' | 'gave-up:nft' | 'gave-up:fought' | 'stopped';

/** The apply script's `nrhi-guard-ended STATE GEN`: the guard had ended before this change, other than by the pack. */
export function parseGuardEnded(stdout: string): { how: GuardEnd; gen: number } | null {
  const m = /^nrhi-guard-ended (superseded|gave-up:nft|gave-up:fought|stopped) (\d{1,9})$/m.exec(stdout);
  return m ? { how: m[1] as GuardEnd, gen: Number(m[2]) } : null;
}

const GUARD_END_WORDS: Record<GuardEnd, string> = {
  superseded: 'it stopped at a generation of the table it was not given: the table was changed past the pack, by root on the host or a tool that does not re-arm the guard',
  'gave-up:nft': 'it gave up: re-applying the isolation kept failing',
  'gave-up:fought': 'it gave up: something kept undoing the isolation',
  stopped: 'it was stopped or killed on the host, not by a release',
};

/** What to tell the operator when a change finds the guard ended other than by the pack. */
export function guardEndedWarning(end: { how: GuardEnd; gen: number }, armedNow: boolean): string {
  return `the host's guard had ended before this change (${GUARD_END_WORDS[end.how]}); it kept generation ${end.gen}${armedNow ? ', and is re-armed with this change' : '; no guard keeps the isolation now'}`;
}

/** The typed error for the apply script's own exit codes, or null when the code is nft's. */
export function scriptError(host: string, code: number | null, stderr: string): IsolationError | null {
  if (code === EXIT.NO_SYSTEMD) {
    return new UnsupportedError(host, 'keep an isolation across reboots', 'persist needs systemd (/etc/systemd/system) on the host', stderr);
  }
  if (code === EXIT.BOOT_UNIT) {
    return new PrivilegeError(
      host,
      `cannot write the boot unit in ${BOOT_UNIT_DIR} (root, or sudo rights for tee, mv, ln and rm on it, see docs/preparing-hosts.md)${stderr ? `: ${stderr}` : ''}`,
    );
  }
  if (code === EXIT.SHORT_INPUT || code === EXIT.BAD_INPUT) {
    return new NftFailedError(host, `the host's apply script refused its input (exit ${code})${stderr ? `: ${stderr}` : ''}`, code);
  }
  return null;
}
