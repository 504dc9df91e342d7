/**
 * The apply script's input, declared once: APPLY_FIELDS lists its stdin header, a line per field,
 * in the order the script reads them; each field names its shell variable, how the controller
 * encodes it, and how the script checks it. From this one table come the controller's encoder
 * (encodeApplyInput), the script's reading and checking lines (readApplyInput), the release
 * timers' re-packing of the fields they carry (release.ts, TIMER_FIELDS), and the decoder tests
 * and the fake host read a sent stdin with (decodeApplyInput). After the header: the guard's copy
 * (exactly as many bytes as its field says), then the batch to apply now.
 */
import type { Batch } from '../ruleset';
import { EXIT } from './commands';
import { GUARD_LOCK_WAIT_MAX_S } from './guard';
import type { SeverFilters } from './sever';

/**
 * What the apply script is asked to do beside applying the batch (the header of its stdin):
 * the release timer to (re)arm or cancel, the boot unit, the notices, the cut of open
 * connections, the guard, its lock wait, a listing taken just before the batch.
 */
export interface ApplyHeader {
  /** seconds until release (0: none), or `keep`: leave the host's timers as they are */
  seconds: number | 'keep';
  release: Batch | null;
  /** once `release` applied, wait this many more seconds and apply `then.batch` (a rollback re-arms the previous release) */
  then?: { seconds: number; batch: Batch };
  /** persist: the boot unit's text to install, `-` to remove it, absent to leave it as it is */
  boot?: string;
  /** told to logged-in users (wall) once the change is in, and when the timer releases */
  notice?: string;
  releaseNotice?: string;
  /** cut every open connection these filters do not keep, once the batch is in */
  sever?: SeverFilters;
  /**
   * the guard (systemd hosts): keep generation `gen` by re-applying `batch` (the full isolate
   * batch) whenever the table goes or changes; null: end it; absent: leave it as it is
   */
  guard?: { gen: number; batch: Batch } | null;
  /**
   * the guard once the timer's first batch applied (systemd timers): a verify rollback that
   * restores an enforced isolation keeps generation `gen` with `batch` (its full isolate batch);
   * absent or null: the release ends the guard
   */
  rearm?: { gen: number; batch: Batch } | null;
  /**
   * seconds the host may wait for the guard's lock (see lockWaitS: derived from the time the
   * exec has left); absent: GUARD_LOCK_WAIT_MAX_S
   */
  lockWaitS?: number;
  /** `list` commands nft runs just before the batch: their output comes first in the answer */
  inspect?: Batch;
}

/**
 * How the script checks a field: `sh`, shell lines that exit EXIT.BAD_INPUT on a bad value (and
 * may derive variables from it), run in the order of `rank` (the order the script always checked
 * in: any order refuses the same input); or the field another field's check covers with its own
 * (one `case` over both values: `by` names that field, a unit test holds it to one); or why the
 * shell need not check it.
 */
type Check = { rank: number; sh: readonly string[] } | { by: string } | { none: string };

interface Field {
  /** what tests, the timers and the fake host call it */
  name: string;
  /** the script's shell variable */
  v: string;
  /** what it means, and its values */
  doc: string;
  encode: (h: ApplyHeader, table: string) => string;
  check: Check;
}

const b64 = (text: string | undefined) => Buffer.from(text ?? '', 'utf8').toString('base64');
const BAD = EXIT.BAD_INPUT;

/** `GEN LEN`: the guard's generation and the byte length of its copy, which follows the header. */
function guardLine(guard: ApplyHeader['guard']): string {
  if (guard === undefined) return '';
  if (guard === null) return '-';
  return `${guard.gen} ${Buffer.byteLength(JSON.stringify(guard.batch), 'utf8')}`;
}

