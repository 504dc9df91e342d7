import type { Node, NodeAPI, NodeDef } from 'node-red';
import type { Exception, ExceptionOp } from '../../driver';
import { arrayField, checkedRequestMeta, DEFAULT_NODE_MAX_HOSTS, fleetCap, fleetLimit, handleInput, sharedDriver, startConfig } from '../common';
import { MIGRATIONS } from './migrations';

interface ExceptionSetConfig extends NodeDef {
  target: string;
  op?: ExceptionOp;
  exceptions?: Exception[];
  /** most hosts one msg.hosts may name (blank: 10); never more than isolationTargetMaxHosts */
  maxHosts?: number | string;
}

export = function (RED: NodeAPI): void {
  const settings = RED.settings as unknown as Record<string, unknown>;
  const driver = sharedDriver(settings);
  function ExceptionSetNode(this: Node, saved: ExceptionSetConfig) {
    RED.nodes.createNode(this, saved);
    const config = startConfig(this, saved, MIGRATIONS);
    const exceptions = Array.isArray(config.exceptions) ? config.exceptions : [];
    handleInput(
      RED,
      this,
      config.target,
      (target, msg, info) => driver.setExceptions(target, (msg.op ?? config.op ?? 'add') as ExceptionOp, [...exceptions, ...arrayField(msg, 'exceptions')], info),
      'exception-set',
      // msg.case and msg.requestedBy go to the audit record only (checked first: a bad one changes nothing)
      checkedRequestMeta,
      // an exception opens a hole in an isolation: as many hosts at once as isolate-host, on purpose
      fleetCap(config.maxHosts, DEFAULT_NODE_MAX_HOSTS, fleetLimit(settings), (t) => this.warn(t)),
    );
  }
  RED.nodes.registerType('exception-set', ExceptionSetNode);
};
