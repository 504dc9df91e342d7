/**
 * The fast tier's host: a real SSH server (ssh2's own `Server`, in this process, on loopback)
 * that the real driver logs in to through the driver's `openStream` seam, with a small model of the
 * pack's nftables table behind it. It needs no root, no namespace and no Debian package.
 *
 * - Each exec is recognised by its constant command (the driver's own `COMMANDS`, the preflight,
 *   the server discovery) and answered by the model: `nft -j -f -` batches are applied as one
 *   transaction with nft's own refusals (`File exists` for `create table` on a table that is
 *   there, `No such file or directory` for a claim on a generation that is not), listings come
 *   back as nft's JSON does (the batch's objects, with handles).
 * - A test scripts any exec (`script`): its output, exit code, a delay, a flood, a hang, or the
 *   connection dropped before the answer; and changes the table behind the driver's back
 *   (`table`, `edit`). `log` records every exec (kind, command, stdin) for assertions.
 *
 * It is a model, not nft: what a host does (packets, the guard, timers firing) stays in the lab
 * tier. What it proves is the driver's own logic: beliefs, claims, retries, time limits, answers.
 */
import { createServer, connect as netConnect, type Server as NetServer, type Socket } from 'net';
import type { Duplex } from 'stream';
import { Server, utils, type Connection, type ParsedKey, type ServerChannel } from 'ssh2';
import { COMMANDS } from '../../src/driver/host/programs';
import type { TargetInput } from '../../src/driver/policy';
import { PREFLIGHT } from '../../src/driver/host/preflight';
import { DISCOVER_SCRIPT, LOOKUP_SCRIPT } from '../../src/driver/host/servers';

/**
 * A key pair from ssh2's generator that ssh2 itself can read back: about 1 in 256 of the ed25519
 * pairs it makes are malformed (it strips a public key's leading zero byte: mscdex/ssh2#1513, open
 * in 1.17.0), which made a test that builds a key fail now and then. An encrypted pair is read back
 * with its passphrase. Bounded: 16 tries.
 */
export function keyPair(
  type: 'ed25519' | 'ecdsa' | 'rsa' = 'ed25519',
  opts: { bits?: number; passphrase?: string; cipher?: string; rounds?: number } = {},
): { private: string; public: string } {
  for (let i = 0; i < 16; i++) {
    const key = utils.generateKeyPairSync(type as 'ed25519', opts as Parameters<typeof utils.generateKeyPairSync>[1]);
    if (!(utils.parseKey(key.private, opts.passphrase) instanceof Error) && !(utils.parseKey(key.public) instanceof Error)) return key;
  }
  throw new Error(`ssh2 made 16 unreadable ${type} key pairs in a row`);
}

/** An unencrypted ed25519 pair ssh2 reads back (see keyPair). */
export function ed25519KeyPair(): { private: string; public: string } {
  return keyPair('ed25519');
}

export type ExecKind = 'whoami' | 'nft' | 'apply' | 'status' | 'preflight' | 'discover' | 'lookup' | 'other';

export interface ExecRecord {
  kind: ExecKind;
  command: string;
  stdin: string;
  /** the connection it came on (1, 2, ...: a new number per SSH login) */
  conn: number;
}

export interface Reply {
  stdout?: string;
  stderr?: string;
  code?: number;
  /** answer only after this many ms */
  delayMs?: number;
  /** send this many bytes of output (then the reply) */
  flood?: number;
  /** never answer */
  hang?: boolean;
  /** drop the whole SSH connection instead of answering */
  drop?: boolean;
}

/** A scripted answer: a reply, or undefined to let the model answer. */
export type Script = (exec: ExecRecord, host: FakeHost) => Reply | undefined;

type Obj = Record<string, unknown>;
interface Table {
  name: string;
  objs: { kind: string; body: Obj }[];
}

/** nft's refusals, as its stderr words them. */
const EXISTS = 'Error: Could not process rule: File exists\n';
const MISSING = 'Error: Could not process rule: No such file or directory\n';

function kindOf(command: string): ExecKind {
  if (command === COMMANDS.whoami) return 'whoami';
  if (command === COMMANDS.nft || command === COMMANDS.sudoNft) return 'nft';
  if (command === COMMANDS.apply || command === COMMANDS.sudoApply) return 'apply';
  if (command === COMMANDS.status || command === COMMANDS.sudoStatus) return 'status';
  if (Object.values(PREFLIGHT).includes(command)) return 'preflight';
  if (command === DISCOVER_SCRIPT) return 'discover';
  if (command === LOOKUP_SCRIPT) return 'lookup';
  return 'other';
}

export class FakeHost {
  /** the address the driver believes it reaches (never dialled: `openStream` leads here) */
  readonly addr: string;
  readonly knownHosts: string;
  readonly log: ExecRecord[] = [];
  /** the pack's table as the model holds it; null: not isolated */
  table: Table | null = null;
  private readonly scripts: Script[] = [];
  private readonly server: Server;
  private readonly sockets = new Set<Socket>();
  private readonly conns = new Set<Connection>();
  private connSeq = 0;
  private handle = 1;
  private refuse = false;
  private listener?: NetServer;
  private port = 0;

