/**
 * Host text (stderr, messages that echo what a host said) is bounded and cleaned before it goes
 * into an error, an audit record or a node's status: a compromised host writes what it likes.
 */
import { strict as assert } from 'assert';
import * as fc from 'fast-check';
import helper from 'node-red-node-test-helper';
import * as sinon from 'sinon';
import {
  AuthFailedError,
  hostText,
  IsolationError,
  MAX_ERROR_MESSAGE,
  MAX_HOST_TEXT,
  NftFailedError,
  NftMissingError,
  OutputLimitError,
  ParseError,
  PrivilegeError,
  UnreachableError,
  UnsupportedError,
  VerifyFailedError,
} from '../../src/driver';
import { MAX_EXEC_OUTPUT, nftError } from '../../src/driver/transport';
import { MAX_STATUS_TEXT, sharedDriver } from '../../src/nodes/common';
import targetNode from '../../src/nodes/isolation-target/isolation-target';
import isolateNode from '../../src/nodes/isolate-host/isolate-host';
import statusNode from '../../src/nodes/isolation-status/isolation-status';
// eslint-disable-next-line @typescript-eslint/no-require-imports
const catchNode = require('@node-red/nodes/core/common/25-catch.js');

const driver = sharedDriver();

/** What must never survive: C0 but newline and tab, DEL, C1, bidi overrides, and so any ESC. */
// eslint-disable-next-line no-control-regex
const UNSAFE = /[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]/;

const ESC = '\x1b';
/** A taste of what a hostile terminal-aware host writes: colours, cursor moves, a title, a hyperlink, DCS, C1 CSI, bidi. */
const HOSTILE = [
  `${ESC}[2J${ESC}[H${ESC}[1;31mError:${ESC}[0m Could not process rule`,
  `${ESC}]0;owned title\x07${ESC}]8;;http://198.18.0.66/x${ESC}\\link${ESC}]8;;${ESC}\\`,
  `${ESC}P1$r0m${ESC}\\${ESC}7${ESC}(B${ESC}c\x9b31mC1${ESC}[1A\r\b\x00\x07\x7f\x85`,
  'left\u202eright\u2066iso\u2069 tab\there',
].join(' ');

function clean(s: string): void {
  assert.ok(!UNSAFE.test(s), `unsafe character in ${JSON.stringify(s.slice(0, 200))}`);
}

describe('hostText', function () {
  this.timeout(10_000); // the property test, on a busy machine
  it('strips escape sequences and control characters, keeps text, newlines and tabs', () => {
    const out = hostText(`${HOSTILE}\r\nnext line\n`);
    clean(out);
    assert.equal(
      out,
      'Error: Could not process rule link C1 leftrightiso tab\there\nnext line\n',
    );
    assert.equal(hostText('plain nft error: No such file or directory\n\tat line 1'), 'plain nft error: No such file or directory\n\tat line 1');
    assert.equal(hostText('Ünïcødé ✓ 漢字 😀'), 'Ünïcødé ✓ 漢字 😀');
  });

  it('bounds the text and marks the cut with the length it had', () => {
    const mb = 'E'.repeat(1024 * 1024);
    const out = hostText(mb);
    assert.ok(out.length <= MAX_HOST_TEXT, `${out.length}`);
    assert.match(out, /^E+…\[cut: 1048576 characters\]$/);
    assert.equal(hostText('x'.repeat(MAX_HOST_TEXT)), 'x'.repeat(MAX_HOST_TEXT), 'exactly the bound is not cut');
    assert.match(hostText('x'.repeat(MAX_HOST_TEXT + 1)), /…\[cut: 2049 characters\]$/);
    // a megabyte of escape sequences and then text: bounded work, and still cut and marked
    const esc = `${ESC}[1m`.repeat(250_000) + 'tail';
    const e = hostText(esc);
    assert.match(e, /^…\[cut: 1000004 characters\]$/);
    // short bounds (a node status)
    const s = hostText(`${'h'.repeat(100)}`, 64);
    assert.equal(s.length, 64);
    assert.match(s, /…\[cut: 100 characters\]$/);
    assert.equal(hostText('abcdef', 3), 'abc', 'a bound too short for the marker just cuts');
  });

  it('does not split a surrogate pair at the cut', () => {
    const max = 40;
    const marker = '…[cut: 100 characters]';
    // an emoji (two UTF-16 units) straddling the cut point
    const text = 'a'.repeat(max - marker.length - 1) + '😀'.repeat(50);
    const out = hostText(text.slice(0, 100), max);
    assert.ok(!/[\ud800-\udbff](?![\udc00-\udfff])/.test(out), 'no lone high surrogate');
  });

  it('takes anything: null, numbers, objects', () => {
    assert.equal(hostText(null), '');
    assert.equal(hostText(undefined), '');
    assert.equal(hostText(42), '42');
    assert.equal(hostText({ toString: () => `a${ESC}[31mb` }), 'ab');
  });

  it('for any text and bound: within the bound, nothing unsafe, idempotent', () => {
    const piece = fc.oneof(
      fc.string({ unit: 'binary', maxLength: 40 }),
      fc.constantFrom(ESC, '\x9b', '[', ']', '\\', '\x07', '\r', '\n', '\t', '\u202e', '😀', `${ESC}[`, `${ESC}]`, `${ESC}P`),
    );
    fc.assert(
      fc.property(fc.array(piece, { maxLength: 60 }), fc.integer({ min: 1, max: 300 }), (parts, max) => {
        const text = parts.join('');
        const out = hostText(text, max);
        assert.ok(out.length <= max);
        clean(out);
        assert.equal(hostText(out, max), out);
      }),
      { numRuns: 500 },
    );
  });
});

