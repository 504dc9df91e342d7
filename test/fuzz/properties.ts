/**
 * Hostile and valid inputs for every schema, and the properties every one of them must keep:
 * rejected with a ValidationError, or rendered into a batch that stays data (the remote command
 * line is one of the constants, stdin keeps its shape). Shared by the unit test (a fast run), the
 * lab test (nft's check mode accepts every rendered batch) and `npm run fuzz` (100,000 cases).
 */
import fc from 'fast-check';
import {
  exceptionListSchema,
  isolateRequestSchema,
  targetSchema,
  unisolateRequestSchema,
  validate,
  ValidationError,
  expandPresets,
  type Exception,
} from '../../src/driver';
import { dedupeExceptions } from '../../src/driver/policy';
import { nftInput } from '../../src/driver/host/apply';
import { decodeApplyInput, type ApplyHeader } from '../../src/driver/host/apply-input';
import { severFilters } from '../../src/driver/host/sever';
import { renderBootUnit, renderIsolate, renderRelease, renderUpdate, type Batch, type StateDoc } from '../../src/driver/ruleset';
import { decodeState } from '../../src/driver/state';
import { COMMANDS } from '../../src/driver/transport';

/** Strings an attacker would try: shell and nft syntax, control characters, long and odd text. */
/** Servers and management as a host would give them, for the presets that need them. */
const PRESET_CONTEXT = {
  management: [{ addr: '198.18.0.1', port: 22 }],
  servers: {
    dns: { addrs: ['198.18.0.53', '2001:db8::53'], from: 'fuzz' },
    ntp: { addrs: ['198.18.0.123'], from: 'fuzz' },
    ldap: { addrs: ['198.18.0.89'], from: 'fuzz' },
  },
};

const HOSTILE = [
  '',
  ' ',
  '$(reboot)',
  '`id`',
  '; rm -rf / #',
  '|| true',
  '"; flush ruleset; "',
  '\n',
  'a\nb',
  '\u0000',
  '\u202e',
  '../../etc/passwd',
  '0.0.0.0/0',
  '::/0',
  '198.18.0.1;reboot',
  '198.18.0.1\n',
  '1-65535',
  '65536',
  '0',
  '-1',
  '22 ',
  'tcp',
  'in',
  'ssh',
  '{}',
  '@in4',
  'table inet x { }',
  'x'.repeat(5000),
];

const hostile = fc.oneof(fc.constantFrom(...HOSTILE), fc.string({ maxLength: 40 }), fc.string({ unit: 'grapheme', maxLength: 20 }));
const octet = fc.integer({ min: 0, max: 255 });
const v4 = fc.tuple(octet, octet, octet, octet).map((o) => o.join('.'));
const v6 = fc.ipV6();
const cidr4 = fc.tuple(v4, fc.integer({ min: 0, max: 32 })).map(([a, l]) => `${a}/${l}`);
const cidr6 = fc.tuple(v6, fc.integer({ min: 0, max: 128 })).map(([a, l]) => `${a}/${l}`);
/** mostly `good`, sometimes hostile: enough valid requests to exercise the renderer */
const mostly = <T>(good: fc.Arbitrary<T>) => fc.oneof({ arbitrary: good, weight: 12 }, { arbitrary: hostile, weight: 1 });
const addr = mostly(fc.oneof(v4, v6, cidr4, cidr6));
const port = mostly(
  fc.oneof(
    fc.integer({ min: 1, max: 65535 }),
    fc.integer({ min: -5, max: 70_000 }),
    fc.tuple(fc.integer({ min: 0, max: 66_000 }), fc.integer({ min: 0, max: 66_000 })).map(([a, b]) => `${Math.min(a, b)}-${Math.max(a, b)}`),
  ),
);
const icmpTypes = ['echo-request', 'echo-reply', 'destination-unreachable', 'packet-too-big', 'time-exceeded', 'neighbor-solicitation', 'router-advertisement'];

