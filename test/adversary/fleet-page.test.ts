/**
 * The fleet page of example 05 (GET /fleet, POST /fleet/release) played by an attacker, in a REAL
 * Node-RED runtime against REAL lab hosts:
 * - a release needs the page's own token (minted per page load, kept in flow context, one use):
 *   a POST whose Origin matches its Host but carries no token, a forged one or a used one releases
 *   nothing;
 * - DNS rebinding (the attacker's name pointed at this Node-RED: its Host and Origin agree with each
 *   other) gets neither the page, nor its token, nor a release: the page answers only under the
 *   names the tab's FLEET_PAGE_HOSTS lists;
 * - loading the page (or an <img src=/fleet> on any site) sweeps the fleet at most once per
 *   FLEET_SWEEP_SECONDS: the sweeps are counted on a host, where its `nft` runs.
 * The browser's own release path is test/e2e/fleet.test.ts.
 */
import { strict as assert } from 'assert';
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as http from 'http';
import * as path from 'path';
import { IsolationDriver, type TargetInput } from '../../src/driver';
import { wiredExamples } from '../../scripts/demo';
import { teardown, useLab, useNodeRed } from '../lab/fixtures';

const TABLE = 'node_red_isolation';
/** the sweep's time to live on the page, in seconds (the example's default is 60) */
const MAX_AGE = 8;

interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  text: string;
}

/** One HTTP request to 127.0.0.1 with the Host (and Origin) a browser would send for `name`. */
function request(port: number, method: 'GET' | 'POST', urlPath: string, o: { host: string; origin?: string; form?: Record<string, string> }): Promise<Answer> {
  const body = o.form ? new URLSearchParams(o.form).toString() : undefined;
  const headers: Record<string, string> = { host: o.host };
  if (o.origin) headers.origin = o.origin;
  if (body !== undefined) headers['content-type'] = 'application/x-www-form-urlencoded';
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method, path: urlPath, headers, timeout: 60_000 }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (text += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`${method} ${urlPath}: no answer in 60 s`)));
    req.on('error', reject);
    req.end(body);
  });
}

const tokenOf = (page: string) => /name="token" value="([0-9a-f]{64})"/.exec(page)?.[1];
const sweptAt = (page: string) => /id="swept" data-at="(\d+)"/.exec(page)?.[1];

