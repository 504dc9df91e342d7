/**
 * A lab host of its own kind: a real Debian system (systemd as PID 1, logind, its own sshd with
 * PAM, Debian's nftables.service) booted with systemd-nspawn from a debootstrap tree, on the lab's
 * bridge beside the namespace hosts, the peer and the controller link.
 *
 * - Trees: `debootstrap --variant=minbase` of bookworm (nft 1.0.6) and trixie (nft 1.1.3) from
 *   Debian's packages, cached under `.lab/trees/<suite>` (gitignored; NRHI_TREE_CACHE moves it) and
 *   built when missing. minbase has no netbase: no /etc/protocols, as on minimal images.
 * - Each container boots from a private overlay of the cached tree (the cache is never written),
 *   kept across its reboots in the lab's directory, removed with the lab.
 * - Network: `--network-veth-extra` gives every boot a fresh network namespace (a reboot starts from
 *   an empty ruleset, as a real one does); the root side of the veth is moved at once onto the
 *   lab bridge (it never gets an address in the root namespace), and the container's namespace is
 *   named as a lab namespace, so lab.exec/listen/tryConnect reach it. Never a ruleset outside it.
 * - sshd: root logs in with a key of this lab; the host key is generated per container and pinned.
 * - Power: SIGTERM to systemd-nspawn halts the container; `reboot()` runs `systemctl reboot` inside
 *   (nspawn exits) and boots it again. close() powers it off and unmounts the overlay.
 */
import { execFileSync, spawn, type ChildProcess } from 'child_process';
import * as fs from 'fs';
import * as net from 'net';
import * as path from 'path';
import { strict as assert } from 'assert';
import type { ExecResult, Lab } from './lab';
import { stopChild } from './proc';
import { DEFAULT_TABLE } from '../../src/driver/policy';
import { sudoersLines } from '../../src/driver/sudoers';

export type Suite = 'bookworm' | 'trixie';
export const SUITES: Suite[] = ['bookworm', 'trixie'];
/** what each suite's nft says it is (checked at boot) */
export const NFT_VERSION: Record<Suite, string> = { bookworm: '1.0.6', trixie: '1.1.3' };

const INCLUDE = 'systemd,systemd-sysv,dbus,libpam-systemd,openssh-server,nftables,iproute2,sudo,procps';

export function treeCache(): string {
  return process.env.NRHI_TREE_CACHE ?? path.resolve(__dirname, '..', '..', '..', '.lab', 'trees');
}

/** Whether containers can be had here: root, systemd-nspawn, debootstrap (or a cached tree). */
export function containerAvailable(): { ok: boolean; why: string } {
  if (typeof process.getuid === 'function' && process.getuid() !== 0) return { ok: false, why: 'not root' };
  const has = (c: string) => ['/usr/bin', '/usr/sbin', '/bin', '/sbin'].some((d) => fs.existsSync(path.join(d, c)));
  const missing = ['systemd-nspawn', 'debootstrap', 'nsenter'].filter((c) => !has(c));
  return missing.length ? { ok: false, why: `missing: ${missing.join(', ')} (apt-get install systemd-container debootstrap)` } : { ok: true, why: '' };
}

/** The suites a container suite boots: NRHI_GUARD_SUITES=bookworm narrows it (both by default). */
export function guardSuites(): Suite[] {
  return (process.env.NRHI_GUARD_SUITES?.split(',') as Suite[] | undefined)?.filter((s) => SUITES.includes(s)) ?? SUITES;
}

/**
 * The cached tree of `suite`, built (about 1-2 min) when missing. `packages`: a flavour of the tree
 * with these packages too, cached beside it (`<suite>+<pkg>...`), so the common trees stay as they
 * are: python3 for the Ansible run (host-setup.test.ts) brings netbase on trixie, and the other
 * suites test a host without /etc/protocols.
 */
