/**
 * The driver's input rules for the editor, as messages. Built from the driver's own patterns
 * (src/driver/patterns.ts) and address parser (src/driver/net.ts), and bundled for the browser at
 * build time (scripts/copy-assets.js -> resources/driver-rules.js) with the driver's preset and
 * ICMP data. No zod here, so the bundle stays small: the structure of an exception (which fields go
 * with which protocol and direction) is mirrored from policy.ts's exceptionSchema, and a unit test
 * holds the two to the same verdict over generated exceptions.
 *
 * Each check returns null when the value passes, else a short message for the editor.
 */
import { parseAddr } from '../driver/net';
import { CGROUP_PATH, cgroupSegmentsOk, HOST_NAME, LOGIN_NAME, portRange, SERVER_LIMITS, UNIT_NAME, USER_NAME } from '../driver/patterns';

export type Problem = string | null;
export type IcmpTypes = Record<string, { v4?: number; v6?: number }>;

const EXCEPTION_KEYS = ['direction', 'proto', 'addr', 'port', 'icmpType', 'uid', 'unit', 'cgroup', 'comment'];
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f]/;

/** An IPv4/IPv6 address or CIDR, as the driver parses it (blank: any). */
export function addrProblem(text: string): Problem {
  if (text === '') return null;
  return parseAddr(text) ? null : 'not an IPv4/IPv6 address or CIDR';
}

/** A port or "lo-hi" range (blank: any); only tcp and udp have ports. */
export function portProblem(text: string, proto: string): Problem {
  if (text === '') return null;
  if (proto !== 'tcp' && proto !== 'udp') return 'a port only goes with tcp or udp';
  return portRange(text) ? null : 'port must be 1-65535 or "lo-hi" with lo <= hi';
}

export type Owner = { uid: number | string } | { unit: string } | { cgroup: string };

/** The owner field as the editor shows it: a uid or user name, a systemd unit, or a cgroup path. */
export function ownerOf(text: string): Owner | null {
  if (text === '') return null;
  if (/^\d{1,10}$/.test(text)) return { uid: Number(text) };
  if (text.includes('/')) return { cgroup: text };
  if (UNIT_NAME.test(text)) return { unit: text };
  return { uid: text };
}

export function ownerText(e: { uid?: unknown; unit?: unknown; cgroup?: unknown }): string {
  if (e.uid !== undefined) return String(e.uid);
  return typeof e.unit === 'string' ? e.unit : typeof e.cgroup === 'string' ? e.cgroup : '';
}

function uidProblem(uid: unknown): Problem {
  if (typeof uid === 'number') return Number.isInteger(uid) && uid >= 0 && uid <= 4294967294 ? null : 'uid must be 0-4294967294';
  if (typeof uid === 'string') return USER_NAME.test(uid) ? null : 'uid must be a number or a user name (lower case letters, digits, _ and -)';
  return 'uid must be a number or a user name';
}

function unitProblem(unit: unknown): Problem {
  if (typeof unit !== 'string' || !UNIT_NAME.test(unit) || unit.startsWith('.') || unit.includes('..')) {
    return 'unit must be a systemd unit name such as "backup-agent.service"';
  }
  return null;
}

function cgroupProblem(cgroup: unknown): Problem {
  if (typeof cgroup !== 'string' || cgroup.length > 1024 || !CGROUP_PATH.test(cgroup)) return 'cgroup must be a relative cgroup v2 path such as "system.slice/backup.service"';
  return cgroupSegmentsOk(cgroup) ? null : 'cgroup must not contain "." or ".." segments';
}

/** The owner field of a row: outbound only, not with icmp. */
export function ownerProblem(text: string, direction: string, proto: string): Problem {
  const o = ownerOf(text);
  if (!o) return null;
  if (direction !== 'out') return 'service and user exceptions are outbound only';
  if (proto === 'icmp') return 'service and user exceptions take tcp, udp or any';
  if ('cgroup' in o) return cgroupProblem(o.cgroup);
  if ('unit' in o) return unitProblem(o.unit);
  return uidProblem(o.uid);
}

