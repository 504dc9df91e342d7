/**
 * What runs on the host, in one place: the constant scripts, the stdin lines they read, the exit
 * codes and the tagged lines they answer with, and the controller's reading of them. No command
 * line ever holds request data: it travels on stdin, a line per field, checked again by the script.
 */
import { NftFailedError, PrivilegeError, UnsupportedError, type IsolationError } from './errors';
import { parseAddr } from './net';
import type { Exception, Target } from './policy';
import { DYNAMIC_SET, type Batch, type ManagementEndpoint } from './ruleset';
import { OBSERVED_TOP } from './state';
import { INSPECT_MAX_BYTES } from './tamper';

/** nft's one command line (the batch on stdin): as root, and the one sudoers line nft gets. */
export const NFT_CMD = 'nft -j -f -';
export const NFT = `PATH="$PATH:/usr/sbin:/sbin" ${NFT_CMD}`;
export const SUDO_NFT = `sudo -n ${NFT_CMD}`;

/** Where the boot unit of persist lives on the host: a constant path, the table name validated. */
export const BOOT_UNIT_DIR = '/etc/systemd/system';
/** The boot unit of table `$t`, and the symlink that enables it (shell words: `$t` is the script's table). */
export const BOOT_UNIT = `${BOOT_UNIT_DIR}/node-red-isolation-$t.service`;
export const BOOT_WANTS = `${BOOT_UNIT_DIR}/sysinit.target.wants/node-red-isolation-$t.service`;

/** `ss -K` (destroy) over the sockets that match the filter on stdin, for these protocol options. */
const ssKill = (protos: string) => `ss -K -H -n ${protos} state connected -F -`;
/** The protocol options of each cut: both in one pass (the usual case), or one protocol. */
export const SS_PROTOS = { both: '-t -u', tcp: '-t', udp: '-u' } as const;
/** The exact `ss` command lines that cut connections (pinned in the sudoers lines, src/driver/sudoers.ts). */
export const SS_KILL = {
  both: ssKill(SS_PROTOS.both),
  tcp: ssKill(SS_PROTOS.tcp),
  udp: ssKill(SS_PROTOS.udp),
} as const;

/**
 * The words of a filter that the host fills in from its listening sockets (ss cannot join two
 * listings): `accepted` becomes "the socket's local address and port are a listener's" (TCP:
 * LISTEN; UDP: a bound, unconnected socket), `initiated` its negation. See severFilters.
 */
export const SEVER_ACCEPTED = 'accepted';
export const SEVER_INITIATED = 'initiated';

/**
 * Where systemd runs (/run/systemd/system), the release timer is the transient unit
 * `nrhi-release-<table>` (a .timer and its .service), armed with systemd-run: it belongs to the
 * system manager, not to the SSH session, so it fires even when logind kills the session's
 * processes (KillUserProcesses=yes) and the controller is gone. Its batches wait in a root-only
 * file under TIMER_DIR. Elsewhere it is a detached process (setsid) of the session.
 */
export const TIMER_UNIT = 'nrhi-release-$t';
export const TIMER_DIR = '/run/nrhi-release';
/** A release timer's data file, named for its arming alone (`$$`: the apply script's pid). */
export const TIMER_FILE = `${TIMER_DIR}/$t.$$`;
/** The tag of a release timer: the table AND the network namespace (`$ns`, its inode number). */
export const TIMER_TAG = 'nrhi-release:$t:$ns:';

/**
 * The guard (self-healing, systemd hosts only): the transient service `nrhi-guard-<table>` watches
 * the ruleset (`nft monitor`, and every GUARD_POLL_S seconds) and re-applies the isolation when
 * its table disappears or changes, unless a newer generation stands there. Its files, under
 * GUARD_DIR: `<table>.key` (the generation it keeps), `<table>.batch` (root-only: the full isolate
 * batch that recreates the table), `<table>.fp` (root-only: the stateless listing it expects),
 * `<table>.heal` (`COUNT LAST STATE SINCE`: what the status read returns), `<table>.pid`, and
 * `<table>.lock`: every writer (the apply script, the release unit, the guard itself) holds it
 * (flock), so the guard never acts on a half-made change nor on a copy older than the table.
 * All of them root's alone: GUARD_DIR is 0700 and its files 0600, so no other user of the host
 * can hold the lock (and so stall the guard and every change) nor read or forge a record. A
 * non-root SSH user (sudo) therefore never opens them itself: root processes do, each through
 * one pinned sudoers line (GUARD_SUDO).
 */
export const GUARD_UNIT = 'nrhi-guard-$t';
export const GUARD_DIR = '/run/nrhi-guard';
/**
 * The guard's command lines that the apply script and the status read run as root (through
 * `sudo -n` for a sudo SSH user, bare as root), written here once: the script runs these very
 * words (the program without its directory, sudo's secure_path finds it), and the README's
 * sudoers block holds them with `$t` the table (src/driver/sudoers.ts). `$t` is the table name,
 * checked by the script to [A-Za-z0-9_]+, so it needs no quotes.
 * - `lock`: the guard's lock, held by a root process while the change is made: flock waits up to
 *   1 s for it (then exits 75), and once it holds it runs `cat`, which echoes the line the script
 *   writes (the sign that the lock is held) and ends, letting the lock go, when the script closes
 *   its end. The script tries as many times as the seconds it was given (a wait derived from the
 *   time the controller has left, checked and capped on the host), so the pinned line needs no
 *   number from the request.
 * - `read`: the status read's view of the guard's record (its generation, heals, state, pid), a
 *   `FILE:LINE` each.
 * - `mkdir`: the directory, root-only.
 */
export const GUARD_SUDO = {
  mkdir: 'mkdir -p -m 700 "$G"',
  lock: 'flock -w 1 -E 75 "$G/$t.lock" cat',
  read: 'grep -s -H . "$G/$t.key" "$G/$t.heal" "$G/$t.pid"',
} as const;
/** flock's exit code when the lock stayed held for its 1 s (GUARD_SUDO.lock) */
export const GUARD_LOCK_BUSY = 75;

/** the longest the apply script waits for the guard's lock (s), whatever it is sent */
export const GUARD_LOCK_WAIT_MAX_S = 10;
/** what an apply needs on the host beside the lock wait (nft, ss, the guard's files, the answer), ms */
export const HOST_SLACK_MS = 2000;
/** the least time the controller's own rollback after a failed verify confirm gets (ms): more than any wait on the host */
export const FALLBACK_ROLLBACK_MS = GUARD_LOCK_WAIT_MAX_S * 1000 + HOST_SLACK_MS + 3000;
/** the guard waits this long for its own lock before it records `stalled` (s) */
export const GUARD_STALL_S = 3;

/** Seconds the apply script may wait for the guard's lock when its exec has `budgetMs` left: 1 to GUARD_LOCK_WAIT_MAX_S. */
export function lockWaitS(budgetMs: number): number {
  return Math.max(1, Math.min(GUARD_LOCK_WAIT_MAX_S, Math.floor((budgetMs - HOST_SLACK_MS) / 1000)));
}

/**
 * The controller's own rollback after a failed verify confirm, with `remainingMs` of the
 * operation left: its exec's time limit (at least FALLBACK_ROLLBACK_MS, past the operation's
 * deadline if need be: a rollback that gives up early leaves the host to its own timer) and the
 * lock wait it sends, which leaves it HOST_SLACK_MS and more.
 */
