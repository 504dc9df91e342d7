import type { Node, NodeAPI, NodeDef } from 'node-red';
import { hostText, targetForHost } from '../../driver';
import type { PendingEntry, PendingOutcome } from '../common';
import { allowedHostsOf, pendingBackoffMs, PendingQueue, pendingStore, prepareProtection, settingsDeclaration, sharedDriver, startConfig, targetProblem, type TargetConfig, type TargetCredentials, type TargetNode } from '../common';
import { CONFIG_FIELDS, CREDENTIAL_FIELDS } from './fields';
import { MIGRATIONS } from './migrations';
import { targetOf } from '../common';

const pick = <T extends object>(o: T, keys: readonly string[]): Partial<T> =>
  Object.fromEntries(keys.filter((k) => k in o).map((k) => [k, (o as Record<string, unknown>)[k]])) as Partial<T>;

export = function (RED: NodeAPI): void {
  // the driver's limits come from settings.js (validated): a bad value stops the pack loading here
  const driver = sharedDriver(RED.settings as unknown as Record<string, unknown>);
  function IsolationTargetNode(this: TargetNode, saved: NodeDef & TargetConfig) {
    RED.nodes.createNode(this, saved);
    const config = startConfig(this, saved, MIGRATIONS);
    // the fields the list declares (fields.ts), as saved; an empty jump target is none
    this.config = { ...pick(config, CONFIG_FIELDS), jumpTarget: config.jumpTarget || undefined } as TargetConfig;
    const jumpId = config.jumpTarget;
    this.jumpNode = () => (jumpId ? (RED.nodes.getNode(jumpId) as TargetNode | null) : null);
    // checked when the flow starts; the nodes that use this target show it in their status
    this.problem = targetProblem(this);
    if (this.problem) this.error(this.problem.message);
    else this.protection = prepareProtection(this, driver);
    // pending isolations (hosts that were away): kept in this node's context, shared by every node using it
    const settings = RED.settings as unknown as Record<string, unknown>;
    const { store } = pendingStore(settings);
    this.pending = new PendingQueue({
      context: this.context() as unknown as ConstructorParameters<typeof PendingQueue>[0]['context'],
      store,
      baseMs: pendingBackoffMs(settings),
      // the target as configured now (credentials from this node's store, the allowlist checked again)
      apply: (e, info) => {
        if (this.problem) return Promise.reject(this.problem);
        return driver.isolate(targetForHost(targetOf(this), e.host, allowedHostsOf(this.config.allowedHosts)), e.request, info);
      },
      // the outcome goes out on the isolate-host node that asked; without it (removed since), in the log
      report: (e: PendingEntry, outcome: PendingOutcome) => {
        const asker = RED.nodes.getNode(e.nodeId) as (Node & { pendingOutcome?: (e: PendingEntry, o: PendingOutcome) => void }) | null;
        if (asker?.pendingOutcome) asker.pendingOutcome(e, outcome);
        else {
          const what = outcome.outcome === 'applied' ? 'applied' : `${outcome.outcome}: ${outcome.error ? hostText(outcome.error.message, 512) : ''}`;
          (outcome.outcome === 'applied' ? this.log : this.warn).call(this, `pending isolation of ${e.host} ${what} (its isolate-host node ${e.nodeId} is no longer deployed)`);
        }
      },
      log: (t) => this.warn(t),
    });
    this.on('close', () => this.pending?.close());
  }
  const credentials = Object.fromEntries(CREDENTIAL_FIELDS.map((k) => [k, { type: 'password' }])) as Record<keyof TargetCredentials, { type: 'password' }>;
  RED.nodes.registerType('isolation-target', IsolationTargetNode as unknown as Parameters<NodeAPI['nodes']['registerType']>[1], {
    credentials,
    // runtime settings (settings.js), e.g. isolationTargetMaxConcurrent: see common/settings.ts and docs/operations.md
    settings: settingsDeclaration(),
  } as Parameters<NodeAPI['nodes']['registerType']>[2]);
};
