import type { Node, NodeAPI, NodeDef } from 'node-red';
import { handleInput, sharedDriver, startConfig, wallOf } from '../common';
import { MIGRATIONS } from './migrations';

export = function (RED: NodeAPI): void {
  const driver = sharedDriver(RED.settings as unknown as Record<string, unknown>);
  function UnisolateHostNode(this: Node, saved: NodeDef & { target: string; wall?: string }) {
    RED.nodes.createNode(this, saved);
    const config = startConfig(this, saved, MIGRATIONS);
    handleInput(RED, this, config.target, (target, msg, info) => driver.unisolate(target, { wall: wallOf(msg, config.wall) }, info), 'unisolate');
  }
  RED.nodes.registerType('unisolate-host', UnisolateHostNode);
};