export function fallbackRollback(remainingMs: number): { timeoutMs: number; lockWaitS: number } {
  const timeoutMs = Math.max(FALLBACK_ROLLBACK_MS, remainingMs);
  return { timeoutMs, lockWaitS: lockWaitS(timeoutMs / 2) };
}
/** the guard's fallback check when no event came (s) */
export const GUARD_POLL_S = 5;
/** re-applies that fail in a row before the guard gives up (backing off 1, 4, 9... s between them) */
export const GUARD_MAX_FAILS = 5;
/** heals each less than GUARD_BURST_S after the last, before the guard gives up (something keeps undoing it) */
export const GUARD_MAX_BURST = 20;
export const GUARD_BURST_S = 5;

/**
 * The guard itself (bash, as root, in its transient unit; argument: the table name). Each check
 * takes the lock, reads its files again (gone: it exits), lists the table without its stateful
 * parts and its dynamic sets (they move by themselves), and: same as expected -> nothing; there,
 * with another generation -> it stops (a newer isolation: never revert it); there without an
 * expected copy yet (just armed) -> adopts it; otherwise (gone, or changed under the same
 * generation) -> re-applies the stored batch and records `COUNT LAST STATE` in `<table>.heal`.
 * Bounded: GUARD_MAX_FAILS failed re-applies in a row (with back-off) or GUARD_MAX_BURST heals in
 * quick succession and it gives up (`gave-up:nft` / `gave-up:fought`) and exits. A lock it cannot
 * take within GUARD_STALL_S (held by another root process: nobody else can open it) is recorded
 * as `stalled` with the unix time since when it waits, so status never says `ok` of a guard that
 * can act on nothing; it waits on (ending when its files go) and takes up its state again.
 */
const GUARD_SCRIPT = [
  't=$1',
  "case \"$t\" in ''|*[!A-Za-z0-9_]*) exit 2;; esac",
  'export PATH="$PATH:/usr/sbin:/sbin:/usr/bin:/bin"',
  `cd ${GUARD_DIR} || exit 0`,
  'umask 077',
  // root's alone, whoever made them (a directory of an older version was 0755, its files 0644)
  'chmod 700 . 2>/dev/null; chmod 600 -- "$t".* guard.sh 2>/dev/null',
  '[ -f "$t.key" ] || exit 0',
  'echo $$ >"$t.pid.new" && mv -f "$t.pid.new" "$t.pid"',
  'count=0; last=0; state=ok',
  'if read -r c l _ <"$t.heal" 2>/dev/null; then case "$c$l" in *[!0-9]*|"") ;; *) count=$c; last=$l;; esac; fi',
  'record() { state=$1; printf "%s %s %s %s\\n" "$count" "$last" "$1" "${2:-0}" >"$t.heal.new" && mv -f "$t.heal.new" "$t.heal"; }',
  'listing() { nft -s list table inet "$t" 2>/dev/null | sed -e "/^[[:space:]]*set owner/,/^[[:space:]]*}/d" -e "/^[[:space:]]*set obs_/,/^[[:space:]]*}/d"; }',
  'fails=0; burst=0; lastheal=0; wait=0',
  'unlock() { exec 9<&-; }',
  'check() {',
  '  wait=0',
  '  exec 9<"$t.lock" || exit 0',
  // held by another root process: nothing can be healed until it lets go, and status says so
  `  if ! flock -w ${GUARD_STALL_S} 9; then`,
  `    was=$state; record stalled $(($(date +%s) - ${GUARD_STALL_S}))`,
  '    echo "nrhi-guard: the lock of table inet $t is held by another process: stalled, healing nothing until it is let go"',
  '    until flock -w 5 9; do [ -f "$t.key" ] || exit 0; done',
  '    record "$was"; echo "nrhi-guard: the lock of table inet $t is free again: no longer stalled"',
  '  fi',
  '  { [ -f "$t.key" ] && [ -f "$t.batch" ]; } || exit 0',
  '  read -r gen _ <"$t.key"; case "$gen" in ""|*[!0-9]*) exit 0;; esac',
  '  cur=$(listing)',
  '  if [ -n "$cur" ]; then',
  '    if [ -f "$t.fp" ] && [ "$cur" = "$(cat "$t.fp")" ]; then unlock; return; fi',
  "    live=$(printf '%s\\n' \"$cur\" | sed -n '/set gen {/,/}/s/.*elements = { *\\(0x[0-9a-fA-F]*\\|[0-9]*\\) *}.*/\\1/p' | head -n 1)",
  // another generation there, though every change the pack makes re-arms this copy under the
  // lock: something else made it (root on the host, or a tool without the apply script). Never
  // revert it, nor bring this copy back later; the status read and the next change say so
  `    if [ -n "$live" ] && [ $((live)) -ne "$gen" ]; then record superseded; echo "nrhi-guard: table inet $t holds generation $((live)), which this guard was not given (it keeps $gen): changed past the pack (tampering, or a tool that does not re-arm the guard); not reverting it, stopping"; exit 0; fi`,
  '    if [ ! -f "$t.fp" ]; then printf "%s\\n" "$cur" >"$t.fp"; unlock; return; fi',
  '  fi',
  '  now=$(date +%s)',
  `  if [ $((now - lastheal)) -lt ${GUARD_BURST_S} ]; then burst=$((burst + 1)); else burst=1; fi`,
  `  if [ $burst -gt ${GUARD_MAX_BURST} ]; then record gave-up:fought; echo "nrhi-guard: something keeps undoing table inet $t: gave up"; exit 0; fi`,
  '  if nft -j -f "$t.batch" 2>"$t.err"; then',
  '    count=$((count + 1)); last=$now; lastheal=$now; fails=0',
  '    listing >"$t.fp"; record ok',
  '    echo "nrhi-guard: re-applied the isolation (table inet $t, generation $gen, heal $count)"',
  '  else',
  '    fails=$((fails + 1))',
  `    if [ $fails -ge ${GUARD_MAX_FAILS} ]; then record gave-up:nft; echo "nrhi-guard: cannot re-apply table inet $t: gave up: $(head -c 500 "$t.err")"; exit 0; fi`,
  '    record retrying; wait=$((fails * fails))',
  '  fi',
  '  unlock',
  '}',
  'record ok',
  // its watcher never outlives it, nor a restart of the watch: a stray `nft monitor` kept the
  // unit in final-sigterm (no new guard could start) until systemd killed it 90 s later
  "mp=; trap '[ -z \"$mp\" ] || kill -9 \"$mp\" 2>/dev/null' EXIT",
  'while :; do',
  // watch first, then look: a change between the two is seen either way
  '  exec 8< <(exec nft monitor 2>/dev/null); mp=$!',
  '  sleep 0.1; check',
  '  while :; do',
  '    [ $wait -eq 0 ] || { sleep "$wait"; check; continue; }',
  `    if read -r -t ${GUARD_POLL_S} -u 8 l; then`,
  // a burst of events (a whole batch) is one check, once the ruleset is quiet for 50 ms
  '      n=0; while [ $n -lt 2000 ] && read -r -t 0.05 -u 8 l; do n=$((n + 1)); done',
  '      check',
  '    else',
  '      rc=$?; check',
  '      [ $rc -gt 128 ] || break',
  '    fi',
  '  done',
  '  exec 8<&-; kill -9 "$mp" 2>/dev/null; mp=; sleep 1',
  'done',
].join('\n');

