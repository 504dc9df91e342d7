/** What the nodes read from a message. */
import type { NodeMessageInFlow } from 'node-red';
import { ValidationError, type ApplyInfo, type HostState, type TargetInput } from '../../driver';

export type Msg = NodeMessageInFlow & Record<string, unknown>;

export type Action = (target: TargetInput, msg: Msg, info: ApplyInfo) => Promise<HostState>;

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
