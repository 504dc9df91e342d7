/**
 * SSH: connect, verify the host key before anything is sent, exec a constant command with the
 * data on stdin, a time limit on every wait, and a pool of warm connections. The only module that
 * talks to a host (the programs it runs are src/driver/host/); the controller's one other I/O is
 * protect.ts's, which resolves names and reads the controller's own addresses.
 */
import { createHash } from 'crypto';
import { NodeSSH } from 'node-ssh';
import * as net from 'net';
import type { Duplex } from 'stream';
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
import { KeyCache } from './keys';
import { fingerprint, parseKnownHosts, verifyHostKey } from './knownhosts';
import type { Jump, Target } from './policy';

import { COMMANDS } from './host/programs';

export { BOOT_UNIT_DIR } from './host/commands';
export { COMMANDS } from './host/programs';

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

/**
 * Opens the byte stream to a host's SSH port (a test seam, as google/nftables' dial function: the fast test
 * tier hands the driver an in-process host on ssh2's own Server). Absent: a TCP connection.
 */
export type OpenStream = (host: string, port: number, timeoutMs: number) => Promise<Duplex>;

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

  private readonly closeHooks: (() => void)[] = [];

  /** Runs `fn` once, when this connection closes (however it ends). */
  onClosed(fn: () => void): void {
    if (this.closed) fn();
    else this.closeHooks.push(fn);
  }

  private markClosed(): void {
    this.closed = true;
    for (const fn of this.closeHooks.splice(0)) fn();
  }

  close(): void {
    this.markClosed();
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

/** What one SSH login needs: where, who, with what, and the pinned host key (and the checked address to dial, if any). */
type Endpoint = Pick<Target, 'host' | 'port' | 'username' | 'privateKey' | 'passphrase' | 'password' | 'knownHosts'> & { dial?: string };

/** The key (and its passphrase) one login is given, empty fields left out. */
function keyOf(ep: Pick<Endpoint, 'privateKey' | 'passphrase'>): { privateKey?: string; passphrase?: string } {
  return { privateKey: ep.privateKey || undefined, passphrase: ep.passphrase || undefined };
}

function labelOf(e: { host: string; port: number }): string {
  return e.port === 22 ? e.host : `${e.host}:${e.port}`;
}

/**
 * Logs in to `ep` within `timeoutMs`: over a new TCP connection (to `ep.dial`, the address that
 * was checked, when there is one; else to `ep.host`), or over `sock` (a channel forwarded by a
 * bastion). The host key is verified against `ep.knownHosts` by the host as it was given
 * (`ep.host`, a name or an address), never by the dialled address, before anything is sent.
 * A key with a passphrase is decrypted once by `keys` (off the event loop) and used decrypted;
 * without `keys`, ssh2 parses it here, as given.
 * Errors are classified under `label`.
 */
async function login(ep: Endpoint, label: string, timeoutMs: number, sock?: Duplex, keys?: KeyCache): Promise<NodeSSH> {
  const entries = parseKnownHosts(ep.knownHosts);
  let hostKeyRefusal: HostKeyMismatchError | null = null;
  const ssh = new NodeSSH();
  let timer: NodeJS.Timeout | undefined;
  const connectTimeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new TimeoutError(label, 'SSH connect', timeoutMs)), timeoutMs);
  });
  try {
    // within the same time limit: a key still being decrypted (once per credential) is waited for
    const key = keys ? await Promise.race([keys.material(keyOf(ep)), connectTimeout]) : keyOf(ep);
    await Promise.race([
      ssh.connect({
        ...(sock ? { sock } : { host: ep.dial ?? ep.host, port: ep.port }),
        username: ep.username,
        privateKey: key.privateKey,
        passphrase: key.passphrase,
        password: ep.password || undefined,
        readyTimeout: timeoutMs,
        keepaliveInterval: KEEPALIVE_MS,
        keepaliveCountMax: 3,
        tryKeyboard: false,
        hostVerifier: (key: Buffer) => {
          const verdict = verifyHostKey(entries, ep.host, ep.port, key);
          if (verdict.ok) return true;
          hostKeyRefusal = new HostKeyMismatchError(label, verdict.reason, fingerprint(key));
          return false;
        },
      }),
      connectTimeout,
    ]);
  } catch (err) {
    ssh.dispose();
    sock?.destroy();
    throw classifyConnectError(label, err, hostKeyRefusal, timeoutMs);
  } finally {
    clearTimeout(timer);
  }
  // ssh2 leaves Nagle on: every exec would pay ~40 ms of delayed ACKs
  ssh.connection!.setNoDelay(true);
  return ssh;
}

