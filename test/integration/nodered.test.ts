/**
 * The nodes in a real Node-RED runtime, deployed through the admin API as the editor does, driven
 * over HTTP end to end against the lab host, with real traffic checked. Nothing is stubbed.
 */
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as path from 'path';
import { IsolationDriver, type HostState } from '../../src/driver';
import { stopNodeRed, useLab, useNodeRed } from '../lab/fixtures';
import type { Lab } from '../lab/lab';
import { httpAnswerNodes, httpIn, labTargetNode, payloadToMsg, placeNodes, runtimes, startNodeRed } from '../lab/nodered';

const TABLE = 'node_red_isolation';

function flows(lab: Lab, auditFile: string) {
  return placeNodes([
    { id: 'tab', type: 'tab', label: 'isolation' },
    labTargetNode(lab, 'tgt', { name: 'lab host', timeout: 15 }),
    httpIn('in-iso', 'post', '/isolate', 'm-iso'),
    payloadToMsg('m-iso', ['host', 'hosts', 'reason', 'exceptions', 'duration'], 'iso'),
    // this endpoint lets the request decide (a timed isolation takes its duration from it): msg overrides on
    { id: 'iso', type: 'isolate-host', z: 'tab', target: 'tgt', presets: ['ssh'], exceptions: [], mode: 'enforce', duration: 0, verify: true, allowOverrides: true, wires: [['resp'], ['audit']] },
    httpIn('in-st', 'get', '/status', 'st'),
    { id: 'st', type: 'isolation-status', z: 'tab', target: 'tgt', wires: [['resp']] },
    httpIn('in-exc', 'post', '/exceptions', 'm-exc'),
    payloadToMsg('m-exc', ['op', 'exceptions'], 'exc'),
    { id: 'exc', type: 'exception-set', z: 'tab', target: 'tgt', op: 'add', exceptions: [], wires: [['resp'], ['audit']] },
    httpIn('in-un', 'post', '/unisolate', 'm-un'),
    payloadToMsg('m-un', ['host', 'hosts'], 'un'),
    { id: 'un', type: 'unisolate-host', z: 'tab', target: 'tgt', wires: [['resp'], ['audit']] },
    // the audit trail as a user would keep it: one JSON line per action in a file
    { id: 'audit', type: 'file', z: 'tab', filename: auditFile, filenameType: 'str', appendNewline: true, createDir: false, overwriteFile: 'false', encoding: 'none' },
    ...httpAnswerNodes(),
  ]);
}

