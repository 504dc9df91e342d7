/**
 * The status read (status, and the read a change falls back to): one constant program per
 * privilege path, its stdin (the table name, then the listing batch), and the reading of its
 * tagged answers: the guard's line (parseGuard), then the filter's `nrhi-dynset` / `nrhi-flow`
 * lines (splitStateRead). nft's JSON between them is read by parseTable (src/driver/state.ts).
 */
import type { Target } from '../policy';
import { parseAddr } from '../net';
import { DYNAMIC_SET, type Batch } from '../ruleset';
import { byPackets, OBSERVED_TOP, protoName, type DynamicSetFill, type ObservedFlow, type StateReadExtras } from '../state';
import { EXIT, GUARD_DIR, NFT_CMD, SUDO_NFT } from './commands';
import { guardRecordReader } from './guard';

/**
 * The state read's filter (awk, on the host): nft's one-line JSON of the table, already split by
 * sed before each top-level object and each set element, comes back as the same JSON document
 * without the elements of the dynamic sets (DYNAMIC_SET: filled from the packet path, so as large
 * as the host's users make them), then `nrhi-dynset NAME COUNT SIZE` for each of them and the
 * OBSERVED_TOP observed flows with the most packets, `nrhi-flow PACKETS BYTES DIR FAM ADDR PROTO
 * PORT` (sort | head: bounded in output; in CPU by the sets' caps). Everything else passes as
 * nft printed it. Exits with nft's code (its `nrhi-rc` line). Host output is checked again by the
 * controller (state.ts, parseStateRead).
 */
const STATE_FILTER = String.raw`BEGIN { ORS = ""; rc = 1; cur = ""; dyn = ""; items = 0; nd = 0; flows = 0; first = 1; raw = 0
  top = "sort -k2,2nr -k3,3nr | head -n ${OBSERVED_TOP}" }
function num(s, key,   p, v) { p = index(s, key); if (!p) return 0; v = substr(s, p + length(key)); if (match(v, /^[0-9]+/)) return substr(v, 1, RLENGTH); return 0 }
function str(s, key,   p, v) { p = index(s, key); if (!p) return ""; v = substr(s, p + length(key)); p = index(v, "\""); return p ? substr(v, 1, p - 1) : "" }
function flush(   s, sep) {
  if (cur == "") return
  s = cur; cur = ""
  sub(/[ \t\r]+$/, "", s); sub(/,$/, "", s); sub(/[}][}][]][}]$/, "}}", s)
  if (s == "") return
  sep = items++ ? ", " : "{\"nftables\": ["
  print sep s
}
function element(s,   p, v, a, m, port, dir, fam) {
  count[dyn]++
  if (dyn !~ /^obs_/) return
  p = index(s, "\"concat\": ["); if (!p) return
  v = substr(s, p + 11); p = index(v, "]"); if (!p) return
  v = substr(v, 1, p - 1); gsub(/"/, "", v); m = split(v, a, ", ")
  if (m < 2 || m > 3 || length(a[1]) > 45 || a[1] !~ /^[0-9a-fA-F.:]+$/ || length(a[2]) > 24 || a[2] !~ /^[a-z0-9-]+$/) return
  port = "-"; if (m == 3) { if (length(a[3]) > 5 || a[3] !~ /^[0-9]+$/) return; port = a[3] }
  dir = substr(dyn, 5); fam = dir; sub(/[46].*$/, "", dir); sub(/^(in|out)/, "", fam); fam = substr(fam, 1, 1)
  flows++
  print "nrhi-flow " num(s, "\"packets\": ") " " num(s, "\"bytes\": ") " " dir " " fam " " a[1] " " a[2] " " port "\n" | top
}
/^nrhi-rc [0-9]+$/ { rc = $2; next }
/^[ \t\r]*$/ { next }
{
  line = $0
  if (first) { first = 0; if (!sub(/^[{]"nftables": [[]/, "", line)) raw = 1 }
  if (raw) { print line "\n"; next }
  if (line ~ /^[{]"[a-z ]+": [{]"family": /) {
    flush(); cur = line; dyn = ""
    if (line ~ /^[{]"set": [{]"family": "inet", /) {
      name = str(line, "\"name\": \""); tb = str(line, "\"table\": \"")
      if (tb == t && name ~ ${DYNAMIC_SET.source.replace(/^/, '/') + '/'} && !(name in count)) { dyn = name; count[name] = 0; size[name] = num(line, "\"size\": "); names[++nd] = name; sub(/, "elem": [[]$/, "}}", cur) }
    }
  } else if (dyn != "") element(line)
  else cur = cur line
}
END {
  flush(); if (items) print "]}\n"
  for (i = 1; i <= nd; i++) print "nrhi-dynset " names[i] " " count[names[i]] " " size[names[i]] "\n"
  fflush(); if (flows) close(top)
  exit rc
}`;

/**
 * The state read (status, and the read a change falls back to): the guard's record, when one is
 * armed for the table named on the first stdin line (`nrhi-guard GEN COUNT LAST STATE ALIVE SINCE`,
 * SINCE the unix time a `stalled` guard has waited for its lock since, else 0; the record is
 * root's alone: read through GUARD_SUDO.read), then the listing batch (the rest) to nft, its answer through STATE_FILTER: what comes back is
 * bounded whatever the host's users send. A host without sed or awk gets nft's answer as it is
 * (the dynamic sets' caps bound it).
 */
