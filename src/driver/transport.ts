/**
 * SSH: connect, verify the host key before anything is sent, exec a constant command with the
 * data on stdin, a time limit on every wait, and a pool of warm connections. The only module here
 * that does I/O.
 */
import { createHash } from 'crypto';
import { NodeSSH } from 'node-ssh';
import type { Client, ClientChannel } from 'ssh2';
import {
  AuthFailedError,
  HostKeyMismatchError,
  hostText,
  IsolationError,
  NftFailedError,
  NftMissingError,
  OutputLimitError,
  PrivilegeError,
  TimeoutError,
  UnreachableError,
} from './errors';
import { fingerprint, parseKnownHosts, verifyHostKey } from './knownhosts';
import type { Target } from './policy';

import { COMMANDS } from './hostscript';

export { BOOT_UNIT_DIR, COMMANDS } from './hostscript';

export interface ExecResult {
  code: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
}

/** The management channel as the host sees it (from SSH_CONNECTION). */
export interface SshEndpoints {
  clientAddr: string;
  clientPort: number;
  serverAddr: string;
  serverPort: number;
}

export function parseSshConnection(text: string): SshEndpoints | null {
  const parts = text.trim().split(/\s+/);
  if (parts.length !== 4) return null;
  const [clientAddr, cp, serverAddr, sp] = parts;
  const clientPort = Number(cp);
  const serverPort = Number(sp);
  if (!Number.isInteger(clientPort) || !Number.isInteger(serverPort) || serverPort < 1 || serverPort > 65535) return null;
  return { clientAddr, clientPort, serverAddr, serverPort };
}

const KEEPALIVE_MS = 5000;
const CHANNEL_RETRIES = 3;

/**
 * Most bytes read from a host for one command, stdout and stderr together (4 MiB). A listing of
 * the pack's table is a few kB; a host that sends more is broken or hostile, and unbounded it
 * would take the whole runtime's memory: past this the command fails with OUTPUT_LIMIT.
 */
export const MAX_EXEC_OUTPUT = 4 * 1024 * 1024;

/** One authenticated SSH connection. */
export class SshConnection {
  private closed = false;
  private readonly client: Client;

  /** learned once per connection, right after login */
  endpoints: SshEndpoints | null = null;

  constructor(
    private readonly ssh: NodeSSH,
    readonly label: string,
  ) {
    this.client = ssh.connection!;
    // node-ssh drops its error listener once connected: without ours a dropped link is an uncaught exception
    this.client.on('error', () => this.markClosed());
    this.client.on('close', () => this.markClosed());
    this.client.on('end', () => this.markClosed());
  }

  get alive(): boolean {
    return !this.closed;
  }

  /** The underlying ssh2 client, for diagnostics (the benchmark's floor execs on it bare). */
  get sshClient(): Client {
    return this.client;
  }

  private markClosed(): void {
    this.closed = true;
  }

  close(): void {
    this.closed = true;
    this.ssh.dispose();
  }

  /** Closes at once, without the polite goodbye: for a host that floods or stalls. */
  private abandon(): void {
    this.close();
    this.client.destroy();
  }

  /**
   * Runs a constant command, writes `stdin` and ends it; bounded by `timeoutMs`, and by
   * `maxOutput` bytes read back (stdout and stderr together): beyond that the connection is
   * dropped and the call fails with OUTPUT_LIMIT.
   */
  async exec(command: string, stdin: string, timeoutMs: number, maxOutput = MAX_EXEC_OUTPUT): Promise<ExecResult> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.execOnce(command, stdin, timeoutMs, maxOutput);
      } catch (err) {
        // OpenSSH caps channels per connection (MaxSessions); a refused open is safe to retry
        const refused = err instanceof Error && /open failed|Channel open failure/i.test(err.message) && !(err instanceof IsolationError);
        if (!refused || attempt >= CHANNEL_RETRIES || this.closed) throw err;
        await new Promise((r) => setTimeout(r, 20 * attempt));
      }
    }
  }

  private execOnce(command: string, stdin: string, timeoutMs: number, maxOutput: number): Promise<ExecResult> {
    if (this.closed) return Promise.reject(notStarted(new UnreachableError(this.label, 'connection closed')));
    return new Promise<ExecResult>((resolve, reject) => {
      let channel: ClientChannel | undefined;
      let settled = false;
      const finish = (err: Error | null, res?: ExecResult) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        this.client.removeListener('close', onClose);
        if (err) reject(err);
        else resolve(res!);
      };
      // lost before the channel opened: the command never ran (safe to run again on a new connection)
      const onClose = () =>
        finish(channel ? new UnreachableError(this.label, 'connection lost during the command') : notStarted(new UnreachableError(this.label, 'connection lost before the command started')));
      const timer = setTimeout(() => {
        // the link may be dead: drop the whole connection so the next call starts clean
        try {
          channel?.close();
        } catch {
          /* already gone */
        }
        this.close();
        finish(new TimeoutError(this.label, 'remote command', timeoutMs));
      }, timeoutMs);
      this.client.once('close', onClose);
      try {
        this.client.exec(command, (err, ch) => {
          if (err) return finish(err);
          channel = ch;
          const out: Buffer[] = [];
          const errOut: Buffer[] = [];
          let read = 0;
          const take = (into: Buffer[]) => (d: Buffer) => {
            if (settled) return;
            read += d.length;
            if (read <= maxOutput) {
              into.push(d);
              return;
            }
            // a host that floods is not to be trusted with this connection again: drop it all,
            // so nothing more is read, and the pool opens a fresh one next time
            try {
              ch.close();
            } catch {
              /* already gone */
            }
            this.abandon();
            finish(new OutputLimitError(this.label, maxOutput));
          };
          ch.on('data', take(out));
          ch.stderr.on('data', take(errOut));
          ch.on('error', (e: Error) => finish(e));
          ch.on('close', (code: number | null, signal?: string) =>
            finish(null, {
              code: code ?? null,
              signal: signal ?? null,
              stdout: Buffer.concat(out).toString('utf8'),
              stderr: Buffer.concat(errOut).toString('utf8'),
            }),
          );
          ch.end(stdin); // always end stdin, or `nft -f -` waits forever
        });
      } catch (e) {
        finish(e as Error);
      }
    });
  }
}

