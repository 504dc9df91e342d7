/**
 * The host's own infrastructure servers, so that a preset means "this host's resolvers" rather
 * than "port 53 anywhere": DNS from resolv.conf (behind the systemd-resolved stub, its upstream
 * servers), NTP from chrony, ntpd and timesyncd, LDAP from sssd, nslcd and the OpenLDAP client.
 * One constant script reads the files (bounded); parsing is pure and lives here; names are
 * resolved on the host (a second constant script, the names on stdin) before any rule goes in.
 */
import ipaddr from 'ipaddr.js';
import { parseAddr } from '../net';

export type ServerKind = 'dns' | 'ntp' | 'ldap';
export const SERVER_KINDS: readonly ServerKind[] = ['dns', 'ntp', 'ldap'];

const FILES = [
  '/etc/resolv.conf',
  '/run/systemd/resolve/resolv.conf',
  '/etc/chrony/chrony.conf',
  '/etc/chrony.conf',
  '/etc/chrony/conf.d/*.conf',
  '/etc/chrony/sources.d/*.sources',
  '/etc/ntp.conf',
  '/etc/ntpsec/ntp.conf',
  '/etc/systemd/timesyncd.conf',
  '/etc/systemd/timesyncd.conf.d/*.conf',
  '/run/systemd/timesyncd.conf.d/*.conf',
  '/etc/sssd/sssd.conf',
  '/etc/sssd/conf.d/*.conf',
  '/etc/nslcd.conf',
  '/etc/ldap/ldap.conf',
  '/etc/openldap/ldap.conf',
];

/** Prints each configuration file that exists as `=== PATH` and its first 32 KiB. */
export const DISCOVER_SCRIPT = [
  `for f in ${FILES.join(' ')}; do`,
  '  [ -f "$f" ] || continue',
  '  if [ -r "$f" ]; then printf "\\n=== %s\\n" "$f"; head -c 32768 "$f"; else printf "\\n=== %s unreadable\\n" "$f"; fi',
  'done',
  'if [ -d /run/systemd/system ] && command -v timedatectl >/dev/null 2>&1; then',
  '  printf "\\n=== timedatectl\\n"; timeout 3 timedatectl show-timesync -p SystemNTPServers -p LinkNTPServers -p FallbackNTPServers 2>/dev/null | head -c 8192',
  'fi',
  'printf "\\n=== end\\n"',
].join('\n');

/**
 * Looks names up on the host, one request per stdin line: `host NAME` (its addresses, getent
 * ahosts) or `user NAME` (its uid). Answers `=== host NAME` / `=== user NAME` and the result.
 */
export const LOOKUP_SCRIPT = [
  'n=0',
  'while IFS= read -r q; do',
  '  n=$((n + 1)); [ $n -le 64 ] || break',
  '  case "$q" in',
  "    'host '*) v=${q#host }; case \"$v\" in ''|-*|*[!A-Za-z0-9.-]*) continue;; esac",
  '      printf "=== host %s\\n" "$v"; timeout 3 getent ahosts "$v" | head -n 32;;',
  "    'user '*) v=${q#user }; case \"$v\" in ''|-*|*[!a-z0-9_-]*) continue;; esac",
  '      printf "=== user %s\\n" "$v"; getent passwd "$v" | head -n 1 | cut -d: -f3;;',
  '  esac',
  'done',
].join('\n');

/** What the configuration files name, per kind: literal addresses, names to resolve, and where from. */
export interface Discovered {
  addrs: Record<ServerKind, string[]>;
  names: Record<ServerKind, string[]>;
  sources: Record<ServerKind, string[]>;
  /** files that exist but the SSH user cannot read (sssd.conf is root-only) */
  unreadable: string[];
  /** the host resolves through a local stub only, with no upstream server known */
  localOnly: boolean;
}

const MAX_PER_KIND = 16;

