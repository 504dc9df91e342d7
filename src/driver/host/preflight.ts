/**
 * Preflight: what a host can do, asked in ONE exec of a constant script, before its first
 * isolation (and on request, by `isolation-status` with `msg.check`). The script runs the same
 * commands the driver runs, through the same privilege path (`sudo -n` when the target says so),
 * and changes nothing: nft gets a listing and a batch that always aborts (it deletes its own
 * throwaway table twice), `ss -K` a filter that no socket can match, sudo's persist rights are
 * asked with `sudo -n -l` (which runs nothing). Its answer is `nrhi-cap KEY VALUE` lines; the
 * host may lie or flood, so the parser reads only known keys, the first of each, each value held
 * to a strict pattern, and anything it cannot read becomes `null` with the reason.
 */
import { NftMissingError, PrivilegeError, UnsupportedError, hostText, type IsolationError } from '../errors';
import { BOOT_UNIT, BOOT_UNIT_DIR, NFT, ROOT_COMMANDS, SS_KILL, SUDO_NFT } from './commands';
import type { Exception, Target } from '../policy';

/**
 * The nft versions whose JSON parser refuses `socket cgroupv2` ("Invalid socket key value"), which
 * `unit` and `cgroup` exceptions need: every nft the lab tests (Debian 12's 1.0.6, Debian 13's
 * 1.1.3). The UNSUPPORTED error and the nodes' help say it from here.
 */
export const CGROUPV2_REFUSED_BY = ['1.0.6', '1.1.3'] as const;
/** What a unit or cgroup exception needs, as the UNSUPPORTED error says it. */
export const CGROUPV2_NEEDS = `it needs Linux 5.13 or later with cgroup v2, and an nft whose JSON parser knows "socket cgroupv2" (${CGROUPV2_REFUSED_BY.join(' and ')} do not); a uid exception works everywhere`;

/** What a host can do. Every `null` is "not known", with its reason in `unknown` under the field's path. */
export interface Capabilities {
  /** when the host answered (ISO 8601, the controller's clock) */
  checkedAt: string;
  /** how the driver runs nft on this target: as root, or through `sudo -n` */
  privilege: 'root' | 'sudo';
  /** the kernel release (`uname -r`) */
  kernel: string | null;
  nft: {
    /** an `nft` binary on PATH (with /usr/sbin and /sbin) */
    present: boolean | null;
    /** its version (`nft -v`, else the metainfo of a JSON listing) */
    version: string | null;
    /** `nft -j -f -` takes a libnftables JSON batch through the driver's privilege path (a `list tables`) */
    json: boolean | null;
    /** nft's JSON parser takes `socket cgroupv2` (unit and cgroup exceptions need it) */
    socketCgroupv2: boolean | null;
  };
  ss: {
    /** an `ss` binary (iproute2) on PATH */
    present: boolean | null;
    /** `ss -K` (the exact command line the driver uses) runs through the privilege path; probed with a filter no socket matches */
    kill: boolean | null;
    /** the kernel destroys sockets on request (CONFIG_INET_DIAG_DESTROY), from its build config */
    kernelDestroy: boolean | null;
  };
  systemd: {
    /** systemd runs as the init system (/run/systemd/system): release timers are transient units */
    running: boolean | null;
    /** /etc/systemd/system exists: `persist` can install its boot unit */
    unitDir: boolean | null;
  };
  /** sudo's answers for the driver's command lines (null as a whole when the target connects as root) */
  sudo: {
    /** `sudo -n nft -j -f -` */
    nft: boolean | null;
    /** `sudo -n ss -K …` (one of the pinned lines) */
    ss: boolean | null;
    /** the tee, mv, ln and rm lines of `persist` for this table (asked with `sudo -n -l`, nothing run) */
    persist: boolean | null;
  } | null;
  nftablesConf: {
    /** /etc/nftables.conf exists */
    present: boolean | null;
    /** it has a `flush ruleset` line: loading it removes every table, ours too */
    flushesRuleset: boolean | null;
    /** `systemctl is-enabled nftables.service` says enabled (it loads that file at boot and on restart) */
    serviceEnabled: boolean | null;
  };
  /** /etc/protocols exists (the pack's batches do not need it; other tools on the host may) */
  protocols: boolean | null;
  /**
   * Whether logging in over SSH may depend on the network (LOGIN_LOCAL): accounts from a directory
   * (nsswitch), sshd's AuthorizedKeysCommand, GSSAPI or Kerberos, UseDNS, a PAM module not known to
   * be local. Verify-then-commit proves such a host with a full login over a fresh connection; a
   * host whose login is local, with a fresh TCP connection answered by its sshd. `via`: the first
   * finding (null when local or unknown).
   */
  login: { network: boolean | null; via: string | null };
  /** the SSH user is uid 0 */
  root: boolean | null;
  /** why each null field is not known, by its path (`nft.version`, `sudo.persist`, …) */
  unknown: Record<string, string>;
  /** what isolate cannot do on this host, in words (empty: nothing the preflight found) */
  limits: string[];
}