/** Quoted for a single-quoted shell word. */
const sq = (text: string) => `'${text.replace(/'/g, `'\\''`)}'`;

/**
 * As root (the boot unit, the release unit): with the lock held and `$G`, `$t` set, puts
 * generation `$1`'s copy (its batch on stdin) in place and starts the guard unless it runs.
 * `--no-block`: at boot the guard unit (default dependencies) starts once basic.target is
 * reached, while the boot unit goes on to release network-pre.target.
 */
const GUARD_REARM = [
  'rearm() {',
  '  (umask 077; cat >"$G/$t.batch.new") && mv -f "$G/$t.batch.new" "$G/$t.batch" &&',
  '    (umask 077; printf "%s\\n" "$1" >"$G/$t.key.new") && mv -f "$G/$t.key.new" "$G/$t.key" && rm -f "$G/$t.fp" || return 1',
  `  systemctl is-active --quiet "${GUARD_UNIT}.service" && return 0`,
  `  printf "%s\\n" ${sq(GUARD_SCRIPT)} >"$G/guard.sh" &&`,
  `    systemd-run --no-block --quiet --collect --unit="${GUARD_UNIT}" -p Type=simple /bin/bash "$G/guard.sh" "$t" >/dev/null 2>&1`,
  '}',
].join('\n');

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

/** The guard's files that ending it removes (the lock stays: a writer may hold it). */
const GUARD_FILES = ['key', 'batch', 'batch.new', 'fp', 'heal', 'pid', 'err'].map((x) => `"${GUARD_DIR}/$t.${x}"`).join(' ');

/**
 * Every command the apply script runs as root beside nft and `ss -K` (after `sudo -n ` for a sudo
 * target), exactly as the script writes it, by the feature that needs it. Shell words: `$t` is the
 * table, `$G` GUARD_DIR, `$u` BOOT_UNIT, `$f` TIMER_FILE, `$secs` the timer's seconds, `$tag`
 * TIMER_TAG. src/driver/sudoers.ts turns each into the sudoers line that allows exactly it, and a
 * unit test checks that every `sudo -n` command of the rendered scripts is one of these: a root
 * command written inline in a script fails it.
 */
export const ROOT_COMMANDS = {
  /** the boot unit of `persist`: written to `.new` before the batch, moved and enabled after it, or removed */
  persist: {
    write: 'tee "$u.new"',
    discard: 'rm -f "$u.new"',
    remove: `rm -f "$u" "${BOOT_WANTS}"`,
    install: 'mv -f "$u.new" "$u"',
    enable: `ln -sf "$u" "${BOOT_WANTS}"`,
  },
  /** the self-healing guard (systemd hosts): its lock, its copy of the isolation, its unit */
  guard: {
    dir: GUARD_SUDO.mkdir,
    lock: GUARD_SUDO.lock,
    read: GUARD_SUDO.read,
    stage: 'tee "$G/$t.batch.new"',
    unstage: 'rm -f "$G/$t.batch.new"',
    commit: 'mv -f "$G/$t.batch.new" "$G/$t.batch"',
    key: 'tee "$G/$t.key"',
    unfp: 'rm -f "$G/$t.fp"',
    script: 'tee "$G/guard.sh"',
    start: `systemd-run --quiet --collect --unit="${GUARD_UNIT}" -p Type=simple /bin/bash "$G/guard.sh" "$t"`,
    unkey: 'rm -f "$G/$t.key"',
    end: `rm -f ${GUARD_FILES}`,
    stop: `systemctl stop "${GUARD_UNIT}.service"`,
  },
  /** the release timer as a systemd unit (cancelled on every isolate where systemd runs; armed for a duration) */
  timer: {
    stop: `systemctl stop "${TIMER_UNIT}.timer" "${TIMER_UNIT}.service"`,
    // the account's shell cannot read the root-only TIMER_DIR: sudo gets the pattern unexpanded
    clear: `rm -f "${TIMER_DIR}/$t".*`,
    dir: `mkdir -p -m 700 ${TIMER_DIR}`,
    data: 'tee "$f"',
    script: 'tee "$f.sh"',
    arm: `systemd-run --quiet --collect --unit="${TIMER_UNIT}" --on-active="$secs" --timer-property=AccuracySec=100ms -p Type=oneshot -p TimeoutStartSec=infinity /bin/sh "$f.sh" "$f" "$tag"`,
  },
} as const;

/**
 * `grec`: the guard's record of table `$t` as root reads it (GUARD_SUDO.read, through `priv`: the
 * files are root's alone), into `rk` (its generation), `rc rl rs rz` (heals, last heal, state,
 * stalled since) and `rq` (its pid); all empty when there is none. Shared by the status read and
 * the apply script (which says when the guard ended past the pack).
 */
function guardRecordReader(priv: string): string {
  return [
    'grec() {',
    '  rk=; rc=; rl=; rs=; rz=; rq=; rr=',
    '  [ -d "$G" ] || return 0',
    `  rr=$(${priv}${GUARD_SUDO.read} 2>/dev/null </dev/null)`,
    '  while IFS= read -r rx; do case "$rx" in "$G/$t.key:"*) rk=${rx#*:};; "$G/$t.heal:"*) rx=${rx#*:}; set -f; set -- $rx; set +f; rc=$1; rl=$2; rs=$3; rz=$4;; "$G/$t.pid:"*) rq=${rx#*:};; esac; done <<EOF',
    '$rr',
    'EOF',
    '  rk=${rk%% *}; rq=${rq%% *}',
    '}',
  ].join('\n');
}

/** Exit codes of the apply script itself (nft's own are 1). */
export const EXIT = {
  /** stdin ended before the header did */
  SHORT_INPUT: 90,
  /** a header line failed the script's own check */
  BAD_INPUT: 91,
  /** persist: the host has no /etc/systemd/system */
  NO_SYSTEMD: 93,
  /** persist: the boot unit could not be written */
  BOOT_UNIT: 94,
} as const;

/**
 * Applies an isolation change, (re)arms its auto-release, keeps its boot unit and cuts open
 * connections, in one exec. Stdin, a line each:
 *   1 table name
 *   2 seconds until the timer fires (0: none; `keep`: leave the timers alone)
 *   3 the batch the timer applies (JSON)
 *   4 notice for logged-in users now, 5 notice when the timer fires (base64, empty: none)
 *   6 boot unit (base64 of its text; empty: leave it; `-`: remove it)
 *   7 `ss` filter of the TCP sockets to keep, 8 the same for UDP (empty line: cut nothing)
 *   9 seconds from the timer's batch to a second one (empty: none), 10 that batch (JSON)
 *   11 the guard once the timer's batch applied (systemd timers; a verify rollback's): empty
 *      (end it), `GEN BATCH` (keep generation GEN, BATCH its full isolate batch, JSON)
 *   12 the guard: empty (leave it), `-` (end it), `GEN LEN` (keep generation GEN: its full
 *      isolate batch, LEN bytes, follows the header and precedes the batch to apply)
 *   13 seconds the script may wait for the guard's lock (1 to GUARD_LOCK_WAIT_MAX_S: the
 *      controller derives it from the time its exec has left, see lockWaitS; capped here)
 *   14 a listing batch (JSON, empty: none) nft runs just before the batch, under the same lock:
 *      what the table held, printed first in the answer (an in-place edit is seen as it is undone)
 *   then the batch to apply now
 * - Guard (where systemd runs, see GUARD_DIR): under its lock, the new copy is staged, the batch
 *   applied, then the copy put in place and the guard started if it is not running (`nrhi-guard
 *   on`), or (`-`) its files removed and the unit stopped, before the lock is let go: the guard
 *   never sees a change of ours half made, and never re-applies an older copy. The lock is held
 *   by a root process (GUARD_SUDO.lock, a coprocess on two fifos in a private temporary
 *   directory): the script writes a line and reads it back once the lock is held, and closes its
 *   end to let it go. A lock still held after the seconds of line 13 (another root process holds
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
  const { persist: P, guard: R, timer: T } = ROOT_COMMANDS;
  /** ends the guard: its files removed, its unit stopped (`q`: with the answers silenced) */
  const endGuard = (p: string, q = true) => `${p}${R.end}${q ? ' >/dev/null 2>&1' : ''}; ${p}${R.stop} >/dev/null 2>&1`;
  // the release unit (root): under the guard's lock, its release applied (or the table already
  // gone at release time) ends the guard too, so a timed release is never undone; a stale timer
  // whose release fails leaves a newer isolation's guard alone
  const releaseGuarded = (b: string, rearm: boolean) => [
    "t=${2#nrhi-release:}; t=${t%%:*}; case \"$t\" in ''|*[!A-Za-z0-9_]*) t=;; esac; gk=",
    // a rollback that restores an enforced isolation keeps a guard even where none ran
    ...(rearm ? [`G=${GUARD_DIR}; if [ -n "$t" ] && [ -n "$rg" ] && [ ! -e "$G/$t.lock" ]; then mkdir -p -m 700 "$G" && (umask 077; : >>"$G/$t.lock"); fi`] : []),
    // a lock held past 30 s (by another root process) ends the guard first, without it: a
    // release is never undone, at worst the guard is lost
    `if [ -n "$t" ] && [ -r "${GUARD_DIR}/$t.lock" ] && command -v flock >/dev/null 2>&1; then exec 9<"${GUARD_DIR}/$t.lock"; if flock -w 30 9; then gk=1; else ${endGuard('', false)}; fi; fi`,
    `printf "%s\\n" "${b}" | ${NFT}; ok=$?`,
    `if [ -n "$gk" ] && { [ $ok -eq 0 ] || ! nft list table inet "$t" >/dev/null 2>&1; }; then`,
    // a rollback to the previous isolation re-arms the guard with that one's copy (`GEN BATCH`)
    rearm
      ? `  if [ $ok -eq 0 ] && [ -n "$rg" ] && printf "%s\\n" "\${rg#* }" | rearm "\${rg%% *}"; then :; else ${endGuard('', false)}; fi`
      : `  ${endGuard('', false)}`,
    'fi',
    'exec 9<&-',
  ].join('\n');
  const timerOf = (n: string, guarded = false) =>
    [
      `IFS= read -r s; IFS= read -r r; IFS= read -r n; IFS= read -r s2; IFS= read -r r2;${guarded ? ' IFS= read -r rg;' : ''} exec </dev/null`,
      guarded ? `G=${GUARD_DIR}\n${GUARD_REARM}\nsleep "$s"\n${releaseGuarded('$r', true)}\n[ $ok -eq 0 ] || exit 0` : `sleep "$s"; printf "%s\\n" "$r" | ${n} || exit 0`,
      'if [ -n "$n" ]; then printf %s "$n" | base64 -d | wall; fi',
      // the previous isolation's own release, after a rollback: under the lock, and it ends the guard
      guarded ? `if [ -n "$s2" ]; then sleep "$s2"; rg=; ${releaseGuarded('$r2', false)}; fi` : `if [ -n "$s2" ]; then sleep "$s2"; printf "%s\\n" "$r2" | ${n}; fi`,
    ].join('\n');
  const timer = timerOf(nft);
  // the transient unit runs as root: its nft needs no sudo; it reads its batches, then drops them
  const unitScript = ['exec <"$1"; rm -f "$1" "$0"', timerOf(NFT, true)].join('\n');
  return [
    'PATH="$PATH:/usr/sbin:/sbin"',
    'IFS= read -r t && IFS= read -r secs && IFS= read -r rel && IFS= read -r w && IFS= read -r rw && IFS= read -r p &&',
    `  IFS= read -r kt && IFS= read -r ku && IFS= read -r s2 && IFS= read -r rel2 && IFS= read -r rg && IFS= read -r g && IFS= read -r lw && IFS= read -r li || exit ${EXIT.SHORT_INPUT}`,
    `case "$t" in ''|*[!A-Za-z0-9_]*) exit ${EXIT.BAD_INPUT};; esac`,
    `case "$secs" in keep) ;; ''|*[!0-9]*) exit ${EXIT.BAD_INPUT};; esac`,
    `case "$s2" in *[!0-9]*) exit ${EXIT.BAD_INPUT};; esac`,
    `case "$w$rw" in *[!A-Za-z0-9+/=]*) exit ${EXIT.BAD_INPUT};; esac`,
    `case "$p" in -) ;; *[!A-Za-z0-9+/=]*) exit ${EXIT.BAD_INPUT};; esac`,
    // the guard the timer's first batch leaves (a rollback's: the previous isolation): `GEN BATCH`
    `case "$rg" in '') ;; [0-9]*' '?*) case "\${rg%% *}" in *[!0-9]*) exit ${EXIT.BAD_INPUT};; esac;; *) exit ${EXIT.BAD_INPUT};; esac`,
    // the guard: empty (leave it), `-` (end it), or `GEN LEN`: keep generation GEN, whose full
    // batch (LEN bytes) follows this line
    "gn=; gl=; case \"$g\" in ''|-) ;; *) gn=${g% *}; gl=${g#* };; esac",
    `if [ -n "$gn$gl" ]; then case "$gn" in ''|*[!0-9]*) exit ${EXIT.BAD_INPUT};; esac; case "$gl" in ''|*[!0-9]*) exit ${EXIT.BAD_INPUT};; esac; fi`,
    // the lock wait: whole seconds, at least one try, never more than the cap whatever was sent
    `case "$lw" in ''|*[!0-9]*|??????????*) exit ${EXIT.BAD_INPUT};; esac`,
    `[ "$lw" -ge 1 ] || lw=1; [ "$lw" -le ${GUARD_LOCK_WAIT_MAX_S} ] || lw=${GUARD_LOCK_WAIT_MAX_S}`,
    `case "$li" in ''|'{"nftables":'*) ;; *) exit ${EXIT.BAD_INPUT};; esac`,
    // an ss filter is addresses, ports, brackets and words: nothing a shell or ss could run
    `case "$kt$ku" in *[!A-Za-z0-9.:/,\\ \\(\\)\\[\\]=\\<\\>!]*) exit ${EXIT.BAD_INPUT};; esac`,
    `u="${BOOT_UNIT}"`,
    'if [ -n "$p" ] && [ "$p" != - ]; then',
    `  [ -d ${BOOT_UNIT_DIR} ] || exit ${EXIT.NO_SYSTEMD}`,
    `  printf %s "$p" | base64 -d | ${priv}${P.write} >/dev/null || exit ${EXIT.BOOT_UNIT}`,
    'fi',
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
    'if [ -n "$gk" ] && [ "$g" = - ]; then',
    `  ${endGuard(priv)}`,
    'elif [ -n "$gk" ]; then',
    // the new copy, then no expected listing: the guard adopts the table as it is now, once it
    // sees this generation there
    `  ${priv}${R.commit} && printf '%s\\n' "$gn" | ${priv}${R.key} >/dev/null 2>&1 && ${priv}${R.unfp} && gs=on`,
    `  if [ -n "$gs" ] && ! systemctl is-active --quiet "${GUARD_UNIT}.service"; then`,
    `    printf '%s\\n' '${GUARD_SCRIPT.replace(/'/g, `'\\''`)}' | ${priv}${R.script} >/dev/null 2>&1 &&`,
    `      ${priv}${R.start} >/dev/null 2>&1 || { gs=; ${priv}${R.unkey}; }`,
    '  fi',
    'fi',
    'unhold',
    'if [ "$p" = - ]; then',
    `  if [ -e "$u" ] || [ -L "${BOOT_WANTS}" ]; then ${priv}${P.remove} || exit ${EXIT.BOOT_UNIT}; fi`,
    'elif [ -n "$p" ]; then',
    `  ${priv}${P.install} && ${priv}${P.enable} || exit ${EXIT.BOOT_UNIT}`,
    'fi',
    // a timer is tagged with the table AND this network namespace: the same table name in another
    // namespace of the machine (a container, another lab host) is another host's isolation
    'ns=$(readlink /proc/self/ns/net 2>/dev/null); case "$ns" in net:?*?) ns=${ns#net:?}; ns=${ns%?};; *) ns=0;; esac',
    'case "$ns" in *[!0-9]*) ns=0;; esac',
    `tag="${TIMER_TAG}"`,
    // a timer that is a process of the session is found by its record, never by its name (any
    // local user can run a process so named: exec -a). The record, `PID START` lines (START: field
    // 22 of /proc/PID/stat, so that a recycled pid is not taken for it), lives in a directory only
    // this account (and root) can write: root's under ${TIMER_DIR}, another account's in its home,
    // else in /tmp under its uid; a record not owned by this account, or a link, is not believed
    'ptime() { sv=; pst=; read -r pst <"/proc/$1/stat" 2>/dev/null || return 0; pst=${pst##*) }; set -- $pst; [ $# -lt 20 ] || { shift 19; sv=$1; }; }',
    `tdir() { if [ -O / ]; then td=${TIMER_DIR}; elif [ -n "$HOME" ] && [ -d "$HOME" ] && [ ! -L "$HOME" ] && [ -O "$HOME" ] && [ -w "$HOME" ]; then td=$HOME/.nrhi-release; else td=/tmp/nrhi-release-$(id -u); fi; tf="$td/session.$ns.$t"; }`,
    'tlive() { tl=; tok=; [ -d "$td" ] && [ ! -L "$td" ] && [ -O "$td" ] && [ -f "$tf" ] && [ ! -L "$tf" ] && [ -O "$tf" ] || return 0; tok=1; while read -r q qs _; do case "$q$qs" in *[!0-9]*|"") continue;; esac; ptime "$q"; [ "$sv" != "$qs" ] || tl="$tl $q"; done <"$tf"; }',
    'if [ "$secs" != keep ]; then',
    // each timer is a session of its own (setsid): kill its whole process group, its sleep too
    '  tdir; tlive; for q in $tl; do kill -- "-$q" 2>/dev/null || kill "$q" 2>/dev/null; done; [ -z "$tok" ] || rm -f "$tf"',
    // under systemd the timer is a transient unit: stop it (and a release it is running) and its data
    `  if [ -d /run/systemd/system ]; then ${priv}${T.stop} >/dev/null 2>&1; ${priv}${T.clear} 2>/dev/null; fi`,
    '  armed=',
    '  if [ "$secs" -gt 0 ] && [ -d /run/systemd/system ] && command -v systemd-run >/dev/null 2>&1; then',
    // the unit's script and its batches wait in root-only files under /run, named for this arming
    // alone (a timer that escaped its cancellation never reads a newer one's batches); the unit's
    // command line holds no $ or % for systemd to expand
    `    f="${TIMER_FILE}"`,
    `    ${priv}${T.dir} 2>/dev/null && printf '%s\\n' 0 "$rel" "$rw" "$s2" "$rel2" "$rg" | ${priv}${T.data} >/dev/null 2>&1 &&`,
    `      printf '%s\\n' '${unitScript.replace(/'/g, `'\\''`)}' | ${priv}${T.script} >/dev/null 2>&1 &&`,
    `      ${priv}${T.arm} >/dev/null 2>&1 && armed=systemd`,
    '  fi',
    `  if [ "$secs" -gt 0 ] && [ -z "$armed" ]; then printf '%s\\n' "$secs" "$rel" "$rw" "$s2" "$rel2" | setsid sh -c '${timer.replace(/'/g, `'\\''`)}' "$tag" >/dev/null 2>&1 & tp=$!; armed=process; fi`,
    // its record: the pid of the session leader (setsid in a job without job control does not
    // fork) and its start time
    '  if [ "$armed" = process ]; then ptime "$tp"; [ -z "$sv" ] || (umask 077; mkdir -p "$td" 2>/dev/null; [ -d "$td" ] && [ ! -L "$td" ] && [ -O "$td" ] && printf "%s %s\\n" "$tp" "$sv" >"$tf") 2>/dev/null; fi',
    '  [ -z "$armed" ] || printf "nrhi-timer %s\\n" "$armed"',
    'fi',
    // a release timer that is a process of the session (no systemd-run for this account), new or
    // kept, knows nothing of the guard: the guard would undo its release. No guard beside it
    // (a new one: armed as a process; a kept one: found by its record. Replaced ones were killed above)
    "pt=; if [ \"$gs\" = on ]; then if [ \"$secs\" = keep ]; then tdir; tlive; [ -z \"$tl\" ] || pt=1; elif [ \"$armed\" = process ]; then pt=1; fi; fi",
    `if [ -n "$pt" ]; then ${endGuard(priv)}; gs=; fi`,
    '[ -z "$gs" ] || printf "nrhi-guard %s\\n" "$gs"',
    // first one listing, without privilege, of both protocols: anything connected beyond loopback
    // and the management channel? (the words `accepted` and `initiated` read as false: every
    // filter keeps at least that). Nothing, the usual case: one process is all it costs. Else, per
    // filter (one pass for both protocols when neither names a direction, one each otherwise: their
    // listeners differ), the words filled in from the listening sockets, then what is outside it is
    // listed, cut (ss -K), and, when none could be cut, what is left established is counted. The
    // filter's terms go a line each (ss refuses a filter line over 1 KiB), unglobbed (brackets)
    'cut=0; left=0; why=ok',
    'lines() { n=0; while IFS= read -r l; do [ -n "$l" ] && n=$((n + 1)); done; }',
    `fill() { fv=$1; case "$fv" in *${SEVER_ACCEPTED}*) fv="\${fv%%${SEVER_ACCEPTED}*}$2\${fv#*${SEVER_ACCEPTED}}";; esac; case "$fv" in *${SEVER_INITIATED}*) fv="\${fv%%${SEVER_INITIATED}*}$3\${fv#*${SEVER_INITIATED}}";; esac; }`,
    // $1 the filter, $2 ss's protocol options (-t, -u or both), $3 the state
    `listed() { o=$(set -f; p=$2; st=$3; IFS=,; set -- $1; IFS=' '; printf '%s\\n' "$@" | ss -H -n $p state $st -F - 2>/dev/null); lines <<EOF`,
    '$o',
    'EOF',
    '}',
    // the local address and port of each listening socket of one protocol ($1: -t or -u), as an ss
    // condition in ls (none: a condition no connected socket meets); scope and device suffixes go
    "listeners() {",
    '  ls=; o=$(ss -H -n -l "$1" 2>/dev/null)',
    '  while read -r _ _ _ la _; do',
    '    lp=${la##*:}; lh=${la%:*}',
    "    case \"$lp\" in ''|*[!0-9]*) continue;; esac",
    "    case \"$lh\" in '['*']') lh=${lh#?}; lh=${lh%?};; esac",
    '    lh=${lh%%%*}',
    "    case \"$lh\" in '*') lc=\"sport = :$lp\";; 0.0.0.0) lc=\"( src 0.0.0.0/0 and sport = :$lp )\";; ::) lc=\"( src ::/0 and sport = :$lp )\";;",
    "      ''|*[!0-9A-Fa-f.:]*) continue;; *:*) lc=\"( src [$lh] and sport = :$lp )\";; *) lc=\"( src $lh and sport = :$lp )\";; esac",
    '    case " ,or $ls ,or " in *" ,or $lc ,or "*) ;; *) if [ -z "$ls" ]; then ls=$lc; else ls="$ls ,or $lc"; fi;; esac',
    '  done <<EOF',
    '$o',
    'EOF',
    "  ls=${ls:-sport = :0}",
    '}',
    'cut1() {',
    '  listed "$1" "$2" connected',
    '  [ $n -gt 0 ] || return 0',
    `  o=$(set -f; p=$2; IFS=,; set -- $1; IFS=' '; printf '%s\\n' "$@" | ${priv}${ssKill('$p')} 2>/dev/null) || why=refused`,
    '  lines <<EOF',
    '$o',
    'EOF',
    '  cut=$((cut + n))',
    '  [ $n -eq 0 ] || return 0',
    // nothing cut though something was there: what is left established (time-wait is not a connection)
    '  listed "$1" "$2" established',
    '  left=$((left + n))',
    '}',
    'sever() {',
    '  [ -n "$1" ] || return 0',
    `  case "$1" in *${SEVER_ACCEPTED}*|*${SEVER_INITIATED}*) ;; *) cut1 "$1" "$2"; return 0;; esac`,
    '  for q in $2; do listeners "$q"; fill "$1" "( $ls )" "! ( $ls )"; cut1 "$fv" "$q"; done',
    '}',
    'if [ -n "$kt$ku" ]; then',
    '  if command -v ss >/dev/null 2>&1; then',
    '    pr=; [ -z "$kt" ] || pr=-t; [ -z "$ku" ] || pr="$pr -u"',
    "    fill \"${kt:-$ku}\" 'sport = :0' 'sport = :0'; listed \"$fv\" \"$pr\" connected",
    '    if [ $n -gt 0 ]; then if [ "$kt" = "$ku" ]; then sever "$kt" "-t -u"; else sever "$kt" -t; sever "$ku" -u; fi; fi',
    '  else why=no-ss; fi',
    '  printf "nrhi-severed %s %s %s\\n" "$cut" "$left" "$why"',
    'fi',
    'if [ -n "$w" ]; then printf %s "$w" | base64 -d | wall >/dev/null 2>&1; fi',
    'exit 0',
  ].join('\n');
}

