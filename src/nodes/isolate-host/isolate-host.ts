import type { Node, NodeAPI, NodeDef } from 'node-red';
import { IsolationError, ValidationError, type Exception, type IsolateRequestInput, type PresetName } from '../../driver';
import {
  arrayField,
  auditMessage,
  DEFAULT_NODE_MAX_HOSTS,
  fleetCap,
  fleetLimit,
  handleInput,
  isAway,
  PENDING_MAX_SECONDS,
  pendingSeconds,
  pendingState,
  pendingStore,
  pendingView,
  requestMetaOf,
  sharedDriver,
  startConfig,
  Status,
  wallOf,
  type Msg,
  type PendingEntry,
  type PendingOutcome,
  type TargetNode,
} from '../common';
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
  /** seconds a host that is away keeps its isolation pending (0: off, the default; at most 7 days) */
  pendingFor?: number | string;
}

/**
 * The message fields that decide how hard the host is contained. An alert (untrusted data) could
 * weaken an isolation through any of them (audit instead of enforce, a release after a second,
 * exceptions of its own), so they count only when the node is configured to let the message decide.
 */
const OVERRIDE_FIELDS = ['mode', 'force', 'persist', 'duration', 'presets', 'exceptions', 'probe', 'pendingFor'] as const;

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
    const prepare = (msg: Msg): { req: IsolateRequestInput; pendingFor: number } => {
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
      const pendingFor = pendingSeconds(from.pendingFor ?? config.pendingFor);
      if (pendingFor === null) {
        throw new ValidationError(`pendingFor must be a whole number of seconds from 0 (off) to ${PENDING_MAX_SECONDS} (7 days)`, [{ path: 'pendingFor', message: 'invalid' }]);
      }
      const req: IsolateRequestInput = {
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
      return { req, pendingFor };
    };

    const targetNode = () => (config.target ? (RED.nodes.getNode(config.target) as TargetNode | null) : null);
    if ((pendingSeconds(config.pendingFor) ?? 0) > 0 && !pendingStore(settings).persistent) {
      this.warn('pending isolations are kept in a memory context store: a restart of Node-RED loses them (name a persistent store in settings.js isolationTargetPendingStore)');
    }

    // the outcome of a pending isolation this node asked for: its status, a message, its audit record
    const status = new Status(RED, this);
    (this as Node & { pendingOutcome?: (e: PendingEntry, o: PendingOutcome) => void }).pendingOutcome = (e, o) => {
      const view = { outcome: o.outcome, host: e.host, ...pendingView(e) };
      const msg = {
        _msgid: RED.util.generateId(),
        topic: 'host-isolation/pending',
        host: e.host,
        ...(e.request.reason !== undefined ? { reason: e.request.reason } : {}),
        ...(e.request.case !== undefined ? { case: e.request.case } : {}),
        ...(e.request.requestedBy !== undefined ? { requestedBy: e.request.requestedBy } : {}),
        pendingOutcome: view,
      } as unknown as Msg;
      const result = o.outcome === 'applied' ? o.state : (o.error ?? new Error(o.outcome));
      const audit = auditMessage(this, 'isolate', msg, e.host, result, { digest: o.outcome === 'applied' ? o.digest : undefined });
      (audit.payload as unknown as Record<string, unknown>).pending = view;
      if (o.outcome === 'applied') {
        msg.payload = o.state;
        status.set('green', 'dot', 'pendingApplied', { host: e.host });
        this.send([msg, audit]);
      } else if (o.outcome === 'expired') {
        msg.payload = { host: e.host, state: 'expired', isolated: false, pending: pendingView(e) };
        status.set('yellow', 'ring', 'pendingEnded', { host: e.host, outcome: 'expired' });
        this.warn(o.error?.message ?? `pending isolation of ${e.host} expired`);
        this.send([msg, audit]);
      } else {
        status.set('red', 'ring', 'pendingEnded', { host: e.host, outcome: o.error instanceof IsolationError ? o.error.code : o.outcome });
        this.send([null, audit]);
        this.error(o.error ?? new Error(`pending isolation of ${e.host} ${o.outcome}`), msg);
      }
    };

    // the blast radius of one message: a fleet isolation is allowed on purpose, in the node, never by the message
    const cap = fleetCap(config.maxHosts, DEFAULT_NODE_MAX_HOSTS, fleetLimit(settings), (t) => this.warn(t));
    handleInput(
      RED,
      this,
      config.target,
      async (target, _msg, info, p) => {
        try {
          const state = await driver.isolate(target, p.req, info);
          // isolated now as this message asked: an older pending request must not replace it later
          targetNode()?.pending?.cancel(target.host);
          return state;
        } catch (err) {
          const queue = targetNode()?.pending;
          if (p.pendingFor === 0 || !isAway(err) || !queue) throw err;
          // away: kept pending (a new request for the same host replaces the one kept), answered at once
          return pendingState(queue.add(target.host, this.id, p.req, p.pendingFor, err as IsolationError));
        }
      },
      'isolate',
      prepare,
      cap,
    );
  }
  RED.nodes.registerType('isolate-host', IsolateHostNode);
};