describe('host text in errors', () => {
  const megabyte = 'E'.repeat(1024 * 1024);
  const hostile = `${HOSTILE}\n${megabyte}`;
  const res = (code: number | null, stderr: string) => ({ code, signal: null, stdout: '', stderr });

  const bounded = (e: IsolationError) => {
    assert.ok(e.message.length <= MAX_ERROR_MESSAGE, `${e.code} message ${e.message.length}`);
    clean(e.message);
    const json = JSON.stringify(e.toJSON());
    assert.ok(json.length < MAX_ERROR_MESSAGE + MAX_HOST_TEXT + 1000, `${e.code} JSON ${json.length}`);
    clean(JSON.parse(json).message);
    for (const v of Object.values(e.details)) if (typeof v === 'string') clean(v);
    if (typeof e.details.stderr === 'string') assert.ok(e.details.stderr.length <= MAX_HOST_TEXT);
  };

  it('nftError maps hostile stderr to the same codes, bounded and clean', () => {
    const failed = nftError('198.18.0.2', res(1, hostile));
    assert.equal(failed.code, 'NFT_FAILED');
    bounded(failed);
    assert.match(failed.message, /^nft failed on 198\.18\.0\.2: Error: Could not process rule/);
    assert.match(failed.message, /…\[cut: \d+ characters\]$/);
    assert.ok((failed as NftFailedError).stderr.length <= MAX_HOST_TEXT);
    assert.equal((failed as NftFailedError).exitCode, 1);
    // colour codes around sudo's words do not hide what it said
    const sudo = nftError('h', res(1, `${ESC}[1msudo: a password is required${ESC}[0m\n${megabyte}`));
    assert.equal(sudo.code, 'PRIVILEGE');
    bounded(sudo);
    const missing = nftError('h', res(127, `sh: 1: exec: nft: not found\n${hostile}`));
    assert.equal(missing.code, 'NFT_MISSING');
    bounded(missing);
    const eperm = nftError('h', res(1, `Error: Could not process rule: Operation not permitted\n${hostile}`));
    assert.equal(eperm.code, 'PRIVILEGE');
    bounded(eperm);
    // short, ordinary stderr is kept as it is
    assert.equal((nftError('h', res(1, 'Error: syntax error\n')) as NftFailedError).stderr, 'Error: syntax error\n');
  });

  it('every class that carries host text bounds and cleans it', () => {
    const cause = new Error(hostile);
    const errors: IsolationError[] = [
      new NftFailedError('h', hostile, 1),
      new NftMissingError('h', hostile),
      new PrivilegeError('h', hostile),
      new UnsupportedError('h', 'match a unit', 'a hint', hostile),
      new AuthFailedError('h', hostile),
      new UnreachableError('h', hostile),
      new ParseError('h', hostile),
      new VerifyFailedError('h', false, '2026-11-25T00:00:00.000Z', { cause }),
      new VerifyFailedError('h', true, '2026-11-25T00:00:00.000Z', { cause: new NftFailedError('h', hostile, 1) }),
    ];
    for (const e of errors) bounded(e);
    assert.equal(new NftFailedError('h', '', 2).message, 'nft failed on h: exit code 2');
  });

  it('OUTPUT_LIMIT: its own class and code, with the host and the limit', () => {
    const e = new OutputLimitError('198.18.0.2', MAX_EXEC_OUTPUT);
    assert.ok(e instanceof IsolationError);
    assert.equal(e.code, 'OUTPUT_LIMIT');
    assert.equal(e.name, 'OutputLimitError');
    assert.equal(e.host, '198.18.0.2');
    assert.equal(e.details.limitBytes, 4 * 1024 * 1024);
    assert.match(e.message, /198\.18\.0\.2.*4194304 bytes/);
  });
});

