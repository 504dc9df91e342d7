/**
 * The isolation-target config node as the driver sees it: its config and credentials turned into
 * the driver's target (with its jump host), checked when the flow starts, and its protected names
 * resolved.
 */
import type { Node } from 'node-red';
import { allowedHostsSchema, IsolationDriver, IsolationError, targetSchema, validate, ValidationError, type TargetInput } from '../../driver';
import { parseKnownHosts } from '../../driver/knownhosts';
import type { TargetConfig, TargetCredentials } from '../isolation-target/fields';
import type { PendingQueue } from './pending';

export type { TargetConfig, TargetCredentials } from '../isolation-target/fields';

export interface TargetNode extends Node<TargetCredentials> {
  config: TargetConfig;
  /** what failed the check when the flow started (see targetProblem), or null */
  problem: IsolationError | null;
  /**
   * the protected names (and the jump host's name) resolved when the flow started: null when all
   * resolved, else the PROTECTED_UNRESOLVED error (the driver then refuses every isolation)
   */
  protection?: Promise<IsolationError | null>;
  /** the isolation-target named as `jumpTarget`, looked up when an action needs it */
  jumpNode?: () => TargetNode | null;
  /** the pending isolations of this target (hosts that are away), kept in its context */
  pending?: PendingQueue;
}

/** The jump host of a config node, if it names one; the driver validates every field of it. */
function jumpOf(node: TargetNode, atDeploy = false): TargetInput['jump'] {
  const c = node.config;
  if (c.jumpTarget) {
    const j = node.jumpNode?.() ?? null;
    // at deploy the named target may simply not be built yet: it is checked on its own, and here at the first action
    if (!j && atDeploy) return undefined;
    if (!j) throw new ValidationError('the isolation-target named as jump host is not deployed', [{ path: 'target.jumpTarget', message: 'missing' }]);
    if (j.config.jumpTarget || j.config.jumpHost) {
      throw new ValidationError('a jump host reached through another jump host is not supported', [{ path: 'target.jumpTarget', message: 'chained jump' }]);
    }
    const cred = j.credentials ?? {};
    return {
      host: j.config.host,
      port: num(j.config.port, 22),
      username: j.config.username,
      knownHosts: j.config.knownHosts,
      privateKey: cred.privateKey || undefined,
      passphrase: cred.passphrase || undefined,
      password: cred.password || undefined,
    };
  }
  if (!c.jumpHost || c.jumpHost.trim() === '') return undefined;
  const cred = node.credentials ?? {};
  return {
    host: c.jumpHost,
    port: num(c.jumpPort, 22),
    username: c.jumpUser ?? '',
    knownHosts: c.jumpKnownHosts ?? '',
    privateKey: cred.jumpPrivateKey || undefined,
    passphrase: cred.jumpPassphrase || undefined,
    password: cred.jumpPassword || undefined,
  };
}

/** A list as the editor stores it: an array, or text with one entry per line or comma. */
export function allowedHostsOf(v: string[] | string | undefined): string[] {
  const list = Array.isArray(v) ? v : typeof v === 'string' ? v.split(/[\n,]/) : [];
  return list.map((s) => String(s).trim()).filter((s) => s !== '');
}

function num(v: unknown, fallback: number): number {
  if (v === undefined || v === null || v === '') return fallback;
  const n = Number(v);
  return Number.isFinite(n) ? n : NaN;
}

/** The servers named on the config node, per kind; a kind left empty is read from the host. */
function serversOf(c: TargetConfig): { servers?: Record<string, string[]> } {
  const servers: Record<string, string[]> = {};
  for (const [kind, v] of [['dns', c.dnsServers], ['ntp', c.ntpServers], ['ldap', c.ldapServers]] as const) {
    const list = allowedHostsOf(v);
    if (list.length > 0) servers[kind] = list;
  }
  return Object.keys(servers).length > 0 ? { servers } : {};
}

/** The driver target for the config node; the driver validates every field of it. */
export function targetOf(node: TargetNode, atDeploy = false): TargetInput {
  const c = node.config;
  const cred = node.credentials ?? {};
  const jump = jumpOf(node, atDeploy);
  return {
    host: c.host,
    port: num(c.port, 22),
    username: c.username,
    knownHosts: c.knownHosts,
    sudo: c.sudo === true,
    timeoutMs: Math.round(num(c.timeout, 20) * 1000),
    managementCidrs: allowedHostsOf(c.managementCidrs),
    protectedHosts: allowedHostsOf(c.protectedHosts),
    ...serversOf(c),
    privateKey: cred.privateKey || undefined,
    passphrase: cred.passphrase || undefined,
    password: cred.password || undefined,
    ...(jump ? { jump } : {}),
  };
}

/**
 * The config node's check when the flow starts: every field as the driver will validate it, the
 * allowlist, and the known_hosts lines, so that a bad host, CIDR or key line shows at deploy, not
 * at the first alert. Null when all pass.
 */
export function targetProblem(node: TargetNode): IsolationError | null {
  try {
    const target = validate(targetSchema, targetOf(node, true), 'target');
    if (target.jump) parseKnownHosts(target.jump.knownHosts);
    validate(allowedHostsSchema, allowedHostsOf(node.config.allowedHosts), 'target.allowedHosts');
    const keys = parseKnownHosts(typeof node.config.knownHosts === 'string' ? node.config.knownHosts : '').filter((e) => e.marker === undefined);
    if (keys.length === 0) {
      throw new ValidationError('knownHosts holds no host key line: pin the host key (ssh-keyscan -t ed25519 HOST)', [{ path: 'target.knownHosts', message: 'no host key' }]);
    }
    return null;
  } catch (err) {
    if (err instanceof IsolationError) return err;
    throw err;
  }
}

/**
 * Resolves the target's protected names and its jump host's name when the flow starts, in the
 * shared driver, which keeps them refreshed until the config node closes. A name that never
 * resolved is logged on the config node; the nodes that use the target show it in their status.
 * The target's key, if it has a passphrase, is decrypted here too (IsolationDriver.prepareKey).
 */
export function prepareProtection(node: TargetNode, driver: IsolationDriver): Promise<IsolationError | null> {
  const target = targetOf(node, true);
  // a key with a passphrase is decrypted now, once, in a worker: not on the path of an alert,
  // and never on the runtime's event loop (a wrong passphrase is the same error an action gives)
  driver.prepareKey(target).catch((err: unknown) => node.error(err instanceof Error ? err.message : String(err)));
  const ready = driver.prepareProtection(target).then(
    () => null,
    (err: unknown) => {
      const e = err instanceof IsolationError ? err : new IsolationError('VALIDATION', String(err));
      node.error(e.message);
      return e;
    },
  );
  node.on('close', () => driver.releaseProtection(target));
  return ready;
}
