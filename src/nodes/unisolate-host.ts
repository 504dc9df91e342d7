import type { Node, NodeAPI, NodeDef } from 'node-red';
import { driver, handleInput, wallOf } from './shared';

export = function (RED: NodeAPI): void {
  function UnisolateHostNode(this: Node, config: NodeDef & { target: string; wall?: string }) {
    RED.nodes.createNode(this, config);
    handleInput(RED, this, config.target, (target, msg, info) => driver.unisolate(target, { wall: wallOf(msg, config.wall) }, info), 'unisolate');
  }
  RED.nodes.registerType('unisolate-host', UnisolateHostNode);
};