/**
 * The state read's filter (awk, on the host): nft's one-line JSON of the table, already split by
 * sed before each top-level object and each set element, comes back as the same JSON document
 * without the elements of the dynamic sets (DYNAMIC_SET: filled from the packet path, so as large
 * as the host's users make them), then `nrhi-dynset NAME COUNT SIZE` for each of them and the
 * OBSERVED_TOP observed flows with the most packets, `nrhi-flow PACKETS BYTES DIR FAM ADDR PROTO
 * PORT` (sort | head: bounded in output; in CPU by the sets' caps). Everything else passes as
 * nft printed it. Exits with nft's code (its `nrhi-rc` line). Host output is checked again by the
 * controller (state.ts, parseStateRead).
 */
const STATE_FILTER = String.raw`BEGIN { ORS = ""; rc = 1; cur = ""; dyn = ""; items = 0; nd = 0; flows = 0; first = 1; raw = 0
  top = "sort -k2,2nr -k3,3nr | head -n ${OBSERVED_TOP}" }
function num(s, key,   p, v) { p = index(s, key); if (!p) return 0; v = substr(s, p + length(key)); if (match(v, /^[0-9]+/)) return substr(v, 1, RLENGTH); return 0 }
function str(s, key,   p, v) { p = index(s, key); if (!p) return ""; v = substr(s, p + length(key)); p = index(v, "\""); return p ? substr(v, 1, p - 1) : "" }
function flush(   s, sep) {
  if (cur == "") return
  s = cur; cur = ""
  sub(/[ \t\r]+$/, "", s); sub(/,$/, "", s); sub(/[}][}][]][}]$/, "}}", s)
  if (s == "") return
  sep = items++ ? ", " : "{\"nftables\": ["
  print sep s
}
function element(s,   p, v, a, m, port, dir, fam) {
  count[dyn]++
  if (dyn !~ /^obs_/) return
  p = index(s, "\"concat\": ["); if (!p) return
  v = substr(s, p + 11); p = index(v, "]"); if (!p) return
  v = substr(v, 1, p - 1); gsub(/"/, "", v); m = split(v, a, ", ")
  if (m < 2 || m > 3 || length(a[1]) > 45 || a[1] !~ /^[0-9a-fA-F.:]+$/ || length(a[2]) > 24 || a[2] !~ /^[a-z0-9-]+$/) return
  port = "-"; if (m == 3) { if (length(a[3]) > 5 || a[3] !~ /^[0-9]+$/) return; port = a[3] }
  dir = substr(dyn, 5); fam = dir; sub(/[46].*$/, "", dir); sub(/^(in|out)/, "", fam); fam = substr(fam, 1, 1)
  flows++
  print "nrhi-flow " num(s, "\"packets\": ") " " num(s, "\"bytes\": ") " " dir " " fam " " a[1] " " a[2] " " port "\n" | top
}
/^nrhi-rc [0-9]+$/ { rc = $2; next }
/^[ \t\r]*$/ { next }
{
  line = $0
  if (first) { first = 0; if (!sub(/^[{]"nftables": [[]/, "", line)) raw = 1 }
  if (raw) { print line "\n"; next }
  if (line ~ /^[{]"[a-z ]+": [{]"family": /) {
    flush(); cur = line; dyn = ""
    if (line ~ /^[{]"set": [{]"family": "inet", /) {
      name = str(line, "\"name\": \""); tb = str(line, "\"table\": \"")
      if (tb == t && name ~ ${DYNAMIC_SET.source.replace(/^/, '/') + '/'} && !(name in count)) { dyn = name; count[name] = 0; size[name] = num(line, "\"size\": "); names[++nd] = name; sub(/, "elem": [[]$/, "}}", cur) }
    }
  } else if (dyn != "") element(line)
  else cur = cur line
}
END {
  flush(); if (items) print "]}\n"
  for (i = 1; i <= nd; i++) print "nrhi-dynset " names[i] " " count[names[i]] " " size[names[i]] "\n"
  fflush(); if (flows) close(top)
  exit rc
}`;