/** The tag of each answer line; the last line says the script ran to its end. */
const TAG = 'nrhi-cap';

/** The listing that tells whether JSON works (and the version, from its metainfo). */
const LIST_TABLES = '{"nftables":[{"list":{"tables":null}}]}';

/**
 * A batch that can never apply: it adds a throwaway table with a rule matching `socket
 * cgroupv2`, then deletes that table twice; the second delete always fails, so the kernel aborts
 * the whole transaction (and nft's JSON parser, when it refuses the expression, sends nothing).
 */
export const CGROUP_PROBE = JSON.stringify({
  nftables: [
    { add: { table: { family: 'inet', name: 'nrhi_preflight_probe' } } },
    { add: { chain: { family: 'inet', table: 'nrhi_preflight_probe', name: 'probe' } } },
    {
      add: {
        rule: {
          family: 'inet',
          table: 'nrhi_preflight_probe',
          chain: 'probe',
          expr: [{ match: { op: '==', left: { socket: { key: 'cgroupv2', level: 1 } }, right: 'system.slice' } }],
        },
      },
    },
    { delete: { table: { family: 'inet', name: 'nrhi_preflight_probe' } } },
    { delete: { table: { family: 'inet', name: 'nrhi_preflight_probe' } } },
  ],
});

/** An ss filter no socket matches (one destination port cannot be both 1 and 2): `ss -K` destroys nothing. */
export const SS_NOTHING = 'dport = :1 and dport = :2';

/**
 * The preflight script; stdin: the table name (for the persist paths), then `full` or `gate`.
 * `gate` (before a first isolate) asks only what decides a refusal; `full` (on request) all of it.
 * `priv` is '' (root) or 'sudo -n '. Every answer it captures is cut to a few hundred bytes on
 * the host (a flooding nft or ss dies of SIGPIPE), multi-line ones are joined into one line by the
 * shell itself; the parser bounds them again (and the exec's output limit the whole answer).
 * Builtins where they do (read, test, printf): each process costs the first isolate time.
 */
