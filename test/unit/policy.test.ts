import { strict as assert } from 'assert';
import {
  exceptionListSchema,
  exceptionSchema,
  isolateRequestSchema,
  requestMetaSchema,
  targetSchema,
  validate,
  ValidationError,
  expandPresets,
  PRESETS,
  PRESET_NAMES,
} from '../../src/driver';
import { dedupeExceptions } from '../../src/driver/policy';

const target = { host: '198.18.0.2', username: 'isolator', privateKey: 'KEY', knownHosts: '198.18.0.2 ssh-ed25519 AAAA' };

function rejects(schema: Parameters<typeof validate>[0], value: unknown, pathPart: string) {
  assert.throws(
    () => validate(schema, value, 'x'),
    (err: unknown) => {
      assert.ok(err instanceof ValidationError, `expected ValidationError, got ${String(err)}`);
      assert.equal(err.code, 'VALIDATION');
      assert.ok(
        err.issues.some((i) => i.path.includes(pathPart)),
        `no issue on ${pathPart}: ${JSON.stringify(err.issues)}`,
      );
      return true;
    },
  );
}

describe('policy: exceptions', () => {
  it('canonicalises addresses, CIDRs and ports', () => {
    assert.deepEqual(validate(exceptionSchema, { direction: 'in', proto: 'tcp', addr: '198.18.0.77/24', port: '443' }, 'e'), {
      direction: 'in',
      proto: 'tcp',
      addr: '198.18.0.0/24',
      port: 443,
    });
    assert.deepEqual(validate(exceptionSchema, { direction: 'out', proto: 'udp', addr: '2001:DB8:0::1', port: '1000-2000' }, 'e'), {
      direction: 'out',
      proto: 'udp',
      addr: '2001:db8::1',
      port: '1000-2000',
    });
    assert.equal(validate(exceptionSchema, { direction: 'out', proto: 'tcp', port: '80-80' }, 'e').port, 80);
    // an IPv4-mapped IPv6 address is the IPv4 packet nft sees
    assert.equal(validate(exceptionSchema, { direction: 'in', proto: 'any', addr: '::ffff:198.18.0.9' }, 'e').addr, '198.18.0.9');
    assert.equal(validate(exceptionSchema, { direction: 'in', proto: 'any', addr: '198.18.0.9/32' }, 'e').addr, '198.18.0.9');
  });

  it('rejects what cannot be rendered exactly', () => {
    const bad: [unknown, string][] = [
      [{ direction: 'up', proto: 'tcp' }, 'direction'],
      [{ direction: 'in', proto: 'sctp' }, 'proto'],
      [{ direction: 'in', proto: 'tcp', port: 0 }, 'port'],
      [{ direction: 'in', proto: 'tcp', port: 65536 }, 'port'],
      [{ direction: 'in', proto: 'tcp', port: '30-20' }, 'port'],
      [{ direction: 'in', proto: 'tcp', port: '22; rm -rf /' }, 'port'],
      [{ direction: 'in', proto: 'tcp', port: 22.5 }, 'port'],
      [{ direction: 'in', proto: 'icmp', port: 22 }, 'port'],
      [{ direction: 'in', proto: 'any', port: 22 }, 'port'],
      [{ direction: 'in', proto: 'tcp', addr: '127.1' }, 'addr'],
      [{ direction: 'in', proto: 'tcp', addr: '198.18.0.1/33' }, 'addr'],
      [{ direction: 'in', proto: 'tcp', addr: 'fe80::1%eth0' }, 'addr'],
      [{ direction: 'in', proto: 'tcp', addr: 'example.com' }, 'addr'],
      [{ direction: 'in', proto: 'tcp', addr: '1.2.3.4 } accept; {' }, 'addr'],
      [{ direction: 'in', proto: 'tcp', icmpType: 'echo-request' }, 'icmpType'],
      [{ direction: 'in', proto: 'icmp', addr: '198.18.0.1', icmpType: 'packet-too-big' }, 'icmpType'],
      [{ direction: 'in', proto: 'tcp', comment: 'a\nb' }, 'comment'],
      [{ direction: 'in', proto: 'tcp', comment: 'x'.repeat(129) }, 'comment'],
      [{ direction: 'in', proto: 'tcp', dir: 'in' }, ''],
    ];
    for (const [value, path] of bad) rejects(exceptionSchema, value, path);
  });

  it('takes service and user exceptions outbound only, one owner each, with safe names', () => {
    const ok = (e: unknown) => validate(exceptionSchema, e, 'exception');
    assert.deepEqual(ok({ direction: 'out', proto: 'any', unit: 'edr-agent.service' }), { direction: 'out', proto: 'any', unit: 'edr-agent.service' });
    assert.deepEqual(ok({ direction: 'out', proto: 'tcp', uid: 0, port: 443 }), { direction: 'out', proto: 'tcp', port: 443, uid: 0 });
    assert.equal(ok({ direction: 'out', proto: 'any', uid: 'backup' }).uid, 'backup');
    assert.equal(ok({ direction: 'out', proto: 'any', cgroup: 'system.slice/system-getty.slice/getty@tty1.service' }).cgroup, 'system.slice/system-getty.slice/getty@tty1.service');
    for (const bad of [
      { direction: 'in', proto: 'any', uid: 1000 },
      { direction: 'out', proto: 'icmp', uid: 1000 },
      { direction: 'out', proto: 'any', uid: 1000, unit: 'a.service' },
      { direction: 'out', proto: 'any', uid: -1 },
      { direction: 'out', proto: 'any', uid: 2 ** 32 },
      { direction: 'out', proto: 'any', uid: 'Root; reboot' },
      { direction: 'out', proto: 'any', uid: '$(id)' },
      { direction: 'out', proto: 'any', unit: 'edr agent.service' },
      { direction: 'out', proto: 'any', unit: '../../etc.service' },
      { direction: 'out', proto: 'any', unit: 'sshd' },
      { direction: 'out', proto: 'any', unit: 'x.service\n' },
      { direction: 'out', proto: 'any', cgroup: '/system.slice/x.service' },
      { direction: 'out', proto: 'any', cgroup: 'system.slice/../../etc' },
      { direction: 'out', proto: 'any', cgroup: 'a//b' },
      { direction: 'out', proto: 'any', cgroup: '"quoted"' },
    ]) {
      assert.throws(() => ok(bad), ValidationError, JSON.stringify(bad));
    }
    assert.equal(dedupeExceptions([ok({ direction: 'out', proto: 'any', uid: 1 }), ok({ direction: 'out', proto: 'any', uid: 2 }), ok({ direction: 'out', proto: 'any' })]).length, 3);
  });

  it('caps the number of exceptions', () => {
    const many = Array.from({ length: 257 }, (_, i) => ({ direction: 'in', proto: 'tcp', port: i + 1 }));
    assert.throws(() => validate(exceptionListSchema, many, 'exceptions'), ValidationError);
  });

  it('dedupes by what is allowed, not by comment', () => {
    const list = validate(
      exceptionListSchema,
      [
        { direction: 'in', proto: 'tcp', port: 22, comment: 'a' },
        { direction: 'in', proto: 'tcp', port: '22', comment: 'b' },
        { direction: 'out', proto: 'tcp', port: 22 },
      ],
      'e',
    );
    assert.deepEqual(dedupeExceptions(list), [list[0], list[2]]);
  });
});