/** An exception-shaped object: mostly plausible fields, sometimes hostile ones, rarely an extra key. */
export const exceptionArb: fc.Arbitrary<Record<string, unknown>> = fc
  .tuple(
    fc.record(
      {
        direction: mostly(fc.constantFrom('in', 'out')),
        proto: mostly(fc.constantFrom('tcp', 'udp', 'icmp', 'any')),
        addr,
        port,
        icmpType: mostly(fc.constantFrom(...icmpTypes)),
        comment: fc.oneof(fc.string({ maxLength: 140 }), fc.string({ unit: 'grapheme', maxLength: 40 }), hostile),
      },
      { requiredKeys: ['direction', 'proto'] },
    ),
    fc.option(
      fc.oneof(
        fc.record({ uid: mostly(fc.oneof(fc.integer({ min: -2, max: 2 ** 32 }), fc.constantFrom('nobody', 'backup', 'Root', 'a b'))) }),
        fc.record({ unit: mostly(fc.constantFrom('edr-agent.service', 'backup.scope', 'a@b.service', 'x.slice')) }),
        fc.record({ cgroup: mostly(fc.constantFrom('system.slice/x.service', 'unified/user.slice', 'a/../b')) }),
        fc.record({ extra: hostile }),
      ),
      { freq: 4 },
    ),
  )
  .map(([e, owner]) => ({ ...e, ...(owner ?? {}) }));

export const requestArb = fc.record(
  {
    presets: mostly(fc.subarray(['ssh', 'dns', 'dhcp', 'ntp', 'ldap', 'ldaps', 'icmp', 'cloud-metadata'])),
    exceptions: fc.array(exceptionArb, { maxLength: 12 }),
    reason: fc.oneof(fc.string({ maxLength: 300 }), fc.string({ unit: 'grapheme', maxLength: 100 }), hostile),
    mode: mostly(fc.constantFrom('enforce', 'audit')),
    duration: mostly(fc.oneof(fc.constant(0), fc.integer({ min: -10, max: 40 * 86400 }))),
    force: mostly(fc.boolean()),
    verify: fc.boolean(),
    wall: fc.oneof(fc.string({ maxLength: 200 }), fc.string({ unit: 'grapheme', maxLength: 60 }), hostile),
    persist: mostly(fc.boolean()),
  },
  { requiredKeys: [] },
);

export const targetArb = fc.record(
  {
    host: mostly(fc.oneof(v4, v6, fc.domain())),
    port: mostly(fc.integer({ min: -1, max: 70_000 })),
    username: mostly(fc.constantFrom('isolator', 'root')),
    privateKey: fc.constant('-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n'),
    knownHosts: mostly(fc.constant('198.18.0.2 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIL48++oJJJvDkewzvugVU7EctSvMYJmR74k7qVa5AGFD\n')),
    sudo: mostly(fc.boolean()),
    table: mostly(fc.constantFrom('node_red_isolation', 'nrhi_x')),
    timeoutMs: mostly(fc.integer({ min: -1, max: 200_000 })),
  },
  { requiredKeys: ['host', 'username', 'knownHosts'] },
);

const CONSTANT_COMMANDS = new Set<string>(Object.values(COMMANDS));

export interface CaseResult {
  /** the request was valid: this batch was rendered (else it was rejected with a ValidationError) */
  batch: Batch | null;
}

/**
 * The properties for one (target, request) pair. Throws on a violation: anything but a
 * ValidationError while validating, a command line that is not a constant, a stdin whose lines
 * shift, or a record that does not round-trip.
 */
