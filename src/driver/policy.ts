/**
 * The one validation gate: every field that reaches a command passes a zod schema here, once.
 * Parsed values are canonical (addresses normalised, ports as numbers or "lo-hi"), so equal
 * exceptions compare equal and the rendered ruleset is deterministic.
 */
import ipaddr from 'ipaddr.js';
import { z } from 'zod';
import { HostNotAllowedError, ValidationError } from './errors';
import { parseAddr } from './net';
import { CGROUP_PATH, cgroupSegmentsOk, HOST_NAME, LOGIN_NAME, portRange, SERVER_LIMITS, TABLE_NAME, UNIT_NAME, USER_NAME } from './patterns';

/** ICMP types an exception may name. Each maps to its number per family; a name missing in a family does not apply there. */
export const ICMP_TYPES: Record<string, { v4?: number; v6?: number }> = {
  'echo-reply': { v4: 0, v6: 129 },
  'destination-unreachable': { v4: 3, v6: 1 },
  'packet-too-big': { v6: 2 },
  redirect: { v4: 5, v6: 137 },
  'echo-request': { v4: 8, v6: 128 },
  'router-advertisement': { v4: 9, v6: 134 },
  'router-solicitation': { v4: 10, v6: 133 },
  'time-exceeded': { v4: 11, v6: 3 },
  'parameter-problem': { v4: 12, v6: 4 },
  'neighbor-solicitation': { v6: 135 },
  'neighbor-advertisement': { v6: 136 },
};

export const PRESET_NAMES = ['ssh', 'dns', 'dhcp', 'ntp', 'ldap', 'ldaps', 'icmp', 'cloud-metadata'] as const;
export type PresetName = (typeof PRESET_NAMES)[number];

export const DEFAULT_TABLE = 'node_red_isolation';
export const MAX_EXCEPTIONS = 256;
/** 30 days */
export const MAX_DURATION = 30 * 86400;

const printable = (max: number) =>
  z
    .string()
    .max(max)
    // eslint-disable-next-line no-control-regex
    .refine((s) => !/[\u0000-\u001f\u007f]/.test(s), 'must not contain control characters');

const addrSchema = z.string().transform((s, ctx) => {
  const p = parseAddr(s);
  if (!p) {
    ctx.addIssue({ code: 'custom', message: `not an IPv4/IPv6 address or CIDR: ${JSON.stringify(s.slice(0, 80))}` });
    return z.NEVER;
  }
  return p.text;
});

const portNumber = z.number().int().min(1).max(65535);
const portSchema = z.union([portNumber, z.string()]).transform((v, ctx): number | string => {
  if (typeof v === 'number') return v;
  const range = portRange(v);
  if (!range) {
    ctx.addIssue({ code: 'custom', message: 'port must be 1-65535 or "lo-hi" with 1 <= lo <= hi <= 65535' });
    return z.NEVER;
  }
  const [lo, hi] = range;
  return lo === hi ? lo : `${lo}-${hi}`;
});

/** a uid, or a user name (POSIX portable, as useradd takes it) that nft resolves on the host */
const uidSchema = z.union([
  z.number().int().min(0).max(4294967294),
  z.string().regex(USER_NAME, 'uid must be a number or a user name (lower case letters, digits, _ and -)'),
]);
const unitSchema = z
  .string()
  .regex(UNIT_NAME, 'unit must be a systemd unit name such as "backup-agent.service"')
  .refine((s) => !s.startsWith('.') && !s.includes('..'), 'unit must be a systemd unit name');
const cgroupSchema = z
  .string()
  .max(1024)
  .regex(CGROUP_PATH, 'cgroup must be a relative cgroup v2 path such as "system.slice/backup.service"')
  .refine(cgroupSegmentsOk, 'cgroup must not contain "." or ".." segments');

