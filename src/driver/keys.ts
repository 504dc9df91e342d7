/**
 * Private keys with a passphrase, decrypted once per credential and off the event loop.
 *
 * ssh2 parses the key on every connect; for an OpenSSH key with a passphrase that runs
 * `bcrypt_pbkdf` in JavaScript (about 275 ms of CPU at the default 16 rounds) on the thread of
 * the caller: Node-RED's event loop, which every other flow shares. ssh2's `privateKey` takes a
 * string or a Buffer only (an already parsed key is dropped, client.js), so the form handed to it
 * is the same key re-encoded without encryption (`openssh-key-v1`, cipher `none`), which ssh2
 * parses in a few microseconds. That text lives in memory only, in the `KeyCache` of one
 * driver's pool, until the pool closes; it is never written anywhere.
 *
 * The decryption runs in a worker thread (keys-worker.ts), bounded in time; what the worker
 * cannot unlock by itself (another cipher, a wrong passphrase, a damaged key) it hands to ssh2's
 * own parser, so that the answer, and the error a wrong passphrase gives, are ssh2's.
 */
import { createDecipheriv, createHash } from 'crypto';
import { createRequire } from 'module';
import * as path from 'path';
import { utils } from 'ssh2';
import { Worker } from 'worker_threads';
import { Slots } from './scheduler';

/** What ssh2 is given to log in with. */
export interface KeyMaterial {
  privateKey?: string;
  passphrase?: string;
}

/** The worker's answer: the key to use (with the passphrase it still needs, if any), or ssh2's reason it is unusable. */
export type Unlocked = { privateKey: string; passphrase?: string } | { error: string };

/** Longest a worker may take to decrypt one key (a key file sets its own bcrypt rounds). */
export const UNLOCK_TIMEOUT_MS = 60_000;
/** Decryptions running at once (each a thread at full CPU). */
const MAX_WORKERS = 2;

const OPENSSH = /^-----BEGIN OPENSSH PRIVATE KEY-----(?:\r\n|\n)([\s\S]+)(?:\r\n|\n)-----END OPENSSH PRIVATE KEY-----$/;
const MAGIC = Buffer.from('openssh-key-v1\0', 'latin1');

/** OpenSSH's key-file ciphers that Node's crypto runs as they are (ssh-keygen's default is aes256-ctr). */
const CIPHERS: Record<string, { ssl: string; keyLen: number; ivLen: number; authLen: number; blockLen: number }> = {
  'aes128-ctr': { ssl: 'aes-128-ctr', keyLen: 16, ivLen: 16, authLen: 0, blockLen: 16 },
  'aes192-ctr': { ssl: 'aes-192-ctr', keyLen: 24, ivLen: 16, authLen: 0, blockLen: 16 },
  'aes256-ctr': { ssl: 'aes-256-ctr', keyLen: 32, ivLen: 16, authLen: 0, blockLen: 16 },
  'aes128-cbc': { ssl: 'aes-128-cbc', keyLen: 16, ivLen: 16, authLen: 0, blockLen: 16 },
  'aes192-cbc': { ssl: 'aes-192-cbc', keyLen: 24, ivLen: 16, authLen: 0, blockLen: 16 },
  'aes256-cbc': { ssl: 'aes-256-cbc', keyLen: 32, ivLen: 16, authLen: 0, blockLen: 16 },
  'aes128-gcm@openssh.com': { ssl: 'aes-128-gcm', keyLen: 16, ivLen: 12, authLen: 16, blockLen: 16 },
  'aes256-gcm@openssh.com': { ssl: 'aes-256-gcm', keyLen: 32, ivLen: 12, authLen: 16, blockLen: 16 },
};

type Pbkdf = (pass: Buffer, passLen: number, salt: Buffer, saltLen: number, out: Buffer, outLen: number, rounds: number) => number;
let pbkdf: Pbkdf | undefined;
/** ssh2's own bcrypt_pbkdf (its dependency, resolved from ssh2 so that it is the very code ssh2 runs). */
function bcryptPbkdf(): Pbkdf {
  pbkdf ??= (createRequire(require.resolve('ssh2')) as NodeRequire)('bcrypt-pbkdf').pbkdf as Pbkdf;
  return pbkdf;
}

/** Whether ssh2 would run bcrypt for this key on every connect: an OpenSSH key, with a passphrase given. */
export function needsUnlock(key: KeyMaterial): boolean {
  return !!key.privateKey && !!key.passphrase && OPENSSH.test(key.privateKey.trim());
}

class Reader {
  pos = 0;
  constructor(readonly buf: Buffer) {}
  u32(): number {
    if (this.pos + 4 > this.buf.length) throw new Error('short');
    const v = this.buf.readUInt32BE(this.pos);
    this.pos += 4;
    return v;
  }
  str(): Buffer {
    const n = this.u32();
    if (this.pos + n > this.buf.length) throw new Error('short');
    const v = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return v;
  }
}

const u32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
};
const str = (b: Buffer | string) => {
  const buf = typeof b === 'string' ? Buffer.from(b, 'latin1') : b;
  return Buffer.concat([u32(buf.length), buf]);
};

/**
 * The key re-encoded without encryption, or null where this code does not unlock it by itself
 * (not encrypted, another cipher or kdf, a damaged file, a wrong passphrase). Accepted only when
 * the decrypted part passes OpenSSH's own check (its two check words agree) and ssh2 reads from it
 * the very public key the file states in the clear.
 */