describe('the fleet page of example 05 under attack: release token, page names, one sweep per period', function () {
  this.timeout(180_000);
  const lab = useLab({ hosts: 3, tables: [TABLE] });
  const red = useNodeRed();
  let port: number;
  let countFile: string;
  /** the name the operator serves the page under (the allowlist), and an attacker's rebinding name */
  let good: { host: string; origin: string };
  let evil: { host: string; origin: string };

  before(async () => {
    port = Number(new URL(red.url).port);
    good = { host: `127.0.0.1:${port}`, origin: `http://127.0.0.1:${port}` };
    evil = { host: `rebind.attacker.example:${port}`, origin: `http://rebind.attacker.example:${port}` };
    const inventory = lab.hosts.map((h) => h.v4);
    const nodes = (wiredExamples(lab) as Record<string, unknown>[])
      .filter((n) => n.z === 'f5' || n.id === 'f5' || n.id === 't5')
      .map((n) => {
        if (n.id === 'f5') {
          return {
            ...n,
            env: [
              { name: 'FLEET_PAGE_HOSTS', value: '127.0.0.1', type: 'str' },
              { name: 'FLEET_SWEEP_SECONDS', value: String(MAX_AGE), type: 'num' },
            ],
          };
        }
        if (n.id === 'hp5') return { ...n, rules: [{ t: 'set', p: 'hosts', pt: 'msg', to: JSON.stringify(inventory), tot: 'json' }] };
        if (n.id === 't5') return { ...n, allowedHosts: inventory };
        return n;
      });
    await red.deploy(nodes);
    const d = new IsolationDriver();
    const via = (h: (typeof lab.hosts)[0]): TargetInput => ({ host: h.v4, username: lab.users.sudo.username, privateKey: lab.users.sudo.privateKey, passphrase: lab.users.sudo.passphrase, sudo: true, knownHosts: h.knownHosts });
    try {
      for (const h of lab.hosts) await d.isolate(via(h), { reason: 'fleet page adversary', verify: false });
    } finally {
      await d.close();
    }
    // every nft the status read runs on host 0 leaves a line here: one sweep, a fixed number of lines
    countFile = path.join(lab.dir, 'nft-calls.0');
    fs.writeFileSync(countFile, '');
    await lab.wrapNft(0, `echo x >> ${countFile}\nexec "$REAL_NFT" "$@"`);
  });

  teardown(() => lab.wrapNft(0, null).catch(() => undefined));

  const nftCalls = () => fs.readFileSync(countFile, 'utf8').split('\n').filter(Boolean).length;
  const onHost = async (i: number) => (await lab.exec(lab.hosts[i].ns, ['nft', 'list', 'table', 'inet', TABLE])).code === 0;
  const page = async () => {
    const r = await request(port, 'GET', '/fleet', good);
    assert.equal(r.status, 200, r.text);
    return r.text;
  };
  /** a page token as the flow keeps it, read through the admin API (as the editor's Context sidebar does) */
  const stored = async (token: string): Promise<{ exp: number } | undefined> => {
    const r = await red.request('GET', `/context/flow/f5/fleetTokens.${token}`);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    const v = r.body as { msg?: string; format?: string };
    return v.format === 'undefined' ? undefined : (JSON.parse(v.msg!) as { exp: number });
  };
  const release = (host: string, via: { host: string; origin?: string }, token?: string) =>
    request(port, 'POST', '/fleet/release', { ...via, form: token === undefined ? { host } : { host, token } });

  it('DNS rebinding: under a name the tab does not list, the page is refused, with no token and no sweep', async () => {
    const before = nftCalls();
    const r = await request(port, 'GET', '/fleet', evil);
    assert.equal(r.status, 403, r.text);
    assert.equal(tokenOf(r.text), undefined, 'no token');
    assert.doesNotMatch(r.text, new RegExp(lab.hosts[0].v4.replace(/\./g, '\\.')), 'nothing of the fleet');
    assert.match(r.text, /FLEET_PAGE_HOSTS/, 'the refusal says which setting lists the names');
    await new Promise((res) => setTimeout(res, 500));
    assert.equal(nftCalls(), before, 'no sweep');
  });

  it('5 loads at once on no sweep, then 20 in a row, sweep once; 20 at once on an aged sweep sweep once more; the page shows the sweep and its age', async () => {
    const c0 = nftCalls();
    // 5 loads at once before any sweep: one sweeps, the others get a page that says so and reloads
    const cold = await Promise.all(Array.from({ length: 5 }, () => request(port, 'GET', '/fleet', good)));
    for (const r of cold) assert.equal(r.status, 200, r.text);
    const swept = new Set(cold.map((r) => sweptAt(r.text)).filter(Boolean));
    assert.equal(swept.size, 1, 'one sweep shown');
    const pending = cold.filter((x) => !sweptAt(x.text));
    assert.ok(pending.length >= 1, 'the loads during the sweep did not wait for one of their own');
    for (const r of pending) {
      assert.match(r.text, /<meta http-equiv="refresh" content="2">/);
      assert.match(r.text, /id="pending"/);
      assert.equal(tokenOf(r.text), undefined, 'no rows, no token');
    }
    const c1 = nftCalls();
    const perSweep = c1 - c0;
    assert.ok(perSweep > 0, 'the first load sweeps (its status reads ran nft on host 0)');
    const first = await page();
    assert.equal(nftCalls(), c1, 'the next load shows that sweep');
    const more: string[] = [];
    for (let i = 0; i < 19; i++) more.push(await page());
    assert.equal(nftCalls(), c1, `19 more loads, no sweep (${(nftCalls() - c1) / perSweep} sweeps)`);
    const at = sweptAt(first);
    assert.ok(at, 'the page carries its sweep time');
    assert.match(first, /\d+ s ago/, 'and its age');
    more.forEach((p, i) => assert.equal(sweptAt(p), at, `load ${i + 2}: the same sweep`));

    // the sweep ages out: of 20 loads at once (20 <img> tags, say), one sweeps and the others are
    // answered at once with the aged sweep
    await new Promise((res) => setTimeout(res, (MAX_AGE + 1) * 1000 - (Date.now() - Number(at))));
    const burst = await Promise.all(Array.from({ length: 20 }, () => request(port, 'GET', '/fleet', good)));
    for (const r of burst) assert.equal(r.status, 200, r.text);
    const stamps = new Set(burst.map((r) => sweptAt(r.text)));
    assert.ok(stamps.size <= 2, `the aged sweep and one new one: ${[...stamps].join(', ')}`);
    assert.equal(nftCalls(), c1 + perSweep, 'exactly one more sweep');
    const fresh = sweptAt(await page());
    assert.ok(Number(fresh) > Number(at), 'the next load shows the new sweep');
    assert.equal(nftCalls(), c1 + perSweep);
  });

  it('a release whose Origin matches its Host is refused without the page token: none, forged, prototype names, used', async () => {
    const h = lab.hosts;
    assert.equal((await release(h[0].v4, good)).status, 403, 'no token');
    assert.equal((await release(h[0].v4, { host: good.host })).status, 403, 'no token and no Origin (curl)');
    assert.equal((await release(h[0].v4, good, crypto.randomBytes(32).toString('hex'))).status, 403, 'forged');
    for (const t of ['__proto__', 'constructor', 'toString', '', 'x'.repeat(64)]) assert.equal((await release(h[0].v4, good, t)).status, 403, `token ${JSON.stringify(t)}`);
    assert.equal(await onHost(0), true, 'still isolated');

    // the page's token releases once; it is kept server-side (flow context) with its expiry
    const token = tokenOf(await page());
    assert.ok(token, 'the page carries a token');
    const kept = await stored(token);
    assert.ok(kept, 'kept in flow context');
    assert.ok(Math.abs(kept.exp - (Date.now() + 15 * 60_000)) < 60_000, `expires in 15 minutes: ${kept.exp}`);
    const ok = await release(h[1].v4, good, token);
    assert.equal(ok.status, 303, ok.text);
    assert.equal(await onHost(1), false, 'released with the page token');
    const again = await release(h[0].v4, good, token);
    assert.equal(again.status, 403, 'a used token');
    assert.equal(await stored(token), undefined, 'gone once used');
    assert.match(again.text, /reload/);
    assert.equal(await onHost(0), true, 'still isolated');
    // the release made the last sweep out of date: the next load shows the host free at once
    assert.match(await page(), new RegExp(`data-host="${h[1].v4.replace(/\./g, '\\.')}" data-state="free"`));
  });

  it('a release under a rebinding name is refused even with a live token and an Origin that matches its Host', async () => {
    const h = lab.hosts;
    const token = tokenOf(await page());
    assert.ok(token);
    const r = await release(h[0].v4, evil, token);
    assert.equal(r.status, 403, r.text);
    assert.equal(await onHost(0), true, 'still isolated');
    // the refusal was the name's: the same token, under the page's own name, releases
    assert.equal((await release(h[0].v4, good, token)).status, 303);
    assert.equal(await onHost(0), false);
    assert.equal(await onHost(2), true, 'the other host untouched');
  });
});
