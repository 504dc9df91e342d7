/**
 * One error class per failure, each with a stable `code`. A Node-RED Catch node copies `err.code`
 * into `msg.error.code`, so flows route on these strings: never rename one.
 */

export type ErrorCode =
  | 'VALIDATION'
  | 'HOST_NOT_ALLOWED'
  | 'HOST_KEY_MISMATCH'
  | 'AUTH_FAILED'
  | 'UNREACHABLE'
  | 'TIMEOUT'
  | 'NFT_MISSING'
  | 'NFT_FAILED'
  | 'PARSE_ERROR'
  | 'NOT_ISOLATED'
  | 'PRIVILEGE'
  | 'CONCURRENT_CHANGE'
  | 'MANAGEMENT_UNKNOWN'
  | 'VERIFY_FAILED'
  | 'UNSUPPORTED'
  | 'SERVERS_UNKNOWN'
  | 'OUTPUT_LIMIT'
  | 'PROTECTED_HOST'
  | 'PROTECTED_UNRESOLVED'
  | 'BLAST_RADIUS'
  | 'PROBE_REACHED'
  /** isolate-host's Keep pending (src/nodes/common/pending.ts): the target keeps as many pending isolations as it may */
  | 'PENDING_FULL'
  /** isolate-host's Keep pending: the host did not answer before the pending isolation's bound; it was never applied */
  | 'PENDING_EXPIRED';

/** Most characters of one piece of host text (stderr, say) kept in an error or a record. */
export const MAX_HOST_TEXT = 2048;
/** Most characters of an error message as a whole, and of the message in an audit record. */
export const MAX_ERROR_MESSAGE = 4096;

