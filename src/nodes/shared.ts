/**
 * What every node shares: one driver (one connection pool) for the whole runtime, the target built
 * from the config node and its credentials, and the wrapper that ends every input message in
 * exactly one send or one error, also when the node is closed while an operation runs.
 */
import type { Node, NodeAPI, NodeMessageInFlow, NodeStatus } from 'node-red';
import { IsolationDriver, IsolationError, targetForHost, ValidationError, type ApplyInfo, type HostState, type TargetInput } from '../driver';

export const CATEGORY = 'host isolation';

/** The driver every node uses: connections to a host are pooled and its operations serialised. */
export const driver = new IsolationDriver();

export interface TargetCredentials {
  privateKey?: string;
  passphrase?: string;
  password?: string;
}

export interface TargetConfig {
  name?: string;
  host: string;
  port?: number | string;
  username: string;
  allowedHosts?: string[] | string;
  managementCidrs?: string[] | string;
  knownHosts: string;
  sudo?: boolean;
  timeout?: number | string;
}

export interface TargetNode extends Node<TargetCredentials> {
  config: TargetConfig;
}

export type Msg = NodeMessageInFlow & Record<string, unknown>;

/** A list as the editor stores it: an array, or text with one entry per line or comma. */
export function allowedHostsOf(v: string[] | string | undefined): string[] {
  const list = Array.isArray(v) ? v : typeof v === 'string' ? v.split(/[\n,]/) : [];
  return list.map((s) => String(s).trim()).filter((s) => s !== '');
}

function num(v: unknown, fallback: number): number {
  if (v === undefined || v === null || v === '') return fallback;
  const n = Number(v);
  return Number.isFinite(n) ? n : NaN;
}

/** The driver target for the config node; the driver validates every field of it. */
export function targetOf(node: TargetNode): TargetInput {
  const c = node.config;
  const cred = node.credentials ?? {};
  return {
    host: c.host,
    port: num(c.port, 22),
    username: c.username,
    knownHosts: c.knownHosts,
    sudo: c.sudo === true,
    timeoutMs: Math.round(num(c.timeout, 20) * 1000),
    managementCidrs: allowedHostsOf(c.managementCidrs),
    privateKey: cred.privateKey || undefined,
    passphrase: cred.passphrase || undefined,
    password: cred.password || undefined,
  };
}

export function stateStatus(state: HostState): NodeStatus {
  if (!state.isolated) return { fill: 'grey', shape: 'ring', text: `${state.host} not isolated` };
  const since = state.since ? new Date(state.since).toISOString().slice(11, 16) : '?';
  return { fill: 'green', shape: 'dot', text: `${state.host} isolated since ${since}` };
}

/** A message field that must be an array when present. */
export function arrayField(msg: Msg, name: string): unknown[] {
  const v = msg[name];
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) throw new ValidationError(`msg.${name} must be an array`, [{ path: `msg.${name}`, message: 'not an array' }]);
  return v;
}

/** The wall notice: `msg.wall` over the node's own; empty means none. Validated by the driver. */
export function wallOf(msg: Msg, configured: string | undefined): string | undefined {
  const v = msg.wall ?? configured;
  return v === '' || v === null || v === undefined ? undefined : (v as string);
}

export type Action = (target: TargetInput, msg: Msg, info: ApplyInfo) => Promise<HostState>;

/** The structured record each action yields on the node's second output, for a log or a ticket. */
export interface AuditRecord {
  when: string;
  node: { id: string; type: string; name: string };
  host: string | null;
  action: string;
  reason: string | null;
  result: 'ok' | 'error';
  error?: { code: string; message: string };
  isolated?: boolean;
  mode?: string | null;
  since?: string | null;
  expiresAt?: string | null;
  exceptions?: number;
  /** sha256 of the nft batch this action applied (null for reads) */
  digest: string | null;
}

function auditMessage(node: Node, action: string, msg: Msg, host: string | null, result: HostState | Error, info: ApplyInfo): { topic: string; payload: AuditRecord } {
  const record: AuditRecord = {
    when: new Date().toISOString(),
    node: { id: node.id, type: node.type, name: node.name ?? '' },
    host,
    action,
    reason: typeof msg.reason === 'string' ? msg.reason : result instanceof Error ? null : result.reason,
    result: result instanceof Error ? 'error' : 'ok',
    digest: info.digest ?? null,
  };
  if (result instanceof Error) {
    record.error = { code: result instanceof IsolationError ? result.code : 'ERROR', message: result.message };
  } else {
    Object.assign(record, { isolated: result.isolated, mode: result.mode, since: result.since, expiresAt: result.expiresAt, exceptions: result.exceptions.length });
  }
  return { topic: 'host-isolation/audit', payload: record };
}

/**
 * Wires `input` and `close` for an action node. Each message: resolve the target (allowlist
 * first, before any connection), run the action, then `send` the message with the state as
 * payload, or `done(err)` with the driver's coded error. `close` waits for running operations,
 * which the driver bounds in time, so none is dropped on a redeploy.
 */
export function handleInput(RED: NodeAPI, node: Node, targetId: string | undefined, action: Action, actionName: string = node.type): void {
  const inflight = new Set<Promise<void>>();
  let running = 0;

  node.on('input', (msgIn, send, done) => {
    const msg = msgIn as Msg;
    running++;
    node.status({ fill: 'blue', shape: 'dot', text: running > 1 ? `working (${running})` : 'working' });
    const info: ApplyInfo = {};
    let host: string | null = typeof msg.host === 'string' ? msg.host : null;
    const job = (async () => {
      try {
        const cfg = targetId ? (RED.nodes.getNode(targetId) as TargetNode | null) : null;
        if (!cfg) throw new ValidationError('no isolation-target is configured for this node', [{ path: 'target', message: 'missing' }]);
        const target = targetForHost(targetOf(cfg), msg.host, allowedHostsOf(cfg.config.allowedHosts));
        host = target.host;
        const state = await action(target, msg, info);
        const audit = auditMessage(node, actionName, msg, state.host, state, info);
        msg.payload = state;
        node.status(stateStatus(state));
        send([msg, audit]);
        done();
      } catch (err) {
        const e = err instanceof Error ? err : new Error(String(err));
        node.status({ fill: 'red', shape: 'ring', text: e instanceof IsolationError ? e.code : 'error' });
        // the record of a failed action still goes out; the message itself ends in the error
        send([null, auditMessage(node, actionName, msg, host, e, info)]);
        done(e);
      } finally {
        running--;
      }
    })();
    inflight.add(job);
    void job.finally(() => inflight.delete(job));
  });

  node.on('close', (_removed: boolean, done: () => void) => {
    void Promise.allSettled([...inflight]).then(() => done());
  });
}