export const exceptionSchema = z
  .strictObject({
    direction: z.enum(['in', 'out']),
    proto: z.enum(['tcp', 'udp', 'icmp', 'any']),
    addr: addrSchema.optional(),
    port: portSchema.optional(),
    icmpType: z.enum(Object.keys(ICMP_TYPES) as [string, ...string[]]).optional(),
    uid: uidSchema.optional(),
    unit: unitSchema.optional(),
    cgroup: cgroupSchema.optional(),
    comment: printable(128).optional(),
  })
  .superRefine((e, ctx) => {
    const owners = (['uid', 'unit', 'cgroup'] as const).filter((k) => e[k] !== undefined);
    if (owners.length > 1) ctx.addIssue({ code: 'custom', path: [owners[1]], message: 'name at most one of uid, unit and cgroup' });
    if (owners.length > 0) {
      if (e.direction !== 'out') ctx.addIssue({ code: 'custom', path: [owners[0]], message: `${owners[0]} exceptions are outbound only (direction "out")` });
      if (e.proto === 'icmp') ctx.addIssue({ code: 'custom', path: ['proto'], message: `${owners[0]} exceptions take proto tcp, udp or any` });
    }
    if (e.port !== undefined && e.proto !== 'tcp' && e.proto !== 'udp') {
      ctx.addIssue({ code: 'custom', path: ['port'], message: 'port is only allowed with proto tcp or udp' });
    }
    if (e.icmpType !== undefined) {
      if (e.proto !== 'icmp') {
        ctx.addIssue({ code: 'custom', path: ['icmpType'], message: 'icmpType is only allowed with proto icmp' });
      } else if (e.addr !== undefined) {
        const fam = e.addr.includes(':') ? 'v6' : 'v4';
        if (ICMP_TYPES[e.icmpType][fam] === undefined) {
          ctx.addIssue({ code: 'custom', path: ['icmpType'], message: `${e.icmpType} does not exist for IP${fam}` });
        }
      }
    }
  })
  .transform((e) => {
    // canonical key order, absent fields left out
    const out: Exception = { direction: e.direction, proto: e.proto };
    if (e.addr !== undefined) out.addr = e.addr;
    if (e.port !== undefined) out.port = e.port;
    if (e.icmpType !== undefined) out.icmpType = e.icmpType;
    if (e.uid !== undefined) out.uid = e.uid;
    if (e.unit !== undefined) out.unit = e.unit;
    if (e.cgroup !== undefined) out.cgroup = e.cgroup;
    if (e.comment !== undefined && e.comment !== '') out.comment = e.comment;
    return out;
  });

export interface Exception {
  direction: 'in' | 'out';
  proto: 'tcp' | 'udp' | 'icmp' | 'any';
  addr?: string;
  port?: number | string;
  icmpType?: string;
  /** outbound traffic of this local user: a uid, or a user name the host resolves */
  uid?: number | string;
  /** outbound traffic of this systemd unit (its cgroup `system.slice/<unit>`) */
  unit?: string;
  /** outbound traffic of the processes in this cgroup v2 path (relative to the cgroup2 root) */
  cgroup?: string;
  comment?: string;
}

/** True for exceptions matched by the owner of the local socket rather than by set elements. */
export function isOwnerException(e: Exception): boolean {
  return e.uid !== undefined || e.unit !== undefined || e.cgroup !== undefined;
}

export const exceptionListSchema = z.array(exceptionSchema).max(MAX_EXCEPTIONS);

export const tableNameSchema = z
  .string()
  .regex(TABLE_NAME, 'table name must be an identifier: a letter, then letters, digits or _ (max 32)');

export const presetListSchema = z.array(z.enum(PRESET_NAMES)).max(PRESET_NAMES.length * 2);

/** enforce drops what no exception names; audit drops nothing and records what enforce would drop */
export const modeSchema = z.enum(['enforce', 'audit'], { message: 'mode must be "enforce" or "audit"' });
export type Mode = z.infer<typeof modeSchema>;

/** a notice for the host's logged-in users (wall): text, newlines and tabs allowed, no other control characters */
export const wallSchema = z
  .string()
  .min(1, 'wall message must not be empty')
  .max(1024, 'wall message is at most 1024 characters')
  // eslint-disable-next-line no-control-regex
  .refine((s) => !/[\u0000-\u0008\u000b-\u001f\u007f]/.test(s), 'wall message must not contain control characters');