/** One exception object as a flow holds it, checked as the driver's exceptionSchema checks it. */
export function exceptionProblem(e: unknown, icmpTypes: IcmpTypes): Problem {
  if (typeof e !== 'object' || e === null || Array.isArray(e)) return 'an exception is an object';
  const x = e as Record<string, unknown>;
  const extra = Object.keys(x).find((k) => !EXCEPTION_KEYS.includes(k));
  if (extra !== undefined) return `unknown field ${JSON.stringify(extra)}`;
  if (x.direction !== 'in' && x.direction !== 'out') return 'direction must be "in" or "out"';
  if (x.proto !== 'tcp' && x.proto !== 'udp' && x.proto !== 'icmp' && x.proto !== 'any') return 'proto must be tcp, udp, icmp or any';
  if (x.addr !== undefined) {
    if (typeof x.addr !== 'string') return 'addr must be text';
    const p = addrProblem(x.addr);
    if (p || x.addr === '') return p ?? 'not an IPv4/IPv6 address or CIDR';
  }
  if (x.port !== undefined) {
    if (typeof x.port === 'number') {
      if (!Number.isInteger(x.port) || x.port < 1 || x.port > 65535) return 'port must be 1-65535';
    } else if (typeof x.port !== 'string' || !portRange(x.port)) {
      return 'port must be 1-65535 or "lo-hi" with lo <= hi';
    }
  }
  if (x.icmpType !== undefined && (typeof x.icmpType !== 'string' || !Object.prototype.hasOwnProperty.call(icmpTypes, x.icmpType))) {
    return `icmpType must be one of ${Object.keys(icmpTypes).join(', ')}`;
  }
  const owners = (['uid', 'unit', 'cgroup'] as const).filter((k) => x[k] !== undefined);
  for (const k of owners) {
    const p = k === 'uid' ? uidProblem(x.uid) : k === 'unit' ? unitProblem(x.unit) : cgroupProblem(x.cgroup);
    if (p) return p;
  }
  if (x.comment !== undefined && (typeof x.comment !== 'string' || x.comment.length > 128 || CONTROL.test(x.comment))) {
    return 'comment must be text of up to 128 characters, no control characters';
  }
  if (owners.length > 1) return 'name at most one of uid, unit and cgroup';
  if (owners.length > 0 && x.direction !== 'out') return `${owners[0]} exceptions are outbound only (direction "out")`;
  if (owners.length > 0 && x.proto === 'icmp') return `${owners[0]} exceptions take proto tcp, udp or any`;
  if (x.port !== undefined && x.proto !== 'tcp' && x.proto !== 'udp') return 'port is only allowed with proto tcp or udp';
  if (x.icmpType !== undefined) {
    if (x.proto !== 'icmp') return 'icmpType is only allowed with proto icmp';
    if (typeof x.addr === 'string') {
      const fam = parseAddr(x.addr)?.family === 6 ? 'v6' : 'v4';
      if (icmpTypes[x.icmpType as string][fam] === undefined) return `${x.icmpType as string} does not exist for IP${fam}`;
    }
  }
  return null;
}

/** A list of exceptions: the first problem, with the row it is in. */
export function exceptionsProblem(list: unknown, icmpTypes: IcmpTypes): Problem {
  if (list === undefined || list === null || list === '') return null;
  if (!Array.isArray(list)) return 'exceptions must be a list';
  for (let i = 0; i < list.length; i++) {
    const p = exceptionProblem(list[i], icmpTypes);
    if (p) return `exception ${i + 1}: ${p}`;
  }
  return null;
}

/** a DNS host name; all digits and dots is an IPv4 address or nothing */
function isHostName(s: string): boolean {
  return s.length <= 253 && HOST_NAME.test(s) && !/^[\d.]+$/.test(s);
}

/** A host to connect to: an IP address or a DNS host name. */
export function hostProblem(text: unknown): Problem {
  if (typeof text !== 'string' || text.trim() === '') return 'host is required: an IP address or a DNS host name';
  const s = text.trim();
  if (!s.includes('/') && parseAddr(s)) return null;
  if (isHostName(s)) return null;
  return 'host must be an IP address or a DNS host name';
}

/** The SSH user. */
export function usernameProblem(text: unknown): Problem {
  return typeof text === 'string' && LOGIN_NAME.test(text) ? null : 'user must be a POSIX user name';
}

/** Entries of a list the editor keeps as lines: CIDRs only, or also host names. */
export function listProblem(list: unknown, what: 'cidrs' | 'hosts'): Problem {
  if (list === undefined || list === null || list === '') return null;
  const items = Array.isArray(list) ? list : String(list).split(/[\n,]/);
  for (const raw of items) {
    const s = String(raw).trim();
    if (s === '' || parseAddr(s)) continue;
    if (what === 'hosts' && isHostName(s)) continue;
    return `${JSON.stringify(s)} is not ${what === 'hosts' ? 'a host name, an IP or a CIDR' : 'an IP address or CIDR'}`;
  }
  return null;
}

/**
 * A target's servers of one kind (DNS, NTP, LDAP), as the driver's serversSchema takes them: IP
 * addresses or networks no wider than the driver's SERVER_LIMITS (/16, /48), at most its maximum
 * of entries. Empty: read from the host.
 */
export function serversProblem(list: unknown): Problem {
  if (list === undefined || list === null || list === '') return null;
  const items = (Array.isArray(list) ? list : String(list).split(/[\n,]/)).map((raw) => String(raw).trim()).filter((s) => s !== '');
  if (items.length > SERVER_LIMITS.max) return `at most ${SERVER_LIMITS.max} servers`;
  for (const s of items) {
    const p = parseAddr(s);
    if (!p) return `${JSON.stringify(s)} is not an IP address or CIDR`;
    const len = p.text.split('/')[1];
    if (len !== undefined && Number(len) < SERVER_LIMITS.minPrefix[p.family]) {
      return `${JSON.stringify(s)} is too wide for a server: at most /${SERVER_LIMITS.minPrefix[4]} (IPv4) or /${SERVER_LIMITS.minPrefix[6]} (IPv6)`;
    }
  }
  return null;
}

/**
 * A number field that the runtime defaults when it is blank (a flow written by hand may leave it
 * out): blank passes; otherwise a number within [min, max], whole if `integer`.
 */
export function numberProblem(v: unknown, min: number, max: number, integer = true): Problem {
  if (v === undefined || v === null || (typeof v === 'string' && v.trim() === '')) return null;
  const n = typeof v === 'number' ? v : typeof v === 'string' ? Number(v.trim()) : NaN;
  if (!Number.isFinite(n) || (integer && !Number.isInteger(n))) return `must be a ${integer ? 'whole ' : ''}number`;
  if (n < min || n > max) return `must be between ${min} and ${max}`;
  return null;
}