/** A single unicast address (not a network, not loopback, unspecified, multicast or broadcast). */
export function serverAddress(s: string): string | null {
  const p = parseAddr(s.replace(/%.*$/, ''));
  if (!p || p.text.includes('/')) return null;
  const range = ipaddr.parse(p.text).range();
  if (['unspecified', 'multicast', 'broadcast', 'loopback'].includes(range)) return null;
  return p.text;
}

function isLoopback(s: string): boolean {
  const p = parseAddr(s.replace(/%.*$/, ''));
  return p !== null && !p.text.includes('/') && ipaddr.parse(p.text).range() === 'loopback';
}

const NAME = /^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$/;

/** The host part of an LDAP URI (ldap://host:port/..., ldaps://[v6]:port) or a bare name. */
function ldapHost(v: string): string | null {
  const s = v.trim().replace(/[,;]$/, '');
  if (s === '' || s === '_srv_' || /^ldapi:/i.test(s)) return null;
  const m = /^ldaps?:\/\/(\[[^\]]+\]|[^:/]+)?/i.exec(s);
  if (m) return m[1] ? m[1].replace(/^\[|\]$/g, '') : null;
  return /^[A-Za-z0-9.:-]+$/.test(s) ? s.split(':').length === 2 ? s.split(':')[0] : s : null;
}

function sections(text: string): { path: string; body: string[] }[] {
  const out: { path: string; body: string[] }[] = [];
  let cur: { path: string; body: string[] } | null = null;
  for (const line of text.split('\n')) {
    const m = /^=== (\S+)( unreadable)?$/.exec(line);
    if (m) {
      cur = { path: m[2] ? `${m[1]} unreadable` : m[1], body: [] };
      out.push(cur);
    } else if (cur) cur.body.push(line);
  }
  return out;
}

