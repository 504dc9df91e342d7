/**
 * Several controllers: two real Node-RED runtimes with the same flows act on the same lab host at
 * the same time. The state lives on the host behind a generation guard; a change that loses the
 * race reads the host again and retries (bounded), so no update is lost and no half state is left.
 */
import { strict as assert } from 'assert';
import type { HostState } from '../../src/driver';
import { useLab, useNodeRed } from '../lab/fixtures';
import type { Lab } from '../lab/lab';
import { httpAnswerNodes, httpIn, payloadToMsg, placeNodes, type NodeRed } from '../lab/nodered';

const TABLE = 'node_red_isolation';

function flows(lab: Lab) {
  const h = lab.hosts[0];
  return placeNodes([
    { id: 'tab', type: 'tab', label: 'isolation' },
    {
      id: 'tgt',
      type: 'isolation-target',
      host: h.v4,
      port: 22,
      username: lab.users.sudo.username,
      knownHosts: h.knownHosts,
      sudo: true,
      timeout: 30,
      credentials: { privateKey: lab.users.sudo.privateKey, passphrase: lab.users.sudo.passphrase },
    },
    httpIn('in-iso', 'post', '/isolate', 'm-iso'),
    payloadToMsg('m-iso', ['reason'], 'iso'),
    { id: 'iso', type: 'isolate-host', z: 'tab', target: 'tgt', presets: ['ssh'], exceptions: [], mode: 'enforce', duration: 0, verify: true, allowOverrides: true, wires: [['resp'], []] },
    httpIn('in-st', 'get', '/status', 'st'),
    { id: 'st', type: 'isolation-status', z: 'tab', target: 'tgt', wires: [['resp']] },
    httpIn('in-exc', 'post', '/exceptions', 'm-exc'),
    payloadToMsg('m-exc', ['op', 'exceptions'], 'exc'),
    { id: 'exc', type: 'exception-set', z: 'tab', target: 'tgt', op: 'add', exceptions: [], allowOverrides: true, wires: [['resp'], []] },
    httpIn('in-un', 'post', '/unisolate', 'un'),
    { id: 'un', type: 'unisolate-host', z: 'tab', target: 'tgt', wires: [['resp'], []] },
    ...httpAnswerNodes(),
  ]);
}

describe('two Node-RED runtimes racing on one lab host', function () {
  this.timeout(240_000);
  const lab = useLab({ hosts: 1, tables: [TABLE] });
  const reds: NodeRed[] = [useNodeRed({ flows: () => flows(lab) }), useNodeRed({ flows: () => flows(lab) })];

  /** whether the table is on the host, read there directly */
  const onHost = async () => (await lab.exec(lab.hosts[0].ns, ['nft', 'list', 'table', 'inet', TABLE])).code === 0;
  const status = async (red: NodeRed) => {
    const r = await red.request('GET', '/status');
    assert.equal(r.status, 200, JSON.stringify(r.body));
    return r.body as HostState;
  };

  it('exception-set adds racing from both runtimes all land, and both see the same complete state', async () => {
    const [a, b] = reds;
    const iso = await a.request('POST', '/isolate', { reason: 'race test' });
    assert.equal(iso.status, 200, JSON.stringify(iso.body));
    // 2 x 8 adds at once: each runtime runs its own in order, the two runtimes race each other
    const N = 8;
    const adds = [];
    for (let i = 0; i < N; i++) {
      for (const [k, red] of [a, b].entries()) {
        const port = 9000 + 2 * i + k;
        adds.push(red.request('POST', '/exceptions', { op: 'add', exceptions: [{ direction: 'in', proto: 'tcp', addr: lab.peer.v4, port, comment: `r${k}-${i}` }] }));
      }
    }
    const answers = await Promise.all(adds);
    for (const r of answers) assert.equal(r.status, 200, `every add lands: ${JSON.stringify(r.body)}`);
    const [sa, sb] = [await status(a), await status(b)];
    const ports = (s: HostState) => s.exceptions.map((e) => e.port).filter((p) => typeof p === 'number' && p >= 9000).sort();
    assert.equal(ports(sa).length, 2 * N, `all ${2 * N} exceptions are on the host: ${JSON.stringify(ports(sa))}`);
    assert.deepEqual(ports(sb), ports(sa), 'both runtimes read the same exceptions');
    assert.deepEqual(sa.tampered, [], 'the table is complete');
    assert.deepEqual(sb.tampered, []);
    assert.equal(sa.reason, 'race test');
    // and the exceptions work: one of each runtime's lets traffic in
    const l = await lab.listen(lab.hosts[0].ns, 9001);
    try {
      assert.equal(await lab.tryConnect(lab.peer.ns, lab.hosts[0].v4, 9001), true);
    } finally {
      l.close();
    }
    assert.equal((await b.request('POST', '/unisolate', {})).status, 200);
  });

  it('isolate racing unisolate ends in one of the two states, complete, and both runtimes agree with the host', async () => {
    const [a, b] = reds;
    const seen = new Set<string>();
    for (let round = 0; round < 6; round++) {
      // alternate who isolates and who releases, from an isolated and from a free host
      const [iso, un] = round % 2 === 0 ? [a, b] : [b, a];
      if (round % 3 === 0) assert.equal((await iso.request('POST', '/isolate', { reason: `before ${round}` })).status, 200);
      const [ri, ru] = await Promise.all([iso.request('POST', '/isolate', { reason: `round ${round}` }), un.request('POST', '/unisolate', {})]);
      assert.equal(ru.status, 200, `unisolate: ${JSON.stringify(ru.body)}`);
      // isolate succeeds, or says that the release came in while it was being verified
      if (ri.status !== 200) assert.equal((ri.body as { code: string }).code, 'CONCURRENT_CHANGE', JSON.stringify(ri.body));
      const isolated = await onHost();
      seen.add(isolated ? 'isolated' : 'free');
      for (const red of [a, b]) {
        const s = await status(red);
        assert.equal(s.isolated, isolated, `round ${round}: runtime status agrees with the host`);
        if (isolated) {
          assert.deepEqual(s.tampered, [], `round ${round}: the isolation is complete`);
          assert.equal(s.reason, `round ${round}`);
        } else {
          // a runtime that left the host isolated sees the release by the other controller: said
          // so, never taken for a state of ours
          for (const t of s.tampered) assert.match(t, /removed by something other than this controller/);
        }
      }
      if (isolated) assert.equal((await a.request('POST', '/unisolate', {})).status, 200);
    }
    assert.ok(seen.size >= 1);
  });
});