function preflightScript(nft: string, priv: string): string {
  const lines = [
    'PATH="$PATH:/usr/sbin:/sbin"',
    'IFS= read -r t || t=; IFS= read -r mode || mode=gate',
    "case \"$t\" in ''|*[!A-Za-z0-9_]*) t=;; esac",
    `p() { printf '${TAG} %s %s\\n' "$1" "$2"; }`,
    // one line of a multi-line answer, without a process: split on newlines, join with spaces
    "one() { set -f; IFS='\n'; set -- $1; IFS=' '; o=\"$*\"; unset IFS; set +f; }",
    // runs a command line (given as a function name and its argument) with its stdout and stderr
    // through `head`: a flood ends at 1500 bytes (the flooder's next write gets SIGPIPE) instead of
    // filling the host's memory or our channel; its exit status travels beside the pipe (fd 3) as
    // a marker no honest output holds: rc is `cut` when the marker is missing
    "cap() { r=$( { { \"$1\" \"$2\" 2>&1; printf 'nrhi-rc=%s\\n' \"$?\" >&3; } | head -c 1500; } 3>&1 ); case \"$r\" in *nrhi-rc=*) rc=${r##*nrhi-rc=}; rc=${rc%%[!0-9]*}; x=${r#*nrhi-rc=\"$rc\"}; r=${r%%nrhi-rc=*}$x;; *) rc=cut;; esac; [ -n \"$rc\" ] || rc=cut; }",
    `nftb() { printf '%s\\n' "$1" | ${nft}; }`,
    `ssk() { printf '%s\\n' "$1" | ${priv}${SS_KILL.both}; }`,
    'k=; read -r k </proc/sys/kernel/osrelease 2>/dev/null; p kernel "$k"',
    'u=; while read -r a b c; do if [ "$a" = Uid: ]; then u=$b; break; fi; done </proc/self/status; p uid "$u"',
    'if command -v nft >/dev/null 2>&1; then p nft yes; else p nft no; fi',
    // the listing and the probe go through the driver's own nft command line (sudo: the pinned
    // one). The listing's metainfo names the version (cut out by the shell: a busy host's listing
    // is long); only when it fails is `nft -v` asked, and its error kept
    // (the short preflight skips the listing: the probe's answer says as much, with one sudo less)
    `if [ "$mode" = full ]; then cap nftb '${LIST_TABLES}'`,
    '  if [ "$rc" = 0 ]; then p list-rc 0; p list -; else one "$r"; p list-rc "$rc"; p list "$o"; fi',
    'fi',
    'one "$(nft -v 2>&1 | head -c 300)"; p nft-v "$o"',
    `cap nftb '${CGROUP_PROBE}'; one "$r"; p cg-rc "$rc"; p cg "$o"`,
    'if [ -d /run/systemd/system ]; then p systemd yes; else p systemd no; fi',
    `if [ -d ${BOOT_UNIT_DIR} ]; then p unitdir yes; else p unitdir no; fi`,
    'if [ -f /etc/protocols ]; then p protocols yes; else p protocols no; fi',
    ...loginLines(),
    `if [ "$mode" != full ]; then printf '${TAG} end .\\n'; exit 0; fi`,
    'if command -v ss >/dev/null 2>&1; then',
    '  p ss yes',
    `  cap ssk '${SS_NOTHING}'; one "$r"; p ss-rc "$rc"; p ss-out "$o"`,
    'else p ss no; fi',
    // the kernel's build config, where the distribution ships it
    'd=unknown',
    'if [ -r "/boot/config-$k" ]; then d=$(grep -m1 -E "^(# )?CONFIG_INET_DIAG_DESTROY[= ]" "/boot/config-$k" 2>/dev/null | head -c 200)',
    'elif [ -r /proc/config.gz ] && command -v zcat >/dev/null 2>&1; then d=$(zcat /proc/config.gz 2>/dev/null | grep -m1 -E "^(# )?CONFIG_INET_DIAG_DESTROY[= ]" | head -c 200); fi',
    'p destroy "${d:-absent}"',
    'if [ ! -e /etc/nftables.conf ]; then p conf no',
    'elif [ ! -r /etc/nftables.conf ]; then p conf unreadable',
    "elif grep -Eq '^[[:space:]]*flush[[:space:]]+ruleset([[:space:]]|;|#|$)' /etc/nftables.conf; then p conf flush",
    'else p conf noflush; fi',
    'if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then one "$(timeout 5 systemctl is-enabled nftables.service 2>/dev/null | head -c 100)"; p svc "$o"; else p svc -; fi',
  ];
  if (priv) {
    // asked, not run: sudo -l with a command line answers whether the policy allows exactly it
    lines.push(
      // the apply script's own persist commands (ROOT_COMMANDS.persist), over the same `$u`
      'if [ -z "$t" ]; then p persist -; else',
      `  u="${BOOT_UNIT}"`,
      `  if ${Object.values(ROOT_COMMANDS.persist).map((c) => `sudo -n -l ${c} >/dev/null 2>&1`).join(' &&\n    ')}; then p persist yes; else p persist no; fi`,
      'fi',
    );
  }
  lines.push(`printf '${TAG} end .\\n'`);
  return lines.join('\n');
}

/** `[aA][bB]…`: a shell pattern that matches `word` in any case (sshd's keywords and values are not case-sensitive). */
function anyCase(word: string): string {
  return word.replace(/[a-z]/g, (c) => `[${c}${c.toUpperCase()}]`);
}

/**
 * The PAM modules known to decide a login from the host's own files: any other module in sshd's
 * PAM stack (pam_sss, pam_ldap, pam_krb5, pam_winbind, pam_radius, pam_exec, pam_mount, …) counts
 * as one that may need the network.
 */