/**
 * The state read (status, and the read a change falls back to): the guard's record, when one is
 * armed for the table named on the first stdin line (`nrhi-guard GEN COUNT LAST STATE ALIVE SINCE`,
 * SINCE the unix time a `stalled` guard has waited for its lock since, else 0; the record is
 * root's alone: read through GUARD_SUDO.read), then the listing batch (the rest) to nft, its answer through STATE_FILTER: what comes back is
 * bounded whatever the host's users send. A host without sed or awk gets nft's answer as it is
 * (the dynamic sets' caps bound it).
 */
function statusScript(nft: string, priv: string): string {
  return [
    'PATH="$PATH:/usr/sbin:/sbin:/usr/bin:/bin"',
    `IFS= read -r t || exit ${EXIT.SHORT_INPUT}`,
    `case "$t" in ''|*[!A-Za-z0-9_]*) exit ${EXIT.BAD_INPUT};; esac`,
    `G=${GUARD_DIR}`,
    guardRecordReader(priv),
    'grec',
    'if [ -n "$rk" ]; then',
    '  a=0',
    // its pid where it wrote one (no process here costs nothing); the system manager where not yet
    "  case \"$rq\" in ''|*[!0-9]*) ! systemctl is-active --quiet \"nrhi-guard-$t.service\" || a=1;; *) [ ! -d \"/proc/$rq\" ] || a=1;; esac",
    '  printf "nrhi-guard %s %s %s %s %s %s\\n" "${rk:-0}" "${rc:-0}" "${rl:-0}" "${rs:-starting}" "$a" "${rz:-0}"',
    'fi 2>/dev/null',
    `for c in sed awk sort head; do command -v $c >/dev/null 2>&1 || exec ${nft}; done`,
    `{ ${nft}; r=$?; printf '\\nnrhi-rc %s\\n' "$r"; } |`,
    `  LC_ALL=C sed -E -e 's/[{]"(table|chain|set|map|rule|counter|quota|limit|element|flowtable|secmark|synproxy|ct helper|ct timeout|ct expectation)": [{]"family": /\\n&/g' -e 's/[{]"elem": [{]/\\n&/g' |`,
    `  LC_ALL=C awk -v t="$t" '${STATE_FILTER}'`,
  ].join('\n');
}

