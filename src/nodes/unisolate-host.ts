import type { Node, NodeAPI, NodeDef } from 'node-red';
import { driver, handleInput } from './shared';

export = function (RED: NodeAPI): void {
  function UnisolateHostNode(this: Node, config: NodeDef & { target: string }) {
    RED.nodes.createNode(this, config);
    handleInput(RED, this, config.target, (target, _msg, info) => driver.unisolate(target, info), 'unisolate');
  }
  RED.nodes.registerType('unisolate-host', UnisolateHostNode);
};
