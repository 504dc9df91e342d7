/**
 * The release timer: what arms it (timerLines, in the apply script), and what it runs when it
 * fires: the release unit (systemd hosts, as root: UNIT_SCRIPT, under the guard's lock) or a
 * detached process of the SSH session (processTimer). The fields it carries from the apply
 * script's stdin are declared once (TIMER_FIELDS, by their apply field names): the apply script
 * writes them a line each in that order, the timer reads them back in the same order.
 */
import { fieldVar, type ApplyFieldName } from './apply-input';
import { GUARD_DIR, NFT, ROOT_COMMANDS, sq, TIMER_DIR, TIMER_FILE, TIMER_TAG } from './commands';
import { endGuard, GUARD_REARM } from './guard';

/**
 * What a timer reads from its stdin, a line each: its shell variable, the apply field it carries,
 * and whether only the release unit (which keeps the guard) gets it. The release unit's seconds
 * are 0: systemd counts them.
 */
export const TIMER_FIELDS: readonly { v: string; from: ApplyFieldName; unitOnly?: true }[] = [
  { v: 's', from: 'seconds' },
  { v: 'r', from: 'release' },
  { v: 'n', from: 'releaseNotice' },
  { v: 's2', from: 'thenSeconds' },
  { v: 'r2', from: 'thenBatch' },
  { v: 'rg', from: 'rearm', unitOnly: true },
];

const carried = (unit: boolean) => TIMER_FIELDS.filter((f) => unit || !f.unitOnly);

/** The apply script's words that hand a timer its fields (`printf '%s\\n' WORDS`): the release unit's, or a process timer's. */
export function timerPacking(unit: boolean): string {
  return carried(unit)
    .map((f) => (unit && f.from === 'seconds' ? '0' : `"$${fieldVar(f.from)}"`))
    .join(' ');
}

/** A timer's first line: its fields read, then stdin closed. */
function timerReads(unit: boolean): string {
  return `${carried(unit)
    .map((f) => `IFS= read -r ${f.v};`)
    .join(' ')} exec </dev/null`;
}

/**
 * The release unit (root): under the guard's lock, its release applied (or the table already
 * gone at release time) ends the guard too, so a timed release is never undone; a stale timer
 * whose release fails leaves a newer isolation's guard alone. `b`: the batch's variable.
 */
function releaseGuarded(b: string, rearm: boolean): string {
  return [
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
}

/** What a timer runs once its seconds passed, `n` its nft command line; `unit`: as the release unit (root, guarded). */
function timerOf(n: string, unit: boolean): string {
  return [
    timerReads(unit),
    unit ? `G=${GUARD_DIR}\n${GUARD_REARM}\nsleep "$s"\n${releaseGuarded('$r', true)}\n[ $ok -eq 0 ] || exit 0` : `sleep "$s"; printf "%s\\n" "$r" | ${n} || exit 0`,
    'if [ -n "$n" ]; then printf %s "$n" | base64 -d | wall; fi',
    // the previous isolation's own release, after a rollback: under the lock, and it ends the guard
    unit ? `if [ -n "$s2" ]; then sleep "$s2"; rg=; ${releaseGuarded('$r2', false)}; fi` : `if [ -n "$s2" ]; then sleep "$s2"; printf "%s\\n" "$r2" | ${n}; fi`,
  ].join('\n');
}

/** The release unit's script (root: its nft needs no sudo): it reads its batches from its data file, then drops both. */
export const UNIT_SCRIPT = ['exec <"$1"; rm -f "$1" "$0"', timerOf(NFT, true)].join('\n');

/** The timer as a detached process of the session (no systemd-run for this account), with the script's own nft command line. */
export const processTimer = (nft: string): string => timerOf(nft, false);

/**
 * The apply script's timers (`nft` its nft command line, `priv` '' or 'sudo -n '): unless the
 * seconds are `keep`, this table's timers are cancelled, then one is armed for the seconds sent
 * (the release unit where systemd runs, else a process of the session found again by its
 * record); answers `nrhi-timer systemd|process`.
 */
export function timerLines(nft: string, priv: string): string[] {
  const T = ROOT_COMMANDS.timer;
  return [
    // a timer is tagged with the table AND this network namespace: the same table name in another
    // namespace of the machine (a container, another lab host) is another host's isolation
    // (asked only where a timer is cancelled, armed or looked for: a change that keeps the
    // timers starts no program for it)
    'ns=; nstag() { ns=$(readlink /proc/self/ns/net 2>/dev/null); case "$ns" in net:?*?) ns=${ns#net:?}; ns=${ns%?};; *) ns=0;; esac',
    '  case "$ns" in *[!0-9]*|\'\') ns=0;; esac',
    `  tag="${TIMER_TAG}"; }`,
    // a timer that is a process of the session is found by its record, never by its name (any
    // local user can run a process so named: exec -a). The record, `PID START` lines (START: field
    // 22 of /proc/PID/stat, so that a recycled pid is not taken for it), lives in a directory only
    // this account (and root) can write: root's under ${TIMER_DIR}, another account's in its home,
    // else in /tmp under its uid; a record not owned by this account, or a link, is not believed
    'ptime() { sv=; pst=; read -r pst <"/proc/$1/stat" 2>/dev/null || return 0; pst=${pst##*) }; set -- $pst; [ $# -lt 20 ] || { shift 19; sv=$1; }; }',
    `tdir() { [ -n "$ns" ] || nstag; if [ -O / ]; then td=${TIMER_DIR}; elif [ -n "$HOME" ] && [ -d "$HOME" ] && [ ! -L "$HOME" ] && [ -O "$HOME" ] && [ -w "$HOME" ]; then td=$HOME/.nrhi-release; else td=/tmp/nrhi-release-$(id -u); fi; tf="$td/session.$ns.$t"; }`,
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
    `    ${priv}${T.dir} 2>/dev/null && printf '%s\\n' ${timerPacking(true)} | ${priv}${T.data} >/dev/null 2>&1 &&`,
    `      printf '%s\\n' ${sq(UNIT_SCRIPT)} | ${priv}${T.script} >/dev/null 2>&1 &&`,
    `      ${priv}${T.arm} >/dev/null 2>&1 && armed=systemd`,
    '  fi',
    `  if [ "$secs" -gt 0 ] && [ -z "$armed" ]; then printf '%s\\n' ${timerPacking(false)} | setsid sh -c ${sq(processTimer(nft))} "$tag" >/dev/null 2>&1 & tp=$!; armed=process; fi`,
    // its record: the pid of the session leader (setsid in a job without job control does not
    // fork) and its start time
    '  if [ "$armed" = process ]; then ptime "$tp"; [ -z "$sv" ] || (umask 077; mkdir -p "$td" 2>/dev/null; [ -d "$td" ] && [ ! -L "$td" ] && [ -O "$td" ] && printf "%s %s\\n" "$tp" "$sv" >"$tf") 2>/dev/null; fi',
    '  [ -z "$armed" ] || printf "nrhi-timer %s\\n" "$armed"',
    'fi',
  ];
}