/** The only commands ever run on a host. None contains anything from a request: data goes on stdin. */
export const COMMANDS = {
  nft: `${NFT.replace(' nft', ' exec nft')}`,
  sudoNft: `exec ${SUDO_NFT}`,
  apply: applyScript(NFT, ''),
  sudoApply: applyScript(SUDO_NFT, 'sudo -n '),
  whoami: 'printf "%s\\n" "$SSH_CONNECTION"',
  status: statusScript('nft -j -f -', ''),
  sudoStatus: statusScript(SUDO_NFT, 'sudo -n '),
} as const;

/** Auto-release to (re)arm with an isolate, or only to cancel (seconds 0). */
export interface Timer {
  /** seconds until release (0: none), or `keep`: leave the host's timers as they are */
  seconds: number | 'keep';
  release: Batch | null;
  /** once `release` applied, wait this many more seconds and apply `then.batch` (a rollback re-arms the previous release) */
  then?: { seconds: number; batch: Batch };
  /** persist: the boot unit's text to install, `-` to remove it, absent to leave it as it is */
  boot?: string;
  /** told to logged-in users (wall) once the change is in, and when the timer releases */
  notice?: string;
  releaseNotice?: string;
  /** cut every open connection these filters do not keep, once the batch is in */
  sever?: SeverFilters;
  /**
   * the guard (systemd hosts): keep generation `gen` by re-applying `batch` (the full isolate
   * batch) whenever the table goes or changes; null: end it; absent: leave it as it is
   */
  guard?: { gen: number; batch: Batch } | null;
  /**
   * the guard once the timer's first batch applied (systemd timers): a verify rollback that
   * restores an enforced isolation keeps generation `gen` with `batch` (its full isolate batch);
   * absent or null: the release ends the guard
   */
  rearm?: { gen: number; batch: Batch } | null;
  /**
   * seconds the host may wait for the guard's lock (see lockWaitS: derived from the time the
   * exec has left); absent: GUARD_LOCK_WAIT_MAX_S
   */
  lockWaitS?: number;
  /** `list` commands nft runs just before the batch: their output comes first in the answer */
  inspect?: Batch;
}

