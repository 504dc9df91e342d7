/**
 * The blocking probe (isolate's `probe`): once the isolation is in, the host itself tries to open
 * a TCP connection to an address that the isolation must cut, bounded in time. One constant
 * program, run as the SSH user (a connect needs no privilege, so no sudo and no sudoers line);
 * the address, the port and the seconds come on stdin and are checked again here, and reach the
 * connect as separate argv words, never as shell text.
 *
 * stdin: `check` (is the tool there? nothing is sent anywhere), or `probe`, ADDR, PORT, SECS on
 * lines of their own. Its answer is one `nrhi-probe WORD` line:
 * - `ready` / `missing`: the check's answer (bash and timeout on PATH, or not);
 * - `connected`: the TCP handshake completed: reached;
 * - `refused`: a TCP RST came back ("Connection refused"): a packet went out and an answer came
 *   in, so that is reached too;
 * - `timeout`: no answer within SECS (the isolation's drop policy swallows the SYN): not reached;
 * - `failed TEXT`: the connect failed otherwise (no route, "Operation not permitted" from the
 *   host's own filter): not reached. TEXT is the shell's message, cut to safe characters.
 */
import { EXIT } from './commands';
import type { Probe } from '../policy';

/** How long the host waits for the probe's connect (s): long enough for a LAN or WAN handshake, short for an incident. */
export const PROBE_SECONDS = 3;

export const PROBE = [
  'PATH="$PATH:/usr/bin:/bin"',
  'if ! command -v bash >/dev/null 2>&1 || ! command -v timeout >/dev/null 2>&1; then echo "nrhi-probe missing"; exit 0; fi',
  `IFS= read -r m || exit ${EXIT.SHORT_INPUT}`,
  `case "$m" in check) echo "nrhi-probe ready"; exit 0;; probe) ;; *) exit ${EXIT.BAD_INPUT};; esac`,
  `IFS= read -r a || exit ${EXIT.SHORT_INPUT}`,
  `IFS= read -r p || exit ${EXIT.SHORT_INPUT}`,
  `IFS= read -r s || exit ${EXIT.SHORT_INPUT}`,
  `case "$a" in ''|*[!0-9a-fA-F.:]*) exit ${EXIT.BAD_INPUT};; esac`,
  `[ "$(printf %s "$a" | wc -c)" -le 45 ] || exit ${EXIT.BAD_INPUT}`,
  `case "$p" in ''|0*|*[!0-9]*|??????*) exit ${EXIT.BAD_INPUT};; esac`,
  `[ "$p" -le 65535 ] || exit ${EXIT.BAD_INPUT}`,
  `case "$s" in [1-9]) ;; *) exit ${EXIT.BAD_INPUT};; esac`,
  // the address and port are argv words of bash -c, never part of its program text
  `e=$(LC_ALL=C timeout "$s" bash -c 'exec 3<>"/dev/tcp/$1/$2"' nrhi-probe "$a" "$p" 2>&1 </dev/null); rc=$?`,
  'if [ "$rc" -eq 0 ]; then echo "nrhi-probe connected"',
  'elif [ "$rc" -eq 124 ]; then echo "nrhi-probe timeout"',
  'else case "$e" in *"Connection refused"*) echo "nrhi-probe refused";; *) printf "nrhi-probe failed %s\\n" "$(printf %s "$e" | tr -c "A-Za-z0-9 :._-" " " | head -c 200)";; esac; fi',
].join('\n');

export type ProbeOutcome = 'connected' | 'refused' | 'timeout' | 'failed';

/** What the host answered: ready/missing for a check, an outcome for a probe; null: unreadable. */
export function parseProbe(stdout: string): { word: 'ready' | 'missing' | ProbeOutcome; text: string } | null {
  for (const line of stdout.split('\n').slice(0, 8)) {
    const m = /^nrhi-probe (ready|missing|connected|refused|timeout|failed)(?: (.{0,200}))?$/.exec(line.trimEnd());
    if (m) return { word: m[1] as 'ready', text: (m[2] ?? '').trim() };
  }
  return null;
}

/** Reached: a packet went out and an answer came back (a completed handshake, or a RST). */
export const reached = (o: ProbeOutcome): boolean => o === 'connected' || o === 'refused';

export const probeCheckInput = (): string => 'check\n';
export const probeInput = (p: Probe, seconds = PROBE_SECONDS): string => `probe\n${p.addr}\n${p.port}\n${seconds}\n`;