  constructor(addr = '198.18.200.10') {
    this.addr = addr;
    const key = ed25519KeyPair();
    this.knownHosts = `${addr} ${key.public.trim().split(/\s+/).slice(0, 2).join(' ')}`;
    this.server = new Server({ hostKeys: [key.private] }, (client) => this.onClient(client));
  }

  async start(): Promise<this> {
    // our own listener, so that every socket (and so every connection) can be cut at once
    this.listener = createServer((sock) => {
      if (this.refuse) return sock.destroy();
      this.sockets.add(sock);
      sock.on('close', () => this.sockets.delete(sock));
      this.server.injectSocket(sock);
    });
    await new Promise<void>((resolve) => this.listener!.listen(0, '127.0.0.1', resolve));
    this.port = (this.listener.address() as { port: number }).port;
    return this;
  }

  /** The driver's `openStream` seam: every host name leads to this host. */
  readonly openStream = (): Promise<Duplex> =>
    new Promise((resolve, reject) => {
      const s = netConnect(this.port, '127.0.0.1');
      s.once('connect', () => resolve(s));
      s.once('error', reject);
    });

  /** A target for the driver (root login with a password the fake accepts). */
  target(extra: Partial<TargetInput> = {}): TargetInput {
    return { host: this.addr, username: 'root', password: 'fake', knownHosts: this.knownHosts, timeoutMs: 3000, ...extra };
  }

  private readonly keys: ParsedKey[] = [];

  /** Lets a private key log in (its public half, in OpenSSH's one-line form). */
  authorize(publicKey: string): void {
    const k = utils.parseKey(publicKey);
    if (k instanceof Error) throw k;
    this.keys.push(Array.isArray(k) ? k[0] : k);
  }

  /** Answers the execs this script takes (the last one added is asked first); returns its removal. */
  script(fn: Script): () => void {
    this.scripts.unshift(fn);
    return () => {
      const i = this.scripts.indexOf(fn);
      if (i >= 0) this.scripts.splice(i, 1);
    };
  }

  /** Execs of one kind, in order. */
  execs(kind?: ExecKind): ExecRecord[] {
    return kind ? this.log.filter((e) => e.kind === kind) : [...this.log];
  }

  /** The generation the table holds now (null: no table). */
  gen(): number | null {
    const set = this.table?.objs.find((o) => o.kind === 'set' && o.body.name === 'gen');
    const elem = set?.body.elem as number[] | undefined;
    return elem?.[0] ?? null;
  }

  /** Changes the table behind the driver's back, as another controller (or root) would. */
  edit(fn: (t: Table) => void): void {
    if (!this.table) throw new Error('no table to edit');
    fn(this.table);
  }

  /** Cuts every SSH connection now (the listener stays). */
  dropConnections(): void {
    for (const s of this.sockets) s.destroy();
  }

  /** New TCP connections are refused (or accepted again). */
  refuseConnections(on: boolean): void {
    this.refuse = on;
  }

  async close(): Promise<void> {
    this.dropConnections();
    await new Promise<void>((resolve) => (this.listener ? this.listener.close(() => resolve()) : resolve()));
  }

  private onClient(client: Connection): void {
    const conn = ++this.connSeq;
    this.conns.add(client);
    client.on('error', () => undefined);
    client.on('close', () => this.conns.delete(client));
    client.on('authentication', (ctx) => {
      if (ctx.method === 'password' && ctx.password === 'fake') return ctx.accept();
      // a key authorized with `authorize`: as sshd, a query is accepted, a signature must verify
      const key = ctx.method === 'publickey' ? this.keys.find((k) => k.getPublicSSH().equals(ctx.key.data)) : undefined;
      if (key && ctx.method === 'publickey' && (!ctx.signature || key.verify(ctx.blob!, ctx.signature, ctx.hashAlgo) === true)) return ctx.accept();
      ctx.reject(['password', 'publickey']);
    });
    client.on('ready', () => {
      client.on('session', (accept) => {
        const session = accept();
        session.on('exec', (acceptExec, _reject, info) => {
          const ch = acceptExec();
          const chunks: Buffer[] = [];
          ch.on('data', (d: Buffer) => chunks.push(d));
          ch.on('end', () => {
            const rec: ExecRecord = { kind: kindOf(info.command), command: info.command, stdin: Buffer.concat(chunks).toString('utf8'), conn };
            this.log.push(rec);
            this.answer(rec, ch, client);
          });
        });
      });
    });
  }