/**
 * Marks an error as one met on the way through a bastion: `details.via = 'bastion'`, the
 * bastion's address, and the `stage` it happened at (`bastion`: reaching or logging in to the
 * bastion; `forward`: the bastion refused the forward; `target`: the target, reached from the
 * bastion). The error stays the host's own (`host` is the target).
 */
function viaBastion<E extends IsolationError>(err: E, targetLabel: string, bastion: string, stage: 'bastion' | 'forward' | 'target'): E {
  Object.assign(err.details, { host: targetLabel, via: 'bastion', bastion, stage });
  (err as { host?: string }).host = targetLabel;
  return err;
}

interface BastionEntry {
  ssh: Promise<NodeSSH>;
  /** target connections (and channels being opened) that use this bastion connection now */
  users: number;
  idleTimer?: NodeJS.Timeout;
}

/**
 * Connections to bastions, one per (bastion, user, credentials, pinned key), shared by every
 * target reached through it. A bastion connection lives while a target connection uses it (its
 * channels ride on it), then `idleMs` more; one that drops leaves the pool and takes its targets'
 * connections with it (they reconnect through a new one). At most `maxBastions` are kept: beyond
 * that, unused ones close first.
 */
export class Bastions {
  private readonly entries = new Map<string, BastionEntry>();

  constructor(
    private readonly idleMs = 0,
    private readonly maxBastions = 64,
    /** the decrypted keys of the pool these bastions serve: the bastions' own and their targets' */
    readonly keys?: KeyCache,
  ) {}

  static key(j: Jump): string {
    const cred = createHash('sha256')
      .update(JSON.stringify([j.privateKey ?? '', j.passphrase ?? '', j.password ?? '', j.knownHosts]))
      .digest('hex')
      .slice(0, 16);
    return `${j.username}@${j.host}:${j.port}#${cred}`;
  }

  /** Bastion connections open (or opening) now. */
  get size(): number {
    return this.entries.size;
  }

