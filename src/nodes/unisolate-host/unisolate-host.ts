import type { Node, NodeAPI, NodeDef } from 'node-red';
import type { HostState } from '../../driver';
import { checkedRequestMeta, fleetCap, fleetLimit, handleInput, isAway, pendingState, pendingView, sharedDriver, startConfig, wallOf, type TargetNode } from '../common';
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
    handleInput(
      RED,
      this,
      config.target,
      async (target, msg, info) => {
        // a pending isolation of the host (it was away) ends first: it is never applied after this
        const queue = config.target ? (RED.nodes.getNode(config.target) as TargetNode | null)?.pending : undefined;
        const cancelled = queue?.cancel(target.host);
        const extra = cancelled ? { pendingCancelled: pendingView(cancelled) } : {};
        try {
          const state = await driver.unisolate(target, { wall: wallOf(msg, config.wall) }, info);
          return { ...state, ...extra } as HostState;
        } catch (err) {
          // away, and its isolation was only pending: it was never applied, and now never will be
          if (cancelled && isAway(err)) return { ...pendingState(cancelled), state: 'free', mode: null, reason: null, ...extra } as HostState;
          throw err;
        }
      },
      'unisolate',
      checkedRequestMeta,
      cap,
    );
  }
  RED.nodes.registerType('unisolate-host', UnisolateHostNode);
};
