/**
 * Issue 20 item 8: root on the isolated host edits the pack's table in place, under the same
 * generation (a rule that lets its C2 out, an element in an exception set). Isolating again with
 * the same request puts the table back, and must say that this changed the host (`changed: true`,
 * and what was edited): a playbook opens its ticket on `changed`. Failed on the code before: it
 * re-applied and answered `changed: false`.
 */
import { strict as assert } from 'assert';
import { IsolationDriver, type TargetInput } from '../../src/driver';
import type { IsolateRequestInput } from '../../src/driver/policy';
import { dropTables, teardown, useDriver, useLab } from '../lab/fixtures';
import type { Closable } from '../lab/lab';

const TABLE = 'nrhi_edit';

describe('adversary: an in-place edit of the table is a change', function () {
  this.timeout(120_000);
  const lab = useLab({ hosts: 1 });
  const driver = useDriver({ verifyWindowS: 5 });
  let target: TargetInput;
  let c2: Closable[] = [];

  before(async () => {
    const h = lab.hosts[0];
    target = { host: h.v4, username: lab.users.root.username, privateKey: lab.users.root.privateKey, knownHosts: h.knownHosts, table: TABLE, timeoutMs: 15_000 };
    // the attacker's C2 on the peer
    c2 = [await lab.listen(lab.peer.ns, 7301), await lab.listen(lab.peer.ns, 7302)];
  });
  teardown(() => {
    for (const c of c2) c.close();
  });

  afterEach(() => dropTables(lab, TABLE, [0]));

  const host = () => lab.hosts[0];
  /** root on the host (its own view: sshd's namespaces) runs nft */
  const asRoot = (args: string[]) => lab.hostExec(0, ['nft', ...args]);
  const c2Open = () => lab.tryConnect(host().ns, lab.peer.v4, 7301);

  async function editThenIsolate(req: IsolateRequestInput, edit: string[], finding: RegExp, d = driver): Promise<void> {
    const r = await asRoot(edit);
    assert.equal(r.code, 0, r.stderr);
    // read by the test's own driver: `d` keeps its belief (or its lack of one)
    assert.equal((await driver.status(target)).tampered.length > 0, true, 'the edit is in');
    const st = await d.isolate(target, req);
    assert.equal(st.changed, true, `isolating again after "${edit.join(' ')}" is a change: ${JSON.stringify(st)}`);
    assert.ok(st.tampered.some((f) => finding.test(f)), `says what was edited: ${JSON.stringify(st.tampered)}`);
    assert.ok(st.warnings.some((w) => /edited in place/.test(w) && /generation/.test(w)), JSON.stringify(st.warnings));
    assert.deepEqual((await d.status(target)).tampered, [], 'the edit is gone: re-applied');
  }

  it('root adds an accept rule for its C2 under the same generation: isolate again says changed, and closes it', async () => {
    const req: IsolateRequestInput = { reason: 'edit', verify: false };
    assert.equal((await driver.isolate(target, req)).changed, true);
    assert.equal(await c2Open(), false, 'isolated: no C2');
    // after the drop counter, before the policy: the C2 gets out
    const r = await asRoot(['add', 'rule', 'inet', TABLE, 'output', 'ip', 'daddr', lab.peer.v4, 'accept']);
    assert.equal(r.code, 0, r.stderr);
    const r2 = await asRoot(['insert', 'rule', 'inet', TABLE, 'input', 'ip', 'saddr', lab.peer.v4, 'accept']);
    assert.equal(r2.code, 0, r2.stderr);
    assert.equal(await c2Open(), true, 'the edit opened the C2');
    const st = await driver.isolate(target, req);
    assert.equal(st.changed, true, JSON.stringify(st));
    assert.ok(st.tampered.some((f) => /chain output has \d+ rules/.test(f)), JSON.stringify(st.tampered));
    assert.ok(st.tampered.some((f) => /chain input has \d+ rules/.test(f)), JSON.stringify(st.tampered));
    assert.ok(st.warnings.some((w) => /edited in place/.test(w) && /generation/.test(w)), JSON.stringify(st.warnings));
    assert.equal(await c2Open(), false, 'the C2 is closed again');
    // nothing edited since: the same request is no change
    const again = await driver.isolate(target, req);
    assert.equal(again.changed, false);
    assert.deepEqual(again.tampered, []);
    assert.deepEqual(again.warnings, []);
  });

  it('an element added to an exception set, a policy turned to accept, a rule replaced: each is a change (verify on)', async () => {
    const req: IsolateRequestInput = { reason: 'edit-verify', presets: ['ssh'] };
    assert.equal((await driver.isolate(target, req)).changed, true);
    await editThenIsolate(req, ['add', 'element', 'inet', TABLE, 'out4', '{', `${lab.peer.v4}`, '.', 'tcp', '.', '7302', '}'], /set out4: elements added/);
    await editThenIsolate(req, ['chain', 'inet', TABLE, 'output', '{', 'policy', 'accept', ';', '}'], /chain output was changed: .*policy accept/);
    const handles = JSON.parse((await asRoot(['-j', '-a', 'list', 'chain', 'inet', TABLE, 'output'])).stdout) as { nftables: { rule?: { handle: number } }[] };
    const first = handles.nftables.filter((i) => i.rule).map((i) => i.rule!.handle)[0];
    await editThenIsolate(req, ['replace', 'rule', 'inet', TABLE, 'output', 'handle', String(first), 'accept'], /chain output: rule 1 was changed/);
    assert.equal((await driver.isolate(target, req)).changed, false, 'nothing edited since');
  });

  it('a rule of the pack deleted: a change too', async () => {
    const req: IsolateRequestInput = { reason: 'edit-delete', verify: false };
    await driver.isolate(target, req);
    const handles = JSON.parse((await asRoot(['-j', '-a', 'list', 'chain', 'inet', TABLE, 'forward'])).stdout) as { nftables: { rule?: { handle: number } }[] };
    const rule = handles.nftables.filter((i) => i.rule).map((i) => i.rule!.handle)[0];
    await editThenIsolate(req, ['delete', 'rule', 'inet', TABLE, 'forward', 'handle', String(rule)], /chain forward has 0 rules/);
  });

  it('a controller with no belief about the host (restarted: it reads the host first) sees the edit too', async () => {
    const req: IsolateRequestInput = { reason: 'edit-fresh', verify: false };
    await driver.isolate(target, req);
    const fresh = new IsolationDriver();
    try {
      await editThenIsolate(req, ['add', 'rule', 'inet', TABLE, 'output', 'ip', 'daddr', lab.peer.v4, 'accept'], /chain output has \d+ rules/, fresh);
      assert.equal((await fresh.isolate(target, req)).changed, false);
    } finally {
      await fresh.close();
    }
  });

  it('nobody on the host cannot edit the table: isolating again is no change', async () => {
    const req: IsolateRequestInput = { reason: 'edit-nobody', verify: false };
    await driver.isolate(target, req);
    const r = await lab.hostExec(0, ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', 'nft', 'add', 'rule', 'inet', TABLE, 'output', 'ip', 'daddr', lab.peer.v4, 'accept']);
    assert.notEqual(r.code, 0, 'nft refuses nobody');
    const st = await driver.isolate(target, req);
    assert.equal(st.changed, false);
    assert.deepEqual(st.tampered, []);
    assert.equal(await c2Open(), false);
  });
});
