/**
 * The lab the tests and the demo share: lab hosts in network namespaces, each with a real OpenSSH
 * server and real nftables, a peer namespace to send traffic from, a silent address, all on one
 * bridge with addresses from 198.18.0.0/15 and 2001:db8::/32. The controller (this process, in the
 * root namespace) reaches the bridge over one veth: only an address and its connected route are
 * added to the root namespace, never a firewall rule. Everything is removed on close, and on exit.
 * With `bastion: true` that veth leads to a bastion namespace instead (its own sshd, no IP
 * forwarding), and the hosts are reachable only through it, as behind a real jump host.
 */
import { execFileSync, spawn, type ChildProcess } from 'child_process';
import { randomBytes } from 'crypto';
import * as fs from 'fs';
import * as net from 'net';
import * as os from 'os';
import * as path from 'path';
import { DEFAULT_TABLE } from '../../src/driver/policy';
import { sudoersLines, type SudoersFeature } from '../../src/driver/sudoers';
import { missing, skipOrFail, type Need } from './need';
import { stopChild } from './proc';

export const PREFIX = 'nrhi-';

/**
 * The sudoers lines a sudo (non-root) SSH user gets (isolate: nft and the `ss -K` lines), from the
 * generator the README and the help print (src/driver/sudoers.ts): the driver's own command lines.
 */
export function SUDOERS_LINES(user: string, features: readonly SudoersFeature[] = ['isolate'], table: string = DEFAULT_TABLE): string {
  return sudoersLines({ user, table, features }).join('\n');
}

export interface LabUser {
  username: string;
  privateKey: string;
  passphrase?: string;
  password: string;
}

export interface LabHost {
  index: number;
  ns: string;
  v4: string;
  v6: string;
  port: number;
  /** known_hosts lines pinning this host's key for its v4 and v6 address */
  knownHosts: string;
  knownHostsV6: string;
  hostKeyPub: string;
  /** the same address with an unrelated key */
  wrongKnownHosts: string;
}

export interface ExecResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export interface Closable {
  close(): void;
}

export interface Connection extends Closable {
  roundTrip(timeoutMs?: number): Promise<boolean>;
  /** writes a line to the connection */
  send(text: string): void;
  /** whether `text` arrived from the other side (now or within `timeoutMs`) */
  waitFor(text: string, timeoutMs: number): Promise<boolean>;
}

/** The bastion (jump host) of a lab made with `bastion: true`: the only way from the controller to the hosts. */
export interface LabBastion {
  ns: string;
  /** its front leg, where the controller reaches it */
  v4: string;
  v6: string;
  port: number;
  /** its leg on the hosts' network: the address the hosts see SSH come from */
  inner: { v4: string; v6: string };
  /** a lab user that may log in to the bastion (key auth) and forward through it */
  user: LabUser;
  knownHosts: string;
  /** the bastion's address with an unrelated key */
  wrongKnownHosts: string;
  /**
   * sshd's forwarding rules on the bastion (sshd restarted with them); no argument: allowed to all.
   * `etcHosts`: lines added to the bastion's own /etc/hosts (an overlay private to its sshd, never
   * this machine's file), for names that only the bastion resolves (split horizon)
   */
  configure(o?: { allowTcpForwarding?: boolean; permitOpen?: string[]; etcHosts?: string }): Promise<void>;
  /** SSH connections the bastion's sshd holds open now (established TCP on its port) */
  sessions(): Promise<number>;
  /** fault injection: every SSH connection to the bastion is cut (ss -K), the listener stays */
  dropSessions(): Promise<void>;
}

export interface Lab {
  id: string;
  /** present with `bastion: true`: the hosts are reachable only through it */
  bastion?: LabBastion;
  dir: string;
  controller: { v4: string; v6: string; link: string };
  hosts: LabHost[];
  peer: { ns: string; v4: string; v6: string };
  /**
   * the hosts' own infrastructure server, a second address of the peer namespace: every host's
   * resolv.conf, chrony.conf and ldap.conf name it, as a real host names its DNS, NTP and LDAP
   * servers (the peer's own address plays the attacker)
   */
  server: { v4: string; v6: string };
  sink: { ns: string; v4: string; v6: string };
  unusedV4: string;
  users: { root: LabUser; sudo: LabUser; nosudo: LabUser };
  exec(ns: string, argv: string[], stdin?: string, timeoutMs?: number): Promise<ExecResult>;
  nft(ns: string, args: string[]): Promise<ExecResult>;
  /** an echo server on every address of `ns`, or on `addr` alone (a server whose replies come from that address) */
  listen(ns: string, port: number, opts?: { udp?: boolean; addr?: string }): Promise<Closable>;
  /** TCP connect and one round trip; `uid` runs the client as that user (service/user exceptions) */
  tryConnect(ns: string, addr: string, port: number, timeoutMs?: number, opts?: { uid?: number }): Promise<boolean>;
  /** a bare TCP connect (for services that do not echo, such as sshd) */
  tcpOpen(ns: string, addr: string, port: number, timeoutMs?: number): Promise<boolean>;
  udpRoundTrip(ns: string, addr: string, port: number, timeoutMs?: number): Promise<boolean>;
  /**
   * a long-lived connection that echoes round trips: TCP, a connected UDP socket with `udp`, or an
   * unconnected UDP socket bound to `localPort` (prints what any sender sends it); `from`: TCP
   * from that local port (and address); `uid`: the client runs as that user
   */
  openConnection(ns: string, addr: string, port: number, opts?: { udp?: boolean; localPort?: number; from?: { port: number; addr?: string }; uid?: number }): Promise<Connection>;
  ping(ns: string, addr: string, timeoutMs?: number): Promise<boolean>;
  /** runs argv in host `index`'s own view (sshd's network and mount namespaces: its /etc/systemd/system) */
  hostExec(index: number, argv: string[], stdin?: string): Promise<ExecResult>;
  /** writes a file under host `index`'s own /etc (an overlay private to that host); null removes it */
  hostFile(index: number, etcPath: string, content: string | null): Promise<void>;
  /** the command names of the processes in one of this lab's namespaces, sorted (sshd, sessions, timers) */
  processes(ns: string): string[];
  /** fault injection: `nft` on host `index` becomes this sh script (the real one is at $REAL_NFT); null restores it */
  wrapNft(index: number, script: string | null): Promise<void>;
  /** fault injection: the host's link goes silent (down) or comes back */
  silence(index: number, on: boolean): Promise<void>;
  /** fault injection: SIGKILL every sshd process of the host (listener and sessions) */
  killSshd(index: number): Promise<void>;
  /** the host gets a new host key (sshd restarted with it); returns its known_hosts line */
  newHostKey(index: number): Promise<string>;
  stopSshd(index: number): Promise<void>;
  startSshd(index: number): Promise<void>;
  /** the lab's addresses at offset `i` of its subnet (containers take offsets 100 and up) */
  addr(i: number): { v4: string; v6: string };
  /** moves a link of the root namespace (a container's veth) onto the lab bridge */
  plug(link: string): void;
  /**
   * names the network namespace of process `pid` (a container's) `nrhi-<lab id>-<suffix>`, a lab
   * namespace from then on (exec, listen, cleanup); again after a reboot re-points the name
   */
  adoptNs(suffix: string, pid: number): string;
  close(): Promise<void>;
}