export function checkCase(targetIn: unknown, requestIn: unknown, table = 'nrhi_fuzz'): CaseResult {
  let target;
  let req;
  try {
    target = validate(targetSchema, targetIn, 'target');
  } catch (err) {
    if (err instanceof ValidationError) target = validate(targetSchema, { host: '198.18.0.2', username: 'isolator', password: 'x', knownHosts: 'x', table }, 'target');
    else throw err;
  }
  try {
    req = validate(isolateRequestSchema, requestIn, 'request');
  } catch (err) {
    if (err instanceof ValidationError) return { batch: null };
    throw err;
  }
  let exceptions: Exception[];
  try {
    exceptions = dedupeExceptions([...expandPresets(req.presets, PRESET_CONTEXT), ...req.exceptions]);
    validate(exceptionListSchema, exceptions, 'exceptions');
  } catch (err) {
    if (err instanceof ValidationError) return { batch: null };
    throw err;
  }
  const doc: StateDoc = {
    v: 1,
    since: '2026-11-24T09:00:00.000Z',
    reason: req.reason ?? null,
    mode: req.mode,
    expiresAt: req.duration > 0 ? new Date(Date.parse('2026-11-24T09:00:00.000Z') + req.duration * 1000).toISOString() : null,
    management: [{ addr: '198.18.0.1', port: 22 }],
    exceptions,
    ...(req.persist ? { persist: true } : {}),
  };
  let batch: Batch;
  try {
    batch = renderIsolate(table, doc, 7);
  } catch (err) {
    if (err instanceof RangeError) return { batch: null }; // too many pieces: the driver refuses it as VALIDATION
    throw err;
  }
  renderUpdate(table, doc, 7);
  // the record on the host decodes to exactly what was written
  const comments = batch.nftables
    .map((c) => (c as { add?: { rule?: { comment?: string } } }).add?.rule?.comment)
    .filter((c): c is string => typeof c === 'string');
  const back = decodeState(comments);
  if (JSON.stringify(back) !== JSON.stringify(doc)) throw new Error('state record does not round-trip');
  // the command line is always a constant; stdin keeps its line structure whatever the data
  const timers: (ApplyHeader | undefined)[] = [
    undefined,
    { seconds: req.duration, release: renderRelease(table, doc), notice: req.wall, releaseNotice: req.wall, boot: req.persist ? renderBootUnit(table, batch) : '-' },
    { seconds: 'keep', release: null },
    // what isolate sends in enforce mode: the filters of the sockets to keep, and a rollback's second timer
    { seconds: 30, release: renderRelease(table, doc), sever: severFilters(doc.management, doc.exceptions), then: { seconds: 5, batch }, guard: { gen: 7, batch }, rearm: { gen: 9, batch } },
    // unisolate, audit: the host's guard ended
    { seconds: 0, release: null, guard: null },
  ];
  for (const sudo of [false, true]) {
    for (const timer of timers) {
      const { cmd, stdin } = nftInput({ ...target, table, sudo }, batch, timer);
      if (!CONSTANT_COMMANDS.has(cmd)) throw new Error(`command line is not a constant: ${cmd.slice(0, 80)}`);
      const lines = stdin.split('\n');
      if (timer === undefined) {
        if (lines.length !== 1 || JSON.stringify(JSON.parse(stdin)) !== JSON.stringify(batch)) throw new Error('batch stdin changed shape');
      } else {
        if (lines.length !== 15) throw new Error(`stdin has ${lines.length} lines, not 15`);
        const { fields: f, guardCopy, batch: now } = decodeApplyInput(stdin);
        if (f.table !== table || !/^(\d+|keep)$/.test(f.seconds)) throw new Error('header changed');
        for (const l of [f.notice, f.releaseNotice, f.boot]) if (!/^(-|[A-Za-z0-9+/=]*)$/.test(l)) throw new Error(`header line not base64: ${l.slice(0, 40)}`);
        JSON.parse(f.release);
        for (const l of [f.severTcp, f.severUdp]) if (!/^[A-Za-z0-9.:/, ()[\]=<>!]*$/.test(l)) throw new Error(`ss filter line holds more than a filter: ${l.slice(0, 40)}`);
        if (!/^\d*$/.test(f.thenSeconds)) throw new Error('second timer seconds changed');
        if (f.thenSeconds !== '') JSON.parse(f.thenBatch);
        // the guard a rollback re-arms: `GEN BATCH` on one line
        const rg = /^(\d+) (.+)$/.exec(f.rearm);
        if (f.rearm !== '' && (!rg || Number(rg[1]) !== timer.rearm?.gen || JSON.stringify(JSON.parse(rg[2])) !== JSON.stringify(timer.rearm?.batch))) throw new Error('rearm line changed');
        // the guard's line, then its copy (exactly LEN bytes) right before the batch
        const g = /^(|-|(\d+) (\d+))$/.exec(f.guard);
        if (!g) throw new Error(`guard line changed: ${f.guard.slice(0, 40)}`);
        // the lock wait: whole seconds within the host's cap
        if (!/^([1-9]|10)$/.test(f.lockWait)) throw new Error(`lock wait line changed: ${f.lockWait}`);
        // the listing batch (an isolate of the same generation): empty, or JSON
        if (f.inspect !== '') JSON.parse(f.inspect);
        if (g[3] !== undefined && (Buffer.byteLength(guardCopy, 'utf8') !== Number(g[3]) || JSON.stringify(JSON.parse(guardCopy)) !== JSON.stringify(timer.guard?.batch))) throw new Error('guard copy changed');
        if (JSON.stringify(JSON.parse(now)) !== JSON.stringify(batch)) throw new Error('batch line changed');
      }
    }
  }
  validate(unisolateRequestSchema, req.wall === undefined ? {} : { wall: req.wall }, 'request');
  return { batch };
}
