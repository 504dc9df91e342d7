/**
 * Hosts that must never be isolated: the target's protectedHosts and the controller itself,
 * refused before any connection (the resolver and the interfaces are stubbed here; the lab test
 * in test/integration/protect.test.ts proves it against a real host).
 */
import { strict as assert } from 'assert';
import type { NetworkInterfaceInfo } from 'os';
import * as sinon from 'sinon';
import { IsolationDriver, IsolationError, ProtectedUnresolvedError, ProtectionCheck, protectedHostsSchema, targetSchema, UnreachableError, validate, type Target, type TargetInput } from '../../src/driver';
import { parseKnownHosts, verifyHostKey } from '../../src/driver/knownhosts';
import { ConnectionPool } from '../../src/driver/transport';
import { errorCode } from '../lab/errors';

const IFACES = (): NodeJS.Dict<NetworkInterfaceInfo[]> => ({
  eth0: [
    { address: '198.19.7.4', netmask: '255.255.255.0', family: 'IPv4', mac: '00:00:00:00:00:00', internal: false, cidr: '198.19.7.4/24' },
    { address: 'fe80::1', netmask: 'ffff:ffff:ffff:ffff::', family: 'IPv6', mac: '00:00:00:00:00:00', internal: false, cidr: 'fe80::1/64', scopeid: 2 },
  ],
});

const DNS: Record<string, string[]> = {
  'dc1.corp.example': ['198.18.9.10'],
  'alias.corp.example': ['198.18.9.10'],
  'web.corp.example': ['198.18.9.50', '2001:db8:9::50'],
  'sneaky.corp.example': ['198.18.9.51', '198.19.7.4'],
  'dns6.corp.example': ['2001:db8:53::1'],
};

