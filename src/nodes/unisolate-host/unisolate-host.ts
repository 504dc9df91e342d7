import type { Node, NodeAPI, NodeDef } from 'node-red';
import { checkedRequestMeta, fleetCap, fleetLimit, handleInput, sharedDriver, startConfig, wallOf } from '../common';
import { MIGRATIONS } from './migrations';

export = function (RED: NodeAPI): void {
  const settings = RED.settings as unknown as Record<string, unknown>;
  const driver = sharedDriver(settings);
  function UnisolateHostNode(this: Node, saved: NodeDef & { target: string; wall?: string; maxHosts?: number | string }) {
    RED.nodes.createNode(this, saved);
    const config = startConfig(this, saved, MIGRATIONS);
    // releasing after a mistaken mass isolation must not meet a small cap: blank is the runtime's
    // bound (isolationTargetMaxHosts), and a user who wants a smaller one sets it
    const cap = fleetCap(config.maxHosts, null, fleetLimit(settings), (t) => this.warn(t));
    // msg.case and msg.requestedBy go to the audit record only (checked first: a bad one changes nothing)
    handleInput(RED, this, config.target, (target, msg, info) => driver.unisolate(target, { wall: wallOf(msg, config.wall) }, info), 'unisolate', checkedRequestMeta, cap);
  }
  RED.nodes.registerType('unisolate-host', UnisolateHostNode);
};
