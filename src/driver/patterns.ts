/**
 * The text patterns of the validation gate, without zod: policy.ts builds its schemas from them,
 * and the build bundles them (with net.ts) into the editor's rules (resources/driver-rules.js), so
 * the editor checks a port, a unit or a host name with the very expressions the driver applies.
 */

/** a port, or a range "lo-hi" (the bounds are checked by portRange) */
export const PORT_TEXT = /^(\d{1,5})(?:-(\d{1,5}))?$/;

/** a local user name as useradd takes it (POSIX portable), which nft resolves on the host */
export const USER_NAME = /^[a-z_][a-z0-9_-]{0,31}$/;

/** a systemd unit name whose cgroup is system.slice/<unit> */
export const UNIT_NAME = /^[A-Za-z0-9:_.\\@-]{1,240}\.(service|scope|slice)$/;

/** a relative cgroup v2 path, up to 16 segments; never a leading @ or $ (nft's JSON parser reads those as a set or variable reference) */
export const CGROUP_PATH = /^[A-Za-z0-9_.][A-Za-z0-9:_.\\@-]*(\/[A-Za-z0-9:_.\\@-]+){0,15}$/;

/** the pack's nftables table name: an identifier */
export const TABLE_NAME = /^[A-Za-z][A-Za-z0-9_]{0,31}$/;

/** a DNS host name (letters, digits, hyphens; dot-separated labels of up to 63) */
export const HOST_NAME = /^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;

/** the SSH login name */
export const LOGIN_NAME = /^[A-Za-z_][A-Za-z0-9_.-]{0,31}\$?$/;

/** A port or range as text: `[lo, hi]` with 1 <= lo <= hi <= 65535, or null. */
export function portRange(text: string): [number, number] | null {
  const m = PORT_TEXT.exec(text.trim());
  if (!m) return null;
  const lo = Number(m[1]);
  const hi = m[2] !== undefined ? Number(m[2]) : lo;
  return lo >= 1 && hi <= 65535 && lo <= hi ? [lo, hi] : null;
}

/** A cgroup path without "." or ".." segments (the pattern alone admits them). */
export function cgroupSegmentsOk(path: string): boolean {
  return path.split('/').every((seg) => seg !== '.' && seg !== '..');
}

/**
 * The servers a preset may open its port to (policy.ts's serversSchema, and the editor's check of
 * a target's server lists): at most `max` a kind, none wider than /minPrefix of its family.
 */
export const SERVER_LIMITS = { minPrefix: { 4: 16, 6: 48 }, max: 32 } as const;