function resolver(calls: string[] = []) {
  return async (name: string): Promise<string[]> => {
    calls.push(name);
    const a = DNS[name];
    if (!a) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${name}`), { code: 'ENOTFOUND' });
    return a;
  };
}

describe('protected hosts', () => {
  const check = new ProtectionCheck(resolver(), IFACES, () => 'Controller-1.soc.example');
  const listed = validate(protectedHostsSchema, ['198.18.9.0/28', ' DC1.corp.example ', '2001:DB8:53::/48', 'dns6.corp.example'], 'p');

  it('validates and canonicalises the list (names lower-cased, addresses canonical), refusing anything else', () => {
    assert.deepEqual(listed, ['198.18.9.0/28', 'dc1.corp.example', '2001:db8:53::/48', 'dns6.corp.example']);
    for (const bad of ['a b', '-oProxyCommand=x', '198.18.0.0/33', '']) {
      assert.throws(() => validate(protectedHostsSchema, [bad], 'p'), (e: IsolationError) => e.code === 'VALIDATION', bad);
    }
    const t = validate(targetSchema, { host: '198.18.0.2', username: 'u', password: 'p', knownHosts: 'k' }, 't');
    assert.deepEqual(t.protectedHosts, [], 'none listed by default');
    assert.throws(() => validate(targetSchema, { ...t, protectedHosts: Array(1025).fill('198.18.0.1') }, 't'));
  });

  it('refuses listed addresses, members of listed CIDRs and listed names; lets others through', async () => {
    assert.equal(await errorCode(check.assert('198.18.9.3', listed, 1000)), 'PROTECTED_HOST');
    assert.equal(await errorCode(check.assert('2001:db8:53::99', listed, 1000)), 'PROTECTED_HOST');
    assert.equal(await errorCode(check.assert('dc1.corp.example', listed, 1000)), 'PROTECTED_HOST');
    assert.equal(await errorCode(check.assert('198.18.9.16', listed, 1000)), 'ok');
    assert.equal(await errorCode(check.assert('web.corp.example', listed, 1000)), 'ok');
  });

  it('refuses a name that resolves to a protected address, and an address that a protected name resolves to', async () => {
    const err = await check.assert('alias.corp.example', ['dc1.corp.example'], 1000).catch((e: IsolationError) => e);
    assert.ok(err instanceof IsolationError && err.code === 'PROTECTED_HOST');
    assert.match(err.message, /resolves to 198\.18\.9\.10, listed in protectedHosts as dc1\.corp\.example/);
    assert.equal(await errorCode(check.assert('198.18.9.10', ['dc1.corp.example'], 1000)), 'PROTECTED_HOST');
    // one protected address among several is enough
    assert.equal(await errorCode(check.assert('sneaky.corp.example', [], 1000)), 'PROTECTED_HOST');
  });

  it('protects the controller without being told: its interface addresses, loopback and its own names', async () => {
    for (const h of ['198.19.7.4', 'fe80::1', '127.0.0.1', '127.3.2.1', '::1', '0.0.0.0', 'localhost', 'controller-1.soc.example', 'controller-1', 'x.localhost']) {
      assert.equal(await errorCode(check.assert(h, [], 1000)), 'PROTECTED_HOST', h);
    }
    assert.equal(await errorCode(check.assert('198.19.7.5', [], 1000)), 'ok');
  });

  it('a name that does not resolve is UNREACHABLE, one that hangs is a TIMEOUT within the bound', async () => {
    assert.equal(await errorCode(check.assert('nowhere.corp.example', [], 1000)), 'UNREACHABLE');
    const hanging = new ProtectionCheck(() => new Promise<string[]>(() => undefined), IFACES, () => 'c');
    const t0 = Date.now();
    assert.equal(await errorCode(hanging.assert('slow.corp.example', [], 300)), 'TIMEOUT');
    assert.ok(Date.now() - t0 < 2000);
    // a protected name that has never resolved does not protect "by name only" (issue 20, item 4:
    // that failed open): what it protects is unknown, so every isolation through the target is refused
    assert.equal(await errorCode(hanging.assert('198.18.9.77', ['slow.corp.example'], 200)), 'PROTECTED_UNRESOLVED');
  });

  it('the driver refuses isolate, exception remove/replace and enforce before connecting; the pool stays empty', async () => {
    const calls: string[] = [];
    const d = new IsolationDriver({ resolve: resolver(calls) });
    const target: TargetInput = { host: 'alias.corp.example', username: 'u', password: 'p', knownHosts: 'k', protectedHosts: ['198.18.9.10'], timeoutMs: 1000 };
    try {
      assert.equal(await errorCode(d.isolate(target, {})), 'PROTECTED_HOST');
      assert.equal(await errorCode(d.isolate({ ...target, host: '198.18.9.10' }, {})), 'PROTECTED_HOST');
      assert.equal(await errorCode(d.setExceptions(target, 'remove', [])), 'PROTECTED_HOST');
      assert.equal(await errorCode(d.setExceptions(target, 'replace', [])), 'PROTECTED_HOST');
      assert.equal(await errorCode(d.setMode(target, 'enforce')), 'PROTECTED_HOST');
      // validation still comes first
      assert.equal(await errorCode(d.isolate(target, { mode: 'x' as 'audit' })), 'VALIDATION');
      assert.equal(d.connections, 0, 'nothing was connected');
      assert.ok(calls.includes('alias.corp.example'), 'the name was resolved to check it');
    } finally {
      await d.close();
    }
  });
});

/** A resolver the test steers: answers per name, `down` fails every lookup (a DNS outage), calls counted. */
function steered(map: Record<string, string[]>) {
  const s = { down: false, hang: false, calls: [] as string[], map };
  const resolve = async (name: string): Promise<string[]> => {
    s.calls.push(name);
    if (s.hang) return new Promise<string[]>(() => undefined);
    const a = s.map[name];
    if (s.down || !a) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${name}`), { code: 'ENOTFOUND' });
    return a;
  };
  return { s, resolve };
}

