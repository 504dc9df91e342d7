/**
 * What the build makes of the nodes' own declarations: isolation-target's form, defaults,
 * credentials and labels from its one field list; the status texts as keys of every node's
 * catalog; the private key boxes kept apart from the credential's input (where Node-RED puts
 * __PWRD__ for a stored key).
 */
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as path from 'path';
import { CONFIG_FIELDS, CREDENTIAL_FIELDS, LIST_FIELDS, TARGET_FIELDS } from '../../src/nodes/isolation-target/fields';
import { STATUS_TEXTS, statusText } from '../../src/nodes/common/status';
import { REPO_ROOT } from '../lab/nodered';

const BUILT = path.join(REPO_ROOT, 'dist', 'src', 'nodes');
const TYPES = ['isolation-target', 'isolate-host', 'unisolate-host', 'isolation-status', 'exception-set'];
const read = (...p: string[]) => fs.readFileSync(path.join(...p), 'utf8');
const catalog = (type: string) => JSON.parse(read(BUILT, type, 'locales', 'en-US', `${type}.json`)) as Record<string, Record<string, Record<string, string>>>;

describe("isolation-target's fields, declared once", () => {
  const html = read(BUILT, 'isolation-target', 'isolation-target.html');

  it('every field has its row, its label in the catalog, and a default or a credential', () => {
    const labels = catalog('isolation-target')['isolation-target'].label;
    for (const k of Object.keys(TARGET_FIELDS) as (keyof typeof TARGET_FIELDS)[]) {
      assert.ok(html.includes(`data-i18n="isolation-target.label.${k}"`), `${k}: a form row`);
      assert.equal(labels[k], TARGET_FIELDS[k].label, `${k}: its label`);
    }
    for (const k of CONFIG_FIELDS) assert.match(html, new RegExp(`\\n      ${k}: \\{ value: `), `${k}: a default`);
    for (const k of CREDENTIAL_FIELDS) assert.match(html, new RegExp(`\\n      ${k}: \\{ type: 'password' \\}`), `${k}: a credential`);
    for (const k of LIST_FIELDS) assert.ok(html.includes(`id="node-config-input-${k}Text"`), `${k}: a list box`);
    assert.ok(!html.includes('#shared'), 'every part filled in');
  });

  it('the server lists are checked with the driver rules for servers; the other lists as before', () => {
    for (const k of ['dnsServers', 'ntpServers', 'ldapServers']) assert.match(html, new RegExp(`${k}: \\{ value: \\[\\], validate: function \\(v, opt\\) \\{ return window\\.hostIsolation\\.validServers\\(`));
    assert.match(html, /managementCidrs: \{ value: \[\], validate: function \(v, opt\) \{ return window\.hostIsolation\.validList\("cidrs", "management CIDRs"\)/);
  });

  it("a private key's box is not the credential's input: that one is hidden, and a note says a key is stored", () => {
    for (const k of ['privateKey', 'jumpPrivateKey']) {
      // hidden, and a text area: a password input would drop the key's newlines
      assert.ok(html.includes(`<textarea id="node-config-input-${k}" style="display: none;"></textarea>`), `${k}: the credential's input hidden`);
      assert.ok(html.includes(`<textarea id="node-config-input-${k}Text"`), `${k}: the key's own box, apart from it`);
      assert.ok(html.includes(`id="node-config-input-${k}Stored"`), `${k}: a stored-key note`);
    }
    const tip = catalog('isolation-target')['isolation-target'].tip;
    assert.match(tip.keyStored, /stored.*replace/);
  });
});

describe('status texts as message keys', () => {
  it('every action node catalog holds the status keys, the English of common/locales', () => {
    for (const type of TYPES.slice(1)) assert.deepEqual(catalog(type).status, STATUS_TEXTS, type);
  });

  it('no node module writes a status text in English: every status goes through a key', () => {
    const dir = path.join(REPO_ROOT, 'src', 'nodes');
    const files = fs.readdirSync(dir, { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.ts'));
    // common/status.ts is where keys become texts
    for (const f of files.filter((x) => x !== path.join('common', 'status.ts'))) {
      const src = read(dir, f);
      assert.doesNotMatch(src, /\.status\(\s*\{[^}]*text:/, `${f}: a status text in code`);
      assert.doesNotMatch(src, /nodeStatus\([^)]*['`]/, `${f}: a status text in code`);
    }
  });

  it("the runtime's catalog is used when it has the key; the English when it answers with the key", () => {
    const catalogRED = { _: (id: string, vars?: Record<string, unknown>) => (id === 'status.isolated' ? `${String(vars?.host)} isolé depuis ${String(vars?.since)}` : id) };
    assert.equal(statusText(catalogRED, 'isolated', { host: 'h', since: '14:04' }), 'h isolé depuis 14:04');
    assert.equal(statusText(catalogRED, 'hostsOk', { ok: 2, total: 3 }), '2/3 hosts ok');
    assert.equal(statusText(undefined, 'targetInvalid', { problem: 'host' }), 'target invalid: host');
  });
});