describe('policy: target and request', () => {
  it('applies safe defaults', () => {
    const t = validate(targetSchema, target, 'target');
    assert.equal(t.port, 22);
    assert.equal(t.sudo, false);
    assert.equal(t.table, 'node_red_isolation');
    assert.ok(t.timeoutMs <= 30_000, 'default time limit is at most 30 s');
    const r = validate(isolateRequestSchema, {}, 'request');
    assert.deepEqual(r, { presets: [], exceptions: [], mode: 'enforce', duration: 0, force: false, verify: true, persist: false });
    assert.deepEqual(t.managementCidrs, []);
  });

  it('rejects unsafe targets', () => {
    rejects(targetSchema, { ...target, table: 'bad name' }, 'table');
    rejects(targetSchema, { ...target, table: 'x;flush ruleset' }, 'table');
    rejects(targetSchema, { ...target, host: 'a b' }, 'host');
    rejects(targetSchema, { ...target, host: '-oProxyCommand=x' }, 'host');
    rejects(targetSchema, { ...target, host: '127.1' }, 'host');
    rejects(targetSchema, { ...target, knownHosts: '' }, 'knownHosts');
    rejects(targetSchema, { ...target, username: 'root; id' }, 'username');
    rejects(targetSchema, { ...target, privateKey: undefined }, '');
    rejects(targetSchema, { ...target, port: 70000 }, 'port');
    assert.equal(validate(targetSchema, { ...target, host: 'Web-01.Example.COM' }, 't').host, 'web-01.example.com');
  });

  it('rejects unknown presets and modes', () => {
    rejects(isolateRequestSchema, { presets: ['telnet'] }, 'presets');
    rejects(isolateRequestSchema, { mode: 'off' }, 'mode');
    assert.equal(validate(isolateRequestSchema, { mode: 'audit' }, 'r').mode, 'audit');
    rejects(isolateRequestSchema, { reason: 'x'.repeat(1025) }, 'reason');
    assert.equal(validate(isolateRequestSchema, { reason: 'line 1\nline 2\t"$(id)"' }, 'r').reason, 'line 1\nline 2\t"$(id)"');
    rejects(isolateRequestSchema, { duration: -1 }, 'duration');
    rejects(isolateRequestSchema, { duration: 1.5 }, 'duration');
    rejects(isolateRequestSchema, { duration: '60' }, 'duration');
    rejects(isolateRequestSchema, { duration: 31 * 86400 }, 'duration');
  });
});

