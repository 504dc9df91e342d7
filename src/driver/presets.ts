/**
 * Named exception lists, after the traffic a host must keep in the microsegmentation seed (000):
 * SSH, DNS, DHCP, NTP, LDAP/LDAPS, troubleshooting ICMP and the cloud metadata endpoint.
 * Each preset is plain data in the same shape as a user's exception.
 */
import type { Exception, PresetName } from './policy';

const V4_ANY = '0.0.0.0/0';
const V6_ANY = '::/0';
const ICMP_TROUBLESHOOTING = ['echo-request', 'echo-reply', 'destination-unreachable', 'time-exceeded', 'parameter-problem'];

function icmp(): Exception[] {
  const out: Exception[] = [];
  for (const direction of ['in', 'out'] as const) {
    for (const icmpType of ICMP_TROUBLESHOOTING) out.push({ direction, proto: 'icmp', icmpType, comment: 'preset icmp' });
    // path MTU discovery is not optional on IPv6
    out.push({ direction, proto: 'icmp', addr: V6_ANY, icmpType: 'packet-too-big', comment: 'preset icmp' });
  }
  return out;
}

export const PRESETS: Record<PresetName, readonly Exception[]> = {
  ssh: [{ direction: 'in', proto: 'tcp', port: 22, comment: 'preset ssh' }],
  dns: [
    { direction: 'out', proto: 'udp', port: 53, comment: 'preset dns' },
    { direction: 'out', proto: 'tcp', port: 53, comment: 'preset dns' },
  ],
  dhcp: [
    { direction: 'out', proto: 'udp', addr: V4_ANY, port: 67, comment: 'preset dhcp' },
    { direction: 'in', proto: 'udp', addr: V4_ANY, port: 68, comment: 'preset dhcp' },
    { direction: 'out', proto: 'udp', addr: V6_ANY, port: 547, comment: 'preset dhcp' },
    { direction: 'in', proto: 'udp', addr: V6_ANY, port: 546, comment: 'preset dhcp' },
  ],
  ntp: [{ direction: 'out', proto: 'udp', port: 123, comment: 'preset ntp' }],
  ldap: [{ direction: 'out', proto: 'tcp', port: 389, comment: 'preset ldap' }],
  ldaps: [
    { direction: 'out', proto: 'tcp', port: 636, comment: 'preset ldaps' },
    { direction: 'out', proto: 'tcp', port: 3268, comment: 'preset ldaps' },
    { direction: 'out', proto: 'tcp', port: 3269, comment: 'preset ldaps' },
  ],
  icmp: icmp(),
  'cloud-metadata': [
    { direction: 'out', proto: 'tcp', addr: '169.254.169.254', port: 80, comment: 'preset cloud-metadata' },
    { direction: 'out', proto: 'tcp', addr: 'fd00:ec2::254', port: 80, comment: 'preset cloud-metadata' },
  ],
};

/** The exceptions of the named presets, in preset order. */
export function expandPresets(names: readonly PresetName[]): Exception[] {
  return [...new Set(names)].flatMap((n) => PRESETS[n].map((e) => ({ ...e })));
}
