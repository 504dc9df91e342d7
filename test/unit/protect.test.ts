/**
 * Hosts that must never be isolated: the target's protectedHosts and the controller itself,
 * refused before any connection (the resolver and the interfaces are stubbed here; the lab test
 * in test/integration/protect.test.ts proves it against a real host).
 */
import { strict as assert } from 'assert';
import type { NetworkInterfaceInfo } from 'os';
import { IsolationDriver, IsolationError, ProtectionCheck, protectedHostsSchema, targetSchema, validate, type TargetInput } from '../../src/driver';
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
