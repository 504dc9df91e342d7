/**
 * Cutting open connections, the apply script's last step: the controller's `ss` filters of the
 * sockets an isolation keeps (severFilters, sent in the apply script's `severTcp` and `severUdp`
 * fields), the shell that fills them in from the host's listening sockets and cuts the rest
 * (severLines), and the reading of its `nrhi-severed` answer.
 */
import { parseAddr } from '../net';
import type { Exception } from '../policy';
import type { ManagementEndpoint } from '../ruleset';
import { SS_KILL, ssKill } from './commands';

/**
 * The words of a filter that the host fills in from its listening sockets (ss cannot join two
 * listings): `accepted` becomes "the socket's local address and port are a listener's" (TCP:
 * LISTEN; UDP: a bound, unconnected socket), `initiated` its negation. See severFilters.
 */
export const SEVER_ACCEPTED = 'accepted';
export const SEVER_INITIATED = 'initiated';

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

/**
 * The apply script's cut (shell lines; `$kt` and `$ku` its severTcp and severUdp fields, `priv` ''
 * or 'sudo -n '): answers `nrhi-severed CUT LEFT WHY` when a filter was sent.
 */
export function severLines(priv: string): string[] {
  return [
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
  ];
}