/** The apply script's stdin header, a line per field, in the order it reads them. */
export const APPLY_FIELDS = [
  {
    name: 'table',
    v: 't',
    doc: 'the table name',
    encode: (_h, table) => table,
    check: { rank: 1, sh: [`case "$t" in ''|*[!A-Za-z0-9_]*) exit ${BAD};; esac`] },
  },
  {
    name: 'seconds',
    v: 'secs',
    doc: 'seconds until the timer fires (0: none; `keep`: leave the timers alone)',
    encode: (h) => String(h.seconds),
    check: { rank: 2, sh: [`case "$secs" in keep) ;; ''|*[!0-9]*) exit ${BAD};; esac`] },
  },
  {
    name: 'release',
    v: 'rel',
    doc: 'the batch the timer applies (JSON)',
    encode: (h) => JSON.stringify(h.release ?? {}),
    check: { none: 'a batch, read by nft alone (a pipe from printf: never a shell word)' },
  },
  {
    name: 'notice',
    v: 'w',
    doc: 'the notice for logged-in users now (base64, empty: none)',
    encode: (h) => b64(h.notice),
    check: { rank: 4, sh: [`case "$w$rw" in *[!A-Za-z0-9+/=]*) exit ${BAD};; esac`] },
  },
  {
    name: 'releaseNotice',
    v: 'rw',
    doc: 'the notice when the timer fires (base64, empty: none)',
    encode: (h) => b64(h.releaseNotice),
    check: { by: 'notice' },
  },
  {
    name: 'boot',
    v: 'p',
    doc: 'the boot unit (base64 of its text; empty: leave it; `-`: remove it)',
    encode: (h) => (h.boot === undefined || h.boot === '-' ? (h.boot ?? '') : b64(h.boot)),
    check: { rank: 5, sh: [`case "$p" in -) ;; *[!A-Za-z0-9+/=]*) exit ${BAD};; esac`] },
  },
  {
    name: 'severTcp',
    v: 'kt',
    doc: 'the `ss` filter of the TCP sockets to keep (empty: cut nothing)',
    encode: (h) => h.sever?.tcp ?? '',
    // an ss filter is addresses, ports, brackets and words: nothing a shell or ss could run
    check: { rank: 10, sh: [`case "$kt$ku" in *[!A-Za-z0-9.:/,\\ \\(\\)\\[\\]=\\<\\>!]*) exit ${BAD};; esac`] },
  },
  {
    name: 'severUdp',
    v: 'ku',
    doc: 'the same for UDP',
    encode: (h) => h.sever?.udp ?? '',
    check: { by: 'severTcp' },
  },
  {
    name: 'thenSeconds',
    v: 's2',
    doc: "seconds from the timer's batch to a second one (empty: none)",
    encode: (h) => (h.then ? String(Math.max(0, Math.ceil(h.then.seconds))) : ''),
    check: { rank: 3, sh: [`case "$s2" in *[!0-9]*) exit ${BAD};; esac`] },
  },
  {
    name: 'thenBatch',
    v: 'rel2',
    doc: 'that second batch (JSON)',
    encode: (h) => (h.then ? JSON.stringify(h.then.batch) : ''),
    check: { none: 'a batch, read by nft alone' },
  },
  {
    name: 'rearm',
    v: 'rg',
    doc: "the guard once the timer's batch applied (systemd timers; a verify rollback's): empty (end it), `GEN BATCH` (keep generation GEN, BATCH its full isolate batch, JSON)",
    encode: (h) => (h.rearm ? `${h.rearm.gen} ${JSON.stringify(h.rearm.batch)}` : ''),
    // the guard the timer's first batch leaves (a rollback's: the previous isolation): `GEN BATCH`
    check: { rank: 6, sh: [`case "$rg" in '') ;; [0-9]*' '?*) case "\${rg%% *}" in *[!0-9]*) exit ${BAD};; esac;; *) exit ${BAD};; esac`] },
  },
  {
    name: 'guard',
    v: 'g',
    doc: 'the guard: empty (leave it), `-` (end it), `GEN LEN` (keep generation GEN: its full isolate batch, LEN bytes, follows the header and precedes the batch to apply)',
    encode: (h) => guardLine(h.guard),
    // `GEN LEN` read into gn and gl: keep generation GEN, whose full batch (LEN bytes) follows the header
    check: {
      rank: 7,
      sh: [
        "gn=; gl=; case \"$g\" in ''|-) ;; *) gn=${g% *}; gl=${g#* };; esac",
        `if [ -n "$gn$gl" ]; then case "$gn" in ''|*[!0-9]*) exit ${BAD};; esac; case "$gl" in ''|*[!0-9]*) exit ${BAD};; esac; fi`,
      ],
    },
  },
  {
    name: 'lockWait',
    v: 'lw',
    doc: "seconds the script may wait for the guard's lock (1 to GUARD_LOCK_WAIT_MAX_S: the controller derives it from the time its exec has left, see lockWaitS; capped on the host too)",
    encode: (h) => String(Math.max(1, Math.min(GUARD_LOCK_WAIT_MAX_S, Math.floor(h.lockWaitS ?? GUARD_LOCK_WAIT_MAX_S)))),
    // whole seconds, at least one try, never more than the cap whatever was sent
    check: {
      rank: 8,
      sh: [`case "$lw" in ''|*[!0-9]*|??????????*) exit ${BAD};; esac`, `[ "$lw" -ge 1 ] || lw=1; [ "$lw" -le ${GUARD_LOCK_WAIT_MAX_S} ] || lw=${GUARD_LOCK_WAIT_MAX_S}`],
    },
  },
  {
    name: 'inspect',
    v: 'li',
    doc: 'a listing batch (JSON, empty: none) nft runs just before the batch, under the same lock: what the table held, printed first in the answer (an in-place edit is seen as it is undone)',
    encode: (h) => (h.inspect ? JSON.stringify(h.inspect) : ''),
    check: { rank: 9, sh: [`case "$li" in ''|'{"nftables":'*) ;; *) exit ${BAD};; esac`] },
  },
] as const satisfies readonly Field[];

