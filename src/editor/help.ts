/**
 * The parts of the nodes' help that are the same for every node, in one place, built from the
 * driver at build time: scripts/copy-assets.js replaces each `<!-- #shared NAME -->` in
 * the nodes' help (src/nodes/<type>/locales/<lang>/<type>.html) with `sharedHelp()[NAME]`. The state's fields come from the driver's own state
 * object, the presets from its preset table, the error codes from ERROR_MEANINGS (typed by the
 * driver's ErrorCode: a code added there does not compile until it is described here).
 */
import type { ErrorCode } from '../driver/errors';
import { DEFAULT_TABLE } from '../driver/policy';
import { CGROUPV2_REFUSED_BY } from '../driver/host/preflight';
import { PRESETS } from '../driver/presets';
import { sudoersLines } from '../driver/sudoers';
import { notIsolated } from '../driver/state';
import type { Exception } from '../driver/policy';

/** What each error code means, for the help and docs/nodes.md. */
export const ERROR_MEANINGS: Record<ErrorCode, string> = {
  VALIDATION: 'an input field failed its schema (<code>err.issues</code> lists each); nothing was sent',
  HOST_NOT_ALLOWED: "the host is not on the target's allowlist; nothing was connected",
  PROTECTED_HOST:
    "the host must never be isolated (the target's <code>protectedHosts</code>, or this controller itself, by name or by an address its name resolves to); nothing was connected",
  PROTECTED_UNRESOLVED:
    "a protected name of the target (or its jump host's name) has never resolved on this controller, so what it protects is unknown: every isolation through the target is refused until it resolves (shown at deploy; a name that resolved once keeps its last good addresses through a DNS outage); list hosts that only resolve behind a bastion by address or CIDR; nothing was connected",
  BLAST_RADIUS:
    "<code>msg.hosts</code> names more hosts than the node acts on in one message (its <code>Max hosts</code>, at most the runtime setting <code>isolationTargetMaxHosts</code>); <code>err.details</code> has <code>asked</code> and <code>maxHosts</code>; the whole message is refused and no host was contacted",
  HOST_KEY_MISMATCH: 'the host key is not the pinned one (or is unknown or revoked); nothing was sent',
  AUTH_FAILED: 'login refused, or the private key could not be decrypted',
  UNREACHABLE: 'connection refused, no route, or lost',
  TIMEOUT: "connect or command exceeded the target's timeout",
  NFT_MISSING: '<code>nft</code> is not installed on the host',
  NFT_FAILED: "nft refused the batch; <code>err.stderr</code> is nft's stderr (control characters removed, at most 2048 characters); nothing was applied",
  PARSE_ERROR: "the table exists but is not the pack's, or its record is damaged",
  NOT_ISOLATED: 'exception-set on a host that is not isolated',
  PRIVILEGE: 'sudo refused, or the user may not change the firewall',
  CONCURRENT_CHANGE: 'another controller kept changing the isolation between our read and our write (6 tries), or released or replaced it while it was being verified',
  MANAGEMENT_UNKNOWN: 'the management channel could not be determined; isolating could lock us out',
  VERIFY_FAILED: 'after isolating, a new connection to the host\'s sshd (or a fresh SSH login, where login may ask the network) failed; the isolation was rolled back (see <code>rolledBack</code>)',
  UNSUPPORTED:
    "the host cannot do what was asked: its nft takes no JSON input, <code>persist</code> without systemd, a <code>unit</code>/<code>cgroup</code> exception its nft refuses (the message names the host's nft version and the feature); found by the preflight before the first isolate of each connection, so nothing was applied",
  SERVERS_UNKNOWN:
    "a <code>dns</code>, <code>ntp</code>, <code>ldap</code> or <code>ldaps</code> preset, and the host's servers of that kind could not be found (<code>err.details.kind</code>); name them in <code>servers</code>; nothing was applied",
  PROBE_REACHED:
    "the isolation was in and the host still reached the <code>probe</code> address (its TCP handshake completed, or a RST came back): some path the table does not cut carries traffic; the isolation was rolled back to what the host held before (<code>err.details.rolledBack</code>; false: the host does by itself at <code>rollbackAt</code>); <code>err.details.probe</code> and <code>outcome</code> say what was reached and how",
  PENDING_FULL:
    'the host was away and its target already keeps the most pending isolations it may (1000): this one was not kept pending; nothing was applied',
  PENDING_EXPIRED:
    'a pending isolation (<b>Keep pending</b>) reached its bound before the host answered: it was never applied; reported on output 1 (<code>topic</code> <code>host-isolation/pending</code>)',
  OUTPUT_LIMIT: 'the host sent more than 4 MiB of output for one command (broken or hostile); reading stopped and the connection was dropped; read the status before relying on the outcome',
};

