/**
 * The fleet page of example 05 in headless Chromium, against lab hosts: the flow serves the page
 * itself (http in + template + http response), one row per host with its state, since, expiry,
 * reason and tampering; the release button posts back into the flow and the host is free again,
 * checked on the host. The screenshot goes to test-output/screenshots/fleet-page.png, or with
 * NRHI_DOCS_IMAGES=1 to docs/images/fleet-page.png (the README's).
 */
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as path from 'path';
import type { Page } from 'playwright-core';
import { IsolationDriver, type TargetInput } from '../../src/driver';
import { wiredExamples } from '../../scripts/demo';
import { chromiumAvailable } from '../lab/browser';
import { useChromium, useLab, useNodeRed } from '../lab/fixtures';
import { REPO_ROOT } from '../lab/nodered';

const TABLE = 'node_red_isolation';

describe('the fleet page of example 05 in headless Chromium', function () {
  this.timeout(180_000);
  const lab = useLab({ hosts: 4, needs: [chromiumAvailable()], tables: [TABLE] });
  const red = useNodeRed();
  let page: Page;

  before(async () => {
    const inventory = [...lab.hosts.map((h) => h.v4), lab.peer.v4];
    const nodes = (wiredExamples(lab) as Record<string, unknown>[])
      .filter((n) => n.z === 'f5' || n.id === 'f5' || n.id === 't5')
      .map((n) => {
        if (n.id === 'hp5') return { ...n, rules: [{ t: 'set', p: 'hosts', pt: 'msg', to: JSON.stringify(inventory), tot: 'json' }] };
        if (n.id === 't5') return { ...n, allowedHosts: lab.hosts.map((h) => h.v4) };
        return n;
      });
    await red.deploy(nodes);
  });
  const browser = useChromium({ width: 1280, height: 520 });
  before(() => {
    page = browser.page;
  });

  const onHost = async (i: number) => (await lab.exec(lab.hosts[i].ns, ['nft', 'list', 'table', 'inet', TABLE])).code === 0;

  it('lists every host with its state, since, expiry, reason and tampering, and releases one from its button', async () => {
    const [h0, h1, h2, h3] = lab.hosts;
    const d = new IsolationDriver();
    const via = (h: typeof h0): TargetInput => ({ host: h.v4, username: lab.users.sudo.username, privateKey: lab.users.sudo.privateKey, passphrase: lab.users.sudo.passphrase, sudo: true, knownHosts: h.knownHosts });
    try {
      await d.isolate(via(h0), { reason: 'EDR: ransomware note on FIN-WS-0042', verify: false });
      await d.isolate(via(h1), { reason: 'Suricata: beacon to known C2', duration: 3600, verify: false });
      await d.isolate(via(h2), { reason: 'discovery before containment', mode: 'audit', verify: false });
    } finally {
      await d.close();
    }
    // someone adds a rule of their own to h1's table: tampering, shown on its row
    await lab.nft(h1.ns, ['add', 'rule', 'inet', TABLE, 'input', 'tcp', 'dport', '4444', 'accept']);

    const res = await page.goto(`${red.url}/fleet`);
    assert.equal(res?.status(), 200);
    await page.waitForSelector('#fleet tbody tr');
    const rows = await page.$$eval('#fleet tbody tr', (trs) => trs.map((tr) => Array.from(tr.querySelectorAll('td')).map((td) => (td.textContent ?? '').trim())));
    const byHost = new Map(rows.map((r) => [r[0], r]));
    assert.equal(rows.length, 5, JSON.stringify(rows));
    assert.equal(byHost.get(h0.v4)![1], 'isolated');
    assert.match(byHost.get(h0.v4)![2], /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$/, 'since');
    assert.equal(byHost.get(h0.v4)![3], 'until released');
    assert.equal(byHost.get(h0.v4)![4], 'EDR: ransomware note on FIN-WS-0042');
    assert.equal(byHost.get(h0.v4)![5], '', 'not tampered');
    assert.equal(byHost.get(h1.v4)![1], 'isolated');
    assert.match(byHost.get(h1.v4)![3], /UTC$/, 'expiry shown');
    assert.notEqual(byHost.get(h1.v4)![5], '', 'tampering shown');
    assert.equal(byHost.get(h2.v4)![1], 'audit');
    assert.equal(byHost.get(h3.v4)![1], 'free');
    assert.equal(byHost.get(lab.peer.v4)![1], 'error');
    assert.match(byHost.get(lab.peer.v4)![4], /HOST_NOT_ALLOWED/);
    // a release button for isolated and audited hosts only
    assert.equal(await page.locator(`tr[data-host="${h0.v4}"] button`).count(), 1);
    assert.equal(await page.locator(`tr[data-host="${h2.v4}"] button`).count(), 1);
    assert.equal(await page.locator(`tr[data-host="${h3.v4}"] button`).count(), 0);
    // the README's image is written only when asked (NRHI_DOCS_IMAGES=1): a test run leaves the tree clean
    const shots = process.env.NRHI_DOCS_IMAGES === '1' ? path.join(REPO_ROOT, 'docs', 'images') : path.join(REPO_ROOT, 'test-output', 'screenshots');
    fs.mkdirSync(shots, { recursive: true });
    await page.screenshot({ path: path.join(shots, 'fleet-page.png'), fullPage: true });

    await Promise.all([page.waitForURL(/\/fleet\?released=/), page.click(`tr[data-host="${h0.v4}"] button`)]);
    assert.match(await page.locator('#released').innerText(), new RegExp(h0.v4.replace(/\./g, '\\.')));
    assert.equal(await page.locator(`tr[data-host="${h0.v4}"]`).getAttribute('data-state'), 'free');
    assert.equal(await onHost(0), false, 'released on the host');
    assert.equal(await onHost(1), true, 'the others untouched');
    assert.equal(await onHost(2), true);
  });

  it('refuses a release posted from another site (Origin) and a host outside the allowlist', async () => {
    // a release carries the token of a page the flow served (one use): read it as a client would
    const token = async () => /name="token" value="([0-9a-f]{64})"/.exec(await (await fetch(`${red.url}/fleet`)).text())![1];
    const form = (host: string, t?: string) => `host=${host}` + (t === undefined ? '' : `&token=${t}`);
    // a client that sends no Origin (curl, not a browser) is let through with the page's token, and redirected to the page
    const plain = await fetch(`${red.url}/fleet/release`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: form(lab.hosts[1].v4, await token()), redirect: 'manual' });
    // a browser posting from another site's form sends that site's origin (and has no token to send)
    const r = await fetch(`${red.url}/fleet/release`, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded', origin: 'http://evil.example' },
      body: form(lab.hosts[2].v4, await token()),
      redirect: 'manual',
    });
    assert.equal(r.status, 403);
    assert.equal(await onHost(2), true, 'still isolated');
    assert.equal(plain.status, 303, 'a release without Origin (curl) goes through');
    assert.equal(new URL(plain.headers.get('location')!, `${red.url}/fleet/release`).pathname, '/fleet');
    assert.equal(await onHost(1), false);
    // without the token, even curl releases nothing
    const bare = await fetch(`${red.url}/fleet/release`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: form(lab.hosts[2].v4), redirect: 'manual' });
    assert.equal(bare.status, 403);
    assert.equal(await onHost(2), true, 'still isolated');
    const outside = await fetch(`${red.url}/fleet/release`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: form(lab.peer.v4, await token()), redirect: 'manual' });
    assert.equal(outside.status, 500);
    assert.match(await outside.text(), /not allowed/);
  });

  it('leaves no errors in the browser console', () => {
    assert.deepEqual(browser.consoleErrors, []);
  });
});