describe('policy: the case and the requester', () => {
  it('takes a bounded case id, an http(s) link and a printable requester', () => {
    const max = { id: 'A'.repeat(60) + '.:#/', url: `https://cases.example/${'中'.repeat(512 - 22)}`, requestedBy: `${'é'.repeat(120)} <a@b>` };
    assert.equal(max.url.length, 512);
    const r = validate(isolateRequestSchema, { case: { id: max.id, url: max.url }, requestedBy: max.requestedBy }, 'r');
    assert.deepEqual([r.case, r.requestedBy], [{ id: max.id, url: max.url }, max.requestedBy]);
    assert.deepEqual(validate(isolateRequestSchema, { case: { id: 'INC-1' } }, 'r').case, { id: 'INC-1' }, 'the link is optional');
    for (const url of ['http://10.0.0.5:8080/case?id=1#top', 'HTTPS://Cases.Example/x', 'https://[2001:db8::1]/c']) {
      assert.equal(validate(requestMetaSchema, { case: { id: 'C', url } }, 'm').case?.url, url);
    }
    assert.equal(validate(isolateRequestSchema, {}, 'r').case, undefined);
  });

  it('refuses over-long, unprintable or foreign values, and links that are not http(s) to a host', () => {
    for (const schema of [isolateRequestSchema, requestMetaSchema]) {
      rejects(schema, { case: { id: 'A'.repeat(65) } }, 'case.id');
      rejects(schema, { case: { id: '' } }, 'case.id');
      for (const id of ['INC 42', 'INC-42\n', 'INC;42', 'ünï', '$(id)', 'a\u0000']) rejects(schema, { case: { id } }, 'case.id');
      rejects(schema, { case: 'INC-42' }, 'case');
      rejects(schema, { case: { id: 'INC-42', comment: 'x' } }, 'case');
      rejects(schema, { case: { url: 'https://cases.example/1' } }, 'case.id');
      rejects(schema, { case: { id: 'C', url: `https://cases.example/${'a'.repeat(512 - 21)}` } }, 'case.url');
      for (const url of [
        'javascript:alert(1)',
        'ftp://cases.example/1',
        'file:///etc/passwd',
        'data:text/html,x',
        'cases.example/1',
        'https:///cases.example',
        'https:cases.example',
        'https://user:pw@cases.example/1',
        'https://cases.example/a b',
        'https://cases.example/\u001b[31m',
        'https://cases.example/\u202e',
        'https://',
        '',
      ]) {
        rejects(schema, { case: { id: 'C', url } }, 'case.url');
      }
      rejects(schema, { requestedBy: 'x'.repeat(129) }, 'requestedBy');
      rejects(schema, { requestedBy: '' }, 'requestedBy');
      for (const by of ['alice\nroot', 'alice\u001b[2J', 'al\u0007', 'alice\u202eevil', 'al\u200bice', 'a\u2028b', 'a\u0085b', '\ud800']) rejects(schema, { requestedBy: by }, 'requestedBy');
      rejects(schema, { requestedBy: 42 }, 'requestedBy');
    }
    assert.equal(validate(requestMetaSchema, { requestedBy: 'x'.repeat(128) }, 'm').requestedBy?.length, 128);
  });
});

