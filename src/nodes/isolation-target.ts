import type { NodeAPI, NodeDef } from 'node-red';
import type { TargetConfig, TargetCredentials, TargetNode } from './shared';

export = function (RED: NodeAPI): void {
  function IsolationTargetNode(this: TargetNode, config: NodeDef & TargetConfig) {
    RED.nodes.createNode(this, config);
    this.config = {
      name: config.name,
      host: config.host,
      port: config.port,
      username: config.username,
      allowedHosts: config.allowedHosts,
      managementCidrs: config.managementCidrs,
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
  });
};