/**
 * The servers a preset opens its port to, where the operator names them: addresses or networks no
 * wider than /16 (IPv4) or /48 (IPv6). Unnamed kinds are read from the host's own configuration.
 */
const serverListSchema = z
  .array(addrSchema)
  .min(1, 'name at least one server, or leave the list out to read them from the host')
  .max(SERVER_LIMITS.max)
  .superRefine((list, ctx) => {
    for (const a of list) {
      const [base, len] = a.split('/');
      if (len !== undefined && Number(len) < SERVER_LIMITS.minPrefix[base.includes(':') ? 6 : 4]) {
        ctx.addIssue({ code: 'custom', message: `${a} is too wide for a server: at most /${SERVER_LIMITS.minPrefix[4]} (IPv4) or /${SERVER_LIMITS.minPrefix[6]} (IPv6)` });
      }
    }
  });
export const serversSchema = z.strictObject({
  dns: serverListSchema.optional(),
  ntp: serverListSchema.optional(),
  ldap: serverListSchema.optional(),
});
export type Servers = z.infer<typeof serversSchema>;

/**
 * The case an action belongs to (an EDR's case id and its link) and who asked for it. They describe
 * the request, not the isolation: any message may set them, like `reason`. Bounded and printable,
 * as they are stored on the host (inside the isolation record) and copied into every audit record.
 */