  /**
   * A channel from the bastion to `target`'s SSH port, within `timeoutMs`; `release` must be
   * called once the channel (and the connection over it) is done with.
   */
  async forward(target: Target, timeoutMs: number): Promise<{ stream: ClientChannel; release: () => void }> {
    const jump = target.jump!;
    const key = Bastions.key(jump);
    const targetLabel = labelOf(target);
    const bastion = labelOf(jump);
    const deadline = Date.now() + timeoutMs;
    let entry = this.entries.get(key);
    if (!entry) {
      const fresh: BastionEntry = { ssh: login(jump, `bastion ${bastion} (jump to ${targetLabel})`, timeoutMs, undefined, this.keys), users: 0 };
      entry = fresh;
      this.entries.set(key, fresh);
      fresh.ssh.then(
        (ssh) => {
          const gone = () => {
            if (this.entries.get(key) === fresh) this.entries.delete(key);
            clearTimeout(fresh.idleTimer);
          };
          // keep our own listeners: a dropped bastion must not become an uncaught exception
          ssh.connection!.on('error', gone);
          ssh.connection!.on('close', gone);
          ssh.connection!.on('end', gone);
        },
        () => {
          if (this.entries.get(key) === fresh) this.entries.delete(key);
        },
      );
      this.evict();
    }
    const held = entry;
    held.users++;
    clearTimeout(held.idleTimer);
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      held.users--;
      if (held.users === 0) this.idle(key, held);
    };
    try {
      const ssh = await withTimeout(held.ssh, Math.max(1, deadline - Date.now()), () => new TimeoutError(`bastion ${bastion} (jump to ${targetLabel})`, 'SSH connect', timeoutMs));
      const stream = await openForward(ssh.connection!, target, Math.max(1, deadline - Date.now()), targetLabel, bastion);
      stream.once('close', release);
      return { stream, release };
    } catch (err) {
      release();
      if (err instanceof IsolationError && err.details.bastionLost && this.entries.get(key) === held) {
        this.entries.delete(key);
        held.ssh.then((s) => s.dispose()).catch(() => undefined);
      }
      if (err instanceof IsolationError && err.details.via === undefined) throw viaBastion(err, targetLabel, bastion, 'bastion');
      throw err;
    }
  }

  private idle(key: string, entry: BastionEntry): void {
    clearTimeout(entry.idleTimer);
    const closeIfUnused = () => {
      if (entry.users > 0) return;
      if (this.entries.get(key) === entry) this.entries.delete(key);
      entry.ssh.then((s) => s.dispose()).catch(() => undefined);
    };
    if (this.idleMs <= 0) return closeIfUnused();
    entry.idleTimer = setTimeout(closeIfUnused, this.idleMs);
    entry.idleTimer.unref();
  }

  /** Closes unused bastion connections while more than `maxBastions` are open. */
  private evict(): void {
    for (const [key, entry] of this.entries) {
      if (this.entries.size <= this.maxBastions) return;
      if (entry.users === 0) {
        this.entries.delete(key);
        clearTimeout(entry.idleTimer);
        entry.ssh.then((s) => s.dispose()).catch(() => undefined);
      }
    }
  }

  closeAll(): void {
    for (const [key, entry] of [...this.entries]) {
      this.entries.delete(key);
      clearTimeout(entry.idleTimer);
      entry.ssh.then((s) => s.dispose()).catch(() => undefined);
    }
  }
}

function withTimeout<T>(p: Promise<T>, ms: number, onTimeout: () => Error): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(onTimeout()), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/**
 * A pooled bastion connection found dead when a channel was asked of it: nothing reached the host,
 * so the driver may run the action once more, through a new bastion connection.
 */
function lost(err: UnreachableError): UnreachableError {
  err.details.started = false;
  err.details.bastionLost = true;
  return err;
}

/** ssh2's reason codes for a refused channel open (RFC 4254, 5.1). */
const OPEN_ADMINISTRATIVELY_PROHIBITED = 1;

/**
 * Asks the bastion for a channel to the target's SSH port (`direct-tcpip`, as `ssh -J` does), within
 * `timeoutMs`: to the checked address (`target.dial`) when there is one, so that the bastion does
 * not resolve the name again (to another address); else to the host as given.
 */
function openForward(client: Client, target: Target, timeoutMs: number, targetLabel: string, bastion: string): Promise<ClientChannel> {
  return new Promise((resolve, reject) => {
    let settled = false;
    const timer = setTimeout(() => {
      settled = true;
      reject(viaBastion(new TimeoutError(targetLabel, `forward through bastion ${bastion}`, timeoutMs), targetLabel, bastion, 'target'));
    }, timeoutMs);
    try {
      client.forwardOut('127.0.0.1', 0, target.dial ?? target.host, target.port, (err, stream) => {
        if (settled) {
          stream?.close(); // too late: the caller has given up
          return;
        }
        settled = true;
        clearTimeout(timer);
        if (!err) return resolve(stream);
        const e = err as Error & { reason?: number };
        const why = hostText(e.message.replace(/^\(SSH\) Channel open failure:\s*/, ''));
        if (e.reason === OPEN_ADMINISTRATIVELY_PROHIBITED) {
          reject(viaBastion(new UnreachableError(targetLabel, `bastion ${bastion} refused to forward to ${targetLabel} (${why || 'administratively prohibited'}: its AllowTcpForwarding or PermitOpen)`, { cause: err }), targetLabel, bastion, 'forward'));
        } else if (e.reason === undefined) {
          reject(lost(viaBastion(new UnreachableError(targetLabel, `bastion ${bastion} lost: ${why}`, { cause: err }), targetLabel, bastion, 'bastion')));
        } else {
          reject(viaBastion(new UnreachableError(targetLabel, `not reachable from bastion ${bastion}: ${why || 'connect failed'}`, { cause: err }), targetLabel, bastion, 'target'));
        }
      });
    } catch (err) {
      settled = true;
      clearTimeout(timer);
      reject(lost(viaBastion(new UnreachableError(targetLabel, `bastion ${bastion} lost: ${(err as Error).message}`, { cause: err }), targetLabel, bastion, 'bastion')));
    }
  });
}