/** The constant command and its stdin: the batch alone, or with the apply script's header. */
export function nftInput(target: Target, batch: Batch, timer?: Timer): { cmd: string; stdin: string } {
  if (!timer) return { cmd: target.sudo ? COMMANDS.sudoNft : COMMANDS.nft, stdin: JSON.stringify(batch) };
  return {
    cmd: target.sudo ? COMMANDS.sudoApply : COMMANDS.apply,
    stdin: [
      target.table,
      timer.seconds,
      JSON.stringify(timer.release ?? {}),
      Buffer.from(timer.notice ?? '', 'utf8').toString('base64'),
      Buffer.from(timer.releaseNotice ?? '', 'utf8').toString('base64'),
      timer.boot === undefined || timer.boot === '-' ? (timer.boot ?? '') : Buffer.from(timer.boot, 'utf8').toString('base64'),
      timer.sever?.tcp ?? '',
      timer.sever?.udp ?? '',
      timer.then ? String(Math.max(0, Math.ceil(timer.then.seconds))) : '',
      timer.then ? JSON.stringify(timer.then.batch) : '',
      timer.rearm ? `${timer.rearm.gen} ${JSON.stringify(timer.rearm.batch)}` : '',
      guardLine(timer.guard),
      String(Math.max(1, Math.min(GUARD_LOCK_WAIT_MAX_S, Math.floor(timer.lockWaitS ?? GUARD_LOCK_WAIT_MAX_S)))),
      timer.inspect ? JSON.stringify(timer.inspect) : '',
    ].join('\n') + '\n' + (timer.guard ? JSON.stringify(timer.guard.batch) : '') + JSON.stringify(batch),
  };
}

function guardLine(guard: Timer['guard']): string {
  if (guard === undefined) return '';
  if (guard === null) return '-';
  return `${guard.gen} ${Buffer.byteLength(JSON.stringify(guard.batch), 'utf8')}`;
}

/** The status read's command and stdin: the table name, then the listing batch. */
export function statusInput(target: Target, batch: Batch): { cmd: string; stdin: string } {
  return { cmd: target.sudo ? COMMANDS.sudoStatus : COMMANDS.status, stdin: `${target.table}\n${JSON.stringify(batch)}` };
}

/** What the status read said about the guard (null: none armed for this table). */
export interface GuardReport {
  gen: number;
  count: number;
  /** unix seconds of the last heal, 0: never */
  last: number;
  state: 'ok' | 'retrying' | 'starting' | 'superseded' | 'stalled' | 'gave-up:nft' | 'gave-up:fought';
  alive: boolean;
  /** stalled: unix seconds since when its lock is held by another process (it heals nothing meanwhile) */
  since?: number;
}