for (const rt of runtimes()) describe(`nodes in a real Node-RED runtime (${rt.label}) against the lab host`, function () {
  this.timeout(180_000);
  // hosts 3 and 4 are the runtime-settings test's own: no other test connects to them
  const lab = useLab({ hosts: 5, runtime: rt, tables: [TABLE] });
  const red = useNodeRed({ runtime: rt, flows: (r) => flows(lab, path.join(r.userDir, 'audit.jsonl')) });
  const auditFile = () => path.join(red.userDir, 'audit.jsonl');

  it('isolates, lets an exception in, reports status, refuses a foreign host and releases, with real traffic', async () => {
    const h = lab.hosts[0];
    const listener = await lab.listen(h.ns, 8443);
    try {
      assert.equal(await lab.tryConnect(lab.peer.ns, h.v4, 8443), true);

      const iso = await red.request('POST', '/isolate', { host: h.v4, reason: 'generic alert ALRT-20261122-0042' });
      assert.equal(iso.status, 200, JSON.stringify(iso.body));
      const st = iso.body as HostState;
      assert.equal(st.isolated, true);
      assert.equal(st.reason, 'generic alert ALRT-20261122-0042');
      assert.equal(st.changed, true, 'isolated now');
      assert.equal(await lab.tryConnect(lab.peer.ns, h.v4, 8443), false, 'peer blocked');

      const exc = await red.request('POST', '/exceptions', {
        op: 'add',
        exceptions: [{ direction: 'in', proto: 'tcp', addr: lab.peer.v4, port: 8443, comment: 'forensic collector' }],
      });
      assert.equal(exc.status, 200, JSON.stringify(exc.body));
      assert.equal(await lab.tryConnect(lab.peer.ns, h.v4, 8443), true, 'exception lets the collector in');
      assert.equal((exc.body as HostState).changed, true, 'an exception added');

      const status = await red.request('GET', '/status');
      assert.equal(status.status, 200);
      const s = status.body as HostState;
      assert.equal(s.isolated, true);
      assert.ok(s.exceptions.some((e) => e.comment === 'forensic collector'));

      const bad = await red.request('POST', '/isolate', { host: lab.peer.v4 });
      assert.equal(bad.status, 500);
      assert.equal((bad.body as { code: string }).code, 'HOST_NOT_ALLOWED');

      const invalid = await red.request('POST', '/exceptions', { op: 'add', exceptions: [{ direction: 'in', proto: 'tcp', port: '1;reboot' }] });
      assert.equal(invalid.status, 500);
      assert.equal((invalid.body as { code: string }).code, 'VALIDATION');

      const un = await red.request('POST', '/unisolate', {});
      assert.equal(un.status, 200);
      assert.equal((un.body as HostState).isolated, false);
      assert.equal((un.body as HostState).changed, true, 'released');
      assert.equal(await lab.tryConnect(lab.peer.ns, h.v4, 8443), true, 'traffic restored');
      const again = await red.request('POST', '/unisolate', {});
      assert.equal((again.body as HostState).changed, false, 'was not isolated: a playbook opens no second ticket');

      // the second outputs wrote one audit record per action, failures included (the file node
      // appends after the answer went out: wait for the sixth line, bounded)
      const lines = () => (fs.existsSync(auditFile()) ? fs.readFileSync(auditFile(), 'utf8').trim().split('\n') : []);
      for (let i = 0; i < 50 && lines().length < 6; i++) await new Promise((r) => setTimeout(r, 100));
      const records = lines().map((l) => JSON.parse(l) as Record<string, unknown>);
      assert.deepEqual(
        records.map((r) => [r.action, r.result, r.host]),
        [
          ['isolate', 'ok', h.v4],
          ['exception-set', 'ok', h.v4],
          ['isolate', 'error', lab.peer.v4], // the host that was asked for, and refused
          ['exception-set', 'error', h.v4],
          ['unisolate', 'ok', h.v4],
          ['unisolate', 'ok', h.v4],
        ],
      );
      assert.deepEqual(records.map((r) => r.changed), [true, true, undefined, undefined, true, false], 'changed in each record of a result');
      assert.equal(records[0].reason, 'generic alert ALRT-20261122-0042');
      assert.match(String(records[0].digest), /^[0-9a-f]{64}$/);
      assert.deepEqual(records[2].error, { code: 'HOST_NOT_ALLOWED', message: `host ${lab.peer.v4} is not allowed by this target` });
      assert.equal((records[3].error as { code: string }).code, 'VALIDATION');
    } finally {
      listener.close();
    }
  });

  it('msg.hosts isolates several hosts at once and answers per host, with real traffic', async () => {
    const [, h1, h2] = lab.hosts;
    const listeners = [await lab.listen(h1.ns, 8444), await lab.listen(h2.ns, 8444)];
    try {
      const iso = await red.request('POST', '/isolate', { hosts: [h1.v4, h2.v4, lab.peer.v4], reason: 'worm outbreak INC-9' });
      assert.equal(iso.status, 200, JSON.stringify(iso.body));
      const results = iso.body as { host: string; ok: boolean; state?: HostState; error?: { code: string } }[];
      assert.deepEqual(
        results.map((r) => [r.host, r.ok, r.state?.isolated ?? null, r.error?.code ?? null]),
        [
          [h1.v4, true, true, null],
          [h2.v4, true, true, null],
          [lab.peer.v4, false, null, 'HOST_NOT_ALLOWED'],
        ],
      );
      assert.equal(await lab.tryConnect(lab.peer.ns, h1.v4, 8444), false, 'h1 isolated');
      assert.equal(await lab.tryConnect(lab.peer.ns, h2.v4, 8444), false, 'h2 isolated');
      const un = await red.request('POST', '/unisolate', { hosts: [h1.v4, h2.v4] });
      assert.deepEqual((un.body as { ok: boolean }[]).map((r) => r.ok), [true, true]);
      assert.equal(await lab.tryConnect(lab.peer.ns, h1.v4, 8444), true, 'h1 free');
      assert.equal(await lab.tryConnect(lab.peer.ns, h2.v4, 8444), true, 'h2 free');
      const bad = await red.request('POST', '/isolate', { hosts: 'not-a-list' });
      assert.equal((bad.body as { code: string }).code, 'VALIDATION');
    } finally {
      for (const l of listeners) l.close();
    }
  });

  it('a redeploy while an isolate runs: the message still ends once, the host is whole, the runtime carries on', async () => {
    const h = lab.hosts[0];
    const listener = await lab.listen(h.ns, 8446);
    await lab.wrapNft(0, 'sleep 1.5; exec "$REAL_NFT" "$@"'); // a slow host: the redeploy lands mid-operation
    try {
      const pending = red.request('POST', '/isolate', { reason: 'redeploy race' });
      await new Promise((r) => setTimeout(r, 500));
      // the isolate node itself is changed and redeployed ("Modified Nodes"), so it is closed mid-operation
      const changed = flows(lab, auditFile()).map((n) => (n.id === 'iso' ? { ...n, name: 'contain (edited)' } : n));
      await red.deploy(changed, 'nodes');
      const res = await pending;
      // the node waited for its operation on close and sent the message on: the request is answered
      assert.equal(res.status, 200, JSON.stringify(res.body));
      assert.equal((res.body as HostState).isolated, true);
      assert.equal(await lab.tryConnect(lab.peer.ns, h.v4, 8446), false, 'isolated');
    } finally {
      await lab.wrapNft(0, null);
    }
    const st = await red.request('GET', '/status');
    assert.equal((st.body as HostState).isolated, true);
    assert.deepEqual((st.body as HostState).tampered, [], 'a whole table');
    assert.equal((await red.request('POST', '/unisolate', {})).status, 200);
    assert.equal(await lab.tryConnect(lab.peer.ns, h.v4, 8446), true, 'released');
    listener.close();
  });

  it('the fleet sweep example asks every host in one message and summarises who is isolated, who only in audit mode', async () => {
    const { wiredExamples } = await import('../../scripts/demo');
    const [h0, h1, h2] = lab.hosts;
    const out = path.join(red.userDir, 'sweep.json');
    const nodes = (wiredExamples(lab) as Record<string, unknown>[])
      .filter((n) => n.z === 'f5' || n.id === 'f5' || n.id === 't5')
      .map((n) => {
        // the lab's own hosts (and one the allowlist refuses) instead of the demo's inventory
        if (n.id === 'i5') return { ...n, payload: JSON.stringify([h0.v4, h1.v4, h2.v4, lab.peer.v4]) };
        if (n.id === 't5') return { ...n, allowedHosts: lab.hosts.map((h) => h.v4) };
        // the summary goes to a file instead of the debug sidebar, to be read here
        if (n.id === 'd5') return { id: 'd5', type: 'file', z: 'f5', filename: out, filenameType: 'str', appendNewline: false, createDir: false, overwriteFile: 'true', encoding: 'none', x: 900, y: 100, wires: [] };
        return n;
      });
    await red.deploy(nodes);
    try {
      await lab.nft(h1.ns, ['add', 'table', 'inet', 'nrhi_unrelated']); // a foreign table does not make a host isolated
      const iso = new IsolationDriver();
      const via = (h: typeof h0) => ({ host: h.v4, username: lab.users.sudo.username, privateKey: lab.users.sudo.privateKey, passphrase: lab.users.sudo.passphrase, sudo: true, knownHosts: h.knownHosts });
      try {
        await iso.isolate(via(h2), { reason: 'sweep test', verify: false });
        // watched, not contained: listed apart, never as isolated
        await iso.isolate(via(h0), { reason: 'sweep test: discovery', mode: 'audit', verify: false });
      } finally {
        await iso.close();
      }
      assert.equal((await red.request('POST', '/inject/i5')).status, 200);
      // the file node may be caught between creating the file and writing it: read until it parses (bounded)
      const read = () => {
        try {
          return JSON.parse(fs.readFileSync(out, 'utf8')) as unknown;
        } catch {
          return undefined;
        }
      };
      const deadline = Date.now() + 20_000;
      while (read() === undefined && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
      assert.ok(fs.existsSync(out), 'the sweep wrote its summary');
      const summary = JSON.parse(fs.readFileSync(out, 'utf8')) as { checked: number; isolated: string[]; audit: string[]; notIsolated: string[]; failed: { host: string; error: string }[] };
      assert.equal(summary.checked, 4);
      assert.deepEqual(summary.isolated, [h2.v4]);
      assert.deepEqual(summary.audit, [h0.v4]);
      assert.deepEqual(summary.notIsolated, [h1.v4]);
      assert.deepEqual(summary.failed.map((f) => [f.host, f.error]), [[lab.peer.v4, 'HOST_NOT_ALLOWED']]);
    } finally {
      await lab.nft(h1.ns, ['delete', 'table', 'inet', 'nrhi_unrelated']).catch(() => undefined);
      for (const h of [h0, h2]) await lab.nft(h.ns, ['delete', 'table', 'inet', 'node_red_isolation']).catch(() => undefined);
      await red.deploy(flows(lab, auditFile()));
    }
  });

  it('deploys every example with only core nodes and this pack', async () => {
    const dir = path.join(__dirname, '../../../examples');
    const files = fs.readdirSync(dir).filter((f) => f.endsWith('.json'));
    assert.ok(files.length >= 2);
    const registered = new Set(((await red.request('GET', '/nodes')).body as { types: string[] }[]).flatMap((s) => s.types));
    for (const f of files) {
      const nodes = JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8')) as { type: string }[];
      assert.ok(Array.isArray(nodes), `${f} is a top-level array of nodes`);
      for (const n of nodes) {
        if (n.type !== 'tab') assert.ok(registered.has(n.type), `${f}: type ${n.type} is neither core nor ours`);
      }
      const r = await red.request('POST', '/flows', { flows: nodes });
      assert.equal(r.status, 200, `${f} deploys`);
      const state = await red.request('GET', '/flows/state');
      assert.notEqual((state.body as { state?: string }).state, 'stop', `${f} runs`);
    }
    // back to the test flow for the next test
    await red.deploy(flows(lab, auditFile()));
  });

  it('every example fails with a readable error, not a crash, when its target is unreachable', async () => {
    const { wiredExamples } = await import('../../scripts/demo');
    const nodes = wiredExamples(lab) as Record<string, unknown>[];
    // only the lab's silent sink is allowed: the fleet sweep's other hosts are refused before any
    // connection, so no packet leaves the lab's own link
    for (const n of nodes) if (n.type === 'isolation-target') Object.assign(n, { host: lab.sink.v4, allowedHosts: [lab.sink.v4], timeout: 2 });
    await red.deploy(nodes);
    const alert = JSON.parse(fs.readFileSync(path.join(__dirname, '../../../test/fixtures/alerts/generic-alert.json'), 'utf8'));
    alert.host.ip = lab.sink.v4;
    const r = await red.request('POST', '/isolate-alert', alert);
    assert.equal(r.status, 500);
    assert.ok(['TIMEOUT', 'UNREACHABLE'].includes((r.body as { code: string }).code), JSON.stringify(r.body));
    assert.match((r.body as { message: string }).message, /198\.18\.\d+\.4/);
    const injects = nodes.filter((n) => n.type === 'inject').map((n) => n.id as string);
    for (const id of injects) assert.equal((await red.request('POST', `/inject/${id}`)).status, 200, `inject ${id}`);
    await new Promise((res) => setTimeout(res, 3000));
    assert.equal(red.process.exitCode, null, 'Node-RED still running');
    assert.equal((await red.request('GET', '/settings')).status, 200);
    await red.deploy(flows(lab, auditFile()));
  });

  it('checks the target at deploy: the log names the bad line, the nodes that use it turn red, an alert on them fails at once', async () => {
    const h = lab.hosts[0];
    const bad = flows(lab, auditFile()).map((n) => (n.id === 'tgt' ? { ...n, knownHosts: `${h.v4} ssh-ed25519 AAAA%%\n` } : n));
    await red.deploy(bad);
    const deadline = Date.now() + 5000;
    while (!/\[error\] \[isolation-target:lab host\]/.test(red.log()) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    assert.match(red.log(), /\[error\] \[isolation-target:lab host\] knownHosts line 1: key is not valid base64/);
    const st = await red.statuses();
    for (const id of ['iso', 'st', 'exc', 'un']) assert.deepEqual(st[id], { fill: 'red', shape: 'ring', text: 'target invalid: knownHosts line 1' }, id);
    const r = await red.request('POST', '/isolate', { reason: 'alert on a broken target' });
    assert.equal(r.status, 500);
    assert.equal((r.body as { code: string }).code, 'VALIDATION');
    await red.deploy(flows(lab, auditFile()));
    const fixed = await red.statuses();
    for (const id of ['iso', 'st', 'exc', 'un']) assert.equal(fixed[id], undefined, `${id}: the red status is gone once the target is fixed`);
  });

  it('runtime settings from settings.js take effect: pool size and idle time of the shared driver', async () => {
    const [, , , h3, h4] = lab.hosts;
    // an open SSH connection shows on the host as sshd processes beside its listener
    const connected = (h: typeof h3) => lab.processes(h.ns).filter((c) => c === 'sshd').length > 1;
    const until = async (what: string, ok: () => boolean, ms: number) => {
      const end = Date.now() + ms;
      while (!ok()) {
        assert.ok(Date.now() < end, `timed out: ${what}`);
        await new Promise((res) => setTimeout(res, 100));
      }
    };
    assert.ok(!connected(h3) && !connected(h4), 'no connection to the spare hosts yet');
    const tuned = await startNodeRed({ runtime: rt, settings: { isolationTargetPoolSize: 1, isolationTargetIdleTimeout: 3 } });
    try {
      await tuned.deploy(flows(lab, path.join(tuned.userDir, 'audit.jsonl')));
      assert.equal((await tuned.request('POST', '/unisolate', { host: h3.v4 })).status, 200);
      assert.ok(connected(h3), 'the connection stays warm after the action');
      assert.equal((await tuned.request('POST', '/unisolate', { host: h4.v4 })).status, 200);
      // a pool of one: the connection to h3 closed when the one to h4 opened
      await until('pool of one closes the older connection', () => !connected(h3) && connected(h4), 3000);
      // idle 3 s: the last one closes too
      await until('idle connection closed', () => !connected(h4), 10_000);
    } finally {
      await stopNodeRed(tuned);
    }
    // the same with the defaults (pool 256, idle 60 s): both stay open
    assert.equal((await red.request('POST', '/unisolate', { host: h3.v4 })).status, 200);
    assert.equal((await red.request('POST', '/unisolate', { host: h4.v4 })).status, 200);
    await new Promise((res) => setTimeout(res, 4000));
    assert.ok(connected(h3) && connected(h4), 'default runtime keeps both connections');
  });

  it('a bad runtime setting stops the pack from loading and says which', async () => {
    const broken = await startNodeRed({ runtime: rt, settings: { isolationTargetMaxConcurrent: 0 } });
    try {
      const sets = ((await broken.request('GET', '/nodes')).body as { module: string; types: string[]; err?: unknown }[]).filter(
        (set) => set.module === '@soc-playbooks/node-red-host-isolation',
      );
      assert.equal(sets.length, 5);
      // Node-RED 4 reports the error as text, Node-RED 5 as the error object (our toJSON)
      for (const set of sets) assert.match(typeof set.err === 'string' ? set.err : JSON.stringify(set.err), /settings\.isolationTargetMaxConcurrent: Too small/, JSON.stringify(set));
      assert.match(broken.log(), /isolationTargetMaxConcurrent/);
    } finally {
      await stopNodeRed(broken);
    }
  });

  it('a timed isolation releases itself even when Node-RED is killed', async () => {
    const h = lab.hosts[0];
    const listener = await lab.listen(h.ns, 8444);
    try {
      const iso = await red.request('POST', '/isolate', { host: h.v4, duration: 3, reason: 'timed quarantine' });
      assert.equal(iso.status, 200, JSON.stringify(iso.body));
      assert.ok((iso.body as HostState).expiresAt);
      assert.equal(await lab.tryConnect(lab.peer.ns, h.v4, 8444), false, 'isolated');
      red.process.kill('SIGKILL');
      await new Promise((r) => red.process.once('exit', r));
      const deadline = Date.now() + 20_000;
      while (!(await lab.tryConnect(lab.peer.ns, h.v4, 8444, 800))) {
        assert.ok(Date.now() < deadline, 'the host did not release itself after Node-RED died');
      }
      const tables = await lab.nft(h.ns, ['list', 'tables']);
      assert.ok(!tables.stdout.includes(TABLE));
    } finally {
      listener.close();
    }
  });

  it('keeps credentials out of the flow file', async () => {
    const flowsFile = fs.readFileSync(path.join(red.userDir, 'flows.json'), 'utf8');
    const credFile = fs.readFileSync(path.join(red.userDir, 'flows_cred.json'), 'utf8');
    const { privateKey, passphrase } = lab.users.sudo;
    const keyBody = privateKey.split('\n')[1];
    for (const [name, text] of [
      ['flows.json', flowsFile],
      ['flows_cred.json', credFile],
    ]) {
      assert.ok(!text.includes(keyBody), `${name} holds the private key in clear`);
      assert.ok(!text.includes(passphrase!), `${name} holds the passphrase in clear`);
      assert.ok(!/privateKey|passphrase/.test(name === 'flows.json' ? text : ''), 'no credential fields in the flow file');
    }
    assert.ok(JSON.parse(flowsFile).some((n: { type: string }) => n.type === 'isolation-target'));
  });
});
