/**
 * Host key pinning against OpenSSH known_hosts text (sshd(8), "SSH_KNOWN_HOSTS FILE FORMAT"):
 * plain, wildcard, negated, `[host]:port` and hashed (`|1|salt|hmac`) host patterns, and the
 * `@revoked` marker. `@cert-authority` lines are ignored: host certificates are not supported, so a
 * host is trusted only through a pinned plain key. Pure: no I/O.
 */
import { createHash, createHmac } from 'crypto';
import { IsolationError } from './errors';

export class KnownHostsFormatError extends IsolationError {
  constructor(line: number, why: string) {
    super('VALIDATION', `knownHosts line ${line}: ${why}`, { line });
  }
}

export interface KnownHostsEntry {
  marker?: '@revoked' | '@cert-authority';
  patterns: string[];
  hashed?: { salt: Buffer; hash: Buffer };
  keyType: string;
  key: Buffer;
  line: number;
}

export type HostKeyVerdict = { ok: true; keyType: string } | { ok: false; reason: 'mismatch' | 'unknown-host' | 'revoked' };

const B64 = /^[A-Za-z0-9+/]+={0,2}$/;

/** The key type embedded in an SSH public key blob (its first length-prefixed string). */
function blobType(blob: Buffer): string | null {
  if (blob.length < 4) return null;
  const len = blob.readUInt32BE(0);
  if (len === 0 || len > 64 || blob.length < 4 + len) return null;
  return blob.subarray(4, 4 + len).toString('latin1');
}

export function parseKnownHosts(text: string): KnownHostsEntry[] {
  const entries: KnownHostsEntry[] = [];
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = i + 1;
    const trimmed = raw.trim();
    if (trimmed === '' || trimmed.startsWith('#')) return;
    const fields = trimmed.split(/\s+/);
    let marker: KnownHostsEntry['marker'];
    if (fields[0].startsWith('@')) {
      if (fields[0] !== '@revoked' && fields[0] !== '@cert-authority') throw new KnownHostsFormatError(line, `unknown marker ${fields[0]}`);
      marker = fields.shift() as KnownHostsEntry['marker'];
    }
    if (fields.length < 3) throw new KnownHostsFormatError(line, 'expected "hosts keytype base64-key"');
    const [hosts, keyType, b64] = fields;
    if (!B64.test(b64) || b64.length % 4 !== 0) throw new KnownHostsFormatError(line, 'key is not valid base64');
    const key = Buffer.from(b64, 'base64');
    if (blobType(key) !== keyType) throw new KnownHostsFormatError(line, `key blob is not of type ${keyType}`);
    const entry: KnownHostsEntry = { marker, patterns: [], keyType, key, line };
    if (hosts.startsWith('|')) {
      const m = /^\|1\|([A-Za-z0-9+/=]+)\|([A-Za-z0-9+/=]+)$/.exec(hosts);
      if (!m) throw new KnownHostsFormatError(line, 'malformed hashed host');
      entry.hashed = { salt: Buffer.from(m[1], 'base64'), hash: Buffer.from(m[2], 'base64') };
      if (entry.hashed.salt.length !== 20 || entry.hashed.hash.length !== 20) throw new KnownHostsFormatError(line, 'malformed hashed host');
    } else {
      entry.patterns = hosts.split(',').filter((p) => p !== '');
      if (entry.patterns.length === 0) throw new KnownHostsFormatError(line, 'no host pattern');
    }
    entries.push(entry);
  });
  return entries;
}

/** The host string OpenSSH writes and hashes: `host` on port 22, `[host]:port` otherwise. */
function hostString(host: string, port: number): string {
  return port === 22 ? host : `[${host}]:${port}`;
}

function globMatch(pattern: string, value: string): boolean {
  const re = new RegExp(
    '^' +
      pattern
        .split('')
        .map((c) => (c === '*' ? '.*' : c === '?' ? '.' : c.replace(/[.+^${}()|[\]\\]/g, '\\$&')))
        .join('') +
      '$',
    'i',
  );
  return re.test(value);
}

/** Does this pattern (without `!`) name host:port? */
function patternMatches(pattern: string, host: string, port: number): boolean {
  const bracket = /^\[(.+)\]:(\d+)$/.exec(pattern);
  if (bracket) return Number(bracket[2]) === port && globMatch(bracket[1], host);
  return port === 22 && globMatch(pattern, host);
}

function applies(entry: KnownHostsEntry, host: string, port: number): boolean {
  if (entry.hashed) {
    const h = createHmac('sha1', entry.hashed.salt).update(hostString(host, port)).digest();
    return h.equals(entry.hashed.hash);
  }
  let matched = false;
  for (const p of entry.patterns) {
    if (p.startsWith('!')) {
      if (patternMatches(p.slice(1), host, port)) return false; // a negated match vetoes the line
    } else if (patternMatches(p, host, port)) {
      matched = true;
    }
  }
  return matched;
}

export function verifyHostKey(entries: readonly KnownHostsEntry[], host: string, port: number, key: Buffer): HostKeyVerdict {
  const relevant = entries.filter((e) => e.marker !== '@cert-authority' && applies(e, host, port));
  if (relevant.some((e) => e.marker === '@revoked' && e.key.equals(key))) return { ok: false, reason: 'revoked' };
  const pinned = relevant.filter((e) => e.marker === undefined);
  const hit = pinned.find((e) => e.key.equals(key));
  if (hit) return { ok: true, keyType: hit.keyType };
  return { ok: false, reason: pinned.length > 0 ? 'mismatch' : 'unknown-host' };
}

/** `SHA256:<base64, no padding>`, as `ssh-keygen -l` prints it. */
export function fingerprint(key: Buffer): string {
  return `SHA256:${createHash('sha256').update(key).digest('base64').replace(/=+$/, '')}`;
}