function strip(line: string): string {
  return line.replace(/[#;].*$/, '').trim();
}

/** Parses the discovery script's output. Pure. */
export function parseDiscovery(text: string): Discovered {
  const found: Record<ServerKind, { items: string[]; sources: Set<string> }> = {
    dns: { items: [], sources: new Set() },
    ntp: { items: [], sources: new Set() },
    ldap: { items: [], sources: new Set() },
  };
  const unreadable: string[] = [];
  const add = (kind: ServerKind, item: string | null, from: string) => {
    if (item === null || item === '') return;
    found[kind].items.push(item);
    found[kind].sources.add(from);
  };
  const resolvers: Record<string, string[]> = {};
  let timesync: Record<string, string[]> = {};
  for (const { path, body } of sections(text)) {
    if (path.endsWith(' unreadable')) {
      unreadable.push(path.replace(/ unreadable$/, ''));
      continue;
    }
    if (path.endsWith('resolv.conf')) {
      resolvers[path] = body.map(strip).flatMap((l) => (/^nameserver\s+(\S+)$/.exec(l) ? [/^nameserver\s+(\S+)$/.exec(l)![1]] : []));
    } else if (/chrony|ntp\.conf|\.sources$/.test(path)) {
      for (const l of body.map(strip)) {
        const m = /^(server|pool|peer)\s+(\S+)/.exec(l);
        if (m && !/^127\.127\./.test(m[2])) add('ntp', m[2], path);
      }
    } else if (path.includes('timesyncd')) {
      for (const l of body.map(strip)) {
        const m = /^(NTP|FallbackNTP)\s*=\s*(.*)$/.exec(l);
        if (m) for (const v of m[2].split(/\s+/)) add('ntp', v, path);
      }
    } else if (path === 'timedatectl') {
      timesync = {};
      for (const l of body) {
        const m = /^(SystemNTPServers|LinkNTPServers|FallbackNTPServers)=(.*)$/.exec(l.trim());
        if (m) timesync[m[1]] = m[2].split(/\s+/).filter(Boolean);
      }
    } else if (path.includes('sssd')) {
      for (const l of body.map((x) => x.replace(/#.*$/, '').trim())) {
        const m = /^(ldap_uri|ldap_backup_uri|ad_server|ad_backup_server|ipa_server|ipa_backup_server)\s*=\s*(.*)$/.exec(l);
        if (m) for (const v of m[2].split(',')) add('ldap', ldapHost(v), path);
      }
    } else if (path.endsWith('nslcd.conf')) {
      for (const l of body.map((x) => x.replace(/#.*$/, '').trim())) {
        const m = /^uri\s+(.*)$/i.exec(l);
        if (m) for (const v of m[1].split(/\s+/)) add('ldap', ldapHost(v), path);
      }
    } else if (path.endsWith('ldap.conf')) {
      for (const l of body.map((x) => x.replace(/#.*$/, '').trim())) {
        const m = /^(URI|HOST)\s+(.*)$/i.exec(l);
        if (m) for (const v of m[2].split(/\s+/)) add('ldap', ldapHost(v), path);
      }
    }
  }
  // timesyncd's own view: the configured and per-link servers, its fallback only when there are none
  const ts = [...(timesync.SystemNTPServers ?? []), ...(timesync.LinkNTPServers ?? [])];
  for (const v of ts.length > 0 ? ts : (timesync.FallbackNTPServers ?? [])) add('ntp', v, 'timedatectl');
  // DNS: resolv.conf's servers; behind a loopback stub (systemd-resolved), its upstream servers
  let localOnly = false;
  const primary = resolvers['/etc/resolv.conf'] ?? [];
  for (const v of primary.filter((a) => !isLoopback(a))) add('dns', v, '/etc/resolv.conf');
  if (primary.length > 0 && primary.every(isLoopback)) {
    const upstream = (resolvers['/run/systemd/resolve/resolv.conf'] ?? []).filter((a) => !isLoopback(a));
    for (const v of upstream) add('dns', v, '/run/systemd/resolve/resolv.conf');
    localOnly = upstream.length === 0;
  }
  const out: Discovered = {
    addrs: { dns: [], ntp: [], ldap: [] },
    names: { dns: [], ntp: [], ldap: [] },
    sources: { dns: [], ntp: [], ldap: [] },
    unreadable,
    localOnly,
  };
  for (const kind of SERVER_KINDS) {
    for (const item of found[kind].items) {
      const addr = serverAddress(item);
      if (addr) {
        if (!out.addrs[kind].includes(addr)) out.addrs[kind].push(addr);
      } else if (parseAddr(item) === null && NAME.test(item)) {
        const name = item.replace(/\.$/, '').toLowerCase();
        if (!out.names[kind].includes(name)) out.names[kind].push(name);
      }
    }
    out.addrs[kind] = out.addrs[kind].slice(0, MAX_PER_KIND);
    out.names[kind] = out.names[kind].slice(0, MAX_PER_KIND);
    out.sources[kind] = [...found[kind].sources];
  }
  return out;
}

/** The lookup script's stdin for these names and users. */
export function lookupInput(hosts: readonly string[], users: readonly string[]): string {
  return [...hosts.map((h) => `host ${h}`), ...users.map((u) => `user ${u}`), ''].join('\n');
}

/** Parses the lookup script's answers: each name's unicast addresses, each user's uid. Pure. */
export function parseLookup(text: string): { hosts: Map<string, string[]>; users: Map<string, number> } {
  const hosts = new Map<string, string[]>();
  const users = new Map<string, number>();
  let cur: { kind: 'host' | 'user'; name: string } | null = null;
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    const head = /^=== (host|user) (\S+)$/.exec(line);
    if (head) {
      cur = { kind: head[1] as 'host' | 'user', name: head[2] };
      if (cur.kind === 'host' && !hosts.has(cur.name)) hosts.set(cur.name, []);
      continue;
    }
    if (!cur || line === '') continue;
    if (cur.kind === 'host') {
      const addr = serverAddress(line.split(/\s+/)[0]);
      const list = hosts.get(cur.name)!;
      if (addr && !list.includes(addr) && list.length < MAX_PER_KIND) list.push(addr);
    } else if (/^\d{1,10}$/.test(line) && Number(line) <= 4294967294 && !users.has(cur.name)) {
      users.set(cur.name, Number(line));
    }
  }
  return { hosts, users };
}
