/**
 * Hosts that are away (issue 23), in a real Node-RED runtime against lab hosts: the host's sshd
 * port is made to refuse (a reject rule of the test's own table, in the host's namespace only),
 * isolate-host answers "pending" at once, and when the host answers again the isolation is
 * applied (the table read on the host) and the outcome goes out of the node; unisolate-host
 * cancels a pending one; one past its bound is never applied; and a restart of Node-RED with a
 * localfilesystem context store keeps the entry and applies it afterwards. Short bounds and a
 * 0.5 s backoff base (settings.js isolationTargetPendingBackoff) keep it quick.
 */
/* eslint-disable @typescript-eslint/no-explicit-any -- the flows' JSON answers, read field by field */
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { wiredExamples } from '../../scripts/demo';
import { stopNodeRed, useLab } from '../lab/fixtures';
import type { Lab } from '../lab/lab';
import { httpAnswerNodes, httpIn, labTargetNode, payloadToMsg, placeNodes, startNodeRed, type NodeRed } from '../lab/nodered';

const TABLE = 'node_red_isolation';
const AWAY = 'nrhi_away';

function flows(lab: Lab, dir: string) {
  return placeNodes([
    { id: 'tab', type: 'tab', label: 'pending' },
    labTargetNode(lab, 'tgt', { name: 'lab', timeout: 5 }),
    httpIn('in-iso', 'post', '/isolate', 'm-iso'),
    payloadToMsg('m-iso', ['host', 'reason', 'pendingFor'], 'iso'),
    { id: 'iso', type: 'isolate-host', z: 'tab', target: 'tgt', presets: [], exceptions: [], mode: 'enforce', verify: true, allowOverrides: true, pendingFor: 60, maxHosts: 10, wires: [['route'], ['audit']] },
    // an answer to a request goes back over HTTP; a pending outcome (no request) to a file
    { id: 'route', type: 'function', z: 'tab', outputs: 2, func: 'if (msg.res) return [msg, null];\nmsg.payload = { pendingOutcome: msg.pendingOutcome, topic: msg.topic, state: msg.payload && msg.payload.state };\nreturn [null, msg];', wires: [['resp'], ['outcomes']] },
    { id: 'outcomes', type: 'file', z: 'tab', filename: path.join(dir, 'outcomes.jsonl'), filenameType: 'str', appendNewline: true, createDir: false, overwriteFile: 'false', encoding: 'none' },
    { id: 'audit', type: 'file', z: 'tab', filename: path.join(dir, 'audit.jsonl'), filenameType: 'str', appendNewline: true, createDir: false, overwriteFile: 'false', encoding: 'none' },
    httpIn('in-un', 'post', '/unisolate', 'm-un'),
    payloadToMsg('m-un', ['host'], 'un'),
    { id: 'un', type: 'unisolate-host', z: 'tab', target: 'tgt', wires: [['resp'], []] },
    httpIn('in-st', 'post', '/status', 'm-st'),
    payloadToMsg('m-st', ['host', 'hosts'], 'st'),
    { id: 'st', type: 'isolation-status', z: 'tab', target: 'tgt', wires: [['resp']] },
    ...httpAnswerNodes(),
  ]);
}

