/**
 * The wrapper that ends every input message of an action node in exactly one send or one error,
 * also when the node is closed while an operation runs.
 */
import type { Node, NodeAPI } from 'node-red';
import { BlastRadiusError, hostText, IsolationError, MAX_ERROR_MESSAGE, targetForHost, ValidationError, type ApplyInfo, type HostState, type TargetInput } from '../../driver';
import { auditMessage } from './audit';
import { fanOut, fleetCap, type FleetCap } from './fanout';
import type { Action, Msg } from './message';
import { fleetLimit } from './settings';
import { Status } from './status';
import { allowedHostsOf, targetOf, type TargetNode } from './target';

/**
 * Wires `input` and `close` for an action node. Each message: `prepare` it once (read and check
 * what the node takes from it, also when `msg.hosts` names many hosts; a throw ends the message
 * in its error), resolve the target (allowlist first, before any connection), run the action with
 * what `prepare` returned, then `send` the message with the state as payload, or `done(err)` with
 * the driver's coded error. `cap` bounds how many hosts one `msg.hosts` may name (default: the
 * runtime's isolationTargetMaxHosts); over it, the message is one BLAST_RADIUS error before any
 * connection. `close` waits for running operations, which the driver bounds in
 * time, so none is dropped on a redeploy.
 */
export function handleInput<P = undefined>(
  RED: NodeAPI,
  node: Node,
  targetId: string | undefined,
  actionWith: (target: TargetInput, msg: Msg, info: ApplyInfo, prepared: P) => Promise<HostState>,
  actionName: string = node.type,
  prepare?: (msg: Msg) => P,
  cap: FleetCap = fleetCap(undefined, null, fleetLimit(RED.settings as unknown as Record<string, unknown>)),
): void {
  const status = new Status(RED, node);
  const inflight = new Set<Promise<void>>();
  let running = 0;

  // at deploy: a missing or invalid target shows now, not at the first alert (config nodes start first)
  const configured = targetId ? (RED.nodes.getNode(targetId) as TargetNode | null) : null;
  if (!configured) status.set('red', 'ring', 'noTarget');
  else if (configured.problem) status.targetProblem('targetInvalid', configured.problem);
  else status.clear(); // clears what an earlier deploy showed (a fixed target, say)
  // a protected name that never resolved (known a moment later): the target refuses every isolation
  let acted = false;
  void configured?.protection?.then((err) => {
    if (err && !acted) status.targetProblem('targetProblem', err);
  });

  node.on('input', (msgIn, send, done) => {
    const msg = msgIn as Msg;
    acted = true;
    running++;
    if (running > 1) status.set('blue', 'dot', 'workingMany', { count: running });
    else status.set('blue', 'dot', 'working');
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
          await fanOut(node, status, cfg, msg, action, actionName, send, cap);
          done();
          return;
        }
        const target = targetForHost(targetOf(cfg), msg.host, allowedHostsOf(cfg.config.allowedHosts));
        host = target.host;
        const state = await action(target, msg, info);
        const audit = auditMessage(node, actionName, msg, state.host, state, info);
        msg.payload = state;
        status.state(state);
        // what the action could not fully do (connections left open, say) is said in the log too
        for (const w of state.warnings) node.warn(`${state.host}: ${hostText(w, MAX_ERROR_MESSAGE)}`);
        send([msg, audit]);
        done();
      } catch (err) {
        const e = err instanceof Error ? err : new Error(String(err));
        // a coded error's message is bounded already; any other goes to the Catch node bounded too
        if (!(e instanceof IsolationError)) e.message = hostText(e.message, MAX_ERROR_MESSAGE);
        status.failed(e);
        // the record of a failed action still goes out; the message itself ends in the error
        const fleet = e instanceof BlastRadiusError ? { asked: e.asked, maxHosts: e.maxHosts } : undefined;
        send([null, auditMessage(node, actionName, msg, host, e, info, fleet)]);
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
