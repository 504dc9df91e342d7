import type { Node, NodeAPI, NodeDef } from 'node-red';
import { ValidationError } from '../../driver';
import { handleInput, isAway, pendingState, pendingView, sharedDriver, startConfig, type TargetNode } from '../common';
import { MIGRATIONS } from './migrations';

export = function (RED: NodeAPI): void {
  const driver = sharedDriver(RED.settings as unknown as Record<string, unknown>);
  function IsolationStatusNode(this: Node, saved: NodeDef & { target: string; check?: boolean }) {
    RED.nodes.createNode(this, saved);
    const config = startConfig(this, saved, MIGRATIONS);
    handleInput(
      RED,
      this,
      config.target,
      async (target, msg) => {
        // the preflight on request: msg.check, else the node's option (checked before anything is sent)
        if (msg.check !== undefined && msg.check !== null && typeof msg.check !== 'boolean') {
          throw new ValidationError('msg.check must be true or false', [{ path: 'msg.check', message: 'not a boolean' }]);
        }
        // a pending isolation (the host was away when isolate-host asked): said on the answer; while
        // the host is still away, the answer is that pending state instead of the error
        const entry = config.target ? (RED.nodes.getNode(config.target) as TargetNode | null)?.pending?.get(target.host) : undefined;
        let state;
        try {
          state = await driver.status(target);
        } catch (err) {
          if (entry && isAway(err)) return pendingState(entry);
          throw err;
        }
        if (entry) state = { ...state, pending: pendingView(entry) };
        const check = typeof msg.check === 'boolean' ? msg.check : config.check === true;
        return check ? { ...state, capabilities: await driver.capabilities(target) } : state;
      },
      'status',
    );
  }
  RED.nodes.registerType('isolation-status', IsolationStatusNode);
};
