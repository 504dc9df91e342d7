/**
 * The case and requester of an action (`msg.case`, `msg.requestedBy`). They describe the request,
 * not the isolation, so any message may set them, like `msg.reason`, whatever `allowOverrides`
 * says; no node property sets them (a fixed case would label every alert's request with one case).
 */
import { hostText, requestMetaSchema, validate, type Case, type HostState, type RequestMeta } from '../../driver';
import type { Msg } from './message';

const given = (v: unknown) => v !== undefined && v !== null && v !== '';

/** A value that is not text, as text for the record (never a throw: a circular object is not JSON). */
function asText(v: unknown): string {
  if (typeof v === 'string') return v;
  try {
    return JSON.stringify(v) ?? String(v);
  } catch {
    return String(v);
  }
}

/** The message's case and requester as a request takes them (unchecked: the driver's schema checks them). */
export function requestMetaOf(msg: Msg): { case?: unknown; requestedBy?: unknown } {
  return { ...(given(msg.case) ? { case: msg.case } : {}), ...(given(msg.requestedBy) ? { requestedBy: msg.requestedBy } : {}) };
}

/**
 * For the actions that only audit them (exception-set, unisolate-host): the same schema as
 * isolate's, so a bad one is VALIDATION before any connection there too.
 */
export function checkedRequestMeta(msg: Msg): RequestMeta {
  return validate(requestMetaSchema, requestMetaOf(msg), 'msg');
}

/**
 * What an audit record says of the case and requester: the message's, as asked for (bounded and
 * clean: when the schema refused them they are the alert's own text), else the host's record.
 */
export function auditedRequest(msg: Msg, result: HostState | Error): { case: Case | null; requestedBy: string | null } {
  const host = result instanceof Error ? null : result;
  const c = msg.case as { id?: unknown; url?: unknown } | undefined;
  const kase: Case | null = given(msg.case)
    ? { id: hostText(asText(c?.id ?? c), 64), ...(typeof c?.url === 'string' ? { url: hostText(c.url, 512) } : {}) }
    : host?.case ? { id: hostText(host.case.id, 64), ...(host.case.url !== undefined ? { url: hostText(host.case.url, 512) } : {}) } : null;
  const by = given(msg.requestedBy) ? msg.requestedBy : (host?.requestedBy ?? null);
  return { case: kase, requestedBy: by === null ? null : hostText(asText(by), 128) };
}