  private answer(rec: ExecRecord, ch: ServerChannel, client: Connection): void {
    let reply: Reply | undefined;
    for (const s of this.scripts) {
      reply = s(rec, this);
      if (reply) break;
    }
    reply ??= this.model(rec);
    const send = () => {
      if (reply!.drop) return client.end();
      if (reply!.hang) return;
      try {
        if (reply!.flood) {
          const block = Buffer.alloc(64 * 1024, 0x41);
          for (let n = 0; n < reply!.flood; n += block.length) ch.write(block);
        }
        if (reply!.stdout) ch.write(reply!.stdout);
        if (reply!.stderr) ch.stderr.write(reply!.stderr);
        ch.exit(reply!.code ?? 0);
        ch.end();
      } catch {
        /* the client went away */
      }
    };
    if (reply.delayMs) setTimeout(send, reply.delayMs);
    else send();
  }

  /** What a host with nft (and no systemd) answers. */
  private model(rec: ExecRecord): Reply {
    switch (rec.kind) {
      case 'whoami':
        return { stdout: `198.18.200.1 50${rec.conn % 1000} ${this.addr} 22\n` };
      case 'nft':
        return this.nft(rec.stdin);
      case 'status': {
        const nl = rec.stdin.indexOf('\n');
        return this.nft(rec.stdin.slice(nl + 1));
      }
      case 'apply': {
        // the batch to apply is the last JSON document on stdin (the header's batches come before it)
        const at = rec.stdin.lastIndexOf('{"nftables":');
        const r = this.nft(rec.stdin.slice(at));
        return r;
      }
      default:
        // preflight, discovery, lookups: nothing known (the driver then refuses nothing, guesses nothing)
        return { stdout: '' };
    }
  }

  /** Applies one batch as one transaction, or lists. */
  nft(json: string): Reply {
    let batch: { nftables: Obj[] };
    try {
      batch = JSON.parse(json) as { nftables: Obj[] };
    } catch {
      return { code: 1, stderr: 'Error: syntax error\n' };
    }
    let table: Table | null = this.table ? { name: this.table.name, objs: this.table.objs.map((o) => ({ ...o })) } : null;
    let out = '';
    for (const cmd of batch.nftables) {
      const [verb, what] = Object.entries(cmd)[0] as [string, Obj];
      const [kind, body] = Object.entries(what ?? {})[0] ?? ['', {}];
      const b = (body ?? {}) as Obj;
      if (verb === 'list') {
        if (kind === 'tables') {
          out = JSON.stringify({ nftables: [{ metainfo: { version: '1.0.6', json_schema_version: 1 } }, ...(table ? [{ table: { family: 'inet', name: table.name, handle: 1 } }] : [])] });
          continue;
        }
        if (!table) return { code: 1, stderr: MISSING };
        out = JSON.stringify({ nftables: [{ metainfo: { version: '1.0.6', json_schema_version: 1 } }, { table: { family: 'inet', name: table.name, handle: 1 } }, ...table.objs.map((o) => ({ [o.kind]: o.body }))] });
        continue;
      }
      if (kind === 'table') {
        if (verb === 'create' && table) return { code: 1, stderr: EXISTS };
        if (verb === 'delete') {
          if (!table) return { code: 1, stderr: MISSING };
          table = null;
        } else if (!table) table = { name: String(b.name), objs: [] };
        continue;
      }
      if (!table) return { code: 1, stderr: MISSING };
      if (verb === 'delete' && kind === 'element') {
        const set = table.objs.find((o) => o.kind === 'set' && o.body.name === b.name);
        const elem = (set?.body.elem as unknown[] | undefined) ?? [];
        const gone = (b.elem as unknown[]).map((e) => JSON.stringify(e));
        if (!set || !gone.every((g) => elem.some((e) => JSON.stringify(e) === g))) return { code: 1, stderr: MISSING };
        set.body = { ...set.body, elem: elem.filter((e) => !gone.includes(JSON.stringify(e))) };
        continue;
      }
      if (verb === 'add' && kind === 'element') {
        const set = table.objs.find((o) => o.kind === 'set' && o.body.name === b.name);
        if (!set) return { code: 1, stderr: MISSING };
        set.body = { ...set.body, elem: [...((set.body.elem as unknown[] | undefined) ?? []), ...(b.elem as unknown[])] };
        continue;
      }
      if (verb === 'add' || verb === 'create') {
        table.objs.push({ kind, body: kind === 'rule' ? { ...b, handle: this.handle++ } : { ...b } });
        continue;
      }
      if (verb === 'flush' && kind === 'chain') {
        table.objs = table.objs.filter((o) => !(o.kind === 'rule' && o.body.chain === b.name));
        continue;
      }
      if (verb === 'flush' && kind === 'set') {
        const set = table.objs.find((o) => o.kind === 'set' && o.body.name === b.name);
        if (!set) return { code: 1, stderr: MISSING };
        set.body = { ...set.body, elem: [] };
        continue;
      }
      return { code: 1, stderr: `Error: the fake host does not model ${verb} ${kind}\n` };
    }
    this.table = table;
    return { stdout: out };
  }
}
