/** `msg.hosts`: one action on many hosts, one message on with an answer per host. */
import type { Node, NodeMessage } from 'node-red';
import { targetForHost, ValidationError, type ApplyInfo, type HostState } from '../../driver';
import { auditMessage, errorSummary } from './audit';
import type { Action, Msg } from './message';
import type { Status } from './status';
import { allowedHostsOf, targetOf, type TargetNode } from './target';

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
export async function fanOut(node: Node, status: Status, cfg: TargetNode, msg: Msg, action: Action, actionName: string, send: (m: (NodeMessage | null)[]) => void): Promise<void> {
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
        if (finished < hosts.length) status.set('blue', 'dot', 'hostsDone', { done: finished, total: hosts.length });
      }
    }),
  );
  const ok = results.filter((r) => r.ok).length;
  msg.payload = results;
  status.set(ok === results.length ? 'green' : ok === 0 ? 'red' : 'yellow', 'dot', 'hostsOk', { ok, total: results.length });
  send([msg, null]);
}