// Labs still open when the process is interrupted are torn down before it exits.
const openLabs = new Set<() => void>();
let signalsHooked = false;
function hookSignals(): void {
  if (signalsHooked) return;
  signalsHooked = true;
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.once(sig, () => {
      for (const cleanup of [...openLabs]) cleanup();
      process.exit(128 + (sig === 'SIGINT' ? 2 : sig === 'SIGTERM' ? 15 : 1));
    });
  }
}

function which(cmd: string): boolean {
  return ['/usr/sbin', '/usr/bin', '/sbin', '/bin'].some((d) => fs.existsSync(path.join(d, cmd)));
}

/** Whether this machine can build the lab: root plus nft, sshd, ip, sudo, ping. */
export function labAvailable(): { ok: boolean; why?: string } {
  if (typeof process.getuid === 'function' && process.getuid() !== 0) return { ok: false, why: 'not root' };
  const missing = ['nft', 'sshd', 'ip', 'sudo', 'ping', 'ssh-keygen', 'useradd'].filter((c) => !which(c));
  if (missing.length) return { ok: false, why: `missing: ${missing.join(', ')}` };
  return { ok: true };
}

function run(argv: string[], input?: string): string {
  return execFileSync(argv[0], argv.slice(1), { input, encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'], timeout: 20_000 });
}

function tryRun(argv: string[]): void {
  try {
    run(argv);
  } catch {
    /* best effort during cleanup */
  }
}

function agentPath(): string {
  const candidates = [path.resolve(__dirname, 'agent.js'), path.resolve(__dirname, '../../../test/lab/agent.js')];
  const found = candidates.find((p) => fs.existsSync(p));
  if (!found) throw new Error(`lab agent.js not found near ${__dirname}`);
  return found;
}

/** The processes in a network namespace, with their command names (gone ones left out). */
function nsProcesses(ns: string): { pid: string; comm: string }[] {
  const out: { pid: string; comm: string }[] = [];
  for (const pid of run(['ip', 'netns', 'pids', ns]).split('\n').filter(Boolean)) {
    try {
      out.push({ pid, comm: fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim() });
    } catch {
      /* exited meanwhile */
    }
  }
  return out;
}

/** Kills every process in network namespace `ns` and deletes it (best effort: cleanup). */
function removeNs(ns: string): void {
  try {
    for (const pid of run(['ip', 'netns', 'pids', ns]).split('\n').filter(Boolean)) tryRun(['kill', '-9', pid]);
  } catch {
    /* gone */
  }
  tryRun(['ip', 'netns', 'del', ns]);
}

/**
 * The first lines of a boot script that gives the daemon it starts an /etc of its own: an overlay
 * over the machine's /etc whose upper layer is a tmpfs of `size` mounted at "$2" (in the mount
 * namespace `ip netns exec` makes), so the machine's own files are never written.
 */
function etcOverlay(size: string): string[] {
  return [
    `mount -t tmpfs -o mode=700,size=${size} nrhi-lab-etc "$2" && mkdir "$2/u" "$2/w" || exit 96`,
    'mount -t overlay nrhi-lab-etc -o lowerdir=/etc,upperdir="$2/u",workdir="$2/w" /etc || exit 96',
  ];
}

/** Removes what a crashed run left behind: nrhi-* namespaces and links, nrh* users, sudoers drop-ins. */
export function cleanupStaleLabs(): void {
  for (const line of run(['ip', 'netns', 'list']).split('\n')) {
    const ns = line.split(' ')[0];
    if (ns.startsWith(PREFIX)) removeNs(ns);
  }
  for (const line of run(['ip', '-o', 'link', 'show']).split('\n')) {
    const m = /^\d+: (nrhi[0-9a-f]{6}c)[@:]/.exec(line);
    if (m) tryRun(['ip', 'link', 'del', m[1]]);
  }
  for (const line of fs.readFileSync('/etc/passwd', 'utf8').split('\n')) {
    const u = line.split(':')[0];
    if (/^nrh[0-9a-f]{6}[arnj]$/.test(u)) tryRun(['userdel', '-f', u]);
  }
  for (const f of fs.existsSync('/etc/sudoers.d') ? fs.readdirSync('/etc/sudoers.d') : []) {
    if (f.startsWith(PREFIX)) fs.rmSync(path.join('/etc/sudoers.d', f), { force: true });
  }
}

/** `segments` consecutive free /24s 198.18.N.0/24 ... 198.18.(N+segments-1).0/24 */
function pickSubnet(segments = 1): number {
  const used = run(['ip', '-o', 'addr', 'show']);
  for (let i = 0; i < 50; i++) {
    const n = 1 + Math.floor(Math.random() * (251 - segments));
    const free = (k: number) => !used.includes(`198.18.${k}.`) && !used.includes(`2001:db8:${k.toString(16)}::`);
    if (Array.from({ length: segments }, (_, k) => n + k).every(free)) return n;
  }
  throw new Error('no free lab subnet in 198.18.0.0/16');
}

/** Most lab hosts: beyond one /24 they spread over consecutive /24s on the same bridge. */
export const MAX_LAB_HOSTS = 600;
/** last octets never given to a host, in any of the lab's /24s (.1 .3 .4 .5 .250 of the first are the lab's own) */
const RESERVED_OCTETS = [0, 1, 2, 3, 4, 5, 250, 255];

/** The default host offsets: 10, 11, ... within the first /24, then on in the next ones. */
function defaultOffsets(n: number): number[] {
  const out: number[] = [];
  for (let o = 10; out.length < n; o++) if (!RESERVED_OCTETS.includes(o & 255)) out.push(o);
  return out;
}

function keygen(file: string, passphrase = '', type = 'ed25519'): { priv: string; pub: string } {
  run(['ssh-keygen', '-q', '-t', type, '-N', passphrase, '-C', 'nrhi-lab', '-f', file]);
  return { priv: fs.readFileSync(file, 'utf8'), pub: fs.readFileSync(`${file}.pub`, 'utf8').trim() };
}

function waitPort(host: string, port: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  return new Promise((resolve, reject) => {
    const attempt = () => {
      const s = net.connect({ host, port });
      const retry = () => {
        s.destroy();
        if (Date.now() > deadline) reject(new Error(`sshd on ${host}:${port} did not come up`));
        else setTimeout(attempt, 100);
      };
      s.setTimeout(1000, retry);
      s.once('error', retry);
      s.once('data', () => {
        s.destroy();
        resolve();
      });
    };
    attempt();
  });
}

/** Waits until something listens on TCP `port` inside `ns` (for hosts the controller cannot reach). */
async function waitListen(ns: string, port: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    let out = '';
    try {
      out = run(['ip', 'netns', 'exec', ns, 'ss', '-H', '-l', '-t', '-n', `sport = :${port}`]);
    } catch {
      /* not yet */
    }
    if (out.trim() !== '') return;
    if (Date.now() > deadline) throw new Error(`nothing listens on ${ns}:${port}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** What createLab builds (see there). */
export interface LabOptions {
  hosts?: number;
  subnet?: number;
  hostOffsets?: number[];
  bastion?: boolean;
}

/**
 * `hosts` lab hosts at 198.18.N.(10+i) unless `hostOffsets` says otherwise; `subnet` picks N
 * (random and unused by default). The controller is .1, the peer .3, the silent sink .4.
 * With `bastion`, the controller's veth leads not to the hosts' bridge but to a bastion namespace
 * (front leg 198.19.N.2, controller 198.19.N.1; its other leg 198.18.N.2 on the bridge) that runs
 * its own sshd and forwards nothing at the IP layer: the hosts are reachable only through it.
 */
export async function createLab(opts: LabOptions = {}): Promise<Lab> {
  const avail = labAvailable();
  if (!avail.ok) throw new Error(`lab unavailable: ${avail.why}`);
  const nHosts = opts.hosts ?? opts.hostOffsets?.length ?? 1;
  if (nHosts < 1 || nHosts > MAX_LAB_HOSTS) throw new Error(`hosts must be 1..${MAX_LAB_HOSTS}`);
  const offsets = opts.hostOffsets ?? defaultOffsets(nHosts);
  if (offsets.length !== nHosts || offsets.some((o) => [0, 1, 3, 4, 5, 250, 255].includes(o) || (opts.bastion && o === 2) || (o > 255 && RESERVED_OCTETS.includes(o & 255)) || o >= 1024) || new Set(offsets).size !== nHosts) {
    throw new Error('host offsets must be distinct, below 1024, and avoid .0 .1 .3 .4 .5 .250 .255 (.2 too with a bastion) (and .0-.5 .250 .255 beyond the first /24)');
  }
  // more than one /24: offset o is host (o & 255) of the (o >> 8)-th /24 after N, all on one bridge
  const segments = (Math.max(...offsets) >> 8) + 1;
  const id = randomBytes(3).toString('hex');
  const n = opts.subnet ?? pickSubnet(segments);
  if (opts.subnet !== undefined && run(['ip', '-o', 'addr', 'show']).includes(`198.18.${n}.`)) {
    throw new Error(`198.18.${n}.0/24 is in use (another lab or demo running?)`);
  }
  const v4 = (i: number) => `198.18.${n + (i >> 8)}.${i & 255}`;
  const v6 = (i: number) => `2001:db8:${n.toString(16)}::${i.toString(16)}`;
  // the bastion's front network (only with `bastion`): 198.19.N.0/24, 2001:db8:1NNN::/64
  const f4 = (i: number) => `198.19.${n}.${i}`;
  const f6 = (i: number) => `2001:db8:1${n.toString(16).padStart(3, '0')}::${i.toString(16)}`;
  if (opts.bastion && run(['ip', '-o', 'addr', 'show']).includes(`198.19.${n}.`)) throw new Error(`198.19.${n}.0/24 is in use`);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `${PREFIX}${id}-`));
  fs.chmodSync(dir, 0o711);
  const sw = `${PREFIX}${id}-sw`;
  const rootLink = `nrhi${id}c`;
  const namespaces: string[] = [];
  const users: string[] = [];
  const procs = new Set<ChildProcess>();
  const sshd = new Map<number, ChildProcess>();
  const sudoersFile = `/etc/sudoers.d/${PREFIX}${id}`;
  let closed = false;

  const cleanupSync = () => {
    if (closed) return;
    closed = true;
    for (const p of procs) p.kill('SIGKILL');
    for (const ns of namespaces.reverse()) removeNs(ns);
    tryRun(['ip', 'link', 'del', rootLink]);
    for (const u of users) {
      // a session timer's record of an account without a writable home (the apply script's
      // /tmp/nrhi-release-UID): lab hosts share the machine's /tmp, and userdel leaves it
      let uid = '';
      try {
        uid = run(['id', '-u', u]).trim();
      } catch {
        /* no such user */
      }
      if (/^\d+$/.test(uid)) fs.rmSync(`/tmp/nrhi-release-${uid}`, { recursive: true, force: true });
      tryRun(['userdel', '-f', u]);
    }
    fs.rmSync(sudoersFile, { force: true });
    fs.rmSync(dir, { recursive: true, force: true });
    process.removeListener('exit', cleanupSync);
    openLabs.delete(cleanupSync);
  };
  process.on('exit', cleanupSync);
  openLabs.add(cleanupSync);
  hookSignals();

  const addNs = (name: string) => {
    run(['ip', 'netns', 'add', name]);
    namespaces.push(name);
    run(['ip', '-n', name, 'link', 'set', 'lo', 'up']);
    run(['ip', 'netns', 'exec', name, 'sysctl', '-qw', 'net.ipv6.conf.all.accept_dad=0', 'net.ipv6.conf.default.accept_dad=0']);
  };
  const attach = (ns: string, swName: string, i: number) => {
    run(['ip', '-n', ns, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', swName, 'netns', sw]);
    run(['ip', '-n', sw, 'link', 'set', swName, 'master', 'br0', 'up']);
    run(['ip', '-n', ns, 'addr', 'add', `${v4(i)}/24`, 'dev', 'eth0']);
    run(['ip', '-n', ns, '-6', 'addr', 'add', `${v6(i)}/64`, 'dev', 'eth0', 'nodad']);
    run(['ip', '-n', ns, 'link', 'set', 'eth0', 'up']);
  };

  try {
    addNs(sw);
    run(['ip', '-n', sw, 'link', 'add', 'br0', 'type', 'bridge']);
    run(['ip', '-n', sw, 'link', 'set', 'br0', 'up']);
    // the controller side: this process reaches the lab through it
    const bastionNs = `${PREFIX}${id}-bastion`;
    if (!opts.bastion) {
      run(['ip', 'link', 'add', rootLink, 'type', 'veth', 'peer', 'name', 'ctl', 'netns', sw]);
      run(['ip', '-n', sw, 'link', 'set', 'ctl', 'master', 'br0', 'up']);
      // the controller is .1 of each of the lab's /24s (so another lab never picks one of them)
      for (let k = 0; k < segments; k++) run(['ip', 'addr', 'add', `${v4(256 * k + 1)}/24`, 'dev', rootLink]);
      run(['ip', '-6', 'addr', 'add', `${v6(1)}/64`, 'dev', rootLink, 'nodad']);
    } else {
      if (segments > 1) throw new Error('a bastion lab has at most one /24 of hosts');
      // controller -> bastion (front leg, its own /24) -> bridge (inner leg): no IP forwarding in
      // the bastion (a new namespace has none), so only its sshd connects the two
      addNs(bastionNs);
      run(['ip', 'link', 'add', rootLink, 'type', 'veth', 'peer', 'name', 'front', 'netns', bastionNs]);
      run(['ip', '-n', bastionNs, 'addr', 'add', `${f4(2)}/24`, 'dev', 'front']);
      run(['ip', '-n', bastionNs, '-6', 'addr', 'add', `${f6(2)}/64`, 'dev', 'front', 'nodad']);
      run(['ip', '-n', bastionNs, 'link', 'set', 'front', 'up']);
      run(['ip', 'netns', 'exec', bastionNs, 'sysctl', '-qw', 'net.ipv4.ip_forward=0', 'net.ipv6.conf.all.forwarding=0']);
      attach(bastionNs, 'bastion', 2);
      run(['ip', 'addr', 'add', `${f4(1)}/24`, 'dev', rootLink]);
      run(['ip', '-6', 'addr', 'add', `${f6(1)}/64`, 'dev', rootLink, 'nodad']);
    }
    run(['ip', 'link', 'set', rootLink, 'up']);

    const peerNs = `${PREFIX}${id}-peer`;
    addNs(peerNs);
    attach(peerNs, 'peer', 3);
    run(['ip', '-n', peerNs, 'addr', 'add', `${v4(5)}/24`, 'dev', 'eth0']);
    // deprecated at once (preferred_lft 0): never the source of the peer's own replies
    run(['ip', '-n', peerNs, '-6', 'addr', 'add', `${v6(5)}/64`, 'dev', 'eth0', 'nodad', 'preferred_lft', '0']);
    const sinkNs = `${PREFIX}${id}-sink`;
    addNs(sinkNs);
    attach(sinkNs, 'sink', 4);
    run(['ip', 'netns', 'exec', sinkNs, 'nft', '-f', '-'], 'table inet sink { chain input { type filter hook input priority 0; policy drop; }; }\n');

    // users: a sudo user (nft only), one without sudo, and a uid-0 alias whose shell is /bin/sh
    fs.mkdirSync(path.join(dir, 'authorized_keys'), { mode: 0o755 });
    const mkUser = (suffix: 'a' | 'n' | 'r' | 'j', passphrase?: string): LabUser => {
      const username = `nrh${id}${suffix}`;
      const home = path.join(dir, `home-${suffix}`);
      fs.mkdirSync(home, { mode: 0o755 });
      const argv = ['useradd', '-M', '-d', home, '-s', '/bin/sh'];
      if (suffix === 'r') argv.push('-o', '-u', '0', '-g', '0');
      run([...argv, username]);
      users.push(username);
      const key = keygen(path.join(dir, `key-${suffix}`), passphrase ?? '');
      fs.writeFileSync(path.join(dir, 'authorized_keys', username), `${key.pub}\n`, { mode: 0o644 });
      const password = randomBytes(12).toString('base64url');
      run(['chpasswd'], `${username}:${password}\n`);
      return { username, privateKey: key.priv, passphrase, password };
    };
    const root = mkUser('r');
    const sudo = mkUser('a', randomBytes(8).toString('hex'));
    const nosudo = mkUser('n');
    // exactly the generated lines the README documents: the driver's own command lines, nothing wider
    // (`nft` with any arguments would read any file as root: `nft -f /etc/shadow`)
    fs.writeFileSync(sudoersFile, `${SUDOERS_LINES(sudo.username)}\n`, { mode: 0o440 });
    run(['visudo', '-cqf', sudoersFile]);

    const wrongKey = keygen(path.join(dir, 'wrong_host_key'));
    fs.mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });
    const hosts: LabHost[] = [];
    for (let i = 0; i < nHosts; i++) {
      const ns = `${PREFIX}${id}-h${i}`;
      addNs(ns);
      attach(ns, `h${i}`, offsets[i]);
      const hk = keygen(path.join(dir, `host_key_${i}`));
      const pub = hk.pub.split(' ').slice(0, 2).join(' ');
      const cfg = [
        'Port 22',
        `ListenAddress ${v4(offsets[i])}`,
        `ListenAddress ${v6(offsets[i])}`,
        `HostKey ${path.join(dir, `host_key_${i}`)}`,
        `PidFile ${path.join(dir, `sshd_${i}.pid`)}`,
        `AuthorizedKeysFile ${path.join(dir, 'authorized_keys')}/%u`,
        'StrictModes no',
        'PasswordAuthentication yes',
        'KbdInteractiveAuthentication no',
        'PermitRootLogin yes',
        'UsePAM no',
        'MaxStartups 200:30:400',
        'MaxSessions 20',
        'LogLevel ERROR',
        '',
      ].join('\n');
      fs.writeFileSync(path.join(dir, `sshd_${i}.conf`), cfg);
      hosts.push({
        index: i,
        ns,
        v4: v4(offsets[i]),
        v6: v6(offsets[i]),
        port: 22,
        knownHosts: `${v4(offsets[i])} ${pub}\n`,
        knownHostsV6: `${v6(offsets[i])} ${pub}\n`,
        hostKeyPub: pub,
        wrongKnownHosts: `${v4(offsets[i])} ${wrongKey.pub.split(' ').slice(0, 2).join(' ')}\n`,
      });
    }

    /** a daemon in `ns` (`ip netns exec ns ...argv`), its output appended to `<log>.log` in the lab's dir; killed with the lab */
    const spawnDaemon = (ns: string, argv: string[], log: string): ChildProcess => {
      const fd = fs.openSync(path.join(dir, `${log}.log`), 'a');
      const p = spawn('ip', ['netns', 'exec', ns, ...argv], { stdio: ['ignore', fd, fd] });
      fs.closeSync(fd);
      procs.add(p);
      p.on('exit', () => procs.delete(p));
      return p;
    };
    const startSshd = async (i: number) => {
      const h = hosts[i];
      // The host's /etc/systemd/system is a tmpfs of its own (in the mount namespace that `ip netns
      // exec` made for sshd, not propagated back), so persist-across-reboot writes its boot unit
      // there and never into this machine's real /etc. If that mount fails, sshd does not start.
      // The host's /etc is an overlay of its own too (the machine's /etc below, a tmpfs on top), so
      // tests write the host's resolv.conf, chrony.conf or sssd.conf, as its admin or its attacker
      // would, without touching this machine's files.
      const etc = path.join(dir, `etc_${i}`);
      fs.mkdirSync(etc, { recursive: true, mode: 0o700 });
      const boot = [
        ...etcOverlay('16m'),
        // the host's own servers, configured as a real host has them
        'printf "nameserver %s\\n" "$3" > /etc/resolv.conf',
        'mkdir -p /etc/chrony /etc/ldap && printf "server %s iburst\\n" "$3" > /etc/chrony/chrony.conf',
        'printf "URI ldap://%s/\\n" "$3" > /etc/ldap/ldap.conf',
        'if [ -d /etc/systemd/system ]; then',
        '  mount -t tmpfs -o mode=755,size=4m nrhi-lab-systemd /etc/systemd/system && mkdir /etc/systemd/system/sysinit.target.wants || exit 97',
        'fi',
        'exec /usr/sbin/sshd -D -e -f "$1"',
      ].join('\n');
      sshd.set(i, spawnDaemon(h.ns, ['sh', '-c', boot, 'sshd', path.join(dir, `sshd_${i}.conf`), etc, v4(5)], `sshd_${i}`));
      if (opts.bastion) await waitListen(h.ns, 22, 15_000);
      else await waitPort(h.v4, 22, 15_000);
    };
    const stopSshd = (i: number) => stopChild(sshd.get(i), 10_000);
    // at most 32 sshd starting at once: a large lab must not starve the machine it shares
    for (let k = 0; k < hosts.length; k += 32) await Promise.all(hosts.slice(k, k + 32).map((h) => startSshd(h.index)));


    const guardNs = (ns: string) => {
      if (!namespaces.includes(ns)) throw new Error(`refusing to act outside this lab's namespaces: ${ns}`);
    };
    let stdinSeq = 0;
    const exec = (ns: string, argv: string[], stdin?: string, timeoutMs = 20_000): Promise<ExecResult> => {
      guardNs(ns);
      // stdin from a regular file: `nft -j -f -` opens /dev/stdin by path, which fails (ENXIO)
      // on the socket node would otherwise hand the child
      const inFile = path.join(dir, `stdin-${process.pid}-${++stdinSeq}`);
      fs.writeFileSync(inFile, stdin ?? '', { mode: 0o600 });
      const fd = fs.openSync(inFile, 'r');
      return new Promise((resolve) => {
        const p = spawn('ip', ['netns', 'exec', ns, ...argv], { stdio: [fd, 'pipe', 'pipe'] });
        fs.closeSync(fd);
        procs.add(p);
        let stdout = '';
        let stderr = '';
        const timer = setTimeout(() => p.kill('SIGKILL'), timeoutMs);
        p.stdout!.on('data', (d) => (stdout += d));
        p.stderr!.on('data', (d) => (stderr += d));
        p.on('close', (code) => {
          clearTimeout(timer);
          procs.delete(p);
          fs.rmSync(inFile, { force: true });
          resolve({ code, stdout, stderr });
        });
      });
    };
    // a copy in the lab's own directory (0711, the file 0644): the agent also runs as unprivileged
    // users (setpriv), who cannot reach a checkout in a 0700 home such as /root
    const agent = path.join(dir, 'agent.js');
    fs.copyFileSync(agentPath(), agent);
    fs.chmodSync(agent, 0o644);
    const startAgent = (ns: string, args: string[], uid?: number): Promise<ChildProcess> => {
      guardNs(ns);
      const as = uid === undefined ? [] : ['setpriv', `--reuid=${uid}`, `--regid=${uid}`, '--clear-groups'];
      return new Promise((resolve, reject) => {
        const p = spawn('ip', ['netns', 'exec', ns, ...as, process.execPath, agent, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
        procs.add(p);
        p.on('exit', () => procs.delete(p));
        const timer = setTimeout(() => {
          p.kill('SIGKILL');
          reject(new Error(`agent ${args.join(' ')} did not start`));
        }, 10_000);
        let buf = '';
        const onData = (d: Buffer) => {
          buf += d.toString();
          if (buf.includes('ready\n')) {
            clearTimeout(timer);
            p.stdout!.removeListener('data', onData);
            resolve(p);
          }
        };
        p.stdout!.on('data', onData);
        p.on('exit', (code) => {
          clearTimeout(timer);
          reject(new Error(`agent ${args.join(' ')} exited with ${code}`));
        });
      });
    };
    const killer = (p: ChildProcess): Closable => ({
      close: () => {
        p.kill('SIGKILL');
        procs.delete(p);
      },
    });

    let bastion: LabBastion | undefined;
    if (opts.bastion) {
      const user = mkUser('j');
      const hk = keygen(path.join(dir, 'host_key_bastion'));
      const pub = hk.pub.split(' ').slice(0, 2).join(' ');
      const conf = path.join(dir, 'sshd_bastion.conf');
      let proc: ChildProcess | undefined;
      const configure = async (o: { allowTcpForwarding?: boolean; permitOpen?: string[]; etcHosts?: string } = {}) => {
        const cfg = [
          'Port 22',
          `ListenAddress ${f4(2)}`,
          `ListenAddress ${f6(2)}`,
          `HostKey ${path.join(dir, 'host_key_bastion')}`,
          `PidFile ${path.join(dir, 'sshd_bastion.pid')}`,
          `AuthorizedKeysFile ${path.join(dir, 'authorized_keys')}/%u`,
          'StrictModes no',
          'PasswordAuthentication no',
          'KbdInteractiveAuthentication no',
          'PermitRootLogin no',
          `AllowUsers ${user.username}`,
          'UsePAM no',
          'MaxStartups 200:30:400',
          `AllowTcpForwarding ${o.allowTcpForwarding === false ? 'no' : 'yes'}`,
          ...(o.permitOpen ? [`PermitOpen ${o.permitOpen.join(' ')}`] : []),
          'LogLevel ERROR',
          '',
        ].join('\n');
        fs.writeFileSync(conf, cfg);
        await stopChild(proc, 10_000);
        // established sessions outlive a restarted listener: cut them, so the new rules hold
        await exec(bastionNs, ['ss', '-K', '-t', 'state', 'established', '( sport = :22 )']);
        // with etcHosts, the bastion's /etc is an overlay of its own (as a lab host's is), in the mount
        // namespace `ip netns exec` made for its sshd: the machine's /etc/hosts is never written
        const etc = path.join(dir, 'etc_bastion');
        fs.mkdirSync(etc, { recursive: true, mode: 0o700 });
        const boot = [
          ...etcOverlay('4m'),
          'printf "%s\\n" "$3" >> /etc/hosts || exit 96',
          'exec /usr/sbin/sshd -D -e -f "$1"',
        ].join('\n');
        const argv = o.etcHosts === undefined ? ['/usr/sbin/sshd', '-D', '-e', '-f', conf] : ['sh', '-c', boot, 'sshd', conf, etc, o.etcHosts];
        proc = spawnDaemon(bastionNs, argv, 'sshd_bastion');
        await waitPort(f4(2), 22, 15_000);
      };
      const sessions = async () => {
        const r = await exec(bastionNs, ['ss', '-H', '-t', '-n', 'state', 'established', '( sport = :22 )']);
        return r.stdout.split('\n').filter((l) => l.trim() !== '').length;
      };
      bastion = {
        ns: bastionNs,
        v4: f4(2),
        v6: f6(2),
        port: 22,
        inner: { v4: v4(2), v6: v6(2) },
        user,
        knownHosts: `${f4(2)} ${pub}\n${f6(2)} ${pub}\n`,
        wrongKnownHosts: `${f4(2)} ${wrongKey.pub.split(' ').slice(0, 2).join(' ')}\n`,
        configure,
        sessions,
        async dropSessions() {
          await exec(bastionNs, ['ss', '-K', '-t', 'state', 'established', '( sport = :22 )']);
        },
      };
      await configure();
    }

    const lab: Lab = {
      id,
      dir,
      bastion,
      controller: opts.bastion ? { v4: f4(1), v6: f6(1), link: rootLink } : { v4: v4(1), v6: v6(1), link: rootLink },
      hosts,
      peer: { ns: peerNs, v4: v4(3), v6: v6(3) },
      server: { v4: v4(5), v6: v6(5) },
      sink: { ns: sinkNs, v4: v4(4), v6: v6(4) },
      unusedV4: v4(250),
      users: { root, sudo, nosudo },
      exec,
      async nft(ns, args) {
        if (!ns.startsWith(PREFIX)) throw new Error(`nft only inside lab namespaces, not ${ns}`);
        const r = await exec(ns, ['nft', ...args]);
        if (r.code !== 0) throw new Error(`nft ${args.join(' ')} failed in ${ns}: ${r.stderr}`);
        return r;
      },
      async listen(ns, port, o = {}) {
        return killer(await startAgent(ns, ['listen', o.udp ? 'udp' : 'tcp', String(port), ...(o.addr ? [o.addr] : [])]));
      },
      async tryConnect(ns, addr, port, timeoutMs = 1500, o = {}) {
        const as = o.uid === undefined ? [] : ['setpriv', `--reuid=${o.uid}`, `--regid=${o.uid}`, '--clear-groups'];
        return (await exec(ns, [...as, process.execPath, agent, 'try', addr, String(port), String(timeoutMs)], '', timeoutMs + 5000)).code === 0;
      },
      async tcpOpen(ns, addr, port, timeoutMs = 1500) {
        return (await exec(ns, [process.execPath, agent, 'open', addr, String(port), String(timeoutMs)], '', timeoutMs + 5000)).code === 0;
      },
      async udpRoundTrip(ns, addr, port, timeoutMs = 1500) {
        return (await exec(ns, [process.execPath, agent, 'udp', addr, String(port), String(timeoutMs)], '', timeoutMs + 5000)).code === 0;
      },
      async openConnection(ns, addr, port, o = {}) {
        const argv =
          o.from !== undefined
            ? ['bclient', addr, String(port), String(o.from.port), ...(o.from.addr ? [o.from.addr] : [])]
            : o.localPort !== undefined
              ? ['ubound', addr, String(port), String(o.localPort)]
              : [o.udp ? 'uclient' : 'client', addr, String(port)];
        const p = await startAgent(ns, argv, o.uid);
        let seq = 0;
        let seen = '';
        p.stdout!.on('data', (d: Buffer) => {
          seen = (seen + d.toString()).slice(-65536);
        });
        const waitFor = (token: string, timeoutMs: number) =>
          new Promise<boolean>((resolve) => {
            if (seen.includes(token)) return resolve(true);
            const onData = () => {
              if (seen.includes(token)) done(true);
            };
            const done = (ok: boolean) => {
              clearTimeout(timer);
              p.stdout!.removeListener('data', onData);
              resolve(ok);
            };
            const timer = setTimeout(() => done(false), timeoutMs);
            p.stdout!.on('data', onData);
          });
        return {
          ...killer(p),
          roundTrip(timeoutMs = 1500) {
            const token = `rt-${++seq}-${randomBytes(4).toString('hex')}`;
            const got = waitFor(token, timeoutMs);
            p.stdin!.write(`${token}\n`);
            return got;
          },
          send(text: string) {
            p.stdin!.write(`${text}\n`);
          },
          waitFor,
        };
      },
      async ping(ns, addr, timeoutMs = 1500) {
        const secs = String(Math.max(1, Math.round(timeoutMs / 1000)));
        const argv = ['ping', ...(addr.includes(':') ? ['-6'] : []), '-n', '-q', '-c', '1', '-W', secs, addr];
        return (await exec(ns, argv, '', timeoutMs + 5000)).code === 0;
      },
      async hostExec(index, argv, stdin) {
        const p = sshd.get(index);
        if (!p || p.exitCode !== null || !p.pid) throw new Error(`sshd of lab host ${index} is not running`);
        const r = await exec(hosts[index].ns, ['nsenter', '-t', String(p.pid), '-m', '--', ...argv], stdin);
        return r;
      },
      async hostFile(index, etcPath, content) {
        if (!/^\/etc\/[A-Za-z0-9._/-]+$/.test(etcPath) || etcPath.includes('..')) throw new Error(`hostFile: not a path under /etc: ${etcPath}`);
        const script = content === null ? 'rm -f "$1"' : 'mkdir -p "$(dirname "$1")" && cat > "$1"';
        const r = await lab.hostExec(index, ['sh', '-c', script, 'sh', etcPath], content ?? '');
        if (r.code !== 0) throw new Error(`hostFile ${etcPath}: ${r.stderr}`);
      },
      processes(ns) {
        guardNs(ns);
        return nsProcesses(ns)
          .map((p) => p.comm)
          .sort();
      },
      async wrapNft(index, script) {
        const real = path.join(dir, `nft.real.${index}`);
        const wrap = path.join(dir, `nft.wrap.${index}`);
        if (script === null) {
          await lab.hostExec(index, ['sh', '-c', `umount /usr/sbin/nft; umount ${real}; true`]);
          return;
        }
        fs.writeFileSync(real, '');
        fs.writeFileSync(wrap, `#!/bin/sh\nREAL_NFT=${real}\n${script}\n`, { mode: 0o755 });
        // only in this host's sshd mount namespace: the machine's own nft is never touched
        const r = await lab.hostExec(index, ['sh', '-c', `mount --bind /usr/sbin/nft ${real} && mount --bind ${wrap} /usr/sbin/nft`]);
        if (r.code !== 0) throw new Error(`wrapNft: ${r.stderr}`);
      },
      async silence(index, on) {
        run(['ip', '-n', hosts[index].ns, 'link', 'set', 'eth0', on ? 'down' : 'up']);
        if (!on && opts.bastion) await waitListen(hosts[index].ns, 22, 15_000);
        else if (!on) await waitPort(hosts[index].v4, 22, 15_000);
      },
      async killSshd(index) {
        for (const p of nsProcesses(hosts[index].ns)) if (p.comm.startsWith('sshd')) tryRun(['kill', '-9', p.pid]);
        await new Promise((r) => setTimeout(r, 100));
      },
      async newHostKey(index) {
        const file = path.join(dir, `host_key_${index}`);
        fs.rmSync(file, { force: true });
        fs.rmSync(`${file}.pub`, { force: true });
        const hk = keygen(file);
        await lab.killSshd(index);
        await startSshd(index);
        return `${hosts[index].v4} ${hk.pub.split(' ').slice(0, 2).join(' ')}\n`;
      },
      stopSshd,
      startSshd,
      addr: (i) => ({ v4: v4(i), v6: v6(i) }),
      plug(link) {
        // the same link of a previous boot (its namespace kept alive by the lab's name for it)
        tryRun(['ip', '-n', sw, 'link', 'del', link]);
        run(['ip', 'link', 'set', link, 'netns', sw]);
        run(['ip', '-n', sw, 'link', 'set', link, 'master', 'br0', 'up']);
      },
      adoptNs(suffix, pid) {
        if (!/^[a-z0-9]{1,8}$/.test(suffix)) throw new Error(`adoptNs: bad suffix ${suffix}`);
        const name = `${PREFIX}${id}-${suffix}`;
        // never name this machine's own namespace: cleanup kills every process of a lab namespace
        const netns = (p: number | string) => fs.readlinkSync(`/proc/${p}/ns/net`);
        if (netns(pid) === netns(process.pid)) throw new Error(`adoptNs: process ${pid} is in the root network namespace`);
        tryRun(['ip', 'netns', 'del', name]);
        run(['ip', 'netns', 'attach', name, String(pid)]);
        if (!namespaces.includes(name)) namespaces.push(name);
        return name;
      },
      async close() {
        cleanupSync();
      },
    };
    return lab;
  } catch (err) {
    cleanupSync();
    throw err;
  }
}

/**
 * The driver target for lab host `i` as the least-privileged sudo user (or `root`), on `table`,
 * with `extra` over it. Typed loosely so that the lab does not depend on the driver.
 */
export function labTarget(lab: Lab, i: number, table: string, timeoutMs: number, extra: Record<string, unknown> = {}, as: 'sudo' | 'root' = 'sudo') {
  const u = lab.users[as];
  return {
    host: lab.hosts[i].v4,
    username: u.username,
    privateKey: u.privateKey,
    passphrase: u.passphrase,
    sudo: as === 'sudo',
    knownHosts: lab.hosts[i].knownHosts,
    table,
    timeoutMs,
    ...extra,
  };
}

/**
 * For a mocha `before` hook: skips the suite (pending, the reason printed) when the lab or one of
 * `extra` (containers, a browser) cannot be had here, but with CI=true fails it instead, so that a
 * CI run never counts a skipped integration suite as passing. Suites use `useLab` (fixtures.ts).
 */
export function requireLab(ctx: Mocha.Context, ...extra: Need[]): void {
  skipOrFail(ctx, 'lab', missing(labAvailable(), ...extra));
}
