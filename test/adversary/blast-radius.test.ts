/**
 * Blast radius: one slip in a fleet action (a list that names the whole estate) must not contain
 * it. A REAL Node-RED runtime with isolate-host nodes capped at 1 and 2 hosts per message, against
 * two REAL lab hosts: a message over the cap is one BLAST_RADIUS error for the Catch node and one
 * audit record, and no lab host sees a connection; at the cap both hosts are isolated and the
 * fleet answer says how many were asked.
 */
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as path from 'path';
import type { TargetInput } from '../../src/driver';
import { useDriver, useLab, useNodeRed } from '../lab/fixtures';
import type { Lab } from '../lab/lab';
import { httpAnswerNodes } from '../lab/nodered';

const TABLE = 'node_red_isolation';

function flows(lab: Lab, audit: string) {
  const [h0, h1] = lab.hosts;
  // a node as the editor makes it now (config version 2), its Max hosts set
  const isolate = (id: string, maxHosts: number) => ({
    id,
    type: 'isolate-host',
    z: 'tab',
    name: id,
    version: 2,
    target: 'tgt',
    presets: [],
    exceptions: [],
    mode: 'enforce',
    duration: 0,
    verify: true,
    force: false,
    persist: false,
    wall: '',
    allowOverrides: false,
    maxHosts,
    wires: [['answer'], ['audit']],
  });
  const endpoint = (url: string, next: string) => [
    { id: `in${url}`, type: 'http in', z: 'tab', url, method: 'post', wires: [[`cp${url}`]] },
    { id: `cp${url}`, type: 'function', z: 'tab', func: 'msg.hosts = msg.payload.hosts;\nmsg.reason = "blast radius";\nreturn msg;', outputs: 1, wires: [[next]] },
  ];
  // a node with a place on the tab (x, y): without one the runtime takes it for a config node
  const place = (nodes: Record<string, unknown>[]) => nodes.map((n, i) => (n.z ? { x: 200, y: 40 + 40 * i, ...n } : n));
  return place([
    { id: 'tab', type: 'tab', label: 'blast radius' },
    {
      id: 'tgt',
      type: 'isolation-target',
      name: 'lab',
      host: h0.v4,
      port: 22,
      username: lab.users.root.username,
      allowedHosts: [h0.v4, h1.v4],
      knownHosts: `${h0.knownHosts}\n${h1.knownHosts}`,
      sudo: false,
      timeout: 15,
      credentials: { privateKey: lab.users.root.privateKey },
    },
    ...endpoint('/one', 'one'),
    isolate('one', 1),
    ...endpoint('/two', 'two'),
    isolate('two', 2),
    // the fleet answer as the HTTP body: the rows and msg.fleet
    { id: 'answer', type: 'change', z: 'tab', rules: [{ t: 'set', p: 'payload', pt: 'msg', to: '{"rows": payload, "fleet": fleet}', tot: 'jsonata' }], wires: [['resp']] },
    { id: 'audit', type: 'file', z: 'tab', filename: audit, filenameType: 'str', appendNewline: true, createDir: false, overwriteFile: 'false', encoding: 'none' },
    ...httpAnswerNodes(),
  ]);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('adversary: a message names more hosts than the node acts on (real runtime, real lab hosts)', function () {
  this.timeout(120_000);
  const lab = useLab({ hosts: 2, tables: [TABLE] });
  const red = useNodeRed();
  const driver = useDriver();
  const auditFile = () => path.join(red.userDir, 'audit.jsonl');
  const root = (i: number): TargetInput => ({ host: lab.hosts[i].v4, username: lab.users.root.username, privateKey: lab.users.root.privateKey, knownHosts: lab.hosts[i].knownHosts, timeoutMs: 15_000 });
  /** the SSH connections a lab host has open now */
  const sshConnections = async (i: number) => (await lab.exec(lab.hosts[i].ns, ['ss', '-H', '-t', '-n', 'state', 'established', '( sport = :22 )'])).stdout.trim();
  const audits = () =>
    fs.existsSync(auditFile())
      ? fs
          .readFileSync(auditFile(), 'utf8')
          .split('\n')
          .filter((l) => l.trim() !== '')
          .map((l) => JSON.parse(l) as Record<string, unknown>)
      : [];

  before(async () => {
    await red.deploy(flows(lab, auditFile()));
  });

  after(async () => {
    for (let i = 0; i < lab.hosts.length; i++) await driver.unisolate(root(i)).catch(() => undefined);
  });

  it('over the cap: one BLAST_RADIUS error with asked and the cap, one audit record, no connection to any lab host, nothing changed', async () => {
    const [h0, h1] = lab.hosts;
    // no SSH connection open on either host before (the runtime connects only when it acts)
    for (let i = 0; i < 2; i++) await lab.exec(lab.hosts[i].ns, ['ss', '-K', '-t', 'state', 'established', '( sport = :22 )']);
    for (let i = 0; i < 2; i++) assert.equal(await sshConnections(i), '', `host ${i}: no connection before`);

    const res = await red.request('POST', '/one', { hosts: [h0.v4, h1.v4] });
    assert.equal(res.status, 500, JSON.stringify(res.body));
    const err = res.body as { code: string; message: string };
    assert.equal(err.code, 'BLAST_RADIUS');
    assert.match(err.message, /msg\.hosts names 2 hosts, more than this node acts on in one message \(1, this node's Max hosts\)/);

    await sleep(500);
    for (let i = 0; i < 2; i++) assert.equal(await sshConnections(i), '', `host ${i}: no connection was opened`);
    const records = audits().filter((r) => (r.node as { id: string }).id === 'one');
    assert.equal(records.length, 1, 'one audit record for the refused message');
    assert.deepEqual([records[0].host, records[0].result, (records[0].error as { code: string }).code, records[0].fleet], [null, 'error', 'BLAST_RADIUS', { asked: 2, maxHosts: 1 }]);
    for (let i = 0; i < 2; i++) assert.equal((await driver.status(root(i))).state, 'free', `host ${i} untouched`);
  });

  it('at the cap: both hosts isolated, the fleet answer says asked (a host named twice counts once) and the cap', async () => {
    const [h0, h1] = lab.hosts;
    const res = await red.request('POST', '/two', { hosts: [h0.v4, h1.v4, h0.v4] });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    const body = res.body as { rows: { host: string; ok: boolean; state?: { state: string } }[]; fleet: unknown };
    assert.deepEqual(body.fleet, { asked: 2, maxHosts: 2 });
    assert.deepEqual(
      body.rows.map((r) => [r.host, r.ok, r.state?.state]),
      [
        [h0.v4, true, 'isolated'],
        [h1.v4, true, 'isolated'],
      ],
    );
    // the check above sees connections when there are some: the runtime's pooled ones
    for (let i = 0; i < 2; i++) assert.notEqual(await sshConnections(i), '', `host ${i}: the runtime's connection shows`);
    await sleep(200);
    const records = audits().filter((r) => (r.node as { id: string }).id === 'two');
    assert.deepEqual(records.map((r) => [r.host, r.result, r.fleet]).sort(), [
      [h0.v4, 'ok', { asked: 2, maxHosts: 2 }],
      [h1.v4, 'ok', { asked: 2, maxHosts: 2 }],
    ]);
  });
});