function code(s: string): string {
  return `<code>${s}</code>`;
}

const html = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/** The command that prints a target's sudoers lines (package.json `bin`). */
export const SUDOERS_COMMAND = `npx node-red-host-isolation-sudoers --user isolator --table ${DEFAULT_TABLE} --features isolate,persist,guard,timer`;

/** What unit and cgroup exceptions need of the host, with the nft versions the driver knows to refuse it. */
export function cgroupv2Text(): string {
  const versions = CGROUPV2_REFUSED_BY.join(' and ');
  return `<code>unit</code> and <code>cgroup</code> exceptions need Linux 5.13 or later with cgroup v2 and an nft whose JSON parser takes <code>socket cgroupv2</code>, which nft ${versions} refuse (then <code>UNSUPPORTED</code>, before anything is applied)`;
}

function exceptionText(e: Exception): string {
  const parts = [e.direction, e.proto === 'any' ? 'any proto' : e.proto];
  if (e.port !== undefined) parts.push(String(e.port));
  if (e.icmpType !== undefined) parts.push(e.icmpType);
  if (e.addr !== undefined) parts.push(e.addr.includes(':') ? `(IPv6 ${e.addr})` : `(${e.addr})`);
  return parts.join(' ');
}

/** The state's fields, in the driver's order. */
export function stateFields(): string[] {
  return Object.keys(notIsolated('x'));
}

