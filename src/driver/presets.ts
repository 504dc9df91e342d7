/**
 * Named exception lists, after the traffic a host must keep in the microsegmentation seed (000):
 * SSH, DNS, DHCP, NTP, LDAP/LDAPS, troubleshooting ICMP and the cloud metadata endpoint.
 *
 * A preset never opens a port to the whole Internet: `dns`, `ntp`, `ldap` and `ldaps` open their
 * ports to THIS host's own servers only (named by the operator, or read from the host's
 * configuration before the isolation goes in), `ssh` to the management networks only, `icmp` lets
 * echo requests in (the kernel's replies go back) but no echo request out, and `dhcp` keeps the
 * DHCP exchange by broadcast (IPv4) and on the link (IPv6).
 */
import type { Exception, PresetName } from './policy';
import type { ManagementEndpoint } from './ruleset';
import type { ServerKind } from './host/servers';

const V4_ANY = '0.0.0.0/0';

/** The servers behind each server preset, with where they were found (for the rule comments). */
export type PresetServers = Partial<Record<ServerKind, { addrs: readonly string[]; from: string }>>;

export interface PresetContext {
  /** the management channel and networks: what `ssh` opens */
  management: readonly ManagementEndpoint[];
  servers: PresetServers;
}

/** The server kind a preset opens to, if it is a server preset. */
export function serverKindOf(name: PresetName): ServerKind | null {
  switch (name) {
    case 'dns':
      return 'dns';
    case 'ntp':
      return 'ntp';
    case 'ldap':
    case 'ldaps':
      return 'ldap';
    default:
      return null;
  }
}

const SERVER_PORTS: Record<'dns' | 'ntp' | 'ldap' | 'ldaps', { proto: 'tcp' | 'udp'; port: number }[]> = {
  dns: [
    { proto: 'udp', port: 53 },
    { proto: 'tcp', port: 53 },
  ],
  ntp: [{ proto: 'udp', port: 123 }],
  ldap: [{ proto: 'tcp', port: 389 }],
  ldaps: [
    { proto: 'tcp', port: 636 },
    { proto: 'tcp', port: 3268 },
    { proto: 'tcp', port: 3269 },
  ],
};

/** Presets that need nothing from the host: plain data in the shape of a user's exception. */
export const PRESETS: Record<'dhcp' | 'icmp' | 'cloud-metadata', readonly Exception[]> = {
  dhcp: [
    // DHCPv4 by broadcast only (a lease that cannot renew by unicast rebinds by broadcast): no
    // unicast port 67 to any address
    { direction: 'out', proto: 'udp', addr: '255.255.255.255', port: 67, comment: 'preset dhcp' },
    { direction: 'in', proto: 'udp', addr: V4_ANY, port: 68, comment: 'preset dhcp' },
    // DHCPv6 stays on the link: servers and relays are link-local, the request goes to ff02::1:2
    { direction: 'out', proto: 'udp', addr: 'ff02::1:2', port: 547, comment: 'preset dhcp' },
    { direction: 'out', proto: 'udp', addr: 'fe80::/10', port: 547, comment: 'preset dhcp' },
    { direction: 'in', proto: 'udp', addr: 'fe80::/10', port: 546, comment: 'preset dhcp' },
  ],
  // echo requests in; the replies, and ICMP errors about flows that pass, are in every ruleset
  icmp: [{ direction: 'in', proto: 'icmp', icmpType: 'echo-request', comment: 'preset icmp' }],
  'cloud-metadata': [
    { direction: 'out', proto: 'tcp', addr: '169.254.169.254', port: 80, comment: 'preset cloud-metadata' },
    { direction: 'out', proto: 'tcp', addr: 'fd00:ec2::254', port: 80, comment: 'preset cloud-metadata' },
  ],
};

/** The presets that need the host's servers, in the order given. */
export function serverKindsNeeded(names: readonly PresetName[]): ServerKind[] {
  return [...new Set(names.map(serverKindOf).filter((k): k is ServerKind => k !== null))];
}

/**
 * The exceptions of the named presets, in preset order. A server preset whose servers are not in
 * `ctx` throws (the driver reads them first and fails clearly when it cannot).
 */
export function expandPresets(names: readonly PresetName[], ctx: PresetContext): Exception[] {
  const out: Exception[] = [];
  for (const name of new Set(names)) {
    if (name === 'ssh') {
      for (const m of ctx.management) out.push({ direction: 'in', proto: 'tcp', addr: m.addr, port: m.port, comment: 'preset ssh (management)' });
      continue;
    }
    const kind = serverKindOf(name);
    if (kind === null) {
      out.push(...PRESETS[name as keyof typeof PRESETS].map((e) => ({ ...e })));
      continue;
    }
    const servers = ctx.servers[kind];
    if (!servers || servers.addrs.length === 0) throw new Error(`no ${kind} servers for preset ${name}`);
    const comment = `preset ${name} (${servers.from})`.slice(0, 128);
    for (const addr of servers.addrs) {
      for (const { proto, port } of SERVER_PORTS[name as keyof typeof SERVER_PORTS]) out.push({ direction: 'out', proto, addr, port, comment });
    }
  }
  return out;
}
