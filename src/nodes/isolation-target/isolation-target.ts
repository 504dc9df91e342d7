import type { NodeAPI, NodeDef } from 'node-red';
import { prepareProtection, settingsDeclaration, sharedDriver, startConfig, targetProblem, type TargetConfig, type TargetCredentials, type TargetNode } from '../common';
import { CONFIG_FIELDS, CREDENTIAL_FIELDS } from './fields';
import { MIGRATIONS } from './migrations';

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
  }
  const credentials = Object.fromEntries(CREDENTIAL_FIELDS.map((k) => [k, { type: 'password' }])) as Record<keyof TargetCredentials, { type: 'password' }>;
  RED.nodes.registerType('isolation-target', IsolationTargetNode as unknown as Parameters<NodeAPI['nodes']['registerType']>[1], {
    credentials,
    // runtime settings (settings.js), e.g. isolationTargetMaxConcurrent: see common/settings.ts and docs/operations.md
    settings: settingsDeclaration(),
  } as Parameters<NodeAPI['nodes']['registerType']>[2]);
};
