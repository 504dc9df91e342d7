/**
 * The README's main job, as a user runs it: `npm run demo -- --check` plays the story headless;
 * the interactive demo answers the curl it prints and removes everything on Ctrl-C.
 */
import { strict as assert } from 'assert';
import { execFileSync, spawn } from 'child_process';
import * as path from 'path';
import { requireLab } from '../lab/lab';

const DEMO = path.join(__dirname, '../../scripts/demo.js');

function labLeftovers(): string {
  return execFileSync('ip', ['-o', 'addr', 'show'], { encoding: 'utf8' }).includes('198.18.0.1/24') ? 'controller address still present' : '';
}

describe('npm run demo', function () {
  this.timeout(240_000);

  before(function () {
    requireLab(this);
  });

  it('--check plays the whole story, a line per step', () => {
    const out = execFileSync(process.execPath, [DEMO, '--check'], { encoding: 'utf8', timeout: 200_000 });
    for (const stepName of ['alert', 'host isolated', 'peer blocked', 'management alive', 'exception added', 'unisolate', 'traffic restored']) {
      assert.match(out, new RegExp(`^ok\\s+${stepName}`, 'm'), `step "${stepName}" in:\n${out}`);
    }
    assert.match(out, /demo check passed/);
    assert.equal(labLeftovers(), '');
  });

  it('serves the editor and the alert endpoint it prints, and Ctrl-C removes everything', async () => {
    const child = spawn(process.execPath, [DEMO, '--port', '0'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    try {
      const deadline = Date.now() + 120_000;
      while (!/Node-RED:\s+(http:\/\/127\.0\.0\.1:\d+)/.test(out)) {
        assert.ok(child.exitCode === null, `demo exited early:\n${out}`);
        assert.ok(Date.now() < deadline, `demo did not start:\n${out}`);
        await new Promise((r) => setTimeout(r, 200));
      }
      const url = /Node-RED:\s+(http:\/\/127\.0\.0\.1:\d+)/.exec(out)![1];
      const curl = /curl -s -X POST (\S+) -H 'content-type: application\/json' -d @(\S+)/.exec(out);
      assert.ok(curl, `no curl command printed:\n${out}`);
      const editor = await fetch(url, { signal: AbortSignal.timeout(10_000) });
      assert.equal(editor.status, 200, 'editor served');
      const body = execFileSync('cat', [curl[2]], { encoding: 'utf8' });
      const res = await fetch(curl[1], { method: 'POST', headers: { 'content-type': 'application/json' }, body, signal: AbortSignal.timeout(60_000) });
      const state = (await res.json()) as { isolated: boolean; host: string };
      assert.equal(res.status, 200);
      assert.equal(state.isolated, true);
      assert.equal(state.host, '198.18.0.2');
    } finally {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGINT');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 20_000))]);
    }
    assert.notEqual(child.exitCode ?? child.signalCode, null, 'demo stopped on Ctrl-C');
    assert.equal(labLeftovers(), '', 'Ctrl-C removed the lab');
    // the demo's own namespaces (it prints them); other labs may run beside it on a shared machine
    const prefix = /\(namespaces (nrhi-[0-9a-f]+-)/.exec(out)?.[1];
    assert.ok(prefix, `the demo names its namespaces:\n${out}`);
    const ns = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' });
    assert.deepEqual(ns.split('\n').filter((l) => l.startsWith(prefix)), [], 'namespaces left');
  });
});