export const CASE_ID = /^[A-Za-z0-9._:#/-]{1,64}$/;
export const MAX_CASE_URL = 512;
export const MAX_REQUESTED_BY = 128;
/** control, format (bidi, zero-width), surrogate and line/paragraph separator characters */
const UNPRINTABLE = /[\p{Cc}\p{Cf}\p{Cs}\p{Zl}\p{Zp}]/u;
const caseUrlSchema = z
  .string()
  .max(MAX_CASE_URL, `case.url is at most ${MAX_CASE_URL} characters`)
  .refine((s) => !UNPRINTABLE.test(s) && !/\s/.test(s), 'case.url must not contain control characters or white space')
  .pipe(z.url({ protocol: /^https?$/, message: 'case.url must be an http(s) URL' }))
  // as written, not as WHATWG repairs it ("https:///x" parses): scheme, "//", a host; no user:password@ to leak
  .refine((s) => /^https?:\/\/[^/?#\\]/i.test(s) && URL.canParse(s) && new URL(s).username === '' && new URL(s).password === '', 'case.url must be http(s)://host/... without credentials');
export const caseSchema = z.strictObject({
  id: z.string().regex(CASE_ID, 'case.id is 1 to 64 characters of A-Z a-z 0-9 . _ : # / -'),
  url: caseUrlSchema.optional(),
});
export type Case = z.infer<typeof caseSchema>;
export const requestedBySchema = z
  .string()
  .min(1, 'requestedBy must not be empty')
  .max(MAX_REQUESTED_BY, `requestedBy is at most ${MAX_REQUESTED_BY} characters`)
  .refine((s) => !UNPRINTABLE.test(s), 'requestedBy must not contain control characters');
/** What an action's request says about itself (its case and requester), for the nodes that only audit them. */
export const requestMetaSchema = z.strictObject({
  case: caseSchema.optional(),
  requestedBy: requestedBySchema.optional(),
});
export type RequestMeta = z.infer<typeof requestMetaSchema>;

export const unisolateRequestSchema = z.strictObject({
  /** told to logged-in users once the isolation is lifted */
  wall: wallSchema.optional(),
});
export type UnisolateRequestInput = z.input<typeof unisolateRequestSchema>;

/** The port a probe tries when it names none: HTTPS, what a host's traffic out mostly is. */
export const DEFAULT_PROBE_PORT = 443;

/**
 * The blocking probe: an address (IPv4 or IPv6, one host, no CIDR) and a TCP port that the host
 * must fail to reach once the isolation is in. Loopback, unspecified and multicast addresses are
 * refused: the table always lets loopback through, and the others prove nothing.
 */
export const probeSchema = z
  .strictObject({
    addr: z.string().max(64),
    port: portNumber.default(DEFAULT_PROBE_PORT),
    proto: z.literal('tcp', { message: 'proto must be "tcp": only a TCP handshake proves a path (a UDP datagram that got out need not be answered)' }).default('tcp'),
  })
  .transform((v, ctx) => {
    const p = parseAddr(v.addr);
    if (!p || p.text.includes('/')) {
      ctx.addIssue({ code: 'custom', path: ['addr'], message: `probe addr must be one IPv4 or IPv6 address (no CIDR): ${JSON.stringify(v.addr.slice(0, 80))}` });
      return z.NEVER;
    }
    const ip = ipaddr.parse(p.text);
    const range = ip.range();
    if (['loopback', 'unspecified', 'multicast', 'broadcast'].includes(range)) {
      ctx.addIssue({ code: 'custom', path: ['addr'], message: `probe addr ${p.text} is a ${range} address: it proves nothing about the isolation` });
      return z.NEVER;
    }
    return { addr: p.text, port: v.port, proto: v.proto };
  });
export type Probe = z.output<typeof probeSchema>;

/** Whether an address (or CIDR) `net` holds the single address `addr`. */
export function addrCovers(net: string, addr: string): boolean {
  const n = parseAddr(net);
  const a = parseAddr(addr);
  return n !== null && a !== null && n.family === a.family && a.interval[0] >= n.interval[0] && a.interval[1] <= n.interval[1];
}

/** Whether an exception's port (a number or "lo-hi") takes `port`; an exception without one takes every port. */
function portTakes(p: number | string | undefined, port: number): boolean {
  if (p === undefined) return true;
  if (typeof p === 'number') return p === port;
  const [lo, hi] = p.split('-').map(Number);
  return port >= lo && port <= hi;
}

/**
 * Why this probe proves nothing with these exceptions and management addresses (a string), or
 * null: an outbound address exception (not an owner one: those are what the probe is for) that
 * lets the host open TCP to it, or a management address or network that holds it.
 */
export function probeConflict(probe: Probe, exceptions: readonly Exception[], management: readonly { addr: string; port?: number }[]): string | null {
  for (const m of management) {
    if (addrCovers(m.addr, probe.addr)) return `it is the management address ${m.addr}`;
  }
  for (const e of exceptions) {
    if (e.direction !== 'out' || isOwnerException(e) || (e.proto !== 'tcp' && e.proto !== 'any')) continue;
    if ((e.addr === undefined || addrCovers(e.addr, probe.addr)) && portTakes(e.port, probe.port)) {
      return `the exception out ${e.proto} ${e.addr ?? 'any address'}${e.port !== undefined ? ` port ${e.port}` : ''} lets the host reach it`;
    }
  }
  return null;
}

export const isolateRequestSchema = z.strictObject({
  presets: presetListSchema.default([]),
  exceptions: exceptionListSchema.default([]),
  // free text from the alert, stored base64-encoded on the host: any character is safe
  reason: z.string().max(1024, 'reason is at most 1024 characters').optional(),
  /** the case this isolation belongs to, kept with it on the host (informational there: see docs) */
  case: caseSchema.optional(),
  /** who asked for it (a user, an analyst, a playbook), kept with it on the host */
  requestedBy: requestedBySchema.optional(),
  mode: modeSchema.default('enforce'),
  /** seconds until the host releases itself; 0 = until unisolated */
  duration: z.number().int().min(0).max(MAX_DURATION).default(0),
  /** isolate even when the management channel cannot be determined (lockout risk) */
  force: z.boolean().default(false),
  /** verify-then-commit: prove a fresh SSH connection still works, else roll back */
  verify: z.boolean().default(true),
  /** told to logged-in users once the isolation is in (and, with a duration, when it ends by itself) */
  wall: wallSchema.optional(),
  /** re-apply the isolation at every boot until unisolated (a systemd unit on the host) */
  persist: z.boolean().default(false),
  /** the servers the dns, ntp and ldap/ldaps presets open to (over the target's, over the host's own) */
  servers: serversSchema.optional(),
  /** once the isolation is in, the host must fail to reach this address: else it is rolled back (PROBE_REACHED) */
  probe: probeSchema.optional(),
}).refine((r) => !(r.persist && r.duration > 0), {
  path: ['persist'],
  message: 'persist is for isolations that last until unisolated: it cannot be combined with a duration',
}).refine((r) => !(r.probe && r.mode === 'audit'), {
  path: ['probe'],
  message: 'a probe proves that traffic is cut: audit mode cuts nothing (use it with mode "enforce")',
});
export type IsolateRequest = z.infer<typeof isolateRequestSchema>;
export type IsolateRequestInput = z.input<typeof isolateRequestSchema>;

export const exceptionOpSchema = z.enum(['add', 'remove', 'replace']);
export type ExceptionOp = z.infer<typeof exceptionOpSchema>;

export const hostnameSchema = z
  .string()
  .max(253)
  .regex(HOST_NAME)
  .refine((s) => !/^[\d.]+$/.test(s), 'a numeric host must be a dotted-quad IPv4 address');

export const hostSchema = z
  .string()
  .transform((s) => s.trim())
  .refine((s) => (!s.includes('/') && parseAddr(s) !== null) || hostnameSchema.safeParse(s).success, {
    message: 'host must be an IP address or a DNS hostname',
  })
  .transform((s) => {
    const p = parseAddr(s);
    return p ? p.text : s.toLowerCase();
  });

const usernameSchema = z.string().regex(LOGIN_NAME, 'username must be a POSIX user name');

/** Where and as whom an SSH login goes: the same fields for a target and for its bastion. */
const sshLogin = {
  host: hostSchema,
  port: z.number().int().min(1).max(65535).default(22),
  username: usernameSchema,
  privateKey: z.string().max(65536).optional(),
  passphrase: z.string().max(1024).optional(),
  password: z.string().max(1024).optional(),
};
const hasCredential = (t: { privateKey?: string; password?: string }) => (t.privateKey !== undefined && t.privateKey !== '') || (t.password !== undefined && t.password !== '');
const CREDENTIAL_REQUIRED = { message: 'a privateKey or a password is required' };

/**
 * A jump host (bastion) the target is reached through, as `ssh -J` does: the driver logs in to it
 * (its own pinned host key and credentials) and opens a forwarded channel to the target, over
 * which the target's own SSH session runs end to end. It is never acted on itself.
 */
export const jumpSchema = z
  .strictObject({
    ...sshLogin,
    knownHosts: z.string().min(1, 'knownHosts is required: pin the bastion\'s host key (ssh-keyscan -t ed25519 BASTION)').max(1 << 20),
  })
  .refine(hasCredential, CREDENTIAL_REQUIRED);
export type Jump = z.infer<typeof jumpSchema>;

/** hosts that must never be isolated: hostnames (lower-cased), addresses and CIDRs (canonical) */
export const protectedHostsSchema = z
  .array(
    z
      .string()
      .transform((s) => s.trim())
      .transform((s, ctx) => {
        const p = parseAddr(s);
        if (p) return p.text;
        if (hostnameSchema.safeParse(s).success) return s.toLowerCase();
        ctx.addIssue({ code: 'custom', message: `each protected host must be a hostname, an IP or a CIDR: ${JSON.stringify(s.slice(0, 80))}` });
        return z.NEVER;
      }),
  )
  .max(1024);

export const targetSchema = z
  .strictObject({
    ...sshLogin,
    knownHosts: z.string().min(1, 'knownHosts is required: pin the host key (ssh-keyscan -t ed25519 HOST)').max(1 << 20),
    /** reach the host through this bastion (one pooled connection to it, a forwarded channel per host) */
    jump: jumpSchema.optional(),
    sudo: z.boolean().default(false),
    timeoutMs: z.number().int().min(100).max(600_000).default(20_000),
    table: tableNameSchema.default(DEFAULT_TABLE),
    /** extra networks (CIDRs) that always keep SSH to the host, beside the detected channel */
    managementCidrs: z.array(addrSchema).max(64).default([]),
    /** the servers the dns, ntp and ldap/ldaps presets open to; kinds left out are read from the host */
    servers: serversSchema.optional(),
    /** hosts never to isolate (names, addresses, CIDRs); the controller's own addresses are always protected */
    protectedHosts: protectedHostsSchema.default([]),
  })
  .refine(hasCredential, CREDENTIAL_REQUIRED);
export type Target = z.infer<typeof targetSchema> & {
  /**
   * Set by the driver only (the schema refuses it from a caller): the address the protected-host
   * check resolved `host` to and passed. The connection goes there (directly, or as the
   * destination of the bastion's forwarded channel); the host key is still pinned by `host`.
   */
  readonly dial?: string;
};
export type TargetInput = z.input<typeof targetSchema>;

/** Parses with `schema` or throws a ValidationError that names every failing field. */
export function validate<S extends z.ZodType>(schema: S, value: unknown, what: string): z.infer<S> {
  const r = schema.safeParse(value);
  if (r.success) return r.data;
  const issues = r.error.issues.map((i) => ({ path: [what, ...i.path.map(String)].join('.'), message: i.message }));
  const summary = issues
    .slice(0, 3)
    .map((i) => `${i.path}: ${i.message}`)
    .join('; ');
  throw new ValidationError(`invalid ${what}: ${summary}${issues.length > 3 ? ` (+${issues.length - 3} more)` : ''}`, issues);
}

/** Identity used to compare exceptions (the comment is a label, not part of what is allowed). */
export function exceptionKey(e: Exception): string {
  const owner = e.uid !== undefined ? `uid=${e.uid}` : e.unit !== undefined ? `unit=${e.unit}` : e.cgroup !== undefined ? `cgroup=${e.cgroup}` : '*';
  return [e.direction, e.proto, e.addr ?? '*', e.port ?? '*', e.icmpType ?? '*', owner].join('|');
}

/** Keeps the first of each distinct exception, in order. */
export function dedupeExceptions(list: readonly Exception[]): Exception[] {
  const seen = new Set<string>();
  return list.filter((e) => {
    const k = exceptionKey(e);
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}

export const allowedHostsSchema = z
  .array(
    z
      .string()
      .transform((s) => s.trim())
      .refine((s) => parseAddr(s) !== null || hostnameSchema.safeParse(s).success, 'each allowed host must be a hostname, an IP or a CIDR'),
  )
  .max(10_000);

/**
 * Whether `host` may be targeted: it must equal the target's own host, or an allowlist entry
 * (a hostname compared case-insensitively, an IP, or a CIDR that contains the IP). An empty
 * allowlist means the target's host alone. Hostnames are not resolved here: a name is allowed
 * only when the same name is listed.
 */
export function isHostAllowed(host: string, targetHost: string, allowedHosts: readonly string[]): boolean {
  const norm = (s: string) => {
    const p = parseAddr(s.trim());
    return p ? p.text : s.trim().toLowerCase();
  };
  const h = norm(host);
  if (h === norm(targetHost)) return true;
  const ip = h.includes('/') ? null : parseAddr(h);
  for (const entry of allowedHosts) {
    const e = entry.trim();
    const cidr = parseAddr(e);
    if (cidr && ip) {
      if (cidr.family === ip.family && ip.interval[0] >= cidr.interval[0] && ip.interval[1] <= cidr.interval[1]) return true;
    } else if (!cidr && !ip && e.toLowerCase() === h) {
      return true;
    }
  }
  return false;
}

/**
 * The target to act on when a message names `host`: the base target with that host, if the
 * allowlist admits it; otherwise a HostNotAllowedError, before any connection is made.
 */
export function targetForHost<T extends { host: string }>(base: T, host: unknown, allowedHosts: readonly string[] = []): T {
  if (host === undefined || host === null || host === '') return base;
  if (typeof host !== 'string' || host.length > 253) throw new ValidationError('msg.host must be a hostname or an IP address', [{ path: 'host', message: 'not a string' }]);
  const h = validate(hostSchema, host, 'host');
  if (!isHostAllowed(h, base.host, allowedHosts)) throw new HostNotAllowedError(h);
  return { ...base, host: h };
}