const wait = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('protected names: resolved at start, kept, refreshed, fail closed (issue 20, item 4)', () => {
  it('a name resolved at start (prepare) keeps protecting its addresses through a DNS outage', async () => {
    const { s, resolve } = steered({ 'dc1.corp.example': ['198.18.9.10', '2001:db8:9::10'] });
    const check = new ProtectionCheck(resolve, IFACES, () => 'c');
    try {
      assert.deepEqual(await check.prepare(['dc1.corp.example']), []);
      assert.deepEqual(check.kept('dc1.corp.example'), ['198.18.9.10', '2001:db8:9::10']);
      s.down = true;
      for (const h of ['198.18.9.10', '2001:db8:9::10']) assert.equal(await errorCode(check.assert(h, ['dc1.corp.example'], 1000)), 'PROTECTED_HOST', h);
      assert.equal(await errorCode(check.assert('198.18.9.11', ['dc1.corp.example'], 1000)), 'ok', 'other hosts still go through');
      assert.equal(s.calls.filter((c) => c === 'dc1.corp.example').length, 1, 'kept: not looked up again at each isolation');
    } finally {
      check.close();
    }
  });

  it('first use without prepare resolves and then KEEPS the name (a later outage changes nothing)', async () => {
    const { s, resolve } = steered({ 'dc1.corp.example': ['198.18.9.10'] });
    const check = new ProtectionCheck(resolve, IFACES, () => 'c');
    try {
      assert.equal(await errorCode(check.assert('198.18.9.10', ['dc1.corp.example'], 1000)), 'PROTECTED_HOST');
      s.down = true;
      assert.equal(await errorCode(check.assert('198.18.9.10', ['DC1.corp.example'.toLowerCase()], 1000)), 'PROTECTED_HOST');
    } finally {
      check.close();
    }
  });

  it('the background refresh takes new addresses, and a failing or empty refresh keeps the last good ones', async () => {
    const { s, resolve } = steered({ 'dc1.corp.example': ['198.18.9.10'] });
    const check = new ProtectionCheck(resolve, IFACES, () => 'c', { refreshMs: 20 });
    try {
      await check.prepare(['dc1.corp.example']);
      s.map['dc1.corp.example'] = ['198.18.9.20'];
      for (let i = 0; i < 100 && check.kept('dc1.corp.example')?.[0] !== '198.18.9.20'; i++) await wait(10);
      assert.deepEqual(check.kept('dc1.corp.example'), ['198.18.9.20'], 'refreshed in the background');
      assert.equal(await errorCode(check.assert('198.18.9.20', ['dc1.corp.example'], 1000)), 'PROTECTED_HOST');
      s.down = true;
      const n = s.calls.length;
      for (let i = 0; i < 100 && s.calls.length < n + 3; i++) await wait(10);
      assert.ok(s.calls.length >= n + 3, 'refreshes kept trying');
      assert.deepEqual(check.kept('dc1.corp.example'), ['198.18.9.20'], 'a failed refresh keeps the last good addresses');
      s.down = false;
      s.map['dc1.corp.example'] = [];
      const m = s.calls.length;
      for (let i = 0; i < 100 && s.calls.length < m + 2; i++) await wait(10);
      assert.deepEqual(check.kept('dc1.corp.example'), ['198.18.9.20'], 'an empty answer is no answer');
      assert.equal(await errorCode(check.assert('198.18.9.20', ['dc1.corp.example'], 1000)), 'PROTECTED_HOST');
    } finally {
      check.close();
    }
  });

  it('a name that never resolved is PROTECTED_UNRESOLVED for every host (naming it), until a refresh resolves it', async () => {
    const { s, resolve } = steered({});
    const check = new ProtectionCheck(resolve, IFACES, () => 'c', { refreshMs: 20 });
    try {
      const bad = await check.prepare(['dc9.corp.example', '198.18.9.0/28']);
      assert.deepEqual(bad.map((b) => b.name), ['dc9.corp.example']);
      assert.match(bad[0].why, /ENOTFOUND/);
      for (const h of ['198.18.9.77', '2001:db8::77', 'web.corp.example']) {
        const err = await check.assert(h, ['dc9.corp.example'], 1000).catch((e: unknown) => e);
        assert.ok(err instanceof ProtectedUnresolvedError, String(err));
        assert.equal(err.code, 'PROTECTED_UNRESOLVED');
        assert.equal(err.unresolved, 'dc9.corp.example');
        assert.match(err.message, /protected host dc9\.corp\.example has never resolved .*ENOTFOUND.*refused/);
      }
      // a lookup that hangs at first use is bounded, and is the same refusal
      const hanging = steered({});
      hanging.s.hang = true;
      const slow = new ProtectionCheck(hanging.resolve, IFACES, () => 'c');
      const t0 = Date.now();
      assert.equal(await errorCode(slow.assert('198.18.9.77', ['slow.corp.example'], 200)), 'PROTECTED_UNRESOLVED');
      assert.ok(Date.now() - t0 < 1500);
      slow.close();
      // the name comes back: the refresh resolves it, and from then on it protects its address only
      s.map['dc9.corp.example'] = ['198.18.9.99'];
      for (let i = 0; i < 100 && !check.kept('dc9.corp.example'); i++) await wait(10);
      assert.equal(await errorCode(check.assert('198.18.9.77', ['dc9.corp.example'], 1000)), 'ok');
      assert.equal(await errorCode(check.assert('198.18.9.99', ['dc9.corp.example'], 1000)), 'PROTECTED_HOST');
    } finally {
      check.close();
    }
  });

  it('the driver: prepareProtection rejects typed (naming the name); every isolate is refused before any connection; release and status are not', async () => {
    const { resolve } = steered({});
    const d = new IsolationDriver({ resolve });
    const target: TargetInput = { host: '198.18.9.77', username: 'u', password: 'p', knownHosts: 'k', protectedHosts: ['dc9.corp.example'], timeoutMs: 1000 };
    try {
      const err = await d.prepareProtection(target).catch((e: unknown) => e);
      assert.ok(err instanceof ProtectedUnresolvedError, String(err));
      assert.equal(err.unresolved, 'dc9.corp.example');
      assert.equal(await errorCode(d.isolate(target, {})), 'PROTECTED_UNRESOLVED');
      assert.equal(await errorCode(d.setExceptions(target, 'replace', [])), 'PROTECTED_UNRESOLVED');
      assert.equal(await errorCode(d.setMode(target, 'enforce')), 'PROTECTED_UNRESOLVED');
      assert.equal(d.connections, 0, 'nothing was connected');
      // a release is not held back by it (it reaches for the host: unreachable here, not refused)
      assert.notEqual(await errorCode(d.unisolate({ ...target, timeoutMs: 300 })), 'PROTECTED_UNRESOLVED');
      d.releaseProtection(target);
    } finally {
      await d.close();
    }
  });
});

