/**
 * What every node shares: one driver (one connection pool) for the whole runtime, the target built
 * from the config node and its credentials, and the wrapper that ends every input message in
 * exactly one send or one error, also when the node is closed while an operation runs.
 */
import type { Node, NodeAPI, NodeMessage, NodeMessageInFlow, NodeStatus } from 'node-red';
import {
  allowedHostsSchema,
  hostText,
  IsolationDriver,
  IsolationError,
  MAX_ERROR_MESSAGE,
  ProtectedUnresolvedError,
  targetForHost,
  targetSchema,
  validate,
  ValidationError,
  type ApplyInfo,
  type HostState,
  type TargetInput,
} from '../driver';
import { parseKnownHosts } from '../driver/knownhosts';
import { driverOptions } from './settings';

export const CATEGORY = 'host isolation';

let shared: IsolationDriver | undefined;

/**
 * The driver every node uses: connections to a host are pooled and its operations serialised. Built
 * once, by the first node module the runtime loads, with the limits of settings.js (see
 * settings.ts; a bad value throws, and the pack does not load). Later calls return the same driver.
 */
export function sharedDriver(settings?: Record<string, unknown>): IsolationDriver {
  if (!shared) shared = new IsolationDriver(settings ? driverOptions(settings) : {});
  return shared;
}

export interface TargetCredentials {
  privateKey?: string;
  passphrase?: string;
  password?: string;
  /** the jump host's own credentials (when it is given by its fields, not by another target) */
  jumpPrivateKey?: string;
  jumpPassphrase?: string;
  jumpPassword?: string;
}

export interface TargetConfig {
  name?: string;
  host: string;
  port?: number | string;
  username: string;
  allowedHosts?: string[] | string;
  managementCidrs?: string[] | string;
  protectedHosts?: string[] | string;
  /** the servers the dns, ntp and ldap/ldaps presets open to; empty: read from the host */
  dnsServers?: string[] | string;
  ntpServers?: string[] | string;
  ldapServers?: string[] | string;
  knownHosts: string;
  sudo?: boolean;
  timeout?: number | string;
  /** another isolation-target used as the jump host (its host, port, user, key and credentials) */
  jumpTarget?: string;
  /** or the jump host's own fields */
  jumpHost?: string;
  jumpPort?: number | string;
  jumpUser?: string;
  jumpKnownHosts?: string;
}

export interface TargetNode extends Node<TargetCredentials> {
  config: TargetConfig;
  /** what failed the check when the flow started (see targetProblem), or null */
  problem: IsolationError | null;
  /**
   * the protected names (and the jump host's name) resolved when the flow started: null when all
   * resolved, else the PROTECTED_UNRESOLVED error (the driver then refuses every isolation)
   */
  protection?: Promise<IsolationError | null>;
  /** the isolation-target named as `jumpTarget`, looked up when an action needs it */
  jumpNode?: () => TargetNode | null;
}

