import type { Node, NodeAPI, NodeDef } from 'node-red';
import { driver, handleInput } from './shared';

export = function (RED: NodeAPI): void {
  function IsolationStatusNode(this: Node, config: NodeDef & { target: string }) {
    RED.nodes.createNode(this, config);
    handleInput(RED, this, config.target, (target) => driver.status(target), 'status');
  }
  RED.nodes.registerType('isolation-status', IsolationStatusNode);
};
