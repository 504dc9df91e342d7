/** `msg.hosts`: one action on many hosts, one message on with an answer per host. */
import type { Node, NodeMessage } from 'node-red';
import { BlastRadiusError, targetForHost, ValidationError, type ApplyInfo, type HostState } from '../../driver';
import { auditMessage, errorSummary } from './audit';
import type { Action, Msg } from './message';
import type { Status } from './status';
import { allowedHostsOf, targetOf, type TargetNode } from './target';

/** isolate-host's and exception-set's Max hosts for a new node: a fleet action is raised to on purpose. */
export const DEFAULT_NODE_MAX_HOSTS = 10;

/**
 * How many hosts one message may act on (the blast radius of one slip): the node's own Max hosts,
 * never more than the runtime's bound (isolationTargetMaxHosts), and what set it, for the error.
 */
export interface FleetCap {
  maxHosts: number;
  /** what decided maxHosts, named in a BLAST_RADIUS error */
  why: string;
  /** the node's Max hosts is not a whole number >= 1: every msg.hosts message fails with it */
  problem?: ValidationError;
}

/** How many hosts asked and the cap, in the fleet answer (msg.fleet) and each of its audit records. */
export interface FleetCount {
  asked: number;
  maxHosts: number;
}

/**
 * A node's cap from its Max hosts (`configured`): blank is `nodeDefault`, or the runtime's bound
 * when the node has none of its own (unisolate-host, isolation-status); above the bound it is the
 * bound (`warn` says so once, at deploy: settings.js wins).
 */
export function fleetCap(configured: unknown, nodeDefault: number | null, bound: number, warn: (text: string) => void = () => {}): FleetCap {
  const runtime = { maxHosts: bound, why: 'isolationTargetMaxHosts in settings.js' };
  const blank = configured === undefined || configured === null || (typeof configured === 'string' && configured.trim() === '');
  if (blank) return nodeDefault === null || nodeDefault > bound ? runtime : { maxHosts: nodeDefault, why: "this node's Max hosts (its default)" };
  const n = typeof configured === 'number' ? configured : typeof configured === 'string' ? Number(configured.trim()) : NaN;
  if (!Number.isInteger(n) || n < 1) {
    const problem = new ValidationError("this node's Max hosts must be a whole number >= 1", [{ path: 'maxHosts', message: 'invalid' }]);
    return { ...runtime, maxHosts: 0, problem };
  }
  if (n > bound) {
    warn(`Max hosts ${n} is more than isolationTargetMaxHosts (${bound}) in settings.js: at most ${bound} hosts per message`);
    return runtime;
  }
  return { maxHosts: n, why: "this node's Max hosts" };
}

/** One host's answer in a fan-out: its state, or its error. */
export interface HostResult {
  host: string;
  ok: boolean;
  state?: HostState;
  error?: { code: string; message: string };
}

/** The distinct hosts of msg.hosts, or the message's error: VALIDATION, or BLAST_RADIUS over the cap. */
function hostsOf(msg: Msg, cap: FleetCap): string[] {
  const v = msg.hosts;
  const bad = (why: string) => new ValidationError(`msg.hosts ${why}`, [{ path: 'msg.hosts', message: why }]);
  if (msg.host !== undefined && msg.host !== null) throw bad('and msg.host cannot be used together');
  if (!Array.isArray(v) || v.length === 0) throw bad('must be a non-empty array of host names or addresses');
  if (cap.problem) throw cap.problem;
  if (!v.every((h) => typeof h === 'string')) throw bad('must contain strings only');
  // a host named twice is acted on once: the cap counts the hosts the action would touch
  const hosts = [...new Set(v as string[])];
  if (hosts.length > cap.maxHosts) throw new BlastRadiusError(hosts.length, cap.maxHosts, cap.why);
  return hosts;
}

/**
 * `msg.hosts`: the action on every host at once (the driver bounds how many run together and
 * keeps each host's operations in order). More distinct hosts than `cap` allows: one
 * BLAST_RADIUS error for the whole message, before any connection. The message goes on once,
 * with `msg.payload` the answer of each host in the order given, `{ host, ok, state }` or
 * `{ host, ok: false, error }`, and `msg.fleet` `{ asked, maxHosts }`; each host also yields its
 * audit record (with the same `fleet`). A host the allowlist refuses fails alone, unconnected.
 */
export async function fanOut(node: Node, status: Status, cfg: TargetNode, msg: Msg, action: Action, actionName: string, send: (m: (NodeMessage | null)[]) => void, cap: FleetCap): Promise<void> {
  const hosts = hostsOf(msg, cap);
  const fleet: FleetCount = { asked: hosts.length, maxHosts: cap.maxHosts };
  const base = targetOf(cfg);
  const allowed = allowedHostsOf(cfg.config.allowedHosts);
  let finished = 0;
  const results = await Promise.all(
    hosts.map(async (h): Promise<HostResult> => {
      const info: ApplyInfo = {};
      try {
        const state = await action(targetForHost(base, h, allowed), msg, info);
        send([null, auditMessage(node, actionName, msg, state.host, state, info, fleet)]);
        return { host: state.host, ok: true, state };
      } catch (err) {
        const e = err instanceof Error ? err : new Error(String(err));
        send([null, auditMessage(node, actionName, msg, h, e, info, fleet)]);
        return { host: h, ok: false, error: errorSummary(e) };
      } finally {
        finished++;
        if (finished < hosts.length) status.set('blue', 'dot', 'hostsDone', { done: finished, total: hosts.length });
      }
    }),
  );
  const ok = results.filter((r) => r.ok).length;
  msg.payload = results;
  msg.fleet = fleet;
  status.set(ok === results.length ? 'green' : ok === 0 ? 'red' : 'yellow', 'dot', 'hostsOk', { ok, total: results.length });
  send([msg, null]);
}
