import type { Node, NodeAPI, NodeDef } from 'node-red';
import { handleInput, sharedDriver } from './shared';

export = function (RED: NodeAPI): void {
  const driver = sharedDriver(RED.settings as unknown as Record<string, unknown>);
  function IsolationStatusNode(this: Node, config: NodeDef & { target: string }) {
    RED.nodes.createNode(this, config);
    handleInput(RED, this, config.target, (target) => driver.status(target), 'status');
  }
  RED.nodes.registerType('isolation-status', IsolationStatusNode);
};