export const PAM_LOCAL = [
  'pam_unix', 'pam_deny', 'pam_permit', 'pam_env', 'pam_limits', 'pam_systemd', 'pam_loginuid', 'pam_keyinit', 'pam_selinux',
  'pam_motd', 'pam_mail', 'pam_nologin', 'pam_umask', 'pam_lastlog', 'pam_lastlog2', 'pam_faildelay', 'pam_cap', 'pam_access', 'pam_time',
  'pam_securetty', 'pam_shells', 'pam_mkhomedir', 'pam_succeed_if', 'pam_faillock', 'pam_tally2', 'pam_pwquality', 'pam_cracklib',
  'pam_rootok', 'pam_xauthority', 'pam_wheel', 'pam_namespace', 'pam_listfile', 'pam_warn', 'pam_echo', 'pam_issue', 'pam_group',
  'pam_localuser', 'pam_pwhistory', 'pam_sepermit', 'pam_timestamp', 'pam_usertype', 'pam_systemd_home', 'pam_gnome_keyring',
] as const;

/** The nsswitch sources that are the host's own files. */
const NSS_LOCAL = ['files', 'systemd', 'compat', 'db'] as const;

/**
 * The `login` answer (LOGIN_LOCAL), with shell builtins only: `local`, or `net WHAT` naming the
 * first finding. Read: the passwd, group, shadow and initgroups lines of /etc/nsswitch.conf;
 * /etc/ssh/sshd_config and the files of its Debian Include (any other Include, an unreadable file,
 * counts as network: it cannot be read); sshd's PAM stack from /etc/pam.d/sshd with its includes
 * (at most 16 files). What cannot be read counts as network: the verify then logs in.
 */
function loginLines(): string[] {
  const kw = (k: string) => anyCase(k);
  return [
    'lf=; lnet() { [ -n "$lf" ] || lf=$1; }',
    'if [ -r /etc/nsswitch.conf ]; then',
    '  while read -r a b; do',
    '    case "$a" in passwd:*|group:*|shadow:*|initgroups:*) ;; *) continue;; esac',
    '    k=${a%%:*}; set -f; set -- ${a#*:} $b; set +f',
    `    for w in "$@"; do case "$w" in \\#*) break;; ${NSS_LOCAL.join('|')}|\\[*|*\\]) ;; *) lnet "nsswitch:$k:$w";; esac; done`,
    '  done </etc/nsswitch.conf',
    'elif [ -e /etc/nsswitch.conf ]; then lnet nsswitch:unreadable; fi',
    'sl=/etc/ssh/sshd_config',
    'for f in /etc/ssh/sshd_config.d/*.conf; do [ ! -e "$f" ] || sl="$sl $f"; done',
    'set -f; for f in $sl; do',
    '  if [ ! -r "$f" ]; then lnet "sshd:unreadable:$f"; continue; fi',
    '  while read -r a b c; do',
    '    case "$a" in *=*) b=${a#*=}; a=${a%%=*};; esac',
    '    case "$a" in',
    `      ${kw('authorizedkeyscommand')}|${kw('authorizedprincipalscommand')}) case "$b" in ${kw('none')}|'') ;; *) lnet "sshd:$a";; esac;;`,
    `      ${kw('gssapiauthentication')}|${kw('kerberosauthentication')}|${kw('usedns')}) case "$b" in ${kw('yes')}) lnet "sshd:$a";; esac;;`,
    `      ${kw('include')}) [ "$b" = '/etc/ssh/sshd_config.d/*.conf' ] && [ -z "$c" ] || lnet sshd:Include;;`,
    '    esac',
    '  done <"$f"',
    'done; set +f',
    'pl=/etc/pam.d/sshd; pn=0; ps=',
    'while [ -n "$pl" ] && [ $pn -lt 16 ]; do',
    '  set -f; set -- $pl; f=$1; shift; pl="$*"; set +f; pn=$((pn + 1))',
    '  case " $ps " in *" $f "*) continue;; esac; ps="$ps $f"',
    '  if [ ! -r "$f" ]; then lnet "pam:unreadable:$f"; continue; fi',
    '  while read -r l; do',
    '    set -f; set -- $l; set +f; inc=',
    '    for w in "$@"; do',
    '      case "$w" in \\#*) break;; esac',
      '      if [ -n "$inc" ]; then inc=; case "$w" in /*) pl="$pl $w";; *[!A-Za-z0-9._-]*|\'\') lnet pam:include;; *) pl="$pl /etc/pam.d/$w";; esac; continue; fi',
    `      case "$w" in @include|include|substack) inc=1;; *.so) m=\${w##*/}; case "\${m%.so}" in ${PAM_LOCAL.join('|')}) ;; *) lnet "pam:$m";; esac;; esac`,
    '    done',
    '  done <"$f"',
    'done',
    '[ -z "$pl" ] || lnet pam:depth',
    'if [ -z "$lf" ]; then p login local; else p login "net $lf"; fi',
  ];
}

