/**
 * Addresses as integer intervals, and the disjoint-box arithmetic that lets overlapping exceptions
 * live in one nftables interval set. Pure functions, no I/O.
 *
 * Why boxes: a concatenated interval set (nft_set_pipapo) refuses an element whose first or last
 * key falls inside an element it already holds ("File exists"), so `0.0.0.0/0 . tcp . 0-65535`
 * and `198.18.0.0/24 . tcp . 22` cannot both be elements. We render the union of all exceptions of
 * one set as disjoint boxes instead: the same packets match, and the kernel accepts every element.
 */
import ipaddr from 'ipaddr.js';

export type Family = 4 | 6;
export type Interval = readonly [bigint, bigint];
/** One interval per dimension, e.g. [address, protocol, port]. */
export type Box = readonly Interval[];

const BITS: Record<Family, number> = { 4: 32, 6: 128 };

export interface ParsedAddr {
  family: Family;
  /** canonical text: a plain address, or network/len when the prefix is shorter than the address */
  text: string;
  interval: Interval;
}

function bytesToBigint(bytes: number[]): bigint {
  let v = 0n;
  for (const b of bytes) v = (v << 8n) | BigInt(b);
  return v;
}

function bigintToText(v: bigint, family: Family): string {
  const n = BITS[family] / 8;
  const bytes: number[] = [];
  for (let i = n - 1; i >= 0; i--) bytes.push(Number((v >> BigInt(i * 8)) & 0xffn));
  return ipaddr.fromByteArray(bytes).toString();
}

/**
 * Parses an IPv4/IPv6 address or CIDR strictly: dotted-quad IPv4 only, no zone ids; an IPv4-mapped
 * IPv6 address is taken as the IPv4 address it carries (that is how the packet is seen by nft).
 * Host bits set below the prefix are cleared, as nft itself does. Returns null when invalid.
 */
export function parseAddr(input: string): ParsedAddr | null {
  const s = input.trim();
  if (s.length === 0 || s.length > 64 || s.includes('%')) return null;
  const [addrPart, lenPart, extra] = s.split('/');
  if (extra !== undefined) return null;
  let addr: ipaddr.IPv4 | ipaddr.IPv6;
  if (ipaddr.IPv4.isValidFourPartDecimal(addrPart)) addr = ipaddr.IPv4.parse(addrPart);
  else if (ipaddr.IPv6.isValid(addrPart) && addrPart.includes(':')) addr = ipaddr.IPv6.parse(addrPart);
  else return null;
  let len: number | undefined;
  if (lenPart !== undefined) {
    if (!/^\d{1,3}$/.test(lenPart)) return null;
    len = Number(lenPart);
  }
  if (addr.kind() === 'ipv6' && (addr as ipaddr.IPv6).isIPv4MappedAddress()) {
    if (len !== undefined) {
      if (len < 96) return null;
      len -= 96;
    }
    addr = (addr as ipaddr.IPv6).toIPv4Address();
  }
  const family: Family = addr.kind() === 'ipv4' ? 4 : 6;
  const bits = BITS[family];
  if (len === undefined) len = bits;
  if (len > bits) return null;
  const value = bytesToBigint(addr.toByteArray());
  const hostBits = BigInt(bits - len);
  const lo = (value >> hostBits) << hostBits;
  const hi = lo | ((1n << hostBits) - 1n);
  const base = bigintToText(lo, family);
  return { family, text: len === bits ? base : `${base}/${len}`, interval: [lo, hi] };
}

export function fullRange(family: Family): Interval {
  return [0n, (1n << BigInt(BITS[family])) - 1n];
}

/** nft JSON for an address interval: a plain address, a prefix, or a range. */
export function addrToNft(iv: Interval, family: Family): unknown {
  const [lo, hi] = iv;
  if (lo === hi) return bigintToText(lo, family);
  const size = hi - lo + 1n;
  const isPow2 = (size & (size - 1n)) === 0n;
  if (isPow2 && lo % size === 0n) {
    const hostBits = size.toString(2).length - 1;
    return { prefix: { addr: bigintToText(lo, family), len: BITS[family] - hostBits } };
  }
  return { range: [bigintToText(lo, family), bigintToText(hi, family)] };
}

/** nft JSON for a small integer interval (protocol, port, ICMP type). */
export function intToNft(iv: Interval): number | { range: [number, number] } {
  return iv[0] === iv[1] ? Number(iv[0]) : { range: [Number(iv[0]), Number(iv[1])] };
}

function volume(b: Box): bigint {
  return b.reduce((v, [lo, hi]) => v * (hi - lo + 1n), 1n);
}

function intersects(a: Box, b: Box): boolean {
  return a.every(([lo, hi], d) => lo <= b[d][1] && b[d][0] <= hi);
}

/** a minus b, as disjoint boxes (at most two per dimension). */
function subtract(a: Box, b: Box): Box[] {
  if (!intersects(a, b)) return [a];
  const out: Box[] = [];
  const rest: Interval[] = [...a];
  for (let d = 0; d < a.length; d++) {
    const [lo, hi] = rest[d];
    const [blo, bhi] = b[d];
    if (lo < blo) {
      out.push(rest.map((iv, i) => (i === d ? ([lo, blo - 1n] as Interval) : iv)));
      rest[d] = [blo, hi];
    }
    if (hi > bhi) {
      out.push(rest.map((iv, i) => (i === d ? ([bhi + 1n, rest[d][1]] as Interval) : iv)));
      rest[d] = [rest[d][0], bhi];
    }
  }
  return out; // what is left in `rest` lies inside b
}

/**
 * Disjoint boxes covering exactly the union of `boxes`. Larger boxes go first so that boxes they
 * contain vanish instead of being cut up; the output order is deterministic.
 */
export function disjointUnion(boxes: Box[], maxPieces = 4096): Box[] {
  const sorted = [...boxes].sort((a, b) => {
    const va = volume(a);
    const vb = volume(b);
    if (va !== vb) return va > vb ? -1 : 1;
    return compareBoxes(a, b);
  });
  const result: Box[] = [];
  for (const box of sorted) {
    let pieces: Box[] = [box];
    for (const r of result) {
      pieces = pieces.flatMap((p) => subtract(p, r));
      if (pieces.length === 0) break;
    }
    result.push(...pieces);
    if (result.length > maxPieces) throw new RangeError(`exceptions overlap into more than ${maxPieces} set elements`);
  }
  return result.sort(compareBoxes);
}

function compareBoxes(a: Box, b: Box): number {
  for (let d = 0; d < a.length; d++) {
    for (let k = 0; k < 2; k++) {
      if (a[d][k] !== b[d][k]) return a[d][k] < b[d][k] ? -1 : 1;
    }
  }
  return 0;
}
