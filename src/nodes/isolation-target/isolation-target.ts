import type { NodeAPI, NodeDef } from 'node-red';
import { prepareProtection, settingsDeclaration, sharedDriver, startConfig, targetProblem, type TargetConfig, type TargetCredentials, type TargetNode } from '../common';
import { MIGRATIONS } from './migrations';

export = function (RED: NodeAPI): void {
  // the driver's limits come from settings.js (validated): a bad value stops the pack loading here
  const driver = sharedDriver(RED.settings as unknown as Record<string, unknown>);
  function IsolationTargetNode(this: TargetNode, saved: NodeDef & TargetConfig) {
    RED.nodes.createNode(this, saved);
    const config = startConfig(this, saved, MIGRATIONS);
    this.config = {
      name: config.name,
      host: config.host,
      port: config.port,
      username: config.username,
      allowedHosts: config.allowedHosts,
      managementCidrs: config.managementCidrs,
      protectedHosts: config.protectedHosts,
      dnsServers: config.dnsServers,
      ntpServers: config.ntpServers,
      ldapServers: config.ldapServers,
      knownHosts: config.knownHosts,
      sudo: config.sudo,
      timeout: config.timeout,
      jumpTarget: config.jumpTarget || undefined,
      jumpHost: config.jumpHost,
      jumpPort: config.jumpPort,
      jumpUser: config.jumpUser,
      jumpKnownHosts: config.jumpKnownHosts,
    };
    const jumpId = config.jumpTarget;
    this.jumpNode = () => (jumpId ? (RED.nodes.getNode(jumpId) as TargetNode | null) : null);
    // checked when the flow starts; the nodes that use this target show it in their status
    this.problem = targetProblem(this);
    if (this.problem) this.error(this.problem.message);
    else this.protection = prepareProtection(this, driver);
  }
  const credentials: Record<keyof TargetCredentials, { type: 'password' }> = {
    privateKey: { type: 'password' },
    passphrase: { type: 'password' },
    password: { type: 'password' },
    jumpPrivateKey: { type: 'password' },
    jumpPassphrase: { type: 'password' },
    jumpPassword: { type: 'password' },
  };
  RED.nodes.registerType('isolation-target', IsolationTargetNode as unknown as Parameters<NodeAPI['nodes']['registerType']>[1], {
    credentials,
    // runtime settings (settings.js), e.g. isolationTargetMaxConcurrent: see settings.ts and the README
    settings: settingsDeclaration(),
  } as Parameters<NodeAPI['nodes']['registerType']>[2]);
};