/** The two constant preflight commands: as root, and through `sudo -n`. */
export const PREFLIGHT = {
  root: preflightScript(NFT, ''),
  sudo: preflightScript(SUDO_NFT, 'sudo -n '),
} as const;

/** Most bytes read back from the preflight (its honest answer is under 4 KiB): beyond, OUTPUT_LIMIT. */
export const MAX_PREFLIGHT_OUTPUT = 64 * 1024;

/** The constant command and its stdin for a target. */
export function preflightInput(target: Pick<Target, 'sudo' | 'table'>, mode: 'gate' | 'full'): { cmd: string; stdin: string } {
  return { cmd: target.sudo ? PREFLIGHT.sudo : PREFLIGHT.root, stdin: `${target.table}\n${mode}\n` };
}

const KEYS = ['kernel', 'uid', 'nft', 'nft-v', 'list-rc', 'list', 'cg-rc', 'cg', 'ss', 'ss-rc', 'ss-out', 'destroy', 'systemd', 'unitdir', 'protocols', 'login', 'conf', 'svc', 'persist', 'end'] as const;
type Key = (typeof KEYS)[number];

const SUDO_REFUSED = /sudo: .*(password is required|not allowed|not in the sudoers|may not run|a terminal is required)|Sorry, user .* is not allowed to execute/i;
const CGROUP_REFUSED = /Invalid socket key|Parsing (command|expr) array|Invalid LHS|unknown socket|socket.*cgroupv2|Operation not supported/i;
const VERSION = /^\d{1,3}(\.\d{1,3}){1,3}$/;

/** The preflight's `nrhi-cap KEY VALUE` lines: the first of each known key, up to the `end` line. */
function answerLines(text: string): Map<Key, string> {
  const v = new Map<Key, string>();
  // a bounded window: an honest answer is a few KiB
  for (const line of text.slice(0, MAX_PREFLIGHT_OUTPUT).split('\n', 200)) {
    const m = /^nrhi-cap ([a-z-]{1,12}) (.{0,2000})$/.exec(line.replace(/\r$/, ''));
    if (!m || !(KEYS as readonly string[]).includes(m[1]) || v.has(m[1] as Key)) continue;
    v.set(m[1] as Key, m[2]);
    if (m[1] === 'end') break; // nothing after the script's last line is its answer
  }
  return v;
}

/**
 * Reads the preflight's answer. Pure, and safe on any text: only the first line of each known
 * key counts, values are read with strict patterns, and what cannot be read is null with a reason.
 */
