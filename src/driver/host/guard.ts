/**
 * The guard (self-healing, systemd hosts only): its program (GUARD_SCRIPT, run by root in the
 * transient unit `nrhi-guard-<table>`; input: the table name as its argument, its copy and its
 * records in GUARD_DIR), the re-arming function the boot and release units share (GUARD_REARM),
 * the reader of its record the apply script and the status read share (guardRecordReader), and
 * the waits every program that takes its lock keeps to. Its record reaches the controller through
 * the status read (status.ts, parseGuard); what a change did to it, through the apply script's
 * answer (apply.ts).
 */
import { GUARD_DIR, GUARD_SUDO, GUARD_UNIT, ROOT_COMMANDS, sq } from './commands';

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
export const GUARD_SCRIPT = [
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

/**
 * As root (the boot unit, the release unit): with the lock held and `$G`, `$t` set, puts
 * generation `$1`'s copy (its batch on stdin) in place and starts the guard unless it runs.
 * `--no-block`: at boot the guard unit (default dependencies) starts once basic.target is
 * reached, while the boot unit goes on to release network-pre.target.
 */
export const GUARD_REARM = [
  'rearm() {',
  '  (umask 077; cat >"$G/$t.batch.new") && mv -f "$G/$t.batch.new" "$G/$t.batch" &&',
  '    (umask 077; printf "%s\\n" "$1" >"$G/$t.key.new") && mv -f "$G/$t.key.new" "$G/$t.key" && rm -f "$G/$t.fp" || return 1',
  `  systemctl is-active --quiet "${GUARD_UNIT}.service" && return 0`,
  `  printf "%s\\n" ${sq(GUARD_SCRIPT)} >"$G/guard.sh" &&`,
  `    systemd-run --no-block --quiet --collect --unit="${GUARD_UNIT}" -p Type=simple /bin/bash "$G/guard.sh" "$t" >/dev/null 2>&1`,
  '}',
].join('\n');

/**
 * `grec`: the guard's record of table `$t` as root reads it (GUARD_SUDO.read, through `priv`: the
 * files are root's alone), into `rk` (its generation), `rc rl rs rz` (heals, last heal, state,
 * stalled since) and `rq` (its pid); all empty when there is none. Shared by the status read and
 * the apply script (which says when the guard ended past the pack).
 */
export function guardRecordReader(priv: string): string {
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

/** Ends the guard as root does it (after `p`: '' or 'sudo -n '): its files removed, its unit stopped (`q`: with the answers silenced). */
export function endGuard(p: string, q = true): string {
  const R = ROOT_COMMANDS.guard;
  return `${p}${R.end}${q ? ' >/dev/null 2>&1' : ''}; ${p}${R.stop} >/dev/null 2>&1`;
}