describe('the connection goes to the checked address (issue 20, item 4: rebinding)', () => {
  let sb: sinon.SinonSandbox;
  beforeEach(() => {
    sb = sinon.createSandbox();
  });
  afterEach(() => sb.restore());

  it('assert resolves the alert name once and returns the address it checked', async () => {
    const { s, resolve } = steered({ 'web.corp.example': ['198.18.9.50', '2001:db8:9::50'] });
    const check = new ProtectionCheck(resolve, IFACES, () => 'c');
    assert.equal(await check.assert('web.corp.example', [], 1000), '198.18.9.50');
    assert.equal(await check.assert('198.18.9.51', [], 1000), '198.18.9.51');
    assert.equal(await check.assert('2001:db8:9::51', [], 1000), '2001:db8:9::51');
    assert.deepEqual(s.calls, ['web.corp.example']);
    check.close();
  });

  it('a name that rebinds to a protected address on its second lookup: the driver dials the first, checked, address (never the second)', async () => {
    let lookups = 0;
    const resolve = async (name: string) => {
      if (name !== 'rebind.corp.example') throw Object.assign(new Error('ENOTFOUND'), { code: 'ENOTFOUND' });
      return ++lookups === 1 ? ['198.18.9.50'] : ['198.18.9.10'];
    };
    const dialled: { host: string; dial?: string }[] = [];
    sb.stub(ConnectionPool.prototype, 'get').callsFake(async (t: Target) => {
      dialled.push({ host: t.host, dial: t.dial });
      throw new UnreachableError(t.host, 'test: no host here');
    });
    const d = new IsolationDriver({ resolve });
    try {
      const target: TargetInput = { host: 'rebind.corp.example', username: 'u', password: 'p', knownHosts: 'rebind.corp.example ssh-ed25519 AAAA', protectedHosts: ['198.18.9.10'], timeoutMs: 1000 };
      assert.equal(await errorCode(d.isolate(target, {})), 'UNREACHABLE');
      assert.deepEqual(dialled, [{ host: 'rebind.corp.example', dial: '198.18.9.50' }], 'the checked address, the name kept for the host key');
      assert.equal(lookups, 1, 'one lookup: nothing else resolves the name again');
    } finally {
      await d.close();
    }
  });

  it('the pooled session of a name is keyed by the address it was dialled at; an address target keeps its key', () => {
    const base = validate(targetSchema, { host: 'web.corp.example', username: 'u', password: 'p', knownHosts: 'k' }, 't');
    const at1: Target = { ...base, dial: '198.18.9.50' };
    const at2: Target = { ...base, dial: '198.18.9.51' };
    assert.notEqual(ConnectionPool.key(at1), ConnectionPool.key(at2));
    assert.notEqual(ConnectionPool.key(at1), ConnectionPool.key(base));
    const ip = validate(targetSchema, { host: '198.18.9.50', username: 'u', password: 'p', knownHosts: 'k' }, 't');
    assert.equal(ConnectionPool.key({ ...ip, dial: '198.18.9.50' }), ConnectionPool.key(ip));
    // a caller cannot choose the address: the schema refuses the field
    assert.throws(() => validate(targetSchema, { host: 'web.corp.example', username: 'u', password: 'p', knownHosts: 'k', dial: '198.18.9.10' }, 't'), /dial|unrecognized/i);
  });

  it('the host key stays pinned by the name given: a known_hosts line for the name verifies a key dialled at its address', () => {
    const key = Buffer.concat([Buffer.from([0, 0, 0, 11]), Buffer.from('ssh-ed25519'), Buffer.from([0, 0, 0, 32]), Buffer.alloc(32, 7)]);
    const line = `web.corp.example ssh-ed25519 ${key.toString('base64')}`;
    const entries = parseKnownHosts(line);
    assert.equal(verifyHostKey(entries, 'web.corp.example', 22, key).ok, true);
    assert.equal(verifyHostKey(entries, '198.18.9.50', 22, key).ok, false, 'the address alone is not what the pin names');
  });
});