/**
 * Opens, authenticates and host-key-verifies one connection within `timeoutMs`. A target with a
 * `jump` is reached through a channel of a bastion connection from `bastions` (shared, pooled);
 * the same time limit covers the bastion, the forward and the target's login. Keys with a
 * passphrase are decrypted once per `bastions` (its `keys`: the pool's); without `bastions`, ssh2
 * parses them on this connect.
 */
export async function connect(target: Target, timeoutMs: number, bastions?: Bastions, openStream?: OpenStream, opts: { endpoints?: boolean } = {}): Promise<SshConnection> {
  const label = labelOf(target);
  const deadline = Date.now() + timeoutMs;
  let ssh: NodeSSH;
  let release: (() => void) | undefined;
  if (target.jump) {
    // without a pool, a bastion connection of its own that closes with this connection
    const via = bastions ?? new Bastions(0);
    const fwd = await via.forward(target, timeoutMs);
    release = fwd.release;
    try {
      ssh = await login(target, label, Math.max(1, deadline - Date.now()), fwd.stream, via.keys);
    } catch (err) {
      release();
      throw err instanceof IsolationError ? viaBastion(err, label, labelOf(target.jump), 'target') : err;
    }
  } else if (openStream) {
    const sock = await withTimeout(openStream(target.dial ?? target.host, target.port, timeoutMs), timeoutMs, () => new TimeoutError(label, 'SSH connect', timeoutMs)).catch((err: unknown) => {
      throw classifyConnectError(label, err, null, timeoutMs);
    });
    ssh = await login(target, label, Math.max(1, deadline - Date.now()), sock, bastions?.keys);
  } else {
    ssh = await login(target, label, timeoutMs, undefined, bastions?.keys);
  }
  const conn = new SshConnection(ssh, label);
  if (release) conn.onClosed(release);
  // a connection that only proves a login (verify's fresh one) has no use for its endpoints
  if (opts.endpoints === false) return conn;
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

/** The most an SSH server's first line may be before the proof gives up on it (RFC 4253: 255 bytes). */
const IDENT_MAX = 255;

/**
 * Proves that a NEW connection reaches the target's sshd through the host's ruleset, as fast as
 * that can be proved: a new TCP connection (a new source port, so no connection-tracking state
 * carries it) to the target's SSH port, through the same bastion when there is one, answered
 * within `timeoutMs` by an SSH identification line (`SSH-`), then closed. No login, no exec: the
 * verify of a host whose login does not depend on the network (see Capabilities.login).
 */
export async function reachSsh(target: Target, timeoutMs: number, bastions?: Bastions, openStream?: OpenStream): Promise<void> {
  const label = labelOf(target);
  const deadline = Date.now() + timeoutMs;
  let stream: Duplex;
  let release: (() => void) | undefined;
  if (target.jump) {
    const via = bastions ?? new Bastions(0);
    const fwd = await via.forward(target, timeoutMs);
    stream = fwd.stream;
    release = () => {
      fwd.stream.close();
      fwd.release();
    };
  } else if (openStream) {
    stream = await withTimeout(openStream(target.dial ?? target.host, target.port, timeoutMs), timeoutMs, () => new TimeoutError(label, 'SSH connect', timeoutMs)).catch((err: unknown) => {
      throw classifyConnectError(label, err, null, timeoutMs);
    });
  } else {
    stream = net.connect({ host: target.dial ?? target.host, port: target.port });
    (stream as net.Socket).setNoDelay(true);
  }
  try {
    await new Promise<void>((resolve, reject) => {
      let got = Buffer.alloc(0);
      const timer = setTimeout(() => done(new TimeoutError(label, 'SSH connect (new connection)', timeoutMs)), Math.max(1, deadline - Date.now()));
      const done = (err?: Error) => {
        clearTimeout(timer);
        stream.removeListener('data', onData);
        stream.removeListener('error', onError);
        stream.removeListener('close', onClose);
        if (err) reject(err);
        else resolve();
      };
      const onData = (d: Buffer) => {
        got = Buffer.concat([got, d]).subarray(0, IDENT_MAX + 2);
        // RFC 4253 lets a server send other lines before its identification: one must start SSH- within the bound
        if (/(^|\n)SSH-/.test(got.toString('latin1'))) done();
        else if (got.length > IDENT_MAX) done(new UnreachableError(label, 'a new connection was answered, but not by an SSH server'));
      };
      const onError = (err: Error) => done(classifyConnectError(label, err, null, timeoutMs));
      const onClose = () => done(new UnreachableError(label, 'a new connection was closed before the SSH server answered'));
      stream.on('data', onData);
      stream.once('error', onError);
      stream.once('close', onClose);
    });
  } finally {
    // whatever the stream says once the proof is over is not heard (and never an uncaught error)
    stream.on('error', () => undefined);
    if (release) release();
    else stream.destroy();
  }
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

  /** the bastions the pooled connections go through: each lives while a connection uses it */
  readonly bastions: Bastions;
  /** every key with a passphrase these connections (and their bastions) use, decrypted once, until `closeAll` */
  readonly keys = new KeyCache();

  constructor(
    private readonly idleMs = 60_000,
    private readonly maxConnections = 256,
    private readonly openStream?: OpenStream,
  ) {
    // a bastion outlives its last target connection by a little, so a burst of actions shares it
    this.bastions = new Bastions(Math.min(idleMs, 5_000), maxConnections, this.keys);
  }

  /**
   * Decrypts the target's key and its bastion's (those with a passphrase) now, off the event
   * loop, for every connect after. Rejects with AUTH_FAILED where a key or passphrase is unusable.
   */
  async prepareKey(target: Target): Promise<void> {
    const logins = [{ ep: target as Endpoint, label: labelOf(target) }, ...(target.jump ? [{ ep: target.jump, label: `bastion ${labelOf(target.jump)} (jump to ${labelOf(target)})` }] : [])];
    await Promise.all(
      logins.map(({ ep, label }) =>
        this.keys.material(keyOf(ep)).catch((err: unknown) => {
          throw classifyConnectError(label, err, null, 0);
        }),
      ),
    );
  }

  static key(t: Target): string {
    // credentials are part of the key so that two targets with other keys never share a session;
    // so is the path: a host reached through a bastion is not the same session as one reached directly
    const cred = createHash('sha256')
      .update(JSON.stringify([t.privateKey ?? '', t.passphrase ?? '', t.password ?? '', t.knownHosts, t.jump ? Bastions.key(t.jump) : '']))
      .digest('hex')
      .slice(0, 16);
    // and so is the checked address a name was dialled at: a warm session to the address the name
    // had before is never used for the address it has now
    const at = t.dial !== undefined && t.dial !== t.host ? `>${t.dial}` : '';
    return `${t.username}@${t.host}${at}:${t.port}#${cred}`;
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
    const fresh: PoolEntry = { conn: connect(target, timeoutMs, this.bastions, this.openStream), busy: 1 };
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
    this.bastions.closeAll();
    this.keys.clear();
  }
}