/** Marks an error of an exec whose command never reached the host. */
function notStarted(err: UnreachableError): UnreachableError {
  err.details.started = false;
  return err;
}

/** Whether a failed exec's command never reached the host (its connection was already gone). */
export function neverStarted(err: unknown): boolean {
  return err instanceof UnreachableError && err.details.started === false;
}

function classifyConnectError(host: string, err: unknown, hostKeyRefusal: HostKeyMismatchError | null, timeoutMs: number): IsolationError {
  if (hostKeyRefusal) return hostKeyRefusal;
  if (err instanceof IsolationError) return err;
  const e = err as Error & { level?: string; code?: string };
  const msg = e?.message ?? String(err);
  if (e?.level === 'client-authentication' || /authentication methods failed/i.test(msg)) return new AuthFailedError(host, msg, { cause: err });
  if (/privateKey|passphrase|private key/i.test(msg)) return new AuthFailedError(host, `private key unusable: ${msg}`, { cause: err });
  if (e?.level === 'client-timeout' || /timed out/i.test(msg) || e?.code === 'ETIMEDOUT') return new TimeoutError(host, 'SSH connect', timeoutMs);
  return new UnreachableError(host, e?.code ? `${e.code} ${msg}` : msg, { cause: err });
}

/** Opens, authenticates and host-key-verifies one connection within `timeoutMs`. */
export async function connect(target: Target, timeoutMs: number): Promise<SshConnection> {
  const label = target.port === 22 ? target.host : `${target.host}:${target.port}`;
  const deadline = Date.now() + timeoutMs;
  const entries = parseKnownHosts(target.knownHosts);
  let hostKeyRefusal: HostKeyMismatchError | null = null;
  const ssh = new NodeSSH();
  let timer: NodeJS.Timeout | undefined;
  const connectTimeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new TimeoutError(label, 'SSH connect', timeoutMs)), timeoutMs);
  });
  try {
    await Promise.race([
      ssh.connect({
        host: target.host,
        port: target.port,
        username: target.username,
        privateKey: target.privateKey || undefined,
        passphrase: target.passphrase || undefined,
        password: target.password || undefined,
        readyTimeout: timeoutMs,
        keepaliveInterval: KEEPALIVE_MS,
        keepaliveCountMax: 3,
        tryKeyboard: false,
        hostVerifier: (key: Buffer) => {
          const verdict = verifyHostKey(entries, target.host, target.port, key);
          if (verdict.ok) return true;
          hostKeyRefusal = new HostKeyMismatchError(label, verdict.reason, fingerprint(key));
          return false;
        },
      }),
      connectTimeout,
    ]);
  } catch (err) {
    ssh.dispose();
    throw classifyConnectError(label, err, hostKeyRefusal, timeoutMs);
  } finally {
    clearTimeout(timer);
  }
  // ssh2 leaves Nagle on: every exec would pay ~40 ms of delayed ACKs
  ssh.connection!.setNoDelay(true);
  const conn = new SshConnection(ssh, label);
  try {
    // the same time limit covers login and this first command
    const who = await conn.exec(COMMANDS.whoami, '', Math.max(1, deadline - Date.now()));
    conn.endpoints = who.code === 0 ? parseSshConnection(who.stdout) : null;
  } catch (err) {
    conn.close();
    throw err;
  }
  return conn;
}