export function ensureTree(suite: Suite, packages: readonly string[] = []): string {
  for (const p of packages) if (!/^[a-z0-9][a-z0-9+.-]{0,60}$/.test(p)) throw new Error(`ensureTree: bad package name ${p}`);
  const include = [INCLUDE, ...packages].join(',');
  const dir = path.join(treeCache(), [suite, ...packages].join('+'));
  const stamp = path.join(dir, '.nrhi-include');
  if (fs.existsSync(stamp) && fs.readFileSync(stamp, 'utf8') === include) return dir;
  fs.mkdirSync(treeCache(), { recursive: true });
  const tmp = `${dir}.tmp-${process.pid}`;
  fs.rmSync(tmp, { recursive: true, force: true });
  const mirror = process.env.NRHI_DEBIAN_MIRROR ?? 'http://deb.debian.org/debian';
  const t0 = Date.now();
  try {
    execFileSync('debootstrap', ['--variant=minbase', `--include=${include}`, suite, tmp, mirror], { stdio: ['ignore', 'ignore', 'pipe'], timeout: 900_000 });
  } catch (err) {
    fs.rmSync(tmp, { recursive: true, force: true });
    throw new Error(`debootstrap ${suite} failed: ${String((err as { stderr?: Buffer }).stderr ?? err).slice(-2000)}`, { cause: err });
  }
  fs.writeFileSync(path.join(tmp, '.nrhi-include'), include);
  fs.rmSync(dir, { recursive: true, force: true });
  fs.renameSync(tmp, dir);
  console.log(`      (built the ${path.basename(dir)} tree in ${Math.round((Date.now() - t0) / 1000)} s, cached in ${dir})`);
  return dir;
}

export interface ContainerHost {
  suite: Suite;
  name: string;
  /** the lab namespace name of the container's network namespace (changes with nothing; re-pointed each boot) */
  ns: string;
  v4: string;
  v6: string;
  knownHosts: string;
  privateKey: string;
  /** the container's PID 1 as this machine sees it */
  pid1(): number;
  /** runs argv inside the container (all its namespaces), as root */
  exec(argv: string[], stdin?: string, timeoutMs?: number): Promise<ExecResult>;
  /** `systemctl reboot` inside, then boots it again (a fresh network namespace); resolves once sshd answers */
  reboot(): Promise<void>;
  /** halts it (SIGTERM to nspawn, then SIGKILL after 20 s) */
  powerOff(): Promise<void>;
  boot(): Promise<void>;
  /** how long the last boot took to sshd answering (ms) */
  lastBootMs: number;
  /** root's view of the container's files (the overlay) */
  root: string;
  close(): Promise<void>;
}

function sh(argv: string[], input?: string, timeout = 30_000): string {
  return execFileSync(argv[0], argv.slice(1), { input, encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'], timeout });
}

/** Whether an SSH server greets from addr:22 within `ms`. */
function sshBanner(addr: string, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host: addr, port: 22 });
    const done = (ok: boolean) => {
      s.destroy();
      resolve(ok);
    };
    s.setTimeout(ms, () => done(false));
    s.once('error', () => done(false));
    s.once('data', (d) => done(d.toString().startsWith('SSH-')));
  });
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

function children(pid: number): number[] {
  try {
    return fs
      .readdirSync(`/proc/${pid}/task`)
      .flatMap((t) => fs.readFileSync(`/proc/${pid}/task/${t}/children`, 'utf8').split(' '))
      .filter(Boolean)
      .map(Number);
  } catch {
    return [];
  }
}

function comm(pid: number): string {
  try {
    return fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return '';
  }
}

function netnsOf(pid: number): string {
  try {
    return fs.readlinkSync(`/proc/${pid}/ns/net`);
  } catch {
    return '';
  }
}

/** The descendant of `pid` that is PID 1 in its own PID namespace (the container's init). */
function findInit(pid: number): number | null {
  const todo = [pid];
  for (let n = 0; n < 50 && todo.length; n++) {
    const p = todo.shift()!;
    try {
      const st = fs.readFileSync(`/proc/${p}/status`, 'utf8');
      const ns = /^NSpid:\s+(.*)$/m.exec(st)?.[1].trim().split(/\s+/);
      if (p !== pid && ns && ns.length > 1 && ns[ns.length - 1] === '1') return p;
    } catch {
      /* gone */
    }
    todo.push(...children(p));
  }
  return null;
}

/**
 * Boots container `index` (address offset 100 + index) of `suite` on `lab`. `setup` may write
 * more files into its root before the first boot; `packages`: boot the tree flavour with these
 * Debian packages too (ensureTree).
 */