function decrypt(text: string, passphrase: string): string | null {
  try {
    const m = OPENSSH.exec(text.trim());
    if (!m) return null;
    const r = new Reader(Buffer.from(m[1], 'base64'));
    if (!r.buf.subarray(0, MAGIC.length).equals(MAGIC)) return null;
    r.pos = MAGIC.length;
    const cipher = CIPHERS[r.str().toString('latin1')];
    const kdf = r.str().toString('latin1');
    const kdfOptions = new Reader(r.str());
    if (!cipher || kdf !== 'bcrypt') return null;
    const salt = kdfOptions.str();
    const rounds = kdfOptions.u32();
    const nkeys = r.u32();
    if (nkeys !== 1) return null; // OpenSSH writes one key per file
    const pub = r.str();
    const sealed = r.str();
    const tag = r.buf.subarray(r.pos);
    if (tag.length !== cipher.authLen || sealed.length % cipher.blockLen !== 0) return null;
    const pass = Buffer.from(passphrase, 'utf8');
    const gen = Buffer.alloc(cipher.keyLen + cipher.ivLen);
    if (bcryptPbkdf()(pass, pass.length, salt, salt.length, gen, gen.length, rounds) !== 0) return null;
    const d = createDecipheriv(cipher.ssl, gen.subarray(0, cipher.keyLen), gen.subarray(cipher.keyLen), cipher.authLen ? ({ authTagLength: cipher.authLen } as object) : undefined);
    d.setAutoPadding(false);
    if (cipher.authLen) (d as unknown as { setAuthTag(t: Buffer): void }).setAuthTag(tag);
    const plain = Buffer.concat([d.update(sealed), d.final()]);
    if (plain.length < 8 || plain.readUInt32BE(0) !== plain.readUInt32BE(4)) return null;
    const body = Buffer.concat([MAGIC, str('none'), str('none'), str(''), u32(1), str(pub), str(plain)]);
    const lines = body.toString('base64').match(/.{1,70}/g)!;
    const out = ['-----BEGIN OPENSSH PRIVATE KEY-----', ...lines, '-----END OPENSSH PRIVATE KEY-----', ''].join('\n');
    const parsed = utils.parseKey(out);
    const key = Array.isArray(parsed) ? parsed[0] : parsed;
    if (key instanceof Error || !key.isPrivateKey() || !key.getPublicSSH().equals(pub)) return null;
    return out;
  } catch {
    return null;
  }
}

/**
 * What ssh2 is to be given for this key (the CPU-heavy part: run it off the event loop). An
 * encrypted OpenSSH key comes back decrypted; anything else is ssh2's own verdict: its error, or
 * the key as given (ssh2 parses that itself on each connect, as before).
 */
export function unlockKey(privateKey: string, passphrase: string): Unlocked {
  const plain = decrypt(privateKey, passphrase);
  if (plain !== null) return { privateKey: plain };
  const parsed = utils.parseKey(privateKey, passphrase);
  if (parsed instanceof Error) return { error: parsed.message };
  return { privateKey, passphrase };
}

/** Runs `unlockKey` in a worker thread, within `UNLOCK_TIMEOUT_MS`. */
function unlockInWorker(privateKey: string, passphrase: string, running: Set<Worker>, timeoutMs: number): Promise<Unlocked> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(path.join(__dirname, 'keys-worker.js'), { workerData: { privateKey, passphrase } });
    running.add(worker);
    let settled = false;
    const finish = (fn: () => void) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      running.delete(worker);
      void worker.terminate();
      fn();
    };
    // worded as ssh2's key errors are, so that a connect classifies it as an unusable key
    const fail = (why: string) => finish(() => reject(new Error(`Cannot decrypt the private key: ${why}`)));
    const timer = setTimeout(() => fail(`it took longer than ${timeoutMs} ms`), timeoutMs);
    worker.once('message', (m: Unlocked) => finish(() => resolve(m)));
    worker.once('error', (e) => fail(e.message));
    worker.once('exit', (code) => fail(`its worker ended (${code}) without an answer`));
  });
}

/**
 * The keys of one pool, each decrypted once (in memory only): `material` gives what ssh2 is to
 * log in with. Concurrent asks for one credential share one decryption; a wrong passphrase is
 * remembered as such (it stays wrong); a decryption cut short (time limit, `clear`) is not.
 */
export class KeyCache {
  private readonly entries = new Map<string, Promise<Unlocked>>();
  private readonly running = new Set<Worker>();
  private readonly slots = new Slots(MAX_WORKERS);
  /** decryptions started (for tests and the benchmark) */
  decryptions = 0;

  constructor(private readonly timeoutMs = UNLOCK_TIMEOUT_MS) {}

  /**
   * What to give ssh2 for this key: the key as given where ssh2 parses it cheaply, else the
   * decrypted one. Rejects with ssh2's own wording (`Cannot parse privateKey: ...`) where the key
   * or its passphrase is unusable, as ssh2's connect would.
   */
  async material(key: KeyMaterial): Promise<KeyMaterial> {
    if (!needsUnlock(key)) return key;
    const id = createHash('sha256').update(key.privateKey!).update('\0').update(key.passphrase!).digest('hex');
    let entry = this.entries.get(id);
    if (!entry) {
      const fresh = this.unlock(key.privateKey!, key.passphrase!);
      entry = fresh;
      this.entries.set(id, fresh);
      fresh.catch(() => {
        if (this.entries.get(id) === fresh) this.entries.delete(id);
      });
    }
    const got = await entry;
    if ('error' in got) throw new Error(`Cannot parse privateKey: ${got.error}`);
    return got;
  }

  private unlock(privateKey: string, passphrase: string): Promise<Unlocked> {
    return this.slots.run(() => {
      this.decryptions++;
      return unlockInWorker(privateKey, passphrase, this.running, this.timeoutMs);
    });
  }

  /** Forgets every decrypted key and stops the decryptions under way. */
  clear(): void {
    this.entries.clear();
    for (const w of this.running) void w.terminate();
  }
}
