/** The audit record every action yields on its node's second output, for a log or a ticket. */
import type { Node } from 'node-red';
import { hostText, IsolationError, MAX_ERROR_MESSAGE, type ApplyInfo, type HostState } from '../../driver';
import type { Msg } from './message';
import { auditedRequest } from './request';

/** An error as a flow sees it in an audit record or a fan-out row: its code and a clean, bounded message. */
export function errorSummary(e: Error): { code: string; message: string } {
  return { code: e instanceof IsolationError ? e.code : 'ERROR', message: hostText(e.message, MAX_ERROR_MESSAGE) };
}

/** The structured record each action yields on the node's second output, for a log or a ticket. */
export interface AuditRecord {
  when: string;
  node: { id: string; type: string; name: string };
  host: string | null;
  action: string;
  reason: string | null;
  /** the request's case and requester (the message's, else the host's record): this record is the authority */
  case: { id: string; url?: string } | null;
  requestedBy: string | null;
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
  /** msg.hosts only: how many distinct hosts the message asked for, and the node's cap */
  fleet?: { asked: number; maxHosts: number };
  /** a pending isolation (the host was away): since, expires, attempts; on an outcome also `outcome` */
  pending?: unknown;
}

function boundedReason(reason: string | null): string | null {
  return reason === null ? null : hostText(reason, 1024);
}

export function auditMessage(node: Node, action: string, msg: Msg, host: string | null, result: HostState | Error, info: ApplyInfo, fleet?: { asked: number; maxHosts: number }): { topic: string; payload: AuditRecord } {
  const record: AuditRecord = {
    when: new Date().toISOString(),
    node: { id: node.id, type: node.type, name: node.name ?? '' },
    // as asked for: when the allowlist or the schema refused it, it is the alert's own text
    host: host === null ? null : hostText(host, 256),
    action,
    // the reason may come back from the host's own record: bounded and clean like any host text
    reason: boundedReason(typeof msg.reason === 'string' ? msg.reason : result instanceof Error ? null : result.reason),
    ...auditedRequest(msg, result),
    result: result instanceof Error ? 'error' : 'ok',
    digest: info.digest ?? null,
    ...(fleet ? { fleet } : {}),
  };
  if (result instanceof Error) {
    record.error = errorSummary(result);
  } else {
    const pending = (result as unknown as { pending?: unknown }).pending;
    if (pending !== undefined) record.pending = pending;
    Object.assign(record, { isolated: result.isolated, state: result.state, changed: result.changed, mode: result.mode, since: result.since, expiresAt: result.expiresAt, exceptions: result.exceptions.length });
  }
  return { topic: 'host-isolation/audit', payload: record };
}