describe('presets', () => {
  const ctx = {
    management: [{ addr: '198.18.5.1', port: 22 }, { addr: '198.18.9.0/24', port: 2222 }],
    servers: {
      dns: { addrs: ['198.18.5.53', '2001:db8:5::53'], from: '/etc/resolv.conf' },
      ntp: { addrs: ['198.18.5.123'], from: '/etc/chrony/chrony.conf' },
      ldap: { addrs: ['198.18.5.89'], from: '/etc/sssd/sssd.conf' },
    },
  };

  it('every preset is a valid exception list', () => {
    for (const name of PRESET_NAMES) {
      const list = expandPresets([name], ctx);
      const parsed = validate(exceptionListSchema, list, name);
      assert.deepEqual(parsed, list, `${name} is canonical`);
      assert.ok(parsed.length > 0);
    }
    for (const [name, list] of Object.entries(PRESETS)) assert.deepEqual(validate(exceptionListSchema, list, name), list);
  });

  it('holds the seed traffic', () => {
    const has = (name: (typeof PRESET_NAMES)[number], pred: (e: ReturnType<typeof expandPresets>[number]) => boolean) =>
      assert.ok(expandPresets([name], ctx).some(pred), name);
    has('ssh', (e) => e.direction === 'in' && e.proto === 'tcp' && e.port === 22 && e.addr === '198.18.5.1');
    has('ssh', (e) => e.direction === 'in' && e.proto === 'tcp' && e.port === 2222 && e.addr === '198.18.9.0/24');
    has('dns', (e) => e.direction === 'out' && e.proto === 'udp' && e.port === 53 && e.addr === '2001:db8:5::53');
    has('dhcp', (e) => e.proto === 'udp' && e.port === 67);
    has('dhcp', (e) => e.proto === 'udp' && e.port === 547);
    has('ntp', (e) => e.proto === 'udp' && e.port === 123 && e.addr === '198.18.5.123');
    has('ldap', (e) => e.proto === 'tcp' && e.port === 389 && e.addr === '198.18.5.89');
    for (const p of [636, 3268, 3269]) has('ldaps', (e) => e.proto === 'tcp' && e.port === p && e.addr === '198.18.5.89');
    has('cloud-metadata', (e) => e.addr === '169.254.169.254' && e.port === 80);
    has('cloud-metadata', (e) => e.addr === 'fd00:ec2::254' && e.port === 80);
    const icmp = expandPresets(['icmp'], ctx);
    assert.deepEqual(icmp, [{ direction: 'in', proto: 'icmp', icmpType: 'echo-request', comment: 'preset icmp' }], 'echo in only: no echo out to any address');
  });

  it('never opens a port to the whole Internet', () => {
    for (const name of PRESET_NAMES) {
      for (const e of expandPresets([name], ctx)) {
        if (e.proto === 'icmp') continue;
        if (e.addr === 'fe80::/10') continue; // link-local: never routed off the link
        const wide = e.addr === undefined || /\/([0-9]|1[0-5])$/.test(e.addr) || /:.*\/([0-9]|[1-3][0-9]|4[0-7])$/.test(e.addr);
        // DHCP's answer comes from a server whose address the client does not know yet: port 68 in only
        const dhcpAnswer = name === 'dhcp' && e.direction === 'in' && e.port === 68;
        assert.ok(!wide || dhcpAnswer, `${name}: ${JSON.stringify(e)}`);
      }
    }
  });

  it('a server preset without servers is refused, not opened to any address', () => {
    assert.throws(() => expandPresets(['dns'], { management: [], servers: {} }), /no dns servers/);
    assert.throws(() => expandPresets(['ldaps'], { management: [], servers: { ldap: { addrs: [], from: 'x' } } }), /no ldap servers/);
  });
});
