export * from './errors';
export { IsolationDriver, nextExceptions, type ApplyInfo, type DriverOptions } from './driver';
export {
  DEFAULT_TABLE,
  ICMP_TYPES,
  PRESET_NAMES,
  allowedHostsSchema,
  protectedHostsSchema,
  exceptionSchema,
  isHostAllowed,
  targetForHost,
  presetListSchema,
  exceptionOpSchema,
  exceptionListSchema,
  isolateRequestSchema,
  unisolateRequestSchema,
  targetSchema,
  jumpSchema,
  modeSchema,
  caseSchema,
  requestedBySchema,
  requestMetaSchema,
  validate,
  type Case,
  type RequestMeta,
  type Exception,
  type ExceptionOp,
  type IsolateRequestInput,
  type UnisolateRequestInput,
  type Mode,
  type PresetName,
  type Target,
  type Jump,
  type TargetInput,
} from './policy';
export { PRESETS, expandPresets } from './presets';
export { ProtectionCheck, type Resolver } from './protect';
export type { Capabilities } from './host/preflight';
export type { HostState, IsolationState, Counter, ObservedFlow } from './state';
export type { ManagementEndpoint } from './ruleset';