export async function createContainer(lab: Lab, suite: Suite, index: number, opts: { setup?: (root: string) => void; packages?: readonly string[] } = {}): Promise<ContainerHost> {
  const tree = ensureTree(suite, opts.packages);
  const base = path.join(lab.dir, `ct${index}`);
  const root = path.join(base, 'root');
  for (const d of ['upper', 'work', 'root']) fs.mkdirSync(path.join(base, d), { recursive: true });
  sh(['mount', '-t', 'overlay', `nrhi-${lab.id}-ct${index}`, '-o', `lowerdir=${tree},upperdir=${base}/upper,workdir=${base}/work`, root]);
  const { v4, v6 } = lab.addr(100 + index);
  const name = `nrhi-${lab.id}-c${index}`;
  const link = `nrhi${lab.id}k${index}`;
  let nspawn: ChildProcess | null = null;
  let init = 0;
  let mounted = true;

  const unmount = () => {
    if (!mounted) return;
    try {
      sh(['umount', '-l', root]);
    } catch {
      /* best effort */
    }
    mounted = false;
  };
  const killNow = () => {
    if (nspawn && nspawn.exitCode === null && nspawn.signalCode === null) nspawn.kill('SIGKILL');
    unmount();
  };
  process.on('exit', killNow);

  // keys: root's login key and the pinned host key (the tree's own host keys removed)
  const keyFile = path.join(base, 'id');
  sh(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-C', 'nrhi-lab', '-f', keyFile]);
  for (const f of fs.readdirSync(path.join(root, 'etc/ssh'))) if (f.startsWith('ssh_host_')) fs.rmSync(path.join(root, 'etc/ssh', f));
  sh(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-C', 'nrhi-lab', '-f', path.join(root, 'etc/ssh/ssh_host_ed25519_key')]);
  const hostPub = fs.readFileSync(path.join(root, 'etc/ssh/ssh_host_ed25519_key.pub'), 'utf8').trim().split(' ').slice(0, 2).join(' ');
  fs.mkdirSync(path.join(root, 'root/.ssh'), { recursive: true, mode: 0o700 });
  fs.writeFileSync(path.join(root, 'root/.ssh/authorized_keys'), fs.readFileSync(`${keyFile}.pub`), { mode: 0o600 });
  fs.writeFileSync(path.join(root, 'etc/hostname'), `${name}\n`);
  fs.writeFileSync(path.join(root, 'etc/hosts'), `127.0.0.1 localhost\n127.0.1.1 ${name}\n::1 localhost\n`);
  // the lab's infrastructure server, as a real host names its DNS server
  fs.rmSync(path.join(root, 'etc/resolv.conf'), { force: true });
  fs.writeFileSync(path.join(root, 'etc/resolv.conf'), `nameserver ${lab.server.v4}\n`);
  fs.mkdirSync(path.join(root, 'etc/systemd/network'), { recursive: true });
  fs.writeFileSync(
    path.join(root, 'etc/systemd/network/10-lab.network'),
    ['[Match]', 'Name=eth0', '[Network]', `Address=${v4}/24`, `Address=${v6}/64`, 'IPv6AcceptRA=no', 'IPv6DuplicateAddressDetection=0', 'LinkLocalAddressing=ipv6', ''].join('\n'),
  );
  // a user's processes die with their last session, root's too (logind spares root unless
  // KillExcludeUsers names someone else: here a user that does not exist):
  // what a timer in the SSH session must survive
  fs.mkdirSync(path.join(root, 'etc/systemd/logind.conf.d'), { recursive: true });
  fs.writeFileSync(path.join(root, 'etc/systemd/logind.conf.d/nrhi-lab.conf'), '[Login]\nKillUserProcesses=yes\nKillExcludeUsers=nrhi-nobody\n');
  // the distribution's own firewall service loads /etc/nftables.conf (`flush ruleset` first) at boot
  sh(['chroot', root, 'systemctl', 'enable', '--quiet', 'systemd-networkd.service', 'ssh.service', 'nftables.service']);
  opts.setup?.(root);

  let ns = '';
  const host: ContainerHost = {
    suite,
    name,
    ns: '',
    v4,
    v6,
    knownHosts: `${v4} ${hostPub}\n${v6} ${hostPub}\n`,
    privateKey: fs.readFileSync(keyFile, 'utf8'),
    root,
    lastBootMs: 0,
    pid1: () => init,
    async exec(argv, stdin, timeoutMs = 30_000) {
      if (!init) throw new Error(`container ${name} is not running`);
      return new Promise((resolve) => {
        const p = spawn('nsenter', ['-t', String(init), '-a', '--', ...argv], { stdio: ['pipe', 'pipe', 'pipe'] });
        let stdout = '';
        let stderr = '';
        const timer = setTimeout(() => p.kill('SIGKILL'), timeoutMs);
        p.stdout.on('data', (d) => (stdout += d));
        p.stderr.on('data', (d) => (stderr += d));
        p.on('close', (code) => {
          clearTimeout(timer);
          resolve({ code, stdout, stderr });
        });
        p.stdin.on('error', () => undefined); // nsenter may exit before reading it
        p.stdin.end(stdin ?? '');
      });
    },
    async boot() {
      const t0 = Date.now();
      if (mounted === false) throw new Error('container closed');
      const log = fs.openSync(path.join(base, 'console.log'), 'a');
      const p = spawn(
        'systemd-nspawn',
        ['--boot', '--register=no', '--keep-unit', '-D', root, '-M', name, `--network-veth-extra=${link}:eth0`, '--console=pipe', '--resolv-conf=off', '--timezone=off', '--link-journal=no'],
        { stdio: ['ignore', log, log], env: { ...process.env, SYSTEMD_NSPAWN_UNIFIED_HIERARCHY: '1' } },
      );
      fs.closeSync(log);
      nspawn = p;
      p.on('exit', () => {
        if (nspawn === p) init = 0;
      });
      const deadline = Date.now() + 60_000;
      while (Date.now() < deadline) {
        if (p.exitCode !== null) throw new Error(`systemd-nspawn exited (${p.exitCode}): see ${path.join(base, 'console.log')}`);
        const pid = p.pid ? findInit(p.pid) : null;
        // systemd itself (nspawn's own code runs as PID 1 until it execs), in a namespace of its own
        if (pid && fs.existsSync(`/sys/class/net/${link}`) && comm(pid) === 'systemd' && netnsOf(pid) !== netnsOf(process.pid)) {
          init = pid;
          break;
        }
        await sleep(50);
      }
      if (!init) throw new Error(`container ${name} did not start`);
      lab.plug(link);
      ns = lab.adoptNs(`c${index}`, init);
      host.ns = ns;
      // sshd answering on the lab address
      while (Date.now() < deadline) {
        // from the controller (an isolated host keeps SSH open to its management address only)
        if ((await sshBanner(v4, 1000)) && (await host.exec(['systemctl', 'is-active', '--quiet', 'ssh.service'])).code === 0) {
          host.lastBootMs = Date.now() - t0;
          return;
        }
        await sleep(200);
      }
      throw new Error(`container ${name}: sshd did not come up (console: ${path.join(base, 'console.log')})`);
    },
    async powerOff() {
      const p = nspawn;
      if (!p || p.exitCode !== null || p.signalCode !== null) return;
      await stopChild(p, 20_000);
      init = 0;
    },
    async reboot() {
      const p = nspawn;
      if (!p) throw new Error('not running');
      const exited = new Promise<void>((resolve) => p.once('exit', () => resolve()));
      // --no-block: do not wait on the shutdown it starts; -i: logged-in sessions do not hold it back
      await host.exec(['systemctl', '--no-block', '-i', 'reboot'], undefined, 10_000);
      // trixie's shutdown now and then stalls for 30 s on a stop job; the boot is what is tested
      const t = setTimeout(() => p.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(t);
      init = 0;
      await host.boot();
    },
    async close() {
      await host.powerOff();
      unmount();
      process.removeListener('exit', killNow);
    },
  };
  try {
    await host.boot();
  } catch (err) {
    await host.close();
    throw err;
  }
  const v = (await host.exec(['nft', '--version'])).stdout;
  if (!v.includes(`v${NFT_VERSION[suite]}`)) throw new Error(`${suite} container runs ${v.trim()}, expected nft ${NFT_VERSION[suite]}`);
  return host;
}

/**
 * Runs `cmd` inside the host (something that removes tables: `systemctl restart nftables`, `nft
 * flush ruleset`), then times on the host how long until table inet `table` is back, in ms; -1:
 * not within 4 s. What the self-healing tests measure.
 */
export async function timeTableBack(h: ContainerHost, table: string, cmd: string): Promise<number> {
  const script = [
    `${cmd} >/dev/null 2>&1`,
    't0=$(date +%s%N)',
    'for i in $(seq 400); do',
    `  if nft list table inet ${table} >/dev/null 2>&1; then echo $(( ($(date +%s%N) - t0) / 1000000 )); exit 0; fi`,
    '  sleep 0.01',
    'done',
    'echo -1',
  ].join('\n');
  const r = await h.exec(['sh', '-c', script], undefined, 60_000);
  assert.equal(r.code, 0, r.stderr);
  return Number(r.stdout.trim());
}

/**
 * The driver target for container `h` as root with its login key (or, `as: 'sudo'`, as SUDO_USER
 * with sudo: addSudoUser first), on `table`, `extra` over it. Typed loosely, as labTarget is.
 */
export function containerTarget(h: ContainerHost, table: string, extra: Record<string, unknown> = {}, as: 'root' | 'sudo' = 'root') {
  return {
    host: h.v4,
    username: as === 'root' ? 'root' : SUDO_USER,
    ...(as === 'sudo' ? { sudo: true } : {}),
    privateKey: h.privateKey,
    knownHosts: h.knownHosts,
    table,
    timeoutMs: 15_000,
    ...extra,
  };
}

/** Whether systemd unit `unit` (a name with its suffix) is active inside the container. */
export async function unitActive(h: ContainerHost, unit: string): Promise<boolean> {
  return (await h.exec(['systemctl', 'is-active', unit])).stdout.trim() === 'active';
}

/** the sudo account docs/preparing-hosts.md creates */
export const SUDO_USER = 'isolator';

/**
 * The sudoers lines of docs/preparing-hosts.md for the pack's nft and ss commands and its guard block, for `table`
 * (the page's own text, so a test proves what the docs tell an operator to install).
 */
export function readmeGuardSudoers(table: string): string {
  // the page shows the generator's lines for the default table: the same generator, for this one
  const readme = fs.readFileSync(path.join(__dirname, '../../../docs/preparing-hosts.md'), 'utf8');
  const shown = sudoersLines({ user: SUDO_USER, table: DEFAULT_TABLE, features: ['isolate', 'guard'] });
  assert.deepEqual(shown.filter((l) => !readme.includes(l)), [], 'the README holds the isolate and guard blocks');
  return `${sudoersLines({ user: SUDO_USER, table, features: ['isolate', 'guard'] }).join('\n')}\n`;
}

/**
 * Makes SUDO_USER on the container (root's login key, a plain /bin/sh) with exactly `sudoers`
 * in /etc/sudoers.d, checked by `visudo -c`. Undo with removeSudoUser.
 */
export async function addSudoUser(h: ContainerHost, sudoers: string): Promise<void> {
  const home = `/home/${SUDO_USER}`;
  const setup = [
    `id ${SUDO_USER} >/dev/null 2>&1 || useradd -m -s /bin/sh ${SUDO_USER}`,
    `install -d -m 700 -o ${SUDO_USER} ${home}/.ssh`,
    `install -m 600 -o ${SUDO_USER} /root/.ssh/authorized_keys ${home}/.ssh/authorized_keys`,
    `cat >/etc/sudoers.d/${SUDO_USER} && chmod 440 /etc/sudoers.d/${SUDO_USER} && visudo -cf /etc/sudoers.d/${SUDO_USER}`,
  ].join(' && ');
  const r = await h.exec(['sh', '-c', setup], sudoers);
  assert.equal(r.code, 0, `${r.stdout}${r.stderr}`);
}

export async function removeSudoUser(h: ContainerHost): Promise<void> {
  await h.exec(['rm', '-f', `/etc/sudoers.d/${SUDO_USER}`]);
}

/** Runs a shell script inside the container as `nobody` (uid and gid 65534, no groups): a local user without rights. */
export function asNobody(h: ContainerHost, script: string, args: string[] = [], timeoutMs = 30_000): Promise<ExecResult> {
  return h.exec(['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', 'sh', '-c', script, 'sh', ...args], undefined, timeoutMs);
}