// CSI, OSC, DCS/PM/APC/SOS strings, other two-character escapes, and the 8-bit CSI
// eslint-disable-next-line no-control-regex
const ESCAPES = /\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[PX^_][^\x1b]*\x1b\\|\x1b[ -/]*[0-~]|\x9b[0-?]*[ -/]*[@-~]/g;
// C0 but newline and tab, DEL, C1, and the bidirectional overrides that reorder what a reader sees
// eslint-disable-next-line no-control-regex
const CONTROLS = /[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;

/**
 * Text that came from a host (or an alert), made safe to copy into an error, an audit record or
 * a node's status: terminal escape sequences and control characters other than newline and tab
 * are removed, and the result is at most `max` characters; a cut one ends in a marker that says
 * how long the text was. Idempotent: applying it again changes nothing.
 */
export function hostText(text: unknown, max: number = MAX_HOST_TEXT): string {
  const raw = typeof text === 'string' ? text : text === undefined || text === null ? '' : String(text);
  // only a window of the text is cleaned: the work stays bounded however much the host sent
  const window = raw.length > max * 8 ? raw.slice(0, max * 8) : raw;
  const clean = window.replace(/\r\n/g, '\n').replace(ESCAPES, '').replace(CONTROLS, '');
  if (window === raw && clean.length <= max) return clean;
  const marker = `…[cut: ${raw.length} characters]`;
  if (max <= marker.length) return trimPair(clean.slice(0, max));
  return trimPair(clean.slice(0, max - marker.length)) + marker;
}

/** Drops a lone high surrogate left at the end by a cut. */
function trimPair(s: string): string {
  return /[\ud800-\udbff]$/.test(s) ? s.slice(0, -1) : s;
}

export interface ErrorDetails {
  host?: string;
  [key: string]: unknown;
}

export class IsolationError extends Error {
  readonly code: ErrorCode;
  readonly host?: string;
  readonly details: ErrorDetails;

  constructor(code: ErrorCode, message: string, details: ErrorDetails = {}, options?: { cause?: unknown }) {
    // the last line of defence: every message is clean and bounded, whatever went into it
    super(hostText(message, MAX_ERROR_MESSAGE), options);
    this.name = new.target.name;
    this.code = code;
    this.host = details.host;
    this.details = details;
  }

  toJSON(): Record<string, unknown> {
    return { name: this.name, code: this.code, message: this.message, ...this.details };
  }
}

/** An input field failed its schema. `issues` lists each failing path with its message. */
export class ValidationError extends IsolationError {
  readonly issues: { path: string; message: string }[];
  constructor(message: string, issues: { path: string; message: string }[] = [], details: ErrorDetails = {}) {
    super('VALIDATION', message, { ...details, issues });
    this.issues = issues;
  }
}

/** The host named in the request is not on the target's allowlist; nothing was connected. */
export class HostNotAllowedError extends IsolationError {
  constructor(host: string) {
    super('HOST_NOT_ALLOWED', `host ${host} is not allowed by this target`, { host });
  }
}

/**
 * The host must never be isolated (listed in the target's protectedHosts, or the controller
 * itself, by name or by an address its name resolves to); nothing was connected.
 */
export class ProtectedHostError extends IsolationError {
  constructor(host: string, why: string) {
    super('PROTECTED_HOST', `host ${host} is protected and is never isolated: ${why}`, { host, why });
  }
}

/**
 * A protected name of the target (or its jump host's name) has never resolved on the controller,
 * so what it protects is not known: every isolation through the target is refused (fail closed)
 * until it resolves; nothing was connected. A name that resolved once keeps its last good
 * addresses instead, through any later failure.
 */
export class ProtectedUnresolvedError extends IsolationError {
  /** the name that never resolved */
  readonly unresolved: string;
  constructor(name: string, role: 'protected host' | 'jump host', why: string) {
    super(
      'PROTECTED_UNRESOLVED',
      `${role} ${name} has never resolved on this controller (${why}): every isolation through this target is refused until it does (a protected host only the bastion can resolve must be listed by address or CIDR)`,
      { unresolved: name, role, why },
    );
    this.unresolved = name;
  }
}

/**
 * `msg.hosts` names more hosts than the node may act on in one message (its `maxHosts`, bounded
 * by the runtime setting `isolationTargetMaxHosts`): the message is refused as a whole, before
 * any connection, and no host is changed. `asked` is how many distinct hosts it named.
 */
export class BlastRadiusError extends IsolationError {
  readonly asked: number;
  readonly maxHosts: number;
  constructor(asked: number, maxHosts: number, why: string) {
    super('BLAST_RADIUS', `msg.hosts names ${asked} hosts, more than this node acts on in one message (${maxHosts}, ${why}); refused, no host was contacted`, { asked, maxHosts });
    this.asked = asked;
    this.maxHosts = maxHosts;
  }
}

/** The server's host key is not the one pinned in known_hosts; nothing was sent. */
export class HostKeyMismatchError extends IsolationError {
  constructor(host: string, reason: string, fingerprint: string) {
    super('HOST_KEY_MISMATCH', `host key of ${host} refused (${reason}): ${fingerprint}`, { host, reason, fingerprint });
  }
}

export class AuthFailedError extends IsolationError {
  constructor(host: string, message: string, options?: { cause?: unknown }) {
    super('AUTH_FAILED', `authentication to ${host} failed: ${hostText(message)}`, { host }, options);
  }
}

export class UnreachableError extends IsolationError {
  constructor(host: string, message: string, options?: { cause?: unknown }) {
    super('UNREACHABLE', `host ${host} unreachable: ${hostText(message)}`, { host }, options);
  }
}

/** A connect, login or exec did not finish within its time limit. */
export class TimeoutError extends IsolationError {
  constructor(host: string, what: string, ms: number) {
    super('TIMEOUT', `${what} on ${host} timed out after ${ms} ms`, { host, timeoutMs: ms });
  }
}

export class NftMissingError extends IsolationError {
  constructor(host: string, stderr: string) {
    super('NFT_MISSING', `nft is not installed or not on PATH on ${host}`, { host, stderr: hostText(stderr) });
  }
}

/**
 * nft refused the batch; `stderr` is nft's own output, cleaned and bounded (`hostText`). Nothing
 * was applied.
 */
export class NftFailedError extends IsolationError {
  readonly stderr: string;
  readonly exitCode: number | null;
  constructor(host: string, stderrIn: string, exitCode: number | null) {
    const stderr = hostText(stderrIn);
    super('NFT_FAILED', `nft failed on ${host}: ${stderr.trim() || `exit code ${exitCode}`}`, { host, stderr, exitCode });
    this.stderr = stderr;
    this.exitCode = exitCode;
  }
}

export class ParseError extends IsolationError {
  constructor(host: string, message: string) {
    super('PARSE_ERROR', `unexpected nft output from ${host}: ${hostText(message)}`, { host });
  }
}

export class NotIsolatedError extends IsolationError {
  constructor(host: string) {
    super('NOT_ISOLATED', `host ${host} is not isolated`, { host });
  }
}

/** sudo refused, or the remote user may not change the firewall. */
export class PrivilegeError extends IsolationError {
  constructor(host: string, stderrIn: string) {
    const stderr = hostText(stderrIn);
    super('PRIVILEGE', `not allowed to run nft on ${host}: ${stderr.trim()}`, { host, stderr });
  }
}

/** The isolation was changed by someone else between our read and our write, more than once. */
export class ConcurrentChangeError extends IsolationError {
  constructor(host: string, why?: string) {
    super('CONCURRENT_CHANGE', why ? `isolation on ${host} changed concurrently: ${why}` : `isolation on ${host} changed concurrently; retry`, { host });
  }
}

/** The management channel could not be determined, so isolating could lock the controller out. */
export class ManagementUnknownError extends IsolationError {
  constructor(host: string) {
    super('MANAGEMENT_UNKNOWN', `cannot tell the management channel of ${host} (no SSH_CONNECTION); refusing to isolate`, { host });
  }
}

/**
 * After applying, a new connection to the host (a TCP connection its sshd answers, or a fresh SSH login where login may ask the network) failed. `rolledBack` says whether the
 * controller undid the change; if it could not, the host undoes it by itself at `rollbackAt`.
 */
export class VerifyFailedError extends IsolationError {
  constructor(host: string, rolledBack: boolean, rollbackAt: string, options?: { cause?: unknown }) {
    const why = options?.cause instanceof Error ? `: ${hostText(options.cause.message)}` : '';
    super(
      'VERIFY_FAILED',
      rolledBack
        ? `host ${host} did not answer a new connection after isolating${why}; the isolation was rolled back`
        : `host ${host} did not answer a new connection after isolating${why}; the host rolls the isolation back by itself at ${rollbackAt}`,
      { host, rolledBack, rollbackAt },
      options,
    );
  }
}

/**
 * The host's nft or kernel cannot do what the request needs (say, match a systemd unit by its
 * cgroup). Nothing was applied: the transaction failed as a whole.
 */
export class UnsupportedError extends IsolationError {
  readonly feature: string;
  readonly hint: string;
  readonly stderr: string;
  /** `nftVersion`: what the host's nft says it is (named in the message when known) */
  constructor(host: string, feature: string, hint: string, stderrIn: string, nftVersion?: string) {
    const stderr = hostText(stderrIn);
    const version = nftVersion === undefined ? '' : ` (the host runs nft ${hostText(nftVersion, 32)})`;
    super('UNSUPPORTED', `host ${host} cannot ${feature}${version}: ${hint}. nft said: ${stderr.trim()}`, { host, feature, stderr, ...(nftVersion === undefined ? {} : { nftVersion: hostText(nftVersion, 32) }) });
    this.feature = feature;
    this.hint = hint;
    this.stderr = stderr;
  }
}

/**
 * A preset opens its port to this host's own servers only (never to any address), and they could
 * not be found: not named by the operator, not in the host's configuration, or a name that does
 * not resolve there. Nothing was applied.
 */
export class ServersUnknownError extends IsolationError {
  constructor(host: string, kind: string, why: string) {
    super(
      'SERVERS_UNKNOWN',
      `cannot tell the ${kind.toUpperCase()} servers of ${host} (${hostText(why, 512)}); name them in the target's or the request's servers.${kind}, or leave the preset out`,
      { host, kind },
    );
  }
}

/**
 * The host sent more output for one command than the controller reads (`limit` bytes of stdout
 * and stderr together): a broken or hostile host. Reading stopped there and the connection was
 * dropped; whether the change went in is unknown, so read the status before relying on it.
 */
export class OutputLimitError extends IsolationError {
  constructor(host: string, limit: number) {
    super('OUTPUT_LIMIT', `${host} sent more than ${limit} bytes of output for one command; reading stopped and the connection was closed`, { host, limitBytes: limit });
  }
}

/**
 * The blocking probe: once the isolation was in, the host still reached the probe address (a TCP
 * handshake completed, or a RST came back), so some path the table does not cut carries traffic.
 * `rolledBack` says whether the controller put back what the host held before (no isolation of
 * ours, or the previous one); if it could not, the host does by itself at `rollbackAt`.
 */
export class ProbeReachedError extends IsolationError {
  readonly rolledBack: boolean;
  constructor(host: string, probe: { addr: string; port: number }, outcome: string, rolledBack: boolean, rollbackAt: string) {
    super(
      'PROBE_REACHED',
      `host ${host} still reached the probe ${probe.addr} port ${probe.port} (${outcome}) with the isolation in: ` +
        (rolledBack ? 'the isolation was rolled back' : `the host rolls the isolation back by itself at ${rollbackAt}`),
      { host, probe: { addr: probe.addr, port: probe.port }, outcome, rolledBack, rollbackAt },
    );
    this.rolledBack = rolledBack;
  }
}
