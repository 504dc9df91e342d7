import type { Node, NodeAPI, NodeDef } from 'node-red';
import { ValidationError, type Exception, type IsolateRequestInput, type PresetName } from '../../driver';
import { arrayField, DEFAULT_NODE_MAX_HOSTS, fleetCap, fleetLimit, handleInput, requestMetaOf, sharedDriver, startConfig, wallOf, type Msg } from '../common';
import { MIGRATIONS } from './migrations';

interface IsolateHostConfig extends NodeDef {
  target: string;
  presets?: PresetName[];
  exceptions?: Exception[];
  mode?: string;
  duration?: number | string;
  verify?: boolean;
  force?: boolean;
  wall?: string;
  persist?: boolean;
  /** let msg.mode, msg.force, msg.persist, msg.duration, msg.presets and msg.exceptions decide */
  allowOverrides?: boolean;
  /** most hosts one msg.hosts may name (blank: 10); never more than isolationTargetMaxHosts */
  maxHosts?: number | string;
  /**
   * the blocking probe: an address the host must fail to reach once isolated (blank: none), and
   * its TCP port (blank: 443). No config version step: a flow saved before has none, which is
   * what blank means
   */
  probeAddr?: string;
  probePort?: number | string;
}

/**
 * The message fields that decide how hard the host is contained. An alert (untrusted data) could
 * weaken an isolation through any of them (audit instead of enforce, a release after a second,
 * exceptions of its own), so they count only when the node is configured to let the message decide.
 */
const OVERRIDE_FIELDS = ['mode', 'force', 'persist', 'duration', 'presets', 'exceptions', 'probe'] as const;

const present = (v: unknown) => v !== undefined && v !== null;

/** The request's probe field: none at all without a probe (a request without one is as before). */
const probeField = (probe: IsolateRequestInput['probe']): Pick<IsolateRequestInput, 'probe'> => (probe === undefined ? {} : { probe });

/** The node's probe as the driver takes it (checked there): none when its address is blank. */
function probeOf(addr: unknown, port: unknown): IsolateRequestInput['probe'] {
  if (typeof addr !== 'string' || addr.trim() === '') return undefined;
  const p = port === undefined || port === null || port === '' ? undefined : Number(port);
  return { addr: addr.trim(), ...(p === undefined ? {} : { port: p }) };
}

export = function (RED: NodeAPI): void {
  const settings = RED.settings as unknown as Record<string, unknown>;
  const driver = sharedDriver(settings);
  function IsolateHostNode(this: Node, saved: IsolateHostConfig) {
    RED.nodes.createNode(this, saved);
    const config = startConfig(this, saved, MIGRATIONS);
    // no preset unless chosen: the management channel is kept anyway
    const presets = Array.isArray(config.presets) ? config.presets : [];
    const exceptions = Array.isArray(config.exceptions) ? config.exceptions : [];
    const allowOverrides = config.allowOverrides === true;

    /** The request, once per message (also for msg.hosts): the node's settings, and msg fields as allowed. */
    const prepare = (msg: Msg): IsolateRequestInput => {
      if (!allowOverrides) {
        const ignored = OVERRIDE_FIELDS.filter((f) => present(msg[f]));
        if (ignored.length > 0) {
          this.warn(`ignored ${ignored.map((f) => `msg.${f}`).join(', ')}: this node's settings decide (tick "Overrides" on the node to let the message decide)`);
        }
      }
      const from: Record<string, unknown> = allowOverrides ? msg : {};
      const raw = from.duration ?? config.duration ?? 0;
      const duration = raw === '' ? 0 : Number(raw);
      if (typeof raw === 'object' || typeof raw === 'boolean' || !Number.isInteger(duration) || duration < 0) {
        throw new ValidationError('duration must be a whole number of seconds >= 0 (0 = until unisolated)', [{ path: 'duration', message: 'invalid' }]);
      }
      return {
        duration,
        presets: [...presets, ...(allowOverrides ? arrayField(msg, 'presets') : [])] as PresetName[],
        exceptions: [...exceptions, ...(allowOverrides ? arrayField(msg, 'exceptions') : [])] as Exception[],
        mode: (from.mode ?? config.mode ?? 'enforce') as IsolateRequestInput['mode'],
        reason: msg.reason === undefined || msg.reason === null ? undefined : (msg.reason as string),
        // like the reason, the case and requester describe the request, not the isolation's shape:
        // taken from any message, checked by the driver's schema
        ...(requestMetaOf(msg) as Pick<IsolateRequestInput, 'case' | 'requestedBy'>),
        force: (from.force ?? config.force ?? false) as boolean,
        verify: config.verify !== false,
        wall: wallOf(msg, config.wall),
        persist: (from.persist ?? config.persist ?? false) as boolean,
        // a message's probe could roll an isolation back (one its exceptions let through): an override
        ...probeField(allowOverrides && present(msg.probe) ? (msg.probe as IsolateRequestInput['probe']) : probeOf(config.probeAddr, config.probePort)),
      };
    };

    // the blast radius of one message: a fleet isolation is allowed on purpose, in the node, never by the message
    const cap = fleetCap(config.maxHosts, DEFAULT_NODE_MAX_HOSTS, fleetLimit(settings), (t) => this.warn(t));
    handleInput(RED, this, config.target, (target, _msg, info, req) => driver.isolate(target, req, info), 'isolate', prepare, cap);
  }
  RED.nodes.registerType('isolate-host', IsolateHostNode);
};