/** Splits the status read's answer into the guard's line and nft's JSON. */
export function parseGuard(stdout: string): { guard: GuardReport | null; json: string } {
  const m = /^nrhi-guard (\d{1,9}) (\d{1,9}) (\d{1,12}) (ok|retrying|starting|superseded|stalled|gave-up:nft|gave-up:fought) ([01])(?: (\d{1,12}))?\n/.exec(stdout);
  const json = stdout.replace(/^nrhi-guard [^\n]*\n/, '');
  if (!m) return { guard: null, json };
  const state = m[4] as GuardReport['state'];
  return { guard: { gen: Number(m[1]), count: Number(m[2]), last: Number(m[3]), state, alive: m[5] === '1', ...(state === 'stalled' ? { since: Number(m[6] ?? 0) } : {}) }, json };
}

/** Whether the apply script armed (or kept) a guard for the isolation it applied. */
export function parseGuardArmed(stdout: string): boolean {
  return /^nrhi-guard on$/m.test(stdout);
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
      `cannot write the boot unit in ${BOOT_UNIT_DIR} (root, or sudo rights for tee, mv, ln and rm on it, see the README)${stderr ? `: ${stderr}` : ''}`,
    );
  }
  if (code === EXIT.SHORT_INPUT || code === EXIT.BAD_INPUT) {
    return new NftFailedError(host, `the host's apply script refused its input (exit ${code})${stderr ? `: ${stderr}` : ''}`, code);
  }
  return null;
}

// ---- cutting open connections ------------------------------------------------------------------

/**
 * `ss` filters (ss(8) syntax) of the TCP and UDP sockets to cut (`! ( what is kept )`), with the
 * words SEVER_ACCEPTED / SEVER_INITIATED that the host fills in; empty: cut none of that protocol.
 */
export interface SeverFilters {
  tcp: string;
  udp: string;
}

/** What the host said about the connections it cut. */
export interface SeverReport {
  /** sockets destroyed */
  cut: number;
  /** established sockets outside the filters still there afterwards */
  left: number;
  why: 'ok' | 'no-ss' | 'refused';
}

const LOOPBACK = ['dst 127.0.0.0/8', 'dst [::1]', 'dst ::ffff:127.0.0.0/104'];

/** ss's address condition: v4 as is (and as a v4-mapped v6 socket sees it), v6 bracketed or as a prefix. */
function ssAddr(addr: string): string {
  const p = parseAddr(addr);
  if (!p) throw new Error(`not an address: ${addr}`);
  const [base, len] = p.text.split('/');
  if (p.family === 4) {
    const plen = len === undefined ? 32 : Number(len);
    return `( dst ${base}/${plen} or dst ::ffff:${base}/${96 + plen} )`;
  }
  return len === undefined ? `dst [${base}]` : `dst ${base}/${len}`;
}

function ssPort(field: 'sport' | 'dport', port: number | string): string {
  if (typeof port === 'number') return `${field} = :${port}`;
  const [lo, hi] = port.split('-');
  return `( ${field} >= :${lo} and ${field} <= :${hi} )`;
}

/**
 * The sockets an isolation keeps, per protocol, as nft lets their packets through (ruleset.ts: an
 * exception passes its flow in the original direction it names, and that flow's replies):
 * - loopback (the peer is 127.0.0.0/8 or ::1);
 * - the management channel: the peer is a management address and our local port the sshd port
 *   (nft matches it statelessly, both ways: the same sockets);
 * - an inbound exception (peer P may open a flow to our port L): the peer is P (when named), our
 *   local port is L (when named), AND the socket is one the peer opened to us: its local address
 *   and port are a listening socket's (an accepted connection). A reverse shell from local port L
 *   (bound to an address the service does not listen on, or a port no service listens on), or one
 *   we opened to P, is cut;
 * - an outbound exception (we may open a flow to P's port R): the peer is P, the PEER's port is R,
 *   AND the socket is one we opened: its local address and port are no listener's. A connection
 *   whose LOCAL port is R, or one that P opened to us (from its port R, or any), is cut.
 * ss sees no conntrack direction; "accepted" stands for it. The one socket it misreads is bound
 * to a listener's very address and port beside it (SO_REUSEPORT, only by the listener's own user,
 * or root, who can remove the table anyway); a connection whose listener has closed since counts
 * as ours, and is cut unless an outbound exception names it.
 * The protocol's filter is empty (nothing cut) only when exceptions of both directions keep the
 * whole protocol (no address, no port). Service and user exceptions are not socket filters: their
 * connections are cut once and open again through their exception; ICMP has no sockets to keep.
 */
export function severFilters(management: readonly ManagementEndpoint[], exceptions: readonly Exception[]): SeverFilters {
  const filter = (proto: 'tcp' | 'udp'): string => {
    // the management channel in both filters: one listing of both protocols first (the usual
    // case: nothing else connected) needs the same loopback-and-management part in each
    const keep = [...LOOPBACK];
    for (const m of management) keep.push(`( ${ssAddr(m.addr)} and sport = :${m.port} )`);
    const dirs = { in: { terms: [] as string[], whole: false }, out: { terms: [] as string[], whole: false } };
    for (const e of exceptions) {
      if (e.uid !== undefined || e.unit !== undefined || e.cgroup !== undefined) continue;
      if (e.proto !== 'any' && e.proto !== proto) continue;
      const terms: string[] = [];
      if (e.addr !== undefined) terms.push(ssAddr(e.addr));
      // inbound: the port is ours (local); outbound: the peer's
      if (e.port !== undefined) terms.push(ssPort(e.direction === 'in' ? 'sport' : 'dport', e.port));
      const d = dirs[e.direction];
      if (terms.length === 0) d.whole = true;
      else d.terms.push(terms.length === 1 ? terms[0] : `( ${terms.join(' and ')} )`);
    }
    if (dirs.in.whole && dirs.out.whole) return '';
    for (const [dir, word] of [['in', SEVER_ACCEPTED], ['out', SEVER_INITIATED]] as const) {
      const d = dirs[dir];
      const terms = [...new Set(d.terms)];
      if (d.whole) keep.push(word);
      else if (terms.length > 0) keep.push(`( ${word} and ( ${terms.join(' ,or ')} ) )`);
    }
    // `,` ends a line of the filter file the script hands to ss (which refuses lines over 1 KiB)
    return `! ( ${[...new Set(keep)].join(' ,or ')} )`;
  };
  return { tcp: filter('tcp'), udp: filter('udp') };
}

/** The apply script's `nrhi-severed` line, or null when it cut nothing (not asked, or an old script). */
export function parseSevered(stdout: string): SeverReport | null {
  const m = /^nrhi-severed (\d{1,9}) (\d{1,9}) (ok|no-ss|refused)$/m.exec(stdout);
  return m ? { cut: Number(m[1]), left: Number(m[2]), why: m[3] as SeverReport['why'] } : null;
}

/** What to tell the operator about a cut that was not complete (null: it was). */
export function severWarning(r: SeverReport): string | null {
  if (r.why === 'no-ss') return 'open connections were NOT cut: the host has no `ss` (iproute2); they are frozen by the drop rules but resume when the isolation ends';
  if (r.why === 'refused') return `open connections were NOT all cut: running \`${SS_KILL.both}\` was refused (sudo rule missing?); ${r.left} established connection(s) outside the exceptions remain, frozen`;
  if (r.left > 0) return `${r.left} established connection(s) outside the exceptions could not be cut (the kernel needs CONFIG_INET_DIAG_DESTROY); they are frozen by the drop rules but resume when the isolation ends`;
  return null;
}