describe('host text in the nodes: audit records, fan-out rows, Catch, status', function () {
  this.timeout(10_000);
  let sb: sinon.SinonSandbox;
  const hostile = `${HOSTILE}\n${'E'.repeat(1024 * 1024)}`;

  type AnyNode = { receive(msg: object): void; on(ev: string, fn: (m: Record<string, unknown>) => void): void; status: sinon.SinonSpy };
  const TARGET = {
    id: 'tgt',
    type: 'isolation-target',
    host: '198.18.0.2',
    port: 22,
    username: 'isolator',
    allowedHosts: ['198.18.0.0/24'],
    knownHosts: '198.18.0.2 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIL48++oJJJvDkewzvugVU7EctSvMYJmR74k7qVa5AGFD',
    sudo: true,
  };
  const flow = (type: string) => [
    TARGET,
    { id: 'n1', type, target: 'tgt', wires: [['out'], ['audit']] },
    { id: 'out', type: 'helper' },
    { id: 'audit', type: 'helper' },
    { id: 'c1', type: 'catch', scope: null, uncaught: false, wires: [['caught']] },
    { id: 'caught', type: 'helper' },
  ];
  const next = (id: string): Promise<Record<string, unknown>> =>
    new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`no message on ${id}`)), 3000);
      (helper.getNode(id) as unknown as AnyNode).on('input', (m) => {
        clearTimeout(t);
        resolve(m);
      });
    });

  before(() => {
    helper.init(require.resolve('node-red'));
  });
  beforeEach(() => {
    sb = sinon.createSandbox();
  });
  afterEach(async () => {
    sb.restore();
    await helper.unload();
  });

  it('a coded error and a plain one: the Catch node, the audit record and the status are bounded and clean', async () => {
    const iso = sb.stub(driver, 'isolate').rejects(new NftFailedError('198.18.0.2', hostile, 1));
    await helper.load([targetNode, isolateNode, catchNode], flow('isolate-host'), { tgt: { privateKey: 'K' } });
    const n = helper.getNode('n1') as unknown as AnyNode;
    for (const err of [null, new Error(hostile)]) {
      if (err) iso.rejects(err);
      const rec = next('audit');
      const caught = next('caught');
      n.receive({ reason: `alert ${ESC}[31mred${ESC}[0m ${'r'.repeat(5000)}` });
      const record = (await rec).payload as { error: { code: string; message: string }; reason: string };
      assert.equal(record.error.code, err ? 'ERROR' : 'NFT_FAILED');
      assert.ok(record.error.message.length <= MAX_ERROR_MESSAGE, `${record.error.message.length}`);
      clean(record.error.message);
      assert.ok(record.reason.length <= 1024);
      clean(record.reason);
      // Node-RED hands the Catch node `${err.name}: ${err.message}`
      const m = (await caught).error as { message: string; code?: string };
      assert.ok(m.message.length <= MAX_ERROR_MESSAGE + 'NftFailedError: '.length, `catch ${m.message.length}`);
      clean(m.message);
      const text = n.status.lastCall.args[0].text as string;
      assert.ok(text.length <= MAX_STATUS_TEXT);
      clean(text);
    }
  });

  it('a fan-out row carries a bounded, clean message', async () => {
    sb.stub(driver, 'status').rejects(new PrivilegeError('198.18.0.3', hostile));
    await helper.load([targetNode, statusNode, catchNode], flow('isolation-status'), { tgt: { privateKey: 'K' } });
    const out = next('out');
    (helper.getNode('n1') as unknown as AnyNode).receive({ hosts: ['198.18.0.3', '198.18.0.4'] });
    const rows = (await out).payload as { ok: boolean; error: { code: string; message: string } }[];
    assert.equal(rows.length, 2);
    for (const r of rows) {
      assert.equal(r.error.code, 'PRIVILEGE');
      assert.ok(r.error.message.length <= MAX_ERROR_MESSAGE);
      clean(r.error.message);
    }
  });
});