describe('the jump host is always protected (issue 20, item 5)', () => {
  const { resolve } = steered({ 'bastion.corp.example': ['198.19.0.2', '2001:db8:1::2'], 'alias.corp.example': ['198.19.0.2'], 'web.corp.example': ['198.18.9.50'] });
  const check = new ProtectionCheck(resolve, IFACES, () => 'c');
  after(() => check.close());

  it('by its address, and by its name and every address the name resolves to; hosts behind it are not', async () => {
    const byAddr = { host: '198.19.0.2', port: 22 };
    const byName = { host: 'bastion.corp.example', port: 22 };
    for (const [host, jump] of [
      ['198.19.0.2', byAddr],
      ['bastion.corp.example', byName],
      ['198.19.0.2', byName],
      ['2001:db8:1::2', byName],
      ['alias.corp.example', byName],
      ['alias.corp.example', byAddr],
    ] as const) {
      const err = await check.assert(host, [], 1000, jump).catch((e: unknown) => e);
      assert.ok(err instanceof IsolationError && err.code === 'PROTECTED_HOST', `${host} via ${jump.host}: ${String(err)}`);
      assert.match(err.message, /jump host \(bastion /);
    }
    assert.equal(await check.assert('web.corp.example', [], 1000, byName), '198.18.9.50');
    assert.equal(await check.assert('198.18.9.51', [], 1000, byAddr), '198.18.9.51');
  });

  it('by the address the hosts behind it see it at, once a connection has shown it', async () => {
    const jump = { host: '198.19.0.2', port: 22 };
    assert.equal(await errorCode(check.assert('198.18.0.2', [], 1000, jump)), 'ok');
    check.sawJump(jump, '198.18.0.2');
    assert.equal(await errorCode(check.assert('198.18.0.2', [], 1000, jump)), 'PROTECTED_HOST');
    assert.equal(await errorCode(check.assert('198.18.0.2', [], 1000, { ...jump, port: 2222 })), 'ok', 'another bastion');
  });

  it('a jump host name that never resolved refuses every isolation through it (typed, the role said)', async () => {
    const d = new IsolationDriver({ resolve });
    try {
      const target: TargetInput = {
        host: '198.18.9.50',
        username: 'u',
        password: 'p',
        knownHosts: 'k',
        timeoutMs: 1000,
        jump: { host: 'gone-bastion.corp.example', username: 'j', password: 'p', knownHosts: 'k' },
      };
      const err = await d.prepareProtection(target).catch((e: unknown) => e);
      assert.ok(err instanceof ProtectedUnresolvedError, String(err));
      assert.match(err.message, /^jump host gone-bastion\.corp\.example has never resolved/);
      assert.equal(await errorCode(d.isolate(target, {})), 'PROTECTED_UNRESOLVED');
      assert.equal(await errorCode(d.isolate({ ...target, host: 'gone-bastion.corp.example' }, {})), 'PROTECTED_HOST', 'its name is refused as such');
      assert.equal(d.connections + d.bastionConnections, 0);
    } finally {
      await d.close();
    }
  });
});