/**
 * Maps a failed `nft` exec to the typed error that says why. The host's stderr is cleaned and
 * bounded (`hostText`) before it is read or copied into the error.
 */
export function nftError(host: string, res: ExecResult): IsolationError {
  const err = hostText(res.stderr);
  if (
    /^sudo: .*(password is required|not allowed|not in the sudoers|may not run|a terminal is required)/im.test(err) ||
    /^Sorry, user .* is not allowed to execute/m.test(err)
  ) {
    return new PrivilegeError(host, err);
  }
  if (res.code === 127 && /sudo/.test(err) && !/nft/.test(err)) return new PrivilegeError(host, err);
  if (res.code === 127 || /nft: (command )?not found|sudo: nft: command not found/i.test(err)) return new NftMissingError(host, err);
  if (/Operation not permitted/i.test(err)) return new PrivilegeError(host, err);
  return new NftFailedError(host, err, res.code);
}

interface PoolEntry {
  conn: Promise<SshConnection>;
  idleTimer?: NodeJS.Timeout;
  /** operations holding this connection right now: never evicted while > 0 */
  busy: number;
}

/**
 * Warm connections, one per (host, port, user, credentials), shared by every caller of one
 * driver. Bounded: beyond `maxConnections`, the least recently used idle connection is closed;
 * one unused for `idleMs` closes by itself. A connection that fails, closes or times out leaves
 * the pool, and the next call opens a new one.
 */
export class ConnectionPool {
  /** insertion order = least recently used first */
  private readonly entries = new Map<string, PoolEntry>();

  constructor(
    private readonly idleMs = 60_000,
    private readonly maxConnections = 256,
  ) {}

  static key(t: Target): string {
    // credentials are part of the key so that two targets with other keys never share a session
    const cred = createHash('sha256')
      .update(JSON.stringify([t.privateKey ?? '', t.passphrase ?? '', t.password ?? '', t.knownHosts]))
      .digest('hex')
      .slice(0, 16);
    return `${t.username}@${t.host}:${t.port}#${cred}`;
  }

  /** A warm connection for this target, held until `release`. */
  async get(target: Target, timeoutMs: number): Promise<SshConnection> {
    const key = ConnectionPool.key(target);
    const entry = this.entries.get(key);
    if (entry) {
      entry.busy++;
      const conn = await entry.conn.catch(() => null);
      if (conn?.alive) {
        this.touch(key);
        return conn;
      }
      entry.busy--;
      if (this.entries.get(key) === entry) this.drop(key);
    }
    const fresh: PoolEntry = { conn: connect(target, timeoutMs), busy: 1 };
    this.entries.set(key, fresh);
    this.evict();
    try {
      await fresh.conn;
    } catch (err) {
      if (this.entries.get(key) === fresh) this.entries.delete(key);
      throw err;
    }
    this.touch(key);
    return fresh.conn;
  }

  /** The caller is done with this target's connection for now (it stays warm). */
  release(target: Target): void {
    const entry = this.entries.get(ConnectionPool.key(target));
    if (entry && entry.busy > 0) entry.busy--;
  }

  private touch(key: string): void {
    const entry = this.entries.get(key);
    if (!entry) return;
    // move to the most recently used end
    this.entries.delete(key);
    this.entries.set(key, entry);
    clearTimeout(entry.idleTimer);
    entry.idleTimer = setTimeout(() => {
      if (entry.busy === 0) this.drop(key);
      else this.touch(key);
    }, this.idleMs);
    entry.idleTimer.unref();
  }

  /** Closes least recently used idle connections while the pool is over its bound. */
  private evict(): void {
    for (const [key, entry] of this.entries) {
      if (this.entries.size <= this.maxConnections) return;
      if (entry.busy === 0) this.drop(key);
    }
  }

  private drop(key: string): void {
    const entry = this.entries.get(key);
    if (!entry) return;
    this.entries.delete(key);
    clearTimeout(entry.idleTimer);
    entry.conn.then((c) => c.close()).catch(() => undefined);
  }

  /** Drops the connection of this target (after a timeout, say). */
  discard(target: Target): void {
    this.drop(ConnectionPool.key(target));
  }

  get size(): number {
    return this.entries.size;
  }

  async closeAll(): Promise<void> {
    const keys = [...this.entries.keys()];
    await Promise.all(
      keys.map(async (k) => {
        const e = this.entries.get(k)!;
        this.entries.delete(k);
        clearTimeout(e.idleTimer);
        await e.conn.then((c) => c.close()).catch(() => undefined);
      }),
    );
  }
}
