/**
 * The attacker writes the alert. These tests play them: a message shaped to weaken a containment
 * (audit instead of enforce, a release after one second, exceptions and presets of its own, force,
 * persist) goes through a REAL Node-RED runtime into isolate-host, against a REAL lab host, and the
 * packets say whether it worked. And a host that is only watched (audit mode) must never be
 * reported as contained.
 */
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as path from 'path';
import type { HostState, TargetInput } from '../../src/driver';
import { useDriver, useLab, useNodeRed } from '../lab/fixtures';
import type { Lab } from '../lab/lab';
import { httpAnswerNodes } from '../lab/nodered';

const TABLE = 'node_red_isolation';
const UNIT = `/etc/systemd/system/node-red-isolation-${TABLE}.service`;
/** the alert fields a careless (or simply generic) flow copies onto the message */
const FIELDS = ['host', 'reason', 'wall', 'mode', 'force', 'duration', 'persist', 'presets', 'exceptions'];
const WARNING = /ignored msg\.mode, msg\.force, msg\.persist, msg\.duration, msg\.presets, msg\.exceptions: this node's settings decide/;

function flows(lab: Lab, files: { audit: string; status: string }) {
  const [h0, h1] = lab.hosts;
  const place = (nodes: Record<string, unknown>[]) => nodes.map((n, i) => (n.z ? { x: 200, y: 40 + 40 * i, ...n } : n));
  const copy = (id: string, next: string) => ({
    id,
    type: 'function',
    z: 'tab',
    name: 'alert fields -> msg',
    func: `for (const k of ${JSON.stringify(FIELDS)}) if (msg.payload && msg.payload[k] !== undefined) msg[k] = msg.payload[k];\nreturn msg;`,
    outputs: 1,
    wires: [[next]],
  });
  const endpoint = (url: string, method: string, next: string) => [
    { id: `in${url}`, type: 'http in', z: 'tab', url, method, wires: [[`cp${url}`]] },
    copy(`cp${url}`, next),
  ];
  // configured as tightly as it gets: enforce, no preset, no exception, no duration, no force, no persist
  const isolate = (id: string, target: string, allowOverrides: boolean) => ({
    id,
    type: 'isolate-host',
    z: 'tab',
    name: id,
    target,
    presets: [],
    exceptions: [],
    mode: 'enforce',
    duration: 0,
    verify: true,
    force: false,
    persist: false,
    wall: '',
    allowOverrides,
    wires: [['resp'], ['audit']],
  });
  return place([
    { id: 'tab', type: 'tab', label: 'adversary' },
    {
      id: 'tgt',
      type: 'isolation-target',
      name: 'lab host 0',
      host: h0.v4,
      port: 22,
      username: lab.users.root.username,
      allowedHosts: [h0.v4],
      knownHosts: h0.knownHosts,
      sudo: false,
      timeout: 15,
      credentials: { privateKey: lab.users.root.privateKey },
    },
    {
      // a host whose SSH sessions do not show the management channel (see the force test)
      id: 'tgt-hidden',
      type: 'isolation-target',
      name: 'lab host 1',
      host: h1.v4,
      port: 22,
      username: lab.users.sudo.username,
      allowedHosts: [h1.v4],
      managementCidrs: [`${lab.controller.v4}/32`],
      knownHosts: h1.knownHosts,
      sudo: true,
      timeout: 15,
      credentials: { privateKey: lab.users.sudo.privateKey, passphrase: lab.users.sudo.passphrase },
    },
    ...endpoint('/strict', 'post', 'strict'),
    isolate('strict', 'tgt', false),
    ...endpoint('/open', 'post', 'open'),
    isolate('open', 'tgt', true),
    ...endpoint('/strict-hidden', 'post', 'strict-hidden'),
    isolate('strict-hidden', 'tgt-hidden', false),
    ...endpoint('/open-hidden', 'post', 'open-hidden'),
    isolate('open-hidden', 'tgt-hidden', true),
    { id: 'in-st', type: 'http in', z: 'tab', url: '/status', method: 'get', wires: [['st']] },
    { id: 'st', type: 'isolation-status', z: 'tab', name: 'st', target: 'tgt', wires: [['resp'], ['audit']] },
    // what the editor would show under the status node, into a file
    { id: 'watch', type: 'status', z: 'tab', scope: ['st'], wires: [['watch-p']] },
    { id: 'watch-p', type: 'change', z: 'tab', rules: [{ t: 'set', p: 'payload', pt: 'msg', to: 'status', tot: 'msg' }], wires: [['watch-f']] },
    { id: 'watch-f', type: 'file', z: 'tab', filename: files.status, filenameType: 'str', appendNewline: true, createDir: false, overwriteFile: 'false', encoding: 'none' },
    { id: 'audit', type: 'file', z: 'tab', filename: files.audit, filenameType: 'str', appendNewline: true, createDir: false, overwriteFile: 'false', encoding: 'none' },
    ...httpAnswerNodes(),
  ]);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function lines(file: string): Record<string, unknown>[] {
  if (!fs.existsSync(file)) return [];
  return fs
    .readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

describe('adversary: the message tries to weaken the containment (real runtime, real lab host)', function () {
  this.timeout(180_000);
  const lab = useLab({ hosts: 2, tables: [TABLE] });
  // quiet whatever NRHI_NODERED_LOG says: the runtime's own output is what `log` reads
  const red = useNodeRed({ quiet: true });
  const driver = useDriver();
  let log = '';
  const files = () => ({ audit: path.join(red.userDir, 'audit.jsonl'), status: path.join(red.userDir, 'status.jsonl') });
  /** the controller's own view of a lab host, as root, on a connection of its own */
  const root = (i: number): TargetInput => ({ host: lab.hosts[i].v4, username: lab.users.root.username, privateKey: lab.users.root.privateKey, knownHosts: lab.hosts[i].knownHosts, timeoutMs: 15_000 });
  const timers = async (i: number) => (await lab.exec(lab.hosts[i].ns, ['pgrep', '-f', `nrhi-release:${TABLE}:`])).stdout.trim();
  const unitOnHost = async (i: number) => (await lab.hostExec(i, ['test', '-e', UNIT])).code === 0;
  /** the warnings the runtime logged since `mark`, for one node */
  const warnings = async (mark: number, name: string) => {
    await sleep(300); // the log line is written after the message ends
    return log
      .slice(mark)
      .split('\n')
      .filter((l) => l.includes('[warn]') && l.includes(`[isolate-host:${name}]`));
  };

  /** the status node's last status once its read has ended (the status node writes them to a file) */
  const settledStatus = async () => {
    const deadline = Date.now() + 5000;
    for (;;) {
      const last = lines(files().status).pop() as Record<string, string> | undefined;
      if (last && last.text !== 'working') return { fill: last.fill, shape: last.shape, text: last.text };
      assert.ok(Date.now() < deadline, `no settled status: ${JSON.stringify(last)}`);
      await sleep(100);
    }
  };

  before(async () => {
    red.process.stdout?.on('data', (d) => (log += d));
    red.process.stderr?.on('data', (d) => (log += d));
    await red.deploy(flows(lab, files()));
  });

  afterEach(async () => {
    // each test starts from free hosts: unisolate also cancels release timers and removes a boot unit
    for (let i = 0; i < lab.hosts.length; i++) await driver.unisolate(root(i)).catch(() => undefined);
  });

  const attack = (lab: Lab) => ({
    reason: 'adversary: weaken it',
    mode: 'audit',
    force: true,
    duration: 1,
    persist: true,
    presets: ['icmp', 'ssh', 'dns'],
    exceptions: [
      { direction: 'in', proto: 'tcp', addr: lab.peer.v4, port: 8450, comment: 'attacker in' },
      { direction: 'out', proto: 'any', comment: 'attacker out' },
    ],
  });

  it('an isolate-host configured enforce ends enforced exactly as configured, whatever the message says, and warns once', async () => {
    const h = lab.hosts[0];
    const listeners = [await lab.listen(h.ns, 8450), await lab.listen(lab.peer.ns, 8451)];
    try {
      assert.equal(await lab.tryConnect(lab.peer.ns, h.v4, 8450), true, 'reachable before');
      // the message an attacker would send (no persist, which a duration would make invalid), then
      // every field at once
      const variants = [
        { msg: { ...attack(lab), persist: undefined }, warned: /ignored msg\.mode, msg\.force, msg\.duration, msg\.presets, msg\.exceptions: this node's settings decide/ },
        { msg: attack(lab), warned: WARNING },
      ];
      for (const { msg, warned } of variants) {
        const mark = log.length;
        const res = await red.request('POST', '/strict', msg);
        assert.equal(res.status, 200, JSON.stringify(res.body));
        const st = res.body as HostState;
        assert.deepEqual(
          { mode: st.mode, isolated: st.isolated, state: st.state, expiresAt: st.expiresAt, persist: st.persist, exceptions: st.exceptions },
          { mode: 'enforce', isolated: true, state: 'isolated', expiresAt: null, persist: false, exceptions: [] },
        );
        assert.equal(st.reason, 'adversary: weaken it', "the reason stays the message's");
        assert.deepEqual((await warnings(mark, 'strict')).map((l) => warned.test(l)), [true], 'one warning, naming every ignored field');

        // the packets: nothing the message asked for is let through
        assert.equal(await lab.tryConnect(lab.peer.ns, h.v4, 8450), false, 'its inbound exception was ignored');
        assert.equal(await lab.tryConnect(h.ns, lab.peer.v4, 8451), false, 'its outbound exception was ignored');
        assert.equal(await lab.ping(lab.peer.ns, h.v4), false, 'its icmp preset was ignored');
        assert.equal(await lab.tcpOpen(lab.peer.ns, h.v4, 22), false, 'its ssh preset was ignored (only the management channel keeps SSH)');
        assert.equal(await timers(0), '', 'duration ignored: no release timer on the host');
        assert.equal(await unitOnHost(0), false, 'persist ignored: no boot unit on the host');
      }
      // well after the asked-for second: still enforced
      await sleep(2500);
      assert.equal(await lab.tryConnect(lab.peer.ns, h.v4, 8450), false, 'still dropped after the asked-for second');

      // the host itself says the same, to the node and to a controller of its own
      for (const s of [(await red.request('GET', '/status')).body as HostState, await driver.status(root(0))]) {
        assert.deepEqual([s.mode, s.isolated, s.state, s.expiresAt, s.persist, s.exceptions, s.tampered], ['enforce', true, 'isolated', null, false, [], []]);
      }
    } finally {
      for (const l of listeners) l.close();
    }
  });

  it('with msg overrides on, the same fields do take effect', async () => {
    const h = lab.hosts[0];
    const listeners = [await lab.listen(h.ns, 8450), await lab.listen(h.ns, 8452)];
    try {
      // the very same message reaches the driver, which refuses persist together with a duration
      const same = await red.request('POST', '/open', attack(lab));
      assert.equal(same.status, 500, JSON.stringify(same.body));
      assert.equal((same.body as { code: string }).code, 'VALIDATION');
      assert.match((same.body as { message: string }).message, /request\.persist: persist is for isolations that last until unisolated/);
      assert.equal((await driver.status(root(0))).state, 'free', 'refused before anything changed');

      const mark = log.length;
      const auditAttack = { ...attack(lab), persist: undefined, duration: undefined }; // (undefined: left out of the JSON)
      const audit = await red.request('POST', '/open', auditAttack);
      assert.equal(audit.status, 200, JSON.stringify(audit.body));
      const st = audit.body as HostState;
      assert.deepEqual([st.mode, st.isolated, st.state], ['audit', false, 'audit']);
      assert.ok(st.exceptions.some((e) => e.comment === 'attacker in') && st.exceptions.some((e) => e.comment === 'attacker out'), JSON.stringify(st.exceptions));
      assert.ok(st.exceptions.some((e) => e.proto === 'icmp'), 'the icmp preset came in');
      assert.equal(await lab.tryConnect(lab.peer.ns, h.v4, 8452), true, 'audit mode drops nothing');
      assert.equal(await lab.ping(lab.peer.ns, h.v4), true);
      assert.deepEqual(await warnings(mark, 'open'), [], 'nothing ignored, no warning');

      const timed = await red.request('POST', '/open', { duration: 1, reason: 'a one-second isolation' });
      assert.equal(timed.status, 200, JSON.stringify(timed.body));
      assert.deepEqual([(timed.body as HostState).state, typeof (timed.body as HostState).expiresAt], ['isolated', 'string']);
      const deadline = Date.now() + 20_000;
      while (!(await lab.tryConnect(lab.peer.ns, h.v4, 8452, 800))) {
        assert.ok(Date.now() < deadline, 'the one-second isolation did not release itself');
      }
      assert.equal((await driver.status(root(0))).state, 'free', 'released by the host itself');

      const persisted = await red.request('POST', '/open', { persist: true });
      assert.equal(persisted.status, 200, JSON.stringify(persisted.body));
      assert.equal((persisted.body as HostState).persist, true);
      assert.equal(await unitOnHost(0), true, 'boot unit installed');
      assert.equal(await lab.tryConnect(lab.peer.ns, h.v4, 8452), false, 'enforced');
    } finally {
      for (const l of listeners) l.close();
    }
  });

  it('msg.force cannot isolate a host whose management channel is unknown, unless the node lets the message decide', async () => {
    const h = lab.hosts[1];
    // the sudo user's sessions on this host hide SSH_CONNECTION (a forced command that scrubs the
    // environment, as some bastion setups do): the driver cannot see the management channel
    const keys = path.join(lab.dir, 'authorized_keys', lab.users.sudo.username);
    const original = fs.readFileSync(keys, 'utf8');
    fs.writeFileSync(keys, `command="unset SSH_CONNECTION SSH_CLIENT; eval \\"$SSH_ORIGINAL_COMMAND\\"" ${original}`);
    const listener = await lab.listen(h.ns, 8453);
    try {
      const mark = log.length;
      const refused = await red.request('POST', '/strict-hidden', { force: true, reason: 'forced by the alert' });
      assert.equal(refused.status, 500, JSON.stringify(refused.body));
      assert.equal((refused.body as { code: string }).code, 'MANAGEMENT_UNKNOWN');
      assert.match((await warnings(mark, 'strict-hidden'))[0] ?? '', /ignored msg\.force:/);
      assert.equal((await driver.status(root(1))).state, 'free', 'nothing applied');
      assert.equal(await lab.tryConnect(lab.peer.ns, h.v4, 8453), true);

      const forced = await red.request('POST', '/open-hidden', { force: true, reason: 'forced, allowed' });
      assert.equal(forced.status, 200, JSON.stringify(forced.body));
      const st = forced.body as HostState;
      assert.equal(st.state, 'isolated');
      assert.deepEqual(st.management.map((m) => m.addr.replace(/\/32$/, '')), [lab.controller.v4], 'only the management CIDR keeps SSH');
      assert.equal(await lab.tryConnect(lab.peer.ns, h.v4, 8453), false, 'enforced');
    } finally {
      fs.writeFileSync(keys, original);
      listener.close();
    }
  });

  it('a host in audit mode answers isolated: false, state "audit" (driver and node), with real traffic still passing', async () => {
    const h = lab.hosts[0];
    const listeners = [await lab.listen(h.ns, 8454), await lab.listen(lab.peer.ns, 8455)];
    try {
      const made = await driver.isolate(root(0), { mode: 'audit', reason: 'discovery' });
      assert.deepEqual([made.isolated, made.state, made.mode], [false, 'audit', 'audit']);
      const fromDriver = await driver.status(root(0));
      assert.deepEqual([fromDriver.isolated, fromDriver.state, fromDriver.mode], [false, 'audit', 'audit']);

      const res = await red.request('GET', '/status');
      assert.equal(res.status, 200, JSON.stringify(res.body));
      const fromNode = res.body as HostState;
      assert.deepEqual([fromNode.isolated, fromNode.state, fromNode.mode, fromNode.since], [false, 'audit', 'audit', made.since]);
      assert.equal(await lab.tryConnect(lab.peer.ns, h.v4, 8454), true, 'audit drops nothing (in)');
      assert.equal(await lab.tryConnect(h.ns, lab.peer.v4, 8455), true, 'audit drops nothing (out)');

      // what the node shows and records: a yellow ring, and an audit record that does not say isolated
      const hhmm = new Date(made.since!).toISOString().slice(11, 16);
      assert.deepEqual(await settledStatus(), { fill: 'yellow', shape: 'ring', text: `${h.v4} audit since ${hhmm}` });
      const record = lines(files().audit).filter((r) => r.action === 'status').pop();
      assert.deepEqual([record?.isolated, record?.state, record?.mode], [false, 'audit', 'audit']);

      // and once enforced, the same reads say isolated, green
      await driver.setMode(root(0), 'enforce');
      const enforced = (await red.request('GET', '/status')).body as HostState;
      assert.deepEqual([enforced.isolated, enforced.state], [true, 'isolated']);
      assert.equal(await lab.tryConnect(lab.peer.ns, h.v4, 8454), false, 'enforced');
      assert.deepEqual(await settledStatus(), { fill: 'green', shape: 'dot', text: `${h.v4} isolated since ${hhmm}` });
    } finally {
      for (const l of listeners) l.close();
    }
  });
});
