/**
 * The host side's command table: the exact command lines the host programs run as root beside
 * nft and `ss -K` (ROOT_COMMANDS, each turned into one pinned sudoers line by src/driver/sudoers.ts),
 * nft's and ss's own command lines, and the constant paths and unit names they use. Shell words:
 * `$t` is the table (checked by each program to [A-Za-z0-9_]+), `$G` GUARD_DIR, `$u` BOOT_UNIT,
 * `$f` TIMER_FILE, `$secs` the timer's seconds, `$tag` TIMER_TAG.
 */

/** nft's one command line (the batch on stdin): as root, and the one sudoers line nft gets. */
export const NFT_CMD = 'nft -j -f -';
export const NFT = `PATH="$PATH:/usr/sbin:/sbin" ${NFT_CMD}`;
export const SUDO_NFT = `sudo -n ${NFT_CMD}`;

/** The bare nft program (the batch alone on stdin), as root and through `sudo -n`. */
export const NFT_EXEC = { root: NFT.replace(' nft', ' exec nft'), sudo: `exec ${SUDO_NFT}` } as const;

/** What the controller asks first on a connection: the address it came from, as the host sees it. */
export const WHOAMI = 'printf "%s\\n" "$SSH_CONNECTION"';

/** Where the boot unit of persist lives on the host: a constant path, the table name validated. */
export const BOOT_UNIT_DIR = '/etc/systemd/system';
/** The boot unit of table `$t`, and the symlink that enables it (shell words: `$t` is the script's table). */
export const BOOT_UNIT = `${BOOT_UNIT_DIR}/node-red-isolation-$t.service`;
export const BOOT_WANTS = `${BOOT_UNIT_DIR}/sysinit.target.wants/node-red-isolation-$t.service`;

/** `ss -K` (destroy) over the sockets that match the filter on stdin, for these protocol options. */
export const ssKill = (protos: string) => `ss -K -H -n ${protos} state connected -F -`;
/** The protocol options of each cut: both in one pass (the usual case), or one protocol. */
export const SS_PROTOS = { both: '-t -u', tcp: '-t', udp: '-u' } as const;
/** The exact `ss` command lines that cut connections (pinned in the sudoers lines, src/driver/sudoers.ts). */
export const SS_KILL = {
  both: ssKill(SS_PROTOS.both),
  tcp: ssKill(SS_PROTOS.tcp),
  udp: ssKill(SS_PROTOS.udp),
} as const;

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

/** Quoted for a single-quoted shell word. */
export const sq = (text: string) => `'${text.replace(/'/g, `'\\''`)}'`;

/** The guard's files that ending it removes (the lock stays: a writer may hold it). */
export const GUARD_FILES = ['key', 'batch', 'batch.new', 'fp', 'heal', 'pid', 'err'].map((x) => `"${GUARD_DIR}/$t.${x}"`).join(' ');

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

/** Exit codes of the host programs themselves (nft's own are 1): the apply script's, and the status read's input checks. */
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
