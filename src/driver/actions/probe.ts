/**
 * The blocking probe, controller side: whether the host has the tool (asked before anything is
 * applied), and the try itself once the isolation is in (before it is confirmed, so that a
 * reached probe rolls back through verify-then-commit's rollback).
 */
import { ParseError, UnsupportedError } from '../errors';
import type { Probe } from '../policy';
import { COMMANDS } from '../host/programs';
import { parseProbe, PROBE_SECONDS, probeCheckInput, probeInput, reached, type ProbeOutcome } from '../host/probe';
import type { HostState } from '../state';
import type { HostSession } from '../session';

/** what the probe's exec may take beyond its own connect timeout (ms): the round trip and the shell */
const PROBE_SLACK_MS = 3000;

/** Refuses (UNSUPPORTED) a host without bash and timeout, before anything changes on it. */
export async function assertProbeTool(s: HostSession): Promise<void> {
  const res = await s.exec(COMMANDS.probe, probeCheckInput(), 'probe: tool check');
  const ans = parseProbe(res.stdout);
  if (res.code !== 0 || !ans) throw new ParseError(s.host, `the probe's tool check answered exit ${res.code}: ${res.stdout.slice(0, 200)}${res.stderr.slice(0, 200)}`);
  if (ans.word !== 'ready') {
    throw new UnsupportedError(s.host, 'run the blocking probe', 'it needs bash (its /dev/tcp) and timeout (coreutils) on PATH; nothing was changed', '');
  }
}

export interface ProbeResult {
  outcome: ProbeOutcome;
  detail: string;
  ms: number;
}

/** One try from the host, bounded in time; what it found (reached or not is `reached(outcome)`). */
export async function tryProbe(s: HostSession, probe: Probe): Promise<ProbeResult> {
  const started = Date.now();
  const res = await s.exec(COMMANDS.probe, probeInput(probe), 'probe', { timeoutMs: Math.min(s.remaining('probe'), PROBE_SECONDS * 1000 + PROBE_SLACK_MS) });
  const ms = Date.now() - started;
  const ans = parseProbe(res.stdout);
  if (res.code !== 0 || !ans || ans.word === 'ready') throw new ParseError(s.host, `the probe answered exit ${res.code}: ${res.stdout.slice(0, 200)}${res.stderr.slice(0, 200)}`);
  if (ans.word === 'missing') throw new UnsupportedError(s.host, 'run the blocking probe', 'it needs bash (its /dev/tcp) and timeout (coreutils) on PATH', '');
  return { outcome: ans.word, detail: ans.text, ms };
}

/** The answer's record of a probe that was not reached. */
export function probeRecord(probe: Probe, r: ProbeResult): NonNullable<HostState['probe']> {
  if (reached(r.outcome)) throw new Error('a reached probe has no record of success');
  return {
    addr: probe.addr,
    port: probe.port,
    proto: probe.proto,
    reached: false,
    outcome: r.outcome as 'timeout' | 'failed',
    ...(r.detail !== '' ? { detail: r.detail } : {}),
    ms: r.ms,
  };
}
