/**
 * The attacker names the host, and may own the name service too. Protected hosts must stay
 * protected when a protected name stops resolving (a DNS outage during the incident), when it
 * never resolved (a deploy-time problem of the target: refused, never let through), when the
 * alert's name resolves to another address the second time it is looked up (rebinding: the
 * connection must go to the address that was checked), and the jump host must never be isolated
 * through itself. On the bastion lab (real sshd, real nft); the controller's resolver is the
 * driver's injectable one, the bastion's is its own /etc/hosts (an overlay private to its sshd).
 */
import { strict as assert } from 'assert';
import { IsolationDriver, IsolationError, type TargetInput } from '../../src/driver';
import { errorCode } from '../lab/errors';
import { dropTables, useLab } from '../lab/fixtures';

const TABLE = 'nrhi_adv_protect';

/** The driver's pre-resolution, called without depending on its type (so that this file compiles against older drivers too). */
async function prepare(d: IsolationDriver, t: TargetInput): Promise<string> {
  const fn = (d as unknown as { prepareProtection?: (t: TargetInput) => Promise<void> }).prepareProtection;
  if (!fn) return 'ok'; // a driver without it: nothing resolved at start
  return errorCode(fn.call(d, t));
}

describe('adversary: protected hosts that DNS, rebinding or the bastion would expose', function () {
  this.timeout(180_000);
  const lab = useLab({ hosts: 2, bastion: true });
  afterEach(async () => {
    await lab.bastion?.configure();
    await dropTables(lab, TABLE);
    if (lab.bastion) await lab.nft(lab.bastion.ns, ['delete', 'table', 'inet', TABLE]).catch(() => undefined);
  });

  const jump = () => {
    const b = lab.bastion!;
    return { host: b.v4, port: b.port, username: b.user.username, privateKey: b.user.privateKey, knownHosts: b.knownHosts };
  };
  /** host i behind the bastion, as root, on the test's table */
  const target = (i: number, over: Partial<TargetInput> = {}): TargetInput => ({
    host: lab.hosts[i].v4,
    username: lab.users.root.username,
    privateKey: lab.users.root.privateKey,
    knownHosts: lab.hosts[i].knownHosts,
    table: TABLE,
    timeoutMs: 10_000,
    jump: jump(),
    ...over,
  });
  const tableOn = async (ns: string) => (await lab.exec(ns, ['nft', 'list', 'table', 'inet', TABLE])).code === 0;
  /** SSH connections the host's sshd holds (as the host sees them) */
  const sessions = async (i: number) => {
    const r = await lab.exec(lab.hosts[i].ns, ['ss', '-Htn', 'state', 'established', '( sport = :22 )']);
    return r.stdout.split('\n').filter((l) => l.trim() !== '').length;
  };

  /** a resolver whose answers the test changes; `down` makes every lookup fail as in a DNS outage */
  function dns(map: Record<string, string[]>) {
    const state = { down: false, calls: [] as string[] };
    const resolve = async (name: string): Promise<string[]> => {
      state.calls.push(name);
      const a = map[name];
      if (state.down || !a) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${name}`), { code: 'ENOTFOUND' });
      return a;
    };
    return { state, resolve };
  }

  it('(a) a protected name that resolved when the flow started stays protected through a DNS outage: its address is refused PROTECTED_HOST, nothing connected', async () => {
    const { state, resolve } = dns({ 'dc.lab.example': [lab.hosts[1].v4] });
    const d = new IsolationDriver({ resolve });
    try {
      const t = target(1, { protectedHosts: ['dc.lab.example'] });
      assert.equal(await prepare(d, t), 'ok', 'the protected name resolves when the flow starts');
      state.down = true; // the outage: every lookup fails from now on
      const before = await sessions(1);
      const err = await d.isolate(t, { verify: false }).catch((e: unknown) => e);
      assert.ok(err instanceof IsolationError, `refused, not isolated: ${String(err)}`);
      assert.equal(err.code, 'PROTECTED_HOST', err.message);
      assert.match(err.message, /dc\.lab\.example/);
      // also inside a fan-out (msg.hosts calls the driver once per host)
      const rows = await Promise.all([lab.hosts[1].v4, lab.hosts[1].v4].map((h) => errorCode(d.isolate(target(1, { host: h, protectedHosts: ['dc.lab.example'] }), { verify: false }))));
      assert.deepEqual(rows, ['PROTECTED_HOST', 'PROTECTED_HOST']);
      assert.equal(d.connections, 0, 'nothing connected');
      assert.equal(await sessions(1), before, 'the host saw no SSH connection');
      assert.equal(await tableOn(lab.hosts[1].ns), false, 'host 1 is not isolated');
      // the host beside it, not protected, is isolated by the same driver during the same outage
      assert.equal((await d.isolate(target(0, { protectedHosts: ['dc.lab.example'] }), { verify: false })).isolated, true);
      await d.unisolate(target(0));
    } finally {
      await d.close();
    }
  });

  it('(b) a protected name that never resolved fails the target (typed, names it) and every isolate through it is refused; nothing connected', async () => {
    const { resolve } = dns({});
    const d = new IsolationDriver({ resolve });
    try {
      const t = target(0, { protectedHosts: ['dc-unknown.lab.example'] });
      assert.equal(await prepare(d, t), 'PROTECTED_UNRESOLVED', 'the target fails when the flow starts');
      const before = await sessions(0);
      for (const host of [lab.hosts[0].v4, lab.hosts[1].v4]) {
        const err = await d.isolate({ ...t, host, knownHosts: lab.hosts[host === lab.hosts[0].v4 ? 0 : 1].knownHosts }, { verify: false }).catch((e: unknown) => e);
        assert.ok(err instanceof IsolationError, `refused, not isolated: ${String(err)}`);
        assert.equal(err.code, 'PROTECTED_UNRESOLVED', err.message);
        assert.match(err.message, /dc-unknown\.lab\.example/);
      }
      assert.equal(await errorCode(d.setMode(t, 'enforce')), 'PROTECTED_UNRESOLVED');
      assert.equal(d.connections, 0, 'nothing connected');
      assert.equal(d.bastionConnections, 0, 'not even the bastion');
      assert.equal(await sessions(0), before);
      assert.equal(await tableOn(lab.hosts[0].ns), false);
      assert.equal(await tableOn(lab.hosts[1].ns), false);
      // releasing and reading stay allowed (they isolate nothing)
      assert.equal((await d.status(t)).isolated, false);
    } finally {
      await d.close();
    }
  });

  it('(c) rebinding: the alert name is checked at one address and the bastion resolves it to a protected one; the connection goes to the checked address only', async () => {
    const [h0, h1] = lab.hosts;
    const name = 'rebind.lab.example';
    // the controller sees host 0 (allowed); the bastion, asked second, sees host 1 (protected)
    await lab.bastion!.configure({ etcHosts: `${h1.v4} ${name}` });
    const { state, resolve } = dns({ [name]: [h0.v4] });
    const d = new IsolationDriver({ resolve });
    try {
      // both keys pinned under the name: only the address decides which host is reached
      const knownHosts = `${name} ${h0.hostKeyPub}\n${name} ${h1.hostKeyPub}\n`;
      const t = target(0, { host: name, knownHosts, protectedHosts: [h1.v4] });
      const st = await d.isolate(t, { verify: true }).catch((e: unknown) => e as Error);
      assert.equal(await tableOn(h1.ns), false, 'the protected host (where the second lookup points) was NOT isolated');
      assert.ok(!(st instanceof Error), `isolated: ${String(st)}`);
      assert.equal(st.isolated, true);
      assert.equal(await tableOn(h0.ns), true, 'the host behind the checked address is the one isolated');
      assert.equal(state.calls.filter((c) => c === name).length, 1, 'the alert name was resolved once, by the check');
      assert.equal((await d.unisolate(t)).changed, true, 'released at the same address');
      assert.equal(await tableOn(h0.ns), false);
    } finally {
      await d.close();
    }
  });

  it('(d) the jump host is protected by its name and by every address (also the one the hosts see it from): PROTECTED_HOST before any connection, no table on the bastion', async () => {
    const b = lab.bastion!;
    const { resolve } = dns({ 'bastion.lab.example': [b.v4, b.v6], 'alias.lab.example': [b.v4] });
    const d = new IsolationDriver({ resolve });
    try {
      // the bastion as its own target (on the allowlist, its key pinned), reached through itself
      const asBastion = (host: string, j: TargetInput['jump'] = jump()): TargetInput => ({
        host,
        username: b.user.username,
        privateKey: b.user.privateKey,
        knownHosts: `${b.knownHosts}bastion.lab.example ${b.knownHosts.split('\n')[0].split(' ').slice(1).join(' ')}\n`,
        table: TABLE,
        timeoutMs: 10_000,
        jump: j,
      });
      const byName = { ...jump(), host: 'bastion.lab.example', knownHosts: `bastion.lab.example ${b.knownHosts.split('\n')[0].split(' ').slice(1).join(' ')}\n` };
      const cases: [string, TargetInput['jump']][] = [
        [b.v4, jump()],
        ['bastion.lab.example', byName],
        [b.v4, byName],
        [b.v6, byName],
        ['alias.lab.example', byName],
      ];
      const got = await Promise.all(cases.map(([host, j]) => d.isolate(asBastion(host, j), { verify: false }).catch((e: unknown) => e)));
      got.forEach((e, i) => {
        assert.ok(e instanceof IsolationError, `${cases[i][0]} (jump ${cases[i][1]!.host}): refused, not isolated: ${JSON.stringify(e)}`);
        assert.equal(e.code, 'PROTECTED_HOST', `${cases[i][0]} (jump ${cases[i][1]!.host}): ${e.message}`);
        assert.match(e.message, /jump host/);
      });
      assert.equal(d.connections, 0, 'nothing connected');
      assert.equal(d.bastionConnections, 0, 'not even to the bastion');
      assert.equal(await b.sessions(), 0, 'the bastion saw no SSH connection');
      // a jump given by one address has other addresses nothing on the controller knows of: the
      // bastion reached through itself is known by its session, which comes from its own address,
      // refused right after the login, before anything is sent to it
      const other = await d.isolate(asBastion(b.v6), { verify: false }).catch((e: unknown) => e);
      assert.ok(other instanceof IsolationError && other.code === 'PROTECTED_HOST', String(other));
      assert.match(other.message, /jump host .* its own address/);
      assert.equal(await tableOn(b.ns), false, "the bastion's table stays absent");
      // reading it (or releasing it) isolates nothing: not refused as protected (the jump user may not read nft there)
      assert.notEqual(await errorCode(d.status(asBastion(b.v6))), 'PROTECTED_HOST');
      // the address the hosts see the bastion at, once a connection through it has shown it
      assert.equal((await d.status(target(0))).isolated, false);
      assert.equal(await errorCode(d.isolate(asBastion(b.inner.v4), { verify: false })), 'PROTECTED_HOST');
      assert.equal(await tableOn(b.ns), false, "the bastion's table stays absent");
      // and the hosts behind it are still isolated through it
      assert.equal((await d.isolate(target(0), { verify: false })).isolated, true);
      await d.unisolate(target(0));
    } finally {
      await d.close();
    }
  });
});