function statusScript(nft: string, priv: string): string {
  return [
    'PATH="$PATH:/usr/sbin:/sbin:/usr/bin:/bin"',
    `IFS= read -r t || exit ${EXIT.SHORT_INPUT}`,
    `case "$t" in ''|*[!A-Za-z0-9_]*) exit ${EXIT.BAD_INPUT};; esac`,
    `G=${GUARD_DIR}`,
    guardRecordReader(priv),
    'grec',
    'if [ -n "$rk" ]; then',
    '  a=0',
    // its pid where it wrote one (no process here costs nothing); the system manager where not yet
    "  case \"$rq\" in ''|*[!0-9]*) ! systemctl is-active --quiet \"nrhi-guard-$t.service\" || a=1;; *) [ ! -d \"/proc/$rq\" ] || a=1;; esac",
    '  printf "nrhi-guard %s %s %s %s %s %s\\n" "${rk:-0}" "${rc:-0}" "${rl:-0}" "${rs:-starting}" "$a" "${rz:-0}"',
    'fi 2>/dev/null',
    `for c in sed awk sort head; do command -v $c >/dev/null 2>&1 || exec ${nft}; done`,
    `{ ${nft}; r=$?; printf '\\nnrhi-rc %s\\n' "$r"; } |`,
    `  LC_ALL=C sed -E -e 's/[{]"(table|chain|set|map|rule|counter|quota|limit|element|flowtable|secmark|synproxy|ct helper|ct timeout|ct expectation)": [{]"family": /\\n&/g' -e 's/[{]"elem": [{]/\\n&/g' |`,
    `  LC_ALL=C awk -v t="$t" '${STATE_FILTER}'`,
  ].join('\n');
}

/** The status read, as root and through `sudo -n`. */
export const STATUS = {
  root: statusScript(NFT_CMD, ''),
  sudo: statusScript(SUDO_NFT, 'sudo -n '),
} as const;

/** The status read's command and stdin: the table name, then the listing batch. */
export function statusInput(target: Target, batch: Batch): { cmd: string; stdin: string } {
  return { cmd: target.sudo ? STATUS.sudo : STATUS.root, stdin: `${target.table}\n${JSON.stringify(batch)}` };
}

/** What the status read said about the guard (null: none armed for this table). */
export interface GuardReport {
  gen: number;
  count: number;
  /** unix seconds of the last heal, 0: never */
  last: number;
  state: 'ok' | 'retrying' | 'starting' | 'superseded' | 'stalled' | 'gave-up:nft' | 'gave-up:fought';
  alive: boolean;
  /** stalled: unix seconds since when its lock is held by another process (it heals nothing meanwhile) */
  since?: number;
}

/** Splits the status read's answer into the guard's line and nft's JSON. */
export function parseGuard(stdout: string): { guard: GuardReport | null; json: string } {
  const m = /^nrhi-guard (\d{1,9}) (\d{1,9}) (\d{1,12}) (ok|retrying|starting|superseded|stalled|gave-up:nft|gave-up:fought) ([01])(?: (\d{1,12}))?\n/.exec(stdout);
  const json = stdout.replace(/^nrhi-guard [^\n]*\n/, '');
  if (!m) return { guard: null, json };
  const state = m[4] as GuardReport['state'];
  return { guard: { gen: Number(m[1]), count: Number(m[2]), last: Number(m[3]), state, alive: m[5] === '1', ...(state === 'stalled' ? { since: Number(m[6] ?? 0) } : {}) }, json };
}

const MAX_TAG_LINE = 200;
const DYNSET_LINE = /^nrhi-dynset ([a-z0-9_]{1,20}) (\d{1,9}) (\d{1,9})$/;
const FLOW_LINE = /^nrhi-flow (\d{1,20}) (\d{1,20}) (in|out) ([46]) ([0-9a-fA-F.:]{2,45}) ([a-z0-9-]{1,24}) (\d{1,5}|-)$/;

/**
 * Splits the state read's answer (after the guard's line): nft's JSON, then the filter's lines
 * (`nrhi-dynset NAME COUNT SIZE`, `nrhi-flow PACKETS BYTES DIR FAM ADDR PROTO PORT`). Host text:
 * a line that does not match exactly is left out, at most OBSERVED_TOP flows and one line per
 * dynamic set are taken. `extras` is null when no filter ran (a host without sed or awk: nft's
 * answer as it is).
 */
export function splitStateRead(stdout: string): { json: string; extras: StateReadExtras | null } {
  const json: string[] = [];
  const sets = new Map<string, DynamicSetFill>();
  const flows: ObservedFlow[] = [];
  let tagged = false;
  for (const line of stdout.split('\n')) {
    if (!line.startsWith('nrhi-dynset ') && !line.startsWith('nrhi-flow ')) {
      json.push(line);
      continue;
    }
    tagged = true;
    if (line.length > MAX_TAG_LINE) continue;
    const d = DYNSET_LINE.exec(line);
    if (d) {
      if (DYNAMIC_SET.test(d[1]) && !sets.has(d[1])) sets.set(d[1], { name: d[1], count: Number(d[2]), size: Number(d[3]) });
      continue;
    }
    const f = FLOW_LINE.exec(line);
    if (!f || flows.length >= OBSERVED_TOP) continue;
    const addr = parseAddr(f[5]);
    const port = f[7] === '-' ? null : Number(f[7]);
    if (!addr || addr.text.includes('/') || addr.family !== Number(f[4]) || (port !== null && port > 65535)) continue;
    flows.push({ direction: f[3] as 'in' | 'out', proto: protoName(f[6]), addr: addr.text, port, packets: Number(f[1]), bytes: Number(f[2]) });
  }
  return { json: json.join('\n'), extras: tagged ? { sets: [...sets.values()], flows: flows.sort(byPackets) } : null };
}