export function sharedHelp(): Record<string, string> {
  const state = `{ ${stateFields().join(', ')} }`;
  return {
    'host-inputs': `<dt class="optional">host <span class="property-type">string</span></dt>
    <dd>the host to act on, if not the target's own; it must be on the target's allowlist (else ${code('HOST_NOT_ALLOWED')}, before any connection).</dd>
    <dt class="optional">hosts <span class="property-type">array</span></dt>
    <dd>hosts to act on at once (not with <code>msg.host</code>), at most the node's <b>Max hosts</b> (isolate-host and
      exception-set: 10 for a new node; unisolate-host and isolation-status: the runtime's <code>isolationTargetMaxHosts</code>,
      1000 unless settings.js says otherwise), distinct hosts counted: more is one ${code('BLAST_RADIUS')} error for the whole
      message, before any connection. The message goes on once, when every
      host has answered, with <code>payload</code> one <code>{ host, ok, state }</code> or <code>{ host, ok: false, error: { code, message } }</code>
      per host, in the order given, and <code>fleet</code> <code>{ asked, maxHosts }</code>. A host that fails, fails alone.</dd>`,
    outputs: `<h3>Outputs</h3>
  <ol class="node-ports">
  <li>State
  <dl class="message-properties">
    <dt>payload <span class="property-type">object</span></dt>
    <dd>the host's state <code>${state}</code> (times as ISO strings);
      every other property of the message passes through. <code>state</code> is <code>"isolated"</code>
      (enforce: traffic is dropped), <code>"audit"</code> (audit mode: nothing is dropped, the host is
      watched, not contained) or <code>"free"</code>; <code>isolated</code> is true only for <code>"isolated"</code>.
      <code>changed</code> says whether this action changed the host (open a ticket once, not on every alert):
      isolate-host <code>true</code> when the host is isolated now or differently (or its removed table was put back),
      <code>false</code> when it already was isolated exactly so (the ruleset is then left byte for byte the same, and
      still re-asserted); unisolate-host <code>true</code> when it released an isolation, <code>false</code> when the
      host was not isolated; exception-set <code>true</code> when the exceptions differ; isolation-status never.</dd>
  </dl>
  </li>
  <li>Audit record
  <dl class="message-properties">
    <dt>payload <span class="property-type">object</span></dt>
    <dd><code>{ when, node, host, action, reason, case, requestedBy, result, error?, isolated, state, changed, mode, since, expiresAt, exceptions, digest, fleet? }</code>
      for every action, also a failed one (then with <code>error: { code, message }</code>); <code>case</code> and
      <code>requestedBy</code> are the message's, else the host's record (this record is the authority: root on the host
      can rewrite its copy); <code>digest</code> is the
      sha256 of the nft batch the action applied; <code>fleet</code> <code>{ asked, maxHosts }</code> for a <code>msg.hosts</code>
      message (a refused one too: one record, <code>host</code> null). <code>topic</code> is <code>host-isolation/audit</code>.</dd>
  </dl>
  </li>
  </ol>`,
    errors: `<p>Status: blue <i>working</i>, green <i>isolated since HH:MM</i> (enforce), a yellow ring <i>audit since
    HH:MM</i> (audit mode: the host is watched, not contained), a yellow dot when the isolation came with
    warnings, grey <i>not isolated</i>, a red ring with the error code, or <i>n/m hosts ok</i> for
    <code>msg.hosts</code>; a red ring <i>target invalid</i> when the target's configuration failed its
    check at deploy (the log says which field).</p>
  <p>Errors reach a Catch node with <code>msg.error.code</code>:</p>
  <dl class="message-properties">
${(Object.entries(ERROR_MEANINGS) as [ErrorCode, string][]).map(([c, m]) => `    <dt>${c}</dt><dd>${m}</dd>`).join('\n')}
  </dl>`,
    // the sudoers lines, generated from the commands the host scripts run (src/driver/sudoers.ts)
    sudoers: `allowed exactly the pack's own command lines as root, each with its arguments pinned; for the user
      <code>isolator</code>, what every sudo target needs:
      <pre>${html(sudoersLines({ user: 'isolator', table: DEFAULT_TABLE, features: ['isolate'] }).join('\n'))}</pre>
      The lines for your user and table, with those <code>persist</code>, the self-healing guard and the
      systemd release timer need, are printed by <code>${SUDOERS_COMMAND}</code> (docs/preparing-hosts.md; <code>node-red-host-isolation-host-setup</code> prints a whole set-up script).
      Never a bare <code>nft</code> line without its arguments: it lets the account read any file as root
      (<code>sudo nft -f /etc/shadow</code> prints its lines).`,
    cgroupv2: cgroupv2Text(),
    presets: `<dl class="message-properties">
${Object.entries(PRESETS)
  .map(([name, list]) => `    <dt>${name}</dt><dd>${[...new Set(list.map(exceptionText))].join(', ')}</dd>`)
  .join('\n')}
  </dl>`,
  };
}

/** Replaces every `<!-- #shared NAME -->` in `html`; an unknown NAME is an error (a typo must not ship). */
export function expandShared(html: string, file: string, fragments: Record<string, string> = sharedHelp()): string {
  return html.replace(/<!-- #shared ([a-z0-9-]+) -->/g, (_m, name: string) => {
    const f = fragments[name];
    if (f === undefined) throw new Error(`${file}: unknown shared help fragment "${name}" (one of ${Object.keys(fragments).join(', ')})`);
    return f;
  });
}