export function parseCapabilities(text: string, privilege: 'root' | 'sudo', mode: 'gate' | 'full' = 'full', now: Date = new Date()): Capabilities {
  const v = answerLines(text);
  const unknown: Record<string, string> = {};
  const complete = v.has('end');
  const missing = complete ? 'the host gave no readable answer for it' : "the host's answer ended early (or was not the preflight's)";
  // what the short preflight before an isolate does not ask
  const FULL_ONLY: readonly Key[] = ['ss', 'ss-rc', 'ss-out', 'destroy', 'conf', 'svc', 'persist'];
  if (mode === 'gate' && complete) for (const k of FULL_ONLY) v.delete(k);
  const notAsked = 'not asked before an isolate (isolation-status with msg.check asks it)';
  const why = (key: Key): string => (mode === 'gate' && FULL_ONLY.includes(key) ? notAsked : missing);
  /** a yes/no key; anything else is unknown with a reason */
  const yesNo = (key: Key, path: string): boolean | null => {
    const s = v.get(key);
    if (s === 'yes') return true;
    if (s === 'no') return false;
    unknown[path] = s === undefined ? why(key) : `unexpected answer ${JSON.stringify(hostText(s, 60))}`;
    return null;
  };
  const sudo = privilege === 'sudo';

  const kernelRaw = v.get('kernel');
  const kernel = kernelRaw !== undefined && /^[0-9][A-Za-z0-9._+~-]{0,63}$/.test(kernelRaw) ? kernelRaw : null;
  if (kernel === null) unknown.kernel = kernelRaw === undefined ? missing : 'unreadable uname -r';
  const uid = v.get('uid');
  const root = uid !== undefined && /^\d{1,10}$/.test(uid) ? uid === '0' : null;
  if (root === null) unknown.root = uid === undefined ? missing : 'unreadable id -u';

  // nft: present, version, JSON through the privilege path
  let present = yesNo('nft', 'nft.present');
  const cgRc = v.get('cg-rc');
  const cg = v.get('cg') ?? '';
  // what says whether nft takes JSON through the privilege path: the listing (full), or in the
  // short preflight the probe, whose parse error (or, past the parser, its abort) proves as much
  const short = mode === 'gate' && !v.has('list-rc');
  const listRc = short ? cgRc : v.get('list-rc');
  const list = short ? cg : (v.get('list') ?? '');
  // a busy host's listing is longer than what the host keeps of it: cut (SIGPIPE), but JSON it is
  const cutListing = (listRc === '141' || listRc === 'cut') && /^\{\s*"nftables"\s*:\s*\[\s*\{\s*"metainfo"/.test(list);
  const listOk = short ? cgRc !== undefined && cgRc !== '0' && !SUDO_REFUSED.test(cg) && (CGROUP_REFUSED.test(cg) || /No such file or directory/.test(cg)) : listRc === '0' || cutListing;
  // not on the SSH user's PATH but run through sudo's own (secure_path: /usr/local/sbin, say):
  // the privilege path found it, which is the one the driver uses
  if (present === false && listOk) {
    present = true;
    delete unknown['nft.present'];
  }
  // on PATH but not runnable (a dangling link, sudo's own PATH without it)
  if (present !== false && (listRc === '127' || /^sudo: nft: command not found/.test(list))) {
    present = false;
    delete unknown['nft.present'];
  }
  const sudoNftRefused = sudo && listRc !== '0' && SUDO_REFUSED.test(list);
  let version: string | null = null;
  const vm = /\bv(\d{1,3}(?:\.\d{1,3}){1,3})\b/.exec(v.get('nft-v') ?? '');
  if (vm && VERSION.test(vm[1])) version = vm[1];
  if (version === null) unknown['nft.version'] = present === false ? 'no nft on the host' : v.has('nft-v') ? 'unreadable nft -v' : missing;
  let json: boolean | null = null;
  if (present === false) json = false;
  else if (listOk) json = true;
  else if (listRc === undefined) unknown['nft.json'] = missing;
  else if (sudoNftRefused) unknown['nft.json'] = 'sudo refused nft -j -f -';
  else if (/JSON support not compiled|unrecognized option|invalid option/i.test(list)) json = false;
  else if (listRc === 'cut' || listRc === '141') unknown['nft.json'] = 'the answer of nft -j -f - was cut on the host (a flood?)';
  else unknown['nft.json'] = `nft -j -f - failed: ${hostText(list, 160)}`;

  // socket cgroupv2: the probe never applies; the question is whether its parser took the rule
  let socketCgroupv2: boolean | null = null;
  if (present === false || json === false) socketCgroupv2 = false;
  else if (cgRc === undefined) unknown['nft.socketCgroupv2'] = missing;
  else if (sudo && SUDO_REFUSED.test(cg)) unknown['nft.socketCgroupv2'] = 'sudo refused nft -j -f -';
  else if (cgRc === '0') unknown['nft.socketCgroupv2'] = 'the probe answered success, which it cannot: not believed';
  else if (CGROUP_REFUSED.test(cg)) socketCgroupv2 = false;
  else if (/No such file or directory/.test(cg)) socketCgroupv2 = true;
  else unknown['nft.socketCgroupv2'] = `unexpected nft answer: ${hostText(cg, 160)}`;

  // ss -K
  const ssPresent = yesNo('ss', 'ss.present');
  const ssRc = v.get('ss-rc');
  const ssOut = v.get('ss-out') ?? '';
  const ssRefused = sudo && ssRc !== '0' && SUDO_REFUSED.test(ssOut);
  let kill: boolean | null = null;
  if (ssPresent === false) kill = false;
  else if (ssRc === '0') kill = true;
  else if (ssRefused) kill = false;
  else if (ssRc !== undefined && /^\d{1,3}$/.test(ssRc)) kill = false;
  else unknown['ss.kill'] = ssPresent === null ? (unknown['ss.present'] ?? why('ss')) : why('ss-rc');
  const destroy = v.get('destroy');
  let kernelDestroy: boolean | null = null;
  if (destroy !== undefined && /^CONFIG_INET_DIAG_DESTROY=y$/.test(destroy)) kernelDestroy = true;
  else if (destroy !== undefined && /^# CONFIG_INET_DIAG_DESTROY is not set$/.test(destroy)) kernelDestroy = false;
  else unknown['ss.kernelDestroy'] = destroy === 'unknown' ? "the kernel's build config is not readable on the host (/boot/config-*, /proc/config.gz)" : destroy === 'absent' ? 'the kernel config does not name CONFIG_INET_DIAG_DESTROY' : destroy === undefined ? why('destroy') : 'unreadable kernel config line';

  const running = yesNo('systemd', 'systemd.running');
  const unitDir = yesNo('unitdir', 'systemd.unitDir');
  const protocols = yesNo('protocols', 'protocols');
  const login = loginOf(v.get('login'), missing, unknown);

  const { confPresent, flushes, serviceEnabled } = nftablesConf(v, why, unknown);

  let sudoCaps: Capabilities['sudo'] = null;
  if (sudo) {
    const nftOk = listRc === undefined ? null : listOk ? true : sudoNftRefused ? false : null;
    if (nftOk === null) unknown['sudo.nft'] = listRc === undefined ? missing : 'nft failed for another reason (see nft.json)';
    const ssOk = ssRc === undefined ? null : ssRc === '0' ? true : ssRefused ? false : null;
    if (ssOk === null) unknown['sudo.ss'] = ssPresent === false ? 'no ss on the host' : ssRc === undefined ? why('ss-rc') : 'ss failed for another reason (see ss.kill)';
    const persist = v.get('persist');
    const persistOk = persist === 'yes' ? true : persist === 'no' ? false : null;
    if (persistOk === null) unknown['sudo.persist'] = persist === undefined ? why('persist') : persist === '-' ? 'no table name' : 'unexpected answer';
    sudoCaps = { nft: nftOk, ss: ssOk, persist: persistOk };
  }

  const caps: Capabilities = {
    checkedAt: now.toISOString(),
    privilege,
    kernel,
    nft: { present, version, json, socketCgroupv2 },
    ss: { present: ssPresent, kill, kernelDestroy },
    systemd: { running, unitDir },
    sudo: sudoCaps,
    nftablesConf: { present: confPresent, flushesRuleset: flushes, serviceEnabled },
    protocols,
    login,
    root,
    unknown,
    limits: [],
  };
  caps.limits = limitsOf(caps);
  return caps;
}

/** The `login` answer: `local`, or `net WHAT` (WHAT held to a plain pattern); anything else unknown. */
function loginOf(a: string | undefined, missing: string, unknown: Record<string, string>): Capabilities['login'] {
  if (a === 'local') return { network: false, via: null };
  const m = a === undefined ? null : /^net ([A-Za-z0-9_.:/@*=+-]{1,160})$/.exec(a);
  if (m) return { network: true, via: m[1] };
  unknown['login.network'] = a === undefined ? missing : 'unexpected answer';
  return { network: null, via: null };
}

/** /etc/nftables.conf and its service, from the `conf` and `svc` answers (`why`: the reason a missing one gets). */
function nftablesConf(v: Map<Key, string>, why: (key: Key) => string, unknown: Record<string, string>): { confPresent: boolean | null; flushes: boolean | null; serviceEnabled: boolean | null } {
  const conf = v.get('conf');
  let confPresent: boolean | null = null;
  let flushes: boolean | null = null;
  if (conf === 'no') {
    confPresent = false;
    flushes = false;
  } else if (conf === 'flush' || conf === 'noflush') {
    confPresent = true;
    flushes = conf === 'flush';
  } else if (conf === 'unreadable') {
    confPresent = true;
    unknown['nftablesConf.flushesRuleset'] = 'the SSH user cannot read /etc/nftables.conf';
  } else {
    unknown['nftablesConf.present'] = conf === undefined ? why('conf') : 'unexpected answer';
    unknown['nftablesConf.flushesRuleset'] = unknown['nftablesConf.present'];
  }
  const svc = v.get('svc');
  let serviceEnabled: boolean | null = null;
  if (svc !== undefined && /^(enabled|enabled-runtime|alias)$/.test(svc)) serviceEnabled = true;
  else if (svc !== undefined && /^(disabled|masked|masked-runtime|static|indirect|generated|transient|linked|linked-runtime|not-found)?$/.test(svc)) serviceEnabled = false;
  else unknown['nftablesConf.serviceEnabled'] = svc === '-' ? 'no systemd on the host' : svc === undefined ? why('svc') : 'unexpected answer';
  return { confPresent, flushes, serviceEnabled };
}

function nftNamed(c: Capabilities): string {
  return c.nft.version ? `nft ${c.nft.version}` : 'its nft';
}

/** What isolate cannot do on a host with these capabilities, in words. */
function limitsOf(c: Capabilities): string[] {
  const out: string[] = [];
  if (c.nft.present === false) out.push('no nft on the host: nothing can be isolated');
  else if (c.sudo?.nft === false) out.push('sudo refuses `nft -j -f -`: nothing can be isolated');
  else if (c.nft.json === false) out.push(`${nftNamed(c)} does not take JSON input (nft -j): nothing can be isolated`);
  if (c.nft.socketCgroupv2 === false && c.nft.json !== false && c.nft.present !== false) {
    out.push(`unit and cgroup exceptions: ${nftNamed(c)}'s JSON parser (or the kernel) refuses "socket cgroupv2"; uid exceptions work`);
  }
  if (c.ss.present === false) out.push('open connections cannot be cut (no ss): they are frozen by the drop rules');
  else if (c.sudo?.ss === false) out.push('open connections cannot be cut (sudo refuses `ss -K`): they are frozen by the drop rules');
  else if (c.ss.kernelDestroy === false) out.push('open connections cannot be cut (kernel without CONFIG_INET_DIAG_DESTROY): they are frozen by the drop rules');
  if (c.systemd.unitDir === false) out.push('persist: no systemd (/etc/systemd/system)');
  else if (c.sudo?.persist === false) out.push('persist: sudo does not allow the boot unit lines (see docs/preparing-hosts.md, or run node-red-host-isolation-host-setup)');
  if (c.systemd.running === false) out.push('release timers are detached processes of the SSH session (no systemd running)');
  if (c.nftablesConf.flushesRuleset === true && c.nftablesConf.serviceEnabled === true) {
    out.push('nftables.service loads /etc/nftables.conf, which flushes the ruleset: a restart of it removes the isolation');
  }
  return out;
}

/** What an isolate request needs of the host. */
export interface Needs {
  persist: boolean;
  exceptions: readonly Exception[];
}

/**
 * The refusal, before anything is changed, of a request the host cannot carry out: no nft
 * (NFT_MISSING), sudo refusing nft (PRIVILEGE), nft without JSON input, persist without
 * systemd, unit or cgroup exceptions without `socket cgroupv2` (UNSUPPORTED, naming the host's
 * nft version). Unknown answers (null) refuse nothing: the apply itself is still atomic.
 */
export function refusal(host: string, c: Capabilities, needs: Needs): IsolationError | null {
  const version = c.nft.version ?? undefined;
  if (c.nft.present === false) return new NftMissingError(host, 'preflight: no nft on PATH (with /usr/sbin and /sbin)');
  if (c.sudo?.nft === false) return new PrivilegeError(host, 'preflight: sudo -n refused `nft -j -f -` (docs/preparing-hosts.md, or node-red-host-isolation-sudoers, prints the sudoers lines)');
  if (c.nft.json === false) {
    return new UnsupportedError(host, 'take a libnftables JSON batch (nft -j)', 'the pack sends every change as one JSON transaction; install an nft built with JSON support (Debian: nftables)', 'preflight: nft -j -f - failed', version);
  }
  if (needs.persist && c.systemd.unitDir === false) {
    return new UnsupportedError(host, 'keep an isolation across reboots', 'persist needs systemd (/etc/systemd/system) on the host', 'preflight: no /etc/systemd/system', version);
  }
  if (c.nft.socketCgroupv2 === false && needs.exceptions.some((e) => e.unit !== undefined || e.cgroup !== undefined)) {
    return new UnsupportedError(
      host,
      'match a systemd unit or cgroup (nft "socket cgroupv2")',
      CGROUPV2_NEEDS,
      'preflight: the probe batch was refused',
      version,
    );
  }
  return null;
}