export type ApplyFieldName = (typeof APPLY_FIELDS)[number]['name'];

/** A field by name (a typo is a compile error). */
export function applyField(name: ApplyFieldName): Field {
  return APPLY_FIELDS.find((f) => f.name === name)!;
}

/** The shell variable the apply script reads a field into. */
export const fieldVar = (name: ApplyFieldName): string => applyField(name).v;

/** Where the script's reading line breaks (after this many fields): as it always did. */
const READ_BREAK = 6;

/** The apply script's first lines: every header field read (exit SHORT_INPUT when stdin ends early), then checked. */
export function readApplyInput(): string[] {
  const reads = APPLY_FIELDS.map((f) => `IFS= read -r ${f.v}`);
  const checks = APPLY_FIELDS.flatMap((f): { rank: number; sh: readonly string[] }[] => ('rank' in f.check ? [f.check] : []))
    .sort((a, b) => a.rank - b.rank)
    .flatMap((c) => c.sh);
  return [`${reads.slice(0, READ_BREAK).join(' && ')} &&`, `  ${reads.slice(READ_BREAK).join(' && ')} || exit ${EXIT.SHORT_INPUT}`, ...checks];
}

/** The apply script's stdin: the header, then the guard's copy (when it keeps one) and the batch. */
export function encodeApplyInput(table: string, batch: Batch, header: ApplyHeader): string {
  const lines = APPLY_FIELDS.map((f) => f.encode(header, table));
  return lines.join('\n') + '\n' + (header.guard ? JSON.stringify(header.guard.batch) : '') + JSON.stringify(batch);
}

/** A sent stdin read back by field name (tests, the fake host): the header, the guard's copy, the batch. */
export interface DecodedApplyInput {
  fields: Record<ApplyFieldName, string>;
  /** the guard's copy (as many bytes as the `guard` field says), '' when none */
  guardCopy: string;
  /** what follows the copy: the batch to apply now */
  batch: string;
}

/** Reads an apply script's stdin as the script does; throws when the header is short. */
export function decodeApplyInput(stdin: string): DecodedApplyInput {
  const parts = stdin.split('\n');
  if (parts.length < APPLY_FIELDS.length + 1) throw new Error(`the apply header has ${parts.length - 1} lines, not ${APPLY_FIELDS.length}`);
  const fields = Object.fromEntries(APPLY_FIELDS.map((f, i) => [f.name, parts[i]])) as Record<ApplyFieldName, string>;
  const rest = Buffer.from(parts.slice(APPLY_FIELDS.length).join('\n'), 'utf8');
  const m = /^(\d+) (\d+)$/.exec(fields.guard);
  const len = m ? Number(m[2]) : 0;
  return { fields, guardCopy: rest.subarray(0, len).toString('utf8'), batch: rest.subarray(len).toString('utf8') };
}
