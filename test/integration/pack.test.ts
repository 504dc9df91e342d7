/**
 * What a user installs: the repository's files as a clone has them, packed with `npm pack` (which
 * builds through `prepare`), installed into a clean Node-RED user dir the way the palette manager
 * installs a package (`npm install <tarball>` there, with its arguments, on the runtime's own
 * Node.js), and loaded by a real Node-RED started from that dir, with nothing of the repository on
 * its module path. Once per runtime (Node-RED 4.1 on Node 20, Node-RED 5 on Node 22).
 */
import { strict as assert } from 'assert';
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { REPO_ROOT, requireRuntime, runtimes, startNodeRed, type NodeRed } from '../lab/nodered';

const MODULE = '@soc-playbooks/node-red-host-isolation';
const TYPES = ['isolation-target', 'isolate-host', 'unisolate-host', 'isolation-status', 'exception-set'];
/** what the palette manager passes to `npm install` (@node-red/registry/lib/installer.js) */
const PALETTE_ARGS = ['--no-audit', '--no-update-notifier', '--no-fund', '--save', '--save-prefix=~', '--omit=dev', '--engine-strict'];

/** npm's own entry script, to run it on a given node binary as the palette manager does */
function npmCli(): string {
  const candidates = [process.env.npm_execpath ?? '', path.join(path.dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'bin', 'npm-cli.js')];
  const found = candidates.find((c) => c.endsWith('npm-cli.js') && fs.existsSync(c));
  if (!found) throw new Error(`npm-cli.js not found (${candidates.join(', ')})`);
  return found;
}

/** Every file a commit of this tree holds (tracked, or new and not ignored): a clone's files. */
function cloneTree(dest: string): void {
  const files = execFileSync('git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard'], { cwd: REPO_ROOT, encoding: 'utf8' })
    .split('\0')
    .filter((f) => f && fs.existsSync(path.join(REPO_ROOT, f)));
  for (const f of files) {
    fs.mkdirSync(path.dirname(path.join(dest, f)), { recursive: true });
    fs.copyFileSync(path.join(REPO_ROOT, f), path.join(dest, f));
  }
  // the build's tools (tsc) as `npm ci` would install them; the clone has no dist/ and no resources/driver-rules.js
  fs.symlinkSync(path.join(REPO_ROOT, 'node_modules'), path.join(dest, 'node_modules'), 'dir');
}

