import type { Node, NodeAPI, NodeDef } from 'node-red';
import { checkedRequestMeta, handleInput, sharedDriver, startConfig, wallOf } from '../common';
import { MIGRATIONS } from './migrations';

export = function (RED: NodeAPI): void {
  const driver = sharedDriver(RED.settings as unknown as Record<string, unknown>);
  function UnisolateHostNode(this: Node, saved: NodeDef & { target: string; wall?: string }) {
    RED.nodes.createNode(this, saved);
    const config = startConfig(this, saved, MIGRATIONS);
    // msg.case and msg.requestedBy go to the audit record only (checked first: a bad one changes nothing)
    handleInput(RED, this, config.target, (target, msg, info) => driver.unisolate(target, { wall: wallOf(msg, config.wall) }, info), 'unisolate', checkedRequestMeta);
  }
  RED.nodes.registerType('unisolate-host', UnisolateHostNode);
};
