/**
 * `npm run demo`: the main job. Starts a lab host and a peer in network namespaces (as root),
 * prints how to reach the host, and removes everything on Ctrl-C.
 * `npm run demo -- --check` plays the isolation story headless, a line per step, and exits
 * non-zero on any failure.
 */
import { IsolationDriver, type TargetInput } from '../src/driver';
import { createLab, labAvailable, type Lab } from '../test/lab/lab';

function step(ok: boolean, what: string): void {
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${what}`);
  if (!ok) throw new Error(`step failed: ${what}`);
}

async function check(lab: Lab, target: TargetInput): Promise<void> {
  const h = lab.hosts[0];
  const driver = new IsolationDriver();
  const listener = await lab.listen(h.ns, 8443);
  try {
    step(await lab.tryConnect(lab.peer.ns, h.v4, 8443), 'peer reaches the host before isolation');
    const st = await driver.isolate(target, { presets: ['ssh'], reason: 'demo: generic alert ALRT-20261122-0042' });
    step(st.isolated, `host isolated (since ${st.since})`);
    step(!(await lab.tryConnect(lab.peer.ns, h.v4, 8443)), 'peer blocked');
    const fresh = new IsolationDriver();
    step((await fresh.status(target)).isolated, 'management alive on a fresh connection');
    await fresh.close();
    await driver.setExceptions(target, 'add', [{ direction: 'in', proto: 'tcp', addr: lab.peer.v4, port: 8443, comment: 'forensic collector' }]);
    step(await lab.tryConnect(lab.peer.ns, h.v4, 8443), 'exception added: the collector gets in');
    step(!(await driver.unisolate(target)).isolated, 'unisolated');
    step(await lab.tryConnect(lab.peer.ns, h.v4, 8443), 'traffic restored');
  } finally {
    listener.close();
    await driver.close();
  }
}

async function main(): Promise<void> {
  const avail = labAvailable();
  if (!avail.ok) {
    console.error(`The demo builds a lab in network namespaces and needs root plus nftables, openssh-server, iproute2, sudo and iputils-ping: ${avail.why}`);
    console.error('On Debian: apt-get install -y nftables openssh-server iproute2 sudo iputils-ping');
    process.exit(2);
  }
  const lab = await createLab({ hosts: 1 });
  const h = lab.hosts[0];
  const target: TargetInput = {
    host: h.v4,
    username: lab.users.root.username,
    privateKey: lab.users.root.privateKey,
    knownHosts: h.knownHosts,
  };
  if (process.argv.includes('--check')) {
    try {
      await check(lab, target);
      console.log('demo check passed');
    } finally {
      await lab.close();
    }
    return;
  }
  console.log(`lab host ${h.v4} / ${h.v6} (namespace ${h.ns}), peer ${lab.peer.v4} (namespace ${lab.peer.ns})`);
  console.log(`ssh user ${target.username}, key in ${lab.dir}/key-r, known_hosts line:\n  ${h.knownHosts.trim()}`);
  console.log('Node-RED with the example flows comes with the examples work; Ctrl-C removes the lab.');
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  await lab.close();
}

main().catch((err) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