describe('the packed module, installed as the palette manager installs it', function () {
  this.timeout(300_000);
  let work: string;
  let tarball: string;
  let packed: string[];

  before(() => {
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'nrhi-pack-'));
    const clone = path.join(work, 'clone');
    cloneTree(clone);
    assert.ok(!fs.existsSync(path.join(clone, 'dist')), 'a clone has no build');
    const out = execFileSync('npm', ['pack', '--json', '--pack-destination', work], { cwd: clone, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, npm_config_loglevel: 'error' } });
    const info = JSON.parse(out.slice(out.indexOf('['))) as { filename: string; files: { path: string }[] }[];
    tarball = path.join(work, info[0].filename);
    packed = info[0].files.map((f) => f.path).sort();
  });

  after(() => {
    if (work) fs.rmSync(work, { recursive: true, force: true });
  });

  it('npm pack builds the code into the tarball, and nothing else of the repository', () => {
    for (const t of TYPES) {
      assert.ok(packed.includes(`dist/src/nodes/${t}/${t}.js`), `${t}.js packed`);
      assert.ok(packed.includes(`dist/src/nodes/${t}/${t}.html`), `${t}.html packed`);
      assert.ok(packed.includes(`dist/src/nodes/${t}/locales/en-US/${t}.json`), `${t} locale packed`);
    }
    for (const f of ['dist/src/driver/index.js', 'resources/driver-rules.js', 'resources/editor.js', 'resources/host-setup.js', 'dist/src/nodes/isolate-host/icons/isolate-host.svg', 'examples/01-alert-to-isolation.json', 'package.json', 'README.md', 'LICENSE']) {
      assert.ok(packed.includes(f), `${f} packed`);
    }
    const allowed = /^(dist\/src\/|resources\/|examples\/|icons\/|README\.md$|LICENSE$|package\.json$)/;
    assert.deepEqual(packed.filter((f) => !allowed.test(f)), [], 'only the runtime, its assets and the docs');
    assert.deepEqual(packed.filter((f) => /(^|\/)(test|tests|scripts|bench|\.ci)\//.test(f) || f.startsWith('dist/test') || f.startsWith('dist/scripts')), [], 'no test code, scripts or CI');
    assert.deepEqual(packed.filter((f) => /\.ts$/.test(f) && !/\.d\.ts$/.test(f)), [], 'no TypeScript sources');
    assert.deepEqual(packed.filter((f) => /(^|\/)(id_[a-z0-9]+|.*\.(pem|key|p12))$/i.test(f)), [], 'no key files');
    // no private key in any file's content (a placeholder header without a key body is fine)
    const unpacked = path.join(work, 'unpacked');
    fs.mkdirSync(unpacked);
    execFileSync('tar', ['-xzf', tarball, '-C', unpacked]);
    for (const f of packed) {
      const text = fs.readFileSync(path.join(unpacked, 'package', f), 'latin1');
      assert.ok(!/-----BEGIN [A-Z ]*PRIVATE KEY-----\s*[A-Za-z0-9+/=]{40,}/.test(text), `${f} holds a private key`);
    }
  });

  for (const rt of runtimes()) {
    describe(`on ${rt.label}`, function () {
      let userDir: string;
      let red: NodeRed | undefined;

      before(function () {
        requireRuntime(this, rt);
        userDir = fs.mkdtempSync(path.join(os.tmpdir(), 'nrhi-userdir-'));
        // what Node-RED writes into a new user dir, before the palette manager installs into it
        fs.writeFileSync(path.join(userDir, 'package.json'), JSON.stringify({ name: 'node-red-project', description: 'A Node-RED Project', version: '0.0.1', private: true }, null, 4));
        // the palette manager runs `npm install` on the runtime's own node, in the user dir;
        // --prefer-offline only lets npm use its cache (the tests ran npm ci already)
        execFileSync(rt.node, [npmCli(), 'install', ...PALETTE_ARGS, '--prefer-offline', '--', tarball], { cwd: userDir, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, npm_config_loglevel: 'error' } });
      });

      after(async () => {
        await red?.stop();
        if (userDir) fs.rmSync(userDir, { recursive: true, force: true });
      });

      it('npm install <tarball> puts a real copy and its dependencies in the user dir', () => {
        const installed = path.join(userDir, 'node_modules', ...MODULE.split('/'));
        assert.ok(!fs.lstatSync(installed).isSymbolicLink(), 'a copy, not a link to the repository');
        assert.ok(fs.existsSync(path.join(installed, 'dist', 'src', 'nodes', 'isolate-host', 'isolate-host.js')));
        for (const dep of ['node-ssh', 'ssh2', 'zod', 'ipaddr.js']) assert.ok(fs.existsSync(path.join(userDir, 'node_modules', dep, 'package.json')), `${dep} installed`);
        for (const dev of ['node-red', 'typescript', 'mocha']) assert.ok(!fs.existsSync(path.join(userDir, 'node_modules', dev)), `${dev} (dev) not installed`);
        const pkg = JSON.parse(fs.readFileSync(path.join(userDir, 'package.json'), 'utf8')) as { dependencies: Record<string, string> };
        assert.match(pkg.dependencies[MODULE], /^(~|file:)/, 'saved as the palette manager saves it');
      });

      it('Node-RED started from that user dir loads the five node types, their editor and resources', async () => {
        const nr = await startNodeRed({ runtime: rt, userDir, install: 'none' });
        red = nr;
        const sets = ((await nr.request('GET', '/nodes')).body as { module: string; types: string[]; enabled: boolean; err?: string }[]).filter((s) => s.module === MODULE);
        assert.deepEqual(sets.flatMap((s) => s.types).sort(), [...TYPES].sort());
        for (const s of sets) {
          assert.equal(s.err, undefined, `${s.types.join()}: ${s.err}`);
          assert.equal(s.enabled, true);
        }
        const html = await fetch(`${nr.url}/nodes`, { headers: { accept: 'text/html' } }).then((r) => r.text());
        for (const t of TYPES) assert.ok(html.includes(`data-template-name="${t}"`), `${t} editor template served`);
        assert.ok(!html.includes('#shared'), 'help parts expanded at build');
        for (const res of ['driver-rules.js', 'editor.js', 'host-setup.js']) {
          const got = await fetch(`${nr.url}/resources/${MODULE}/${res}`);
          assert.equal(got.status, 200, `resources/${MODULE}/${res}`);
          assert.match(await got.text(), /window\.hostIsolation/);
        }
        assert.equal((await fetch(`${nr.url}/icons/${MODULE}/isolate-host.svg`)).status, 200, 'icon served');
        const example = await nr.request('GET', `/library/examples/flows/${MODULE}/01-alert-to-isolation`);
        assert.equal(example.status, 200, 'examples listed');
        // the installed copy runs: a flow with its nodes deploys, and its unconfigured target is reported at deploy
        const deployed = await nr.request('POST', '/flows', { flows: example.body });
        assert.equal(deployed.status, 200);
        assert.ok(!/Error: Cannot find module|TypeError/.test(nr.log()), nr.log());
      });
    });
  }
});