const SETTINGS = {
  contextStorage: { default: { module: 'memory' }, file: { module: 'localfilesystem', config: { flushInterval: 1 } } },
  isolationTargetPendingStore: 'file',
  isolationTargetPendingBackoff: 0.5,
};

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('hosts that are away: pending isolations in a real Node-RED runtime against lab hosts', function () {
  this.timeout(180_000);
  const lab = useLab({ hosts: 3, tables: [TABLE, AWAY] });
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nrhi-pending-'));
  let red: NodeRed;

  before(async () => {
    red = await startNodeRed({ userDir: dir, settings: SETTINGS });
    await red.deploy(flows(lab, dir));
  });
  after(async () => {
    if (red) await stopNodeRed(red);
  });

  const onHost = async (i: number) => (await lab.exec(lab.hosts[i].ns, ['nft', 'list', 'table', 'inet', TABLE])).code === 0;
  // away: the host's sshd refuses every packet (in the host's own namespace, a table of the test's own)
  const away = async (i: number) => {
    const ns = lab.hosts[i].ns;
    for (const args of [
      ['add', 'table', 'inet', AWAY],
      ['add', 'chain', 'inet', AWAY, 'input', '{', 'type', 'filter', 'hook', 'input', 'priority', '0', ';', '}'],
      ['add', 'rule', 'inet', AWAY, 'input', 'tcp', 'dport', '22', 'reject', 'with', 'tcp', 'reset'],
    ]) {
      const r = await lab.nft(ns, args);
      assert.equal(r.code, 0, `nft ${args.join(' ')}: ${JSON.stringify(r)}`);
    }
  };
  const back = (i: number) => lab.nft(lab.hosts[i].ns, ['delete', 'table', 'inet', AWAY]);
  const lines = (f: string) => (fs.existsSync(path.join(dir, f)) ? fs.readFileSync(path.join(dir, f), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, any>) : []);
  const outcomeOf = (host: string) => lines('outcomes.jsonl').find((o) => o.pendingOutcome?.host === host);
  async function until<T>(what: string, ms: number, fn: () => Promise<T | undefined> | T | undefined): Promise<T> {
    const end = Date.now() + ms;
    for (let i = 0; i < 200; i++) {
      const v = await fn();
      if (v) return v;
      if (Date.now() > end) break;
      await sleep(250);
    }
    throw new Error(`${what} not within ${ms} ms\n${red.log().slice(-2000)}`);
  }

  it('answers pending at once while the host is away, applies the isolation when it answers, and reports it', async () => {
    const h = lab.hosts[0];
    await away(0);
    const t0 = Date.now();
    const iso = await red.request('POST', '/isolate', { host: h.v4, reason: 'EDR: laptop on a train' });
    assert.equal(iso.status, 200, JSON.stringify(iso.body));
    const st = iso.body as Record<string, any>;
    assert.equal(st.state, 'pending');
    assert.equal(st.isolated, false);
    assert.equal(st.pending.attempts, 1);
    assert.equal(st.pending.lastError.code, 'UNREACHABLE');
    assert.ok(Date.parse(st.pending.expires) - Date.parse(st.pending.since) === 60_000, 'the node bound');
    assert.ok(Date.now() - t0 < 10_000, 'answered at once');
    assert.equal(await onHost(0), false);
    // isolation-status says pending for it too (not an error), also in a fleet answer
    const s = await red.request('POST', '/status', { hosts: [h.v4] });
    assert.equal(s.status, 200, JSON.stringify(s.body));
    const row = (s.body as Record<string, any>[])[0];
    assert.equal(row.ok, true, JSON.stringify(row));
    assert.equal(row.state.state, 'pending');

    await sleep(1500); // a few attempts while away
    assert.equal(await onHost(0), false);
    await back(0);
    const out = await until('the applied outcome', 30_000, () => outcomeOf(h.v4));
    assert.equal(out.pendingOutcome.outcome, 'applied');
    assert.equal(out.state, 'isolated');
    assert.equal(out.topic, 'host-isolation/pending');
    assert.ok(out.pendingOutcome.attempts >= 2);
    assert.equal(await onHost(0), true, 'the table is on the host');
    const audit = lines('audit.jsonl').filter((a) => a.host === h.v4);
    assert.equal(audit[0].state, 'pending', JSON.stringify(audit[0]));
    const applied = audit.find((a) => a.pending?.outcome === 'applied');
    assert.ok(applied, JSON.stringify(audit));
    assert.equal(applied.result, 'ok');
    assert.equal(applied.reason, 'EDR: laptop on a train');
    assert.match(String(applied.digest), /^[0-9a-f]{64}$/);
    const statuses = await red.statuses();
    assert.match(statuses.iso?.text ?? '', /pending isolation applied/);

    const un = await red.request('POST', '/unisolate', { host: h.v4 });
    assert.equal(un.status, 200, JSON.stringify(un.body));
    assert.equal(await onHost(0), false);
  });

  it('unisolate-host cancels a pending isolation: the host comes back and is not isolated', async () => {
    const h = lab.hosts[1];
    await away(1);
    const iso = await red.request('POST', '/isolate', { host: h.v4, reason: 'cancel me' });
    assert.equal((iso.body as Record<string, any>).state, 'pending', JSON.stringify(iso.body));
    const un = await red.request('POST', '/unisolate', { host: h.v4 });
    assert.equal(un.status, 200, JSON.stringify(un.body));
    const u = un.body as Record<string, any>;
    assert.equal(u.isolated, false);
    assert.ok(u.pendingCancelled, 'says it cancelled the pending isolation');
    await back(1);
    await sleep(4000); // beyond the next attempts of the cancelled entry
    assert.equal(await onHost(1), false, 'never applied');
    assert.equal(outcomeOf(h.v4), undefined);
  });

  it('never applies a pending isolation past its bound', async () => {
    const h = lab.hosts[2];
    await away(2);
    const iso = await red.request('POST', '/isolate', { host: h.v4, reason: 'expire me', pendingFor: 2 });
    assert.equal((iso.body as Record<string, any>).state, 'pending', JSON.stringify(iso.body));
    await sleep(3000);
    await back(2);
    const out = await until('the expired outcome', 15_000, () => outcomeOf(h.v4));
    assert.equal(out.pendingOutcome.outcome, 'expired');
    await sleep(1500);
    assert.equal(await onHost(2), false, 'not applied');
    assert.ok(lines('audit.jsonl').some((a) => a.host === h.v4 && a.pending?.outcome === 'expired' && a.error?.code === 'PENDING_EXPIRED'));
  });

  it('keeps a pending isolation over a restart of Node-RED (localfilesystem context store) and applies it afterwards', async () => {
    const h = lab.hosts[0];
    await away(0);
    const earlier = lines('outcomes.jsonl').filter((o) => o.pendingOutcome?.host === h.v4).length;
    const iso = await red.request('POST', '/isolate', { host: h.v4, reason: 'survive a restart' });
    assert.equal((iso.body as Record<string, any>).state, 'pending', JSON.stringify(iso.body));
    await sleep(1500); // the store flushes each second
    await red.stop();
    await back(0);
    assert.equal(await onHost(0), false, 'not applied while Node-RED is down');
    red = await startNodeRed({ userDir: dir, settings: SETTINGS }); // the same flows, credentials and context
    const out = await until('the applied outcome after the restart', 30_000, () => lines('outcomes.jsonl').filter((o) => o.pendingOutcome?.host === h.v4)[earlier]);
    assert.equal(out.pendingOutcome.outcome, 'applied');
    assert.equal(await onHost(0), true, 'applied after the restart');
    const un = await red.request('POST', '/unisolate', { host: h.v4 });
    assert.equal(un.status, 200);
  });

  it('the fleet page of example 05 shows a pending host as pending, not as an error row', async () => {
    const h = lab.hosts[1];
    const fleet = (wiredExamples(lab) as Record<string, unknown>[])
      .filter((n) => n.z === 'f5' || n.id === 'f5' || n.id === 't5')
      .map((n) => {
        if (n.id === 'hp5') return { ...n, rules: [{ t: 'set', p: 'hosts', pt: 'msg', to: JSON.stringify([lab.hosts[2].v4, h.v4]), tot: 'json' }] };
        if (n.id === 't5') return { ...n, allowedHosts: lab.hosts.map((x) => x.v4), timeout: 5 };
        return n;
      });
    await red.deploy([
      ...flows(lab, dir),
      ...fleet,
      ...placeNodes([
        httpIn('in-iso5', 'post', '/isolate5', 'm-iso5'),
        payloadToMsg('m-iso5', ['host'], 'iso5'),
        { id: 'iso5', type: 'isolate-host', z: 'tab', target: 't5', presets: [], exceptions: [], mode: 'enforce', verify: true, pendingFor: 120, maxHosts: 10, wires: [['route'], []] },
      ]),
    ]);
    await away(1);
    const iso = await red.request('POST', '/isolate5', { host: h.v4 });
    assert.equal((iso.body as Record<string, any>).state, 'pending', JSON.stringify(iso.body));
    const html = await until('the fleet page with its table', 30_000, async () => {
      const t = await (await fetch(`${red.url}/fleet`, { signal: AbortSignal.timeout(20_000) })).text();
      return t.includes('<table id="fleet">') ? t : undefined;
    });
    assert.match(html, new RegExp(`<tr data-host="${h.v4.replace(/\./g, '\\.')}" data-state="pending">`), html);
    assert.match(html, /pending until \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC/);
    assert.match(html, /attempts, last UNREACHABLE/);
    assert.match(html, /pending: <b>1<\/b>/);
    assert.match(html, new RegExp(`<tr data-host="${lab.hosts[2].v4.replace(/\./g, '\\.')}" data-state="free">`));
    // the host stays away: the lab drops its tables at the end, and Node-RED stops with the entry
  });
});
