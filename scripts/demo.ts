/**
 * `npm run demo`: the main job, as root on a fresh machine. `npm run demo` first installs the
 * Debian packages it needs when they are missing (scripts/ensure-deps.js demo); this then starts
 * three lab hosts (198.18.0.2, .20, .21) and a peer (198.18.0.3) in network namespaces with keys
 * generated now, starts Node-RED on 127.0.0.1 with this pack and the
 * example flows wired to the lab, and prints the editor URL and a curl command that fires an alert.
 * Ctrl-C removes everything it made.
 *
 * `npm run demo -- --check` plays the whole story headless, a line per step, and exits non-zero on
 * any failure. `--port N` picks Node-RED's port (default 1880, or a free one if that is taken).
 */
import * as fs from 'fs';
import * as net from 'net';
import * as path from 'path';
import { IsolationDriver, type TargetInput } from '../src/driver';
import { createLab, labAvailable, type Lab } from '../test/lab/lab';
import { REPO_ROOT, startNodeRed, type NodeRed } from '../test/lab/nodered';

function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

/** Every example flow, its isolation-target wired to the lab (least-privileged sudo user, pinned keys). */
export function wiredExamples(lab: Lab): object[] {
  const dir = path.join(REPO_ROOT, 'examples');
  const knownHosts = lab.hosts.map((h) => h.knownHosts + h.knownHostsV6).join('');
  const all: Record<string, unknown>[] = [];
  for (const f of fs.readdirSync(dir).filter((x) => x.endsWith('.json')).sort()) {
    for (const n of JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8')) as Record<string, unknown>[]) {
      if (n.type === 'isolation-target') {
        Object.assign(n, {
          host: lab.hosts[0].v4,
          username: lab.users.sudo.username,
          sudo: true,
          knownHosts,
          allowedHosts: ['198.18.0.0/24'],
          credentials: { privateKey: lab.users.sudo.privateKey, passphrase: lab.users.sudo.passphrase },
        });
      }
      all.push(n);
    }
  }
  return all;
}

async function until(what: string, fn: () => Promise<boolean>, ms = 20_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await fn())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

function step(what: string): void {
  console.log(`ok    ${what}`);
}

/** The story, headless: each step checked with real traffic or a fresh SSH connection. */
async function check(lab: Lab, red: NodeRed): Promise<void> {
  const h = lab.hosts[0];
  const target: TargetInput = { host: h.v4, username: lab.users.sudo.username, privateKey: lab.users.sudo.privateKey, passphrase: lab.users.sudo.passphrase, sudo: true, knownHosts: h.knownHosts };
  const status = async () => {
    const d = new IsolationDriver(); // a fresh connection every time: that is the management check
    try {
      return await d.status(target);
    } finally {
      await d.close();
    }
  };
  const listeners = [await lab.listen(h.ns, 8443), await lab.listen(lab.peer.ns, 8443)];
  try {
    await story(lab, red, h, status);
  } finally {
    for (const l of listeners) l.close();
  }
}

async function story(lab: Lab, red: NodeRed, h: Lab['hosts'][number], status: () => ReturnType<IsolationDriver['status']>): Promise<void> {
  if (!(await lab.tryConnect(lab.peer.ns, h.v4, 8443)) || !(await lab.tcpOpen(lab.peer.ns, h.v4, 22))) {
    throw new Error('peer cannot reach the lab host before isolation');
  }

  const alert = JSON.parse(fs.readFileSync(path.join(REPO_ROOT, 'test/fixtures/alerts/suricata-eve-alert.json'), 'utf8'));
  const res = await red.request('POST', '/isolate-alert', alert);
  if (res.status !== 200 || (res.body as { isolated?: boolean }).isolated !== true) throw new Error(`alert not handled: ${res.status} ${JSON.stringify(res.body)}`);
  step(`alert: Suricata "${alert.alert.signature}" posted to the flow, isolate-host answered`);

  const st = await status();
  if (!st.isolated) throw new Error('host not isolated');
  step(`host isolated: ${h.v4} since ${st.since}, reason "${st.reason}"`);
  if (await lab.tryConnect(lab.peer.ns, h.v4, 8443)) throw new Error('peer still reaches the host');
  if (await lab.tryConnect(h.ns, lab.peer.v4, 8443)) throw new Error('host still reaches the peer');
  step('peer blocked: in and out');
  step(`management alive: a fresh SSH connection from the controller (${lab.controller.v4}) reads the state`);

  // forensics example: isolate with nothing but the management channel, then the collector in
  await red.request('POST', '/inject/s1');
  await until('forensics isolation', async () => (await status()).exceptions.length === 0 && !(await lab.tcpOpen(lab.peer.ns, h.v4, 22)));
  await red.request('POST', '/inject/s2');
  await until('collector exception', async () => lab.tcpOpen(lab.peer.ns, h.v4, 22));
  step(`exception added: the forensic collector ${lab.peer.v4} reaches SSH while the host stays isolated`);

  await red.request('POST', '/inject/s4');
  await until('release', async () => (await status()).state === 'free');
  step('unisolate: the table is gone in one transaction');
  if (!(await lab.tryConnect(lab.peer.ns, h.v4, 8443)) || !(await lab.tryConnect(h.ns, lab.peer.v4, 8443))) throw new Error('traffic not restored');
  step('traffic restored: in and out');
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const checkMode = args.includes('--check');
  const portArg = args.indexOf('--port');
  const avail = labAvailable();
  if (!avail.ok) {
    console.error(`the demo needs root (network namespaces, nftables inside them): ${avail.why}\n(npm run demo installs the missing Debian packages when run as root)`);
    process.exit(2);
  }
  const lab = await createLab({ subnet: 0, hostOffsets: [2, 20, 21] });
  let red: NodeRed | undefined;
  // Ctrl-C: the lab tears itself down on the signal; Node-RED and its user dir go with the process
  process.on('exit', () => {
    red?.process.kill('SIGKILL');
    if (red) fs.rmSync(red.userDir, { recursive: true, force: true });
  });
  try {
    let port = portArg >= 0 ? Number(args[portArg + 1]) : 1880;
    if (portArg < 0 && !(await portFree(port))) port = 0;
    red = await startNodeRed({ port: port || undefined });
    await red.deploy(wiredExamples(lab));
    if (checkMode) {
      await check(lab, red);
      console.log('demo check passed');
      return;
    }
    console.log(`
Lab hosts: ${lab.hosts.map((h) => h.v4).join(', ')} (namespaces ${lab.hosts.map((h) => h.ns).join(', ')})
Peer:      ${lab.peer.v4} (namespace ${lab.peer.ns})
Node-RED:  ${red.url}   (the example flows are deployed and wired to the lab)

Fire an alert (the Suricata fixture names ${lab.hosts[0].v4} as the compromised host):
  curl -s -X POST ${red.url}/isolate-alert -H 'content-type: application/json' -d @${path.join(REPO_ROOT, 'test/fixtures/alerts/suricata-eve-alert.json')}
See it from the peer:
  ip netns exec ${lab.peer.ns} ping -c1 -W1 ${lab.hosts[0].v4}
Release it from the editor (Forensics tab, "4 release"), then Ctrl-C removes everything.`);
    await new Promise<void>((resolve) => {
      process.once('SIGINT', resolve);
      process.once('SIGTERM', resolve);
    });
  } finally {
    await red?.stop();
    if (red) fs.rmSync(red.userDir, { recursive: true, force: true });
    await lab.close();
  }
}

if (require.main === module) {
  main().catch((err) => {
    console.error(`FAIL  ${err instanceof Error ? err.message : String(err)}`);
    process.exitCode = 1;
  });
}
