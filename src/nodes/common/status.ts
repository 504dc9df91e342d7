/**
 * A node's status, one class for every node (as home-assistant-websocket's Status): its texts are
 * message keys (`status.*`), translated through the runtime's catalog (RED._), so a translation
 * replaces them. The keys' English lives in common/locales/en-US/status.json, which the build
 * merges into each node's own catalog (locales/<lang>/<type>.json, the node's i18n namespace).
 * Where the runtime has no catalog for the key (node-red-node-test-helper's RED._ returns the key),
 * the English of that file is used, so a status never shows a bare key.
 */
import * as fs from 'fs';
import * as path from 'path';
import type { Node, NodeAPI, NodeStatus } from 'node-red';
import { hostText, IsolationError, ProtectedUnresolvedError, ValidationError, type HostState } from '../../driver';

/** Most characters of a node's status text (the editor shows one short line under the node). */
export const MAX_STATUS_TEXT = 64;

/** The English texts of the status keys (the catalog file the build copies beside this module). */
export const STATUS_TEXTS: Readonly<Record<string, string>> = (
  JSON.parse(fs.readFileSync(path.join(__dirname, 'locales', 'en-US', 'status.json'), 'utf8')) as { status: Record<string, string> }
).status;

export type StatusKey =
  | 'noTarget'
  | 'targetInvalid'
  | 'targetProblem'
  | 'unresolved'
  | 'working'
  | 'workingMany'
  | 'hostsDone'
  | 'hostsOk'
  | 'isolated'
  | 'isolatedWarnings'
  | 'audit'
  | 'free'
  | 'pending'
  | 'pendingApplied'
  | 'pendingEnded'
  | 'failed'
  | 'error';

type Vars = Record<string, string | number>;

/** `__name__` filled in, as Node-RED's i18n does. */
function fill(text: string, vars: Vars = {}): string {
  return text.replace(/__([A-Za-z]+)__/g, (m, name: string) => (name in vars ? String(vars[name]) : m));
}

/** The text of a status key: the runtime's catalog, else the English of status.json. */
export function statusText(RED: Pick<NodeAPI, '_'> | undefined, key: StatusKey, vars?: Vars): string {
  const id = `status.${key}`;
  const translated = typeof RED?._ === 'function' ? RED._(id, vars) : undefined;
  if (typeof translated === 'string' && translated !== '' && translated !== id) return translated;
  return fill(STATUS_TEXTS[key] ?? key, vars);
}

/** A node status whose text is clean and at most MAX_STATUS_TEXT characters. */
export function nodeStatus(fill: NodeStatus['fill'], shape: NodeStatus['shape'], text: string): NodeStatus {
  return { fill, shape, text: hostText(text, MAX_STATUS_TEXT) };
}

/** A target problem in a few words, for a node status: the field, else the message. */
export function problemText(RED: Pick<NodeAPI, '_'> | undefined, err: IsolationError): string {
  if (err instanceof ProtectedUnresolvedError) return statusText(RED, 'unresolved', { name: err.unresolved });
  const issue = err instanceof ValidationError ? err.issues[0] : undefined;
  // the driver's names for what the config node calls otherwise
  const field = issue?.path.replace(/^target\.?/, '').replace(/^timeoutMs$/, 'timeout');
  if (field) return field;
  return err.message.replace(/^invalid target: target: /, '').split(':')[0].slice(0, 60);
}

/** One node's status, set by key. */
export class Status {
  constructor(
    private readonly RED: Pick<NodeAPI, '_'>,
    private readonly node: Node,
  ) {}

  set(fill: NodeStatus['fill'], shape: NodeStatus['shape'], key: StatusKey, vars?: Vars): void {
    this.node.status(nodeStatus(fill, shape, statusText(this.RED, key, vars)));
  }

  clear(): void {
    this.node.status({});
  }

  /** a target that failed its check at deploy, or whose protected names never resolved */
  targetProblem(key: 'targetInvalid' | 'targetProblem', err: IsolationError): void {
    this.set('red', 'ring', key, { problem: problemText(this.RED, err) });
  }

  /** an action's error: its code, else "error" */
  failed(e: Error): void {
    if (e instanceof IsolationError) this.set('red', 'ring', 'failed', { code: e.code });
    else this.set('red', 'ring', 'error');
  }

  /**
   * green only when traffic is dropped and all went as asked; isolated with a warning (connections
   * left open, say) is a yellow dot; audit mode (nothing dropped) is a yellow ring
   */
  state(state: HostState): void {
    const vars = { host: state.host, since: state.since ? new Date(state.since).toISOString().slice(11, 16) : '?' };
    if ((state.state as string) === 'pending') {
      const p = (state as unknown as { pending?: { expires?: string } }).pending;
      this.set('yellow', 'ring', 'pending', { host: state.host, until: p?.expires ? p.expires.slice(11, 16) : '?' });
    } else if (state.state === 'isolated' && state.warnings.length > 0) this.set('yellow', 'dot', 'isolatedWarnings', vars);
    else if (state.state === 'isolated') this.set('green', 'dot', 'isolated', vars);
    else if (state.state === 'audit') this.set('yellow', 'ring', 'audit', vars);
    else this.set('grey', 'ring', 'free', vars);
  }
}
