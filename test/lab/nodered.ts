/**
 * A real Node-RED runtime (the dev dependency) in a child process, on 127.0.0.1, with this pack
 * installed into its user dir as a package, exactly as a user's `npm install` would place it.
 * Shared by the integration tests and the demo.
 */
import { spawn, type ChildProcess } from 'child_process';
import * as fs from 'fs';
import * as net from 'net';
import * as os from 'os';
import * as path from 'path';

export interface NodeRed {
  url: string;
  userDir: string;
  process: ChildProcess;
  /** Deploys a full flow set through the admin API, as the editor does. */
  /** `nodes`: only the changed nodes restart, as the editor's "Modified Nodes" deploy does */
  deploy(flows: object[], type?: 'full' | 'nodes'): Promise<void>;
  request(method: string, urlPath: string, body?: unknown): Promise<{ status: number; body: unknown }>;
  stop(): Promise<void>;
}

export const REPO_ROOT = (() => {
  let dir = __dirname;
  while (!fs.existsSync(path.join(dir, 'package.json')) || dir.endsWith(`${path.sep}dist`)) dir = path.dirname(dir);
  return dir;
})();

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

export async function startNodeRed(opts: { port?: number; userDir?: string; credentialSecret?: string; quiet?: boolean } = {}): Promise<NodeRed> {
  const port = opts.port ?? (await freePort());
  const userDir = opts.userDir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'nrhi-nodered-'));
  const pkg = JSON.parse(fs.readFileSync(path.join(REPO_ROOT, 'package.json'), 'utf8')) as { name: string };
  const link = path.join(userDir, 'node_modules', ...pkg.name.split('/'));
  fs.mkdirSync(path.dirname(link), { recursive: true });
  if (!fs.existsSync(link)) fs.symlinkSync(REPO_ROOT, link, 'dir');
  const settings = path.join(userDir, 'settings.js');
  fs.writeFileSync(
    settings,
    `module.exports = ${JSON.stringify(
      {
        uiHost: '127.0.0.1',
        uiPort: port,
        flowFile: 'flows.json',
        credentialSecret: opts.credentialSecret ?? 'nrhi-test-secret',
        logging: { console: { level: 'warn', metrics: false, audit: false } },
        editorTheme: { tours: false, projects: { enabled: false } },
        diagnostics: { enabled: false },
        telemetry: { enabled: false },
        externalModules: { autoInstall: false, palette: { allowInstall: false } },
      },
      null,
      2,
    )};\n`,
  );
  const redJs = require.resolve('node-red/red.js', { paths: [REPO_ROOT] });
  const child = spawn(process.execPath, [redJs, '--settings', settings, '--userDir', userDir, '--port', String(port)], {
    stdio: ['ignore', opts.quiet === false ? 'inherit' : 'pipe', opts.quiet === false ? 'inherit' : 'pipe'],
  });
  let log = '';
  child.stdout?.on('data', (d) => (log += d));
  child.stderr?.on('data', (d) => (log += d));
  const url = `http://127.0.0.1:${port}`;

  const request = async (method: string, urlPath: string, body?: unknown, deployType: 'full' | 'nodes' = 'full') => {
    const res = await fetch(url + urlPath, {
      method,
      headers: { accept: 'application/json', 'content-type': 'application/json', 'Node-RED-API-Version': 'v2', 'Node-RED-Deployment-Type': deployType },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(60_000),
    });
    const text = await res.text();
    let parsed: unknown = text;
    try {
      parsed = JSON.parse(text);
    } catch {
      /* not JSON */
    }
    return { status: res.status, body: parsed };
  };

  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`Node-RED exited (${child.exitCode}):\n${log}`);
    try {
      const r = await fetch(`${url}/settings`, { signal: AbortSignal.timeout(1000) });
      if (r.ok) break;
    } catch {
      /* not up yet */
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`Node-RED did not start:\n${log}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }

  return {
    url,
    userDir,
    process: child,
    request,
    async deploy(flows, type = 'full') {
      const r = await request('POST', '/flows', { flows }, type);
      if (r.status !== 200) throw new Error(`deploy failed ${r.status}: ${JSON.stringify(r.body)}\n${log}`);
      // let the nodes start
      await new Promise((res) => setTimeout(res, 300));
    },
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      await new Promise<void>((resolve) => {
        const t = setTimeout(() => child.kill('SIGKILL'), 5000);
        child.once('exit', () => {
          clearTimeout(t);
          resolve();
        });
        child.kill('SIGTERM');
      });
    },
  };
}

/** An `http in` node of tab `tab` that passes to `next`. */
export function httpIn(id: string, method: string, url: string, next: string, tab = 'tab'): Record<string, unknown> {
  return { id, type: 'http in', z: tab, url, method, wires: [[next]] };
}

/**
 * The end of a flow served over HTTP: the `resp` http response, and a Catch node that answers 500
 * with the error (its `code` included) through it, so a test sees results and errors alike.
 */
export function httpAnswerNodes(tab = 'tab'): Record<string, unknown>[] {
  return [
    { id: 'resp', type: 'http response', z: tab, statusCode: '', headers: {} },
    { id: 'catcher', type: 'catch', z: tab, scope: null, uncaught: false, wires: [['err']] },
    {
      id: 'err',
      type: 'change',
      z: tab,
      rules: [
        { t: 'set', p: 'payload', pt: 'msg', to: 'error', tot: 'msg' },
        { t: 'set', p: 'statusCode', pt: 'msg', to: '500', tot: 'num' },
      ],
      wires: [['resp']],
    },
  ];
}
