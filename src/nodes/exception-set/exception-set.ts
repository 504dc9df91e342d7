import type { Node, NodeAPI, NodeDef } from 'node-red';
import type { Exception, ExceptionOp } from '../../driver';
import { arrayField, checkedRequestMeta, handleInput, sharedDriver, startConfig } from '../common';
import { MIGRATIONS } from './migrations';

interface ExceptionSetConfig extends NodeDef {
  target: string;
  op?: ExceptionOp;
  exceptions?: Exception[];
}

export = function (RED: NodeAPI): void {
  const driver = sharedDriver(RED.settings as unknown as Record<string, unknown>);
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
    );
  }
  RED.nodes.registerType('exception-set', ExceptionSetNode);
};