/** The jump host of a config node, if it names one; the driver validates every field of it. */
function jumpOf(node: TargetNode, atDeploy = false): TargetInput['jump'] {
  const c = node.config;
  if (c.jumpTarget) {
    const j = node.jumpNode?.() ?? null;
    // at deploy the named target may simply not be built yet: it is checked on its own, and here at the first action
    if (!j && atDeploy) return undefined;
    if (!j) throw new ValidationError('the isolation-target named as jump host is not deployed', [{ path: 'target.jumpTarget', message: 'missing' }]);
    if (j.config.jumpTarget || j.config.jumpHost) {
      throw new ValidationError('a jump host reached through another jump host is not supported', [{ path: 'target.jumpTarget', message: 'chained jump' }]);
    }
    const cred = j.credentials ?? {};
    return {
      host: j.config.host,
      port: num(j.config.port, 22),
      username: j.config.username,
      knownHosts: j.config.knownHosts,
      privateKey: cred.privateKey || undefined,
      passphrase: cred.passphrase || undefined,
      password: cred.password || undefined,
    };
  }
  if (!c.jumpHost || c.jumpHost.trim() === '') return undefined;
  const cred = node.credentials ?? {};
  return {
    host: c.jumpHost,
    port: num(c.jumpPort, 22),
    username: c.jumpUser ?? '',
    knownHosts: c.jumpKnownHosts ?? '',
    privateKey: cred.jumpPrivateKey || undefined,
    passphrase: cred.jumpPassphrase || undefined,
    password: cred.jumpPassword || undefined,
  };
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

/** The servers named on the config node, per kind; a kind left empty is read from the host. */
function serversOf(c: TargetConfig): { servers?: Record<string, string[]> } {
  const servers: Record<string, string[]> = {};
  for (const [kind, v] of [['dns', c.dnsServers], ['ntp', c.ntpServers], ['ldap', c.ldapServers]] as const) {
    const list = allowedHostsOf(v);
    if (list.length > 0) servers[kind] = list;
  }
  return Object.keys(servers).length > 0 ? { servers } : {};
}

/** The driver target for the config node; the driver validates every field of it. */
export function targetOf(node: TargetNode, atDeploy = false): TargetInput {
  const c = node.config;
  const cred = node.credentials ?? {};
  const jump = jumpOf(node, atDeploy);
  return {
    host: c.host,
    port: num(c.port, 22),
    username: c.username,
    knownHosts: c.knownHosts,
    sudo: c.sudo === true,
    timeoutMs: Math.round(num(c.timeout, 20) * 1000),
    managementCidrs: allowedHostsOf(c.managementCidrs),
    protectedHosts: allowedHostsOf(c.protectedHosts),
    ...serversOf(c),
    privateKey: cred.privateKey || undefined,
    passphrase: cred.passphrase || undefined,
    password: cred.password || undefined,
    ...(jump ? { jump } : {}),
  };
}

/**
 * The config node's check when the flow starts: every field as the driver will validate it, the
 * allowlist, and the known_hosts lines, so that a bad host, CIDR or key line shows at deploy, not
 * at the first alert. Null when all pass.
 */
export function targetProblem(node: TargetNode): IsolationError | null {
  try {
    const target = validate(targetSchema, targetOf(node, true), 'target');
    if (target.jump) parseKnownHosts(target.jump.knownHosts);
    validate(allowedHostsSchema, allowedHostsOf(node.config.allowedHosts), 'target.allowedHosts');
    const keys = parseKnownHosts(typeof node.config.knownHosts === 'string' ? node.config.knownHosts : '').filter((e) => e.marker === undefined);
    if (keys.length === 0) {
      throw new ValidationError('knownHosts holds no host key line: pin the host key (ssh-keyscan -t ed25519 HOST)', [{ path: 'target.knownHosts', message: 'no host key' }]);
    }
    return null;
  } catch (err) {
    if (err instanceof IsolationError) return err;
    throw err;
  }
}

/**
 * Resolves the target's protected names and its jump host's name when the flow starts, in the
 * shared driver, which keeps them refreshed until the config node closes. A name that never
 * resolved is logged on the config node; the nodes that use the target show it in their status.
 */
export function prepareProtection(node: TargetNode, driver: IsolationDriver): Promise<IsolationError | null> {
  const target = targetOf(node, true);
  const ready = driver.prepareProtection(target).then(
    () => null,
    (err: unknown) => {
      const e = err instanceof IsolationError ? err : new IsolationError('VALIDATION', String(err));
      node.error(e.message);
      return e;
    },
  );
  node.on('close', () => driver.releaseProtection(target));
  return ready;
}

/** A target problem in a few words, for a node status: the field, else the message. */
export function problemText(err: IsolationError): string {
  if (err instanceof ProtectedUnresolvedError) return `${err.unresolved} does not resolve`;
  const issue = err instanceof ValidationError ? err.issues[0] : undefined;
  // the driver's names for what the config node calls otherwise
  const field = issue?.path.replace(/^target\.?/, '').replace(/^timeoutMs$/, 'timeout');
  if (field) return field;
  return err.message.replace(/^invalid target: target: /, '').split(':')[0].slice(0, 60);
}

/** Most characters of a node's status text (the editor shows one short line under the node). */
export const MAX_STATUS_TEXT = 64;

/** A node status whose text is clean and at most MAX_STATUS_TEXT characters. */
export function nodeStatus(fill: NodeStatus['fill'], shape: NodeStatus['shape'], text: string): NodeStatus {
  return { fill, shape, text: hostText(text, MAX_STATUS_TEXT) };
}

/** An error as a flow sees it in an audit record or a fan-out row: its code and a clean, bounded message. */
export function errorSummary(e: Error): { code: string; message: string } {
  return { code: e instanceof IsolationError ? e.code : 'ERROR', message: hostText(e.message, MAX_ERROR_MESSAGE) };
}

/**
 * green only when traffic is dropped and all went as asked; isolated with a warning (connections
 * left open, say) is a yellow dot; audit mode (nothing dropped) is a yellow ring
 */
export function stateStatus(state: HostState): NodeStatus {
  const since = state.since ? new Date(state.since).toISOString().slice(11, 16) : '?';
  if (state.state === 'isolated' && state.warnings.length > 0) return nodeStatus('yellow', 'dot', `${state.host} isolated since ${since}, see warnings`);
  if (state.state === 'isolated') return nodeStatus('green', 'dot', `${state.host} isolated since ${since}`);
  if (state.state === 'audit') return nodeStatus('yellow', 'ring', `${state.host} audit since ${since}`);
  return nodeStatus('grey', 'ring', `${state.host} not isolated`);
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
  state?: HostState['state'];
  /** whether the action changed the host (open a ticket once, not on every alert) */
  changed?: boolean;
  mode?: string | null;
  since?: string | null;
  expiresAt?: string | null;
  exceptions?: number;
  /** sha256 of the nft batch this action applied (null for reads) */
  digest: string | null;
}

function boundedReason(reason: string | null): string | null {
  return reason === null ? null : hostText(reason, 1024);
}

function auditMessage(node: Node, action: string, msg: Msg, host: string | null, result: HostState | Error, info: ApplyInfo): { topic: string; payload: AuditRecord } {
  const record: AuditRecord = {
    when: new Date().toISOString(),
    node: { id: node.id, type: node.type, name: node.name ?? '' },
    // as asked for: when the allowlist or the schema refused it, it is the alert's own text
    host: host === null ? null : hostText(host, 256),
    action,
    // the reason may come back from the host's own record: bounded and clean like any host text
    reason: boundedReason(typeof msg.reason === 'string' ? msg.reason : result instanceof Error ? null : result.reason),
    result: result instanceof Error ? 'error' : 'ok',
    digest: info.digest ?? null,
  };
  if (result instanceof Error) {
    record.error = errorSummary(result);
  } else {
    Object.assign(record, { isolated: result.isolated, state: result.state, changed: result.changed, mode: result.mode, since: result.since, expiresAt: result.expiresAt, exceptions: result.exceptions.length });
  }
  return { topic: 'host-isolation/audit', payload: record };
}

/** Most hosts one message may name in `msg.hosts`. */
export const MAX_FANOUT = 1000;

/** One host's answer in a fan-out: its state, or its error. */
export interface HostResult {
  host: string;
  ok: boolean;
  state?: HostState;
  error?: { code: string; message: string };
}

function hostsOf(msg: Msg): string[] {
  const v = msg.hosts;
  const bad = (why: string) => new ValidationError(`msg.hosts ${why}`, [{ path: 'msg.hosts', message: why }]);
  if (msg.host !== undefined && msg.host !== null) throw bad('and msg.host cannot be used together');
  if (!Array.isArray(v) || v.length === 0) throw bad('must be a non-empty array of host names or addresses');
  if (v.length > MAX_FANOUT) throw bad(`names more than ${MAX_FANOUT} hosts`);
  if (!v.every((h) => typeof h === 'string')) throw bad('must contain strings only');
  return [...new Set(v as string[])];
}

/**
 * `msg.hosts`: the action on every host at once (the driver bounds how many run together and
 * keeps each host's operations in order). The message goes on once, with `msg.payload` the
 * answer of each host in the order given, `{ host, ok, state }` or `{ host, ok: false, error }`;
 * each host also yields its audit record. A host the allowlist refuses fails alone, unconnected.
 */
async function fanOut(node: Node, cfg: TargetNode, msg: Msg, action: Action, actionName: string, send: (m: (NodeMessage | null)[]) => void): Promise<void> {
  const hosts = hostsOf(msg);
  const base = targetOf(cfg);
  const allowed = allowedHostsOf(cfg.config.allowedHosts);
  let finished = 0;
  const results = await Promise.all(
    hosts.map(async (h): Promise<HostResult> => {
      const info: ApplyInfo = {};
      try {
        const state = await action(targetForHost(base, h, allowed), msg, info);
        send([null, auditMessage(node, actionName, msg, state.host, state, info)]);
        return { host: state.host, ok: true, state };
      } catch (err) {
        const e = err instanceof Error ? err : new Error(String(err));
        send([null, auditMessage(node, actionName, msg, h, e, info)]);
        return { host: h, ok: false, error: errorSummary(e) };
      } finally {
        finished++;
        if (finished < hosts.length) node.status(nodeStatus('blue', 'dot', `${finished}/${hosts.length} hosts`));
      }
    }),
  );
  const ok = results.filter((r) => r.ok).length;
  msg.payload = results;
  node.status(nodeStatus(ok === results.length ? 'green' : ok === 0 ? 'red' : 'yellow', 'dot', `${ok}/${results.length} hosts ok`));
  send([msg, null]);
}

/**
 * Wires `input` and `close` for an action node. Each message: `prepare` it once (read and check
 * what the node takes from it, also when `msg.hosts` names many hosts; a throw ends the message
 * in its error), resolve the target (allowlist first, before any connection), run the action with
 * what `prepare` returned, then `send` the message with the state as payload, or `done(err)` with
 * the driver's coded error. `close` waits for running operations, which the driver bounds in
 * time, so none is dropped on a redeploy.
 */
export function handleInput<P = undefined>(
  RED: NodeAPI,
  node: Node,
  targetId: string | undefined,
  actionWith: (target: TargetInput, msg: Msg, info: ApplyInfo, prepared: P) => Promise<HostState>,
  actionName: string = node.type,
  prepare?: (msg: Msg) => P,
): void {
  const inflight = new Set<Promise<void>>();
  let running = 0;

  // at deploy: a missing or invalid target shows now, not at the first alert (config nodes start first)
  const configured = targetId ? (RED.nodes.getNode(targetId) as TargetNode | null) : null;
  if (!configured) node.status({ fill: 'red', shape: 'ring', text: 'no target' });
  else if (configured.problem) node.status(nodeStatus('red', 'ring', `target invalid: ${problemText(configured.problem)}`));
  else node.status({}); // clears what an earlier deploy showed (a fixed target, say)
  // a protected name that never resolved (known a moment later): the target refuses every isolation
  let acted = false;
  void configured?.protection?.then((err) => {
    if (err && !acted) node.status(nodeStatus('red', 'ring', `target: ${problemText(err)}`));
  });

  node.on('input', (msgIn, send, done) => {
    const msg = msgIn as Msg;
    acted = true;
    running++;
    node.status(nodeStatus('blue', 'dot', running > 1 ? `working (${running})` : 'working'));
    const info: ApplyInfo = {};
    let host: string | null = typeof msg.host === 'string' ? msg.host : null;
    const job = (async () => {
      try {
        const cfg = targetId ? (RED.nodes.getNode(targetId) as TargetNode | null) : null;
        if (!cfg) throw new ValidationError('no isolation-target is configured for this node', [{ path: 'target', message: 'missing' }]);
        if (cfg.problem) throw cfg.problem;
        const prepared = (prepare ? prepare(msg) : undefined) as P;
        const action: Action = (t, m, i) => actionWith(t, m, i, prepared);
        if (msg.hosts !== undefined && msg.hosts !== null) {
          await fanOut(node, cfg, msg, action, actionName, send);
          done();
          return;
        }
        const target = targetForHost(targetOf(cfg), msg.host, allowedHostsOf(cfg.config.allowedHosts));
        host = target.host;
        const state = await action(target, msg, info);
        const audit = auditMessage(node, actionName, msg, state.host, state, info);
        msg.payload = state;
        node.status(stateStatus(state));
        // what the action could not fully do (connections left open, say) is said in the log too
        for (const w of state.warnings) node.warn(`${state.host}: ${hostText(w, MAX_ERROR_MESSAGE)}`);
        send([msg, audit]);
        done();
      } catch (err) {
        const e = err instanceof Error ? err : new Error(String(err));
        // a coded error's message is bounded already; any other goes to the Catch node bounded too
        if (!(e instanceof IsolationError)) e.message = hostText(e.message, MAX_ERROR_MESSAGE);
        node.status(nodeStatus('red', 'ring', e instanceof IsolationError ? e.code : 'error'));
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
