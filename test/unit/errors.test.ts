import { strict as assert } from 'assert';
import { IsolationError, isHostAllowed, targetForHost, ValidationError } from '../../src/driver';
import { managementOf, nextExceptions } from '../../src/driver/driver';
import { targetSchema, validate } from '../../src/driver/policy';
import { COMMANDS, nftError, parseSshConnection } from '../../src/driver/transport';

const res = (code: number | null, stderr: string) => ({ code, signal: null, stdout: '', stderr });

describe('errors', () => {
  it('maps nft and sudo failures to typed errors', () => {
    const cases: [ReturnType<typeof res>, string][] = [
      [res(1, 'sudo: a password is required\n'), 'PRIVILEGE'],
      [res(1, 'Sorry, user x is not allowed to execute \'/usr/sbin/nft -j -f -\' as root on h.\n'), 'PRIVILEGE'],
      [res(1, 'sudo: sorry, you are not allowed to run nft\nsudo: x is not in the sudoers file.\n'), 'PRIVILEGE'],
      [res(127, 'sh: 1: exec: nft: not found\n'), 'NFT_MISSING'],
      [res(1, 'sudo: nft: command not found\n'), 'NFT_MISSING'],
      [res(127, 'sh: 1: exec: sudo: not found\n'), 'PRIVILEGE'],
      [res(1, 'Error: Could not process rule: Operation not permitted\n'), 'PRIVILEGE'],
      [res(1, 'internal:0:0-0: Error: Could not process rule: File exists\n'), 'NFT_FAILED'],
    ];
    for (const [r, code] of cases) assert.equal(nftError('h', r).code, code, r.stderr);
    const failed = nftError('h', res(1, 'Error: syntax error\n'));
    assert.equal((failed as unknown as { stderr: string }).stderr, 'Error: syntax error\n', 'stderr kept verbatim');
  });

  it('errors carry their code through JSON and instanceof', () => {
    const e = new ValidationError('bad', [{ path: 'x', message: 'y' }]);
    assert.ok(e instanceof IsolationError);
    assert.ok(e instanceof Error);
    assert.equal(e.name, 'ValidationError');
    assert.equal((e.toJSON() as { code: string }).code, 'VALIDATION');
  });

  it('runs only constant commands', () => {
    // no template left unfilled: the scripts hold no JS interpolation and no request data
    // (the shell's own `${ns#...}`, `${t%%...}`, `${k:-0}` expansions of its variables aside)
    for (const c of Object.values(COMMANDS)) assert.ok(!/\$\{|undefined|\[object /.test(c.replace(/\$\{[a-z0-9]{1,3}(#|%%?|:-)[^}]*\}/g, '')), c);
    assert.match(COMMANDS.sudoNft, /sudo -n nft -j -f -$/);
  });

  it('reads SSH_CONNECTION', () => {
    assert.deepEqual(parseSshConnection('198.18.0.1 51234 198.18.0.11 22\n'), {
      clientAddr: '198.18.0.1',
      clientPort: 51234,
      serverAddr: '198.18.0.11',
      serverPort: 22,
    });
    assert.equal(parseSshConnection(''), null);
    assert.equal(parseSshConnection('a b c'), null);
  });
});

describe('allowlist', () => {
  const base = { host: '198.18.0.2', username: 'u' };
  it('admits the target host, listed names, IPs and CIDRs only', () => {
    assert.equal(isHostAllowed('198.18.0.2', '198.18.0.2', []), true);
    assert.equal(isHostAllowed('198.18.0.3', '198.18.0.2', []), false);
    assert.equal(isHostAllowed('198.18.0.3', '198.18.0.2', ['198.18.0.0/30']), true);
    assert.equal(isHostAllowed('198.18.0.4', '198.18.0.2', ['198.18.0.0/30']), false);
    assert.equal(isHostAllowed('2001:db8::5', '198.18.0.2', ['2001:db8::/64']), true);
    assert.equal(isHostAllowed('2001:db9::5', '198.18.0.2', ['2001:db8::/64']), false);
    assert.equal(isHostAllowed('WEB-01', '198.18.0.2', ['web-01']), true);
    assert.equal(isHostAllowed('web-02', '198.18.0.2', ['web-01', '0.0.0.0/0']), false);
  });

  it('targetForHost throws HOST_NOT_ALLOWED or VALIDATION before anything else', () => {
    assert.equal(targetForHost(base, undefined, []).host, '198.18.0.2');
    assert.equal(targetForHost(base, '198.18.0.3', ['198.18.0.3']).host, '198.18.0.3');
    assert.throws(() => targetForHost(base, '198.18.0.3', []), (e: IsolationError) => e.code === 'HOST_NOT_ALLOWED');
    assert.throws(() => targetForHost(base, '198.18.0.3; reboot', ['0.0.0.0/0']), (e: IsolationError) => e.code === 'VALIDATION');
    assert.throws(() => targetForHost(base, { toString: () => '198.18.0.2' }, []), (e: IsolationError) => e.code === 'VALIDATION');
  });
});

describe('exception operations', () => {
  const a = { direction: 'in' as const, proto: 'tcp' as const, port: 22 };
  const b = { direction: 'out' as const, proto: 'udp' as const, port: 53, comment: 'dns' };
  it('add dedupes, remove ignores comments and absent entries, replace replaces', () => {
    assert.deepEqual(nextExceptions([a], 'add', [a, b]), [a, b]);
    assert.deepEqual(nextExceptions([a, b], 'remove', [{ ...b, comment: 'other' }, { direction: 'in', proto: 'any' }]), [a]);
    assert.deepEqual(nextExceptions([a, b], 'replace', [b]), [b]);
  });
});

describe('driver input gate', () => {
  it('refuses exceptions that would explode into too many set elements, before connecting', async function () {
    this.timeout(30_000); // the overlap arithmetic is CPU-bound: slow on a loaded 2-core machine
    const { IsolationDriver } = await import('../../src/driver');
    const d = new IsolationDriver();
    // a grid of crossing exceptions: each port range crosses each address range
    const exceptions = [];
    for (let i = 0; i < 128; i++) exceptions.push({ direction: 'in' as const, proto: 'tcp' as const, addr: `198.18.0.${2 * i}` });
    for (let i = 0; i < 128; i++) exceptions.push({ direction: 'in' as const, proto: 'tcp' as const, addr: '198.18.0.0/24', port: 2000 + i });
    const knownHosts = '[127.0.0.1]:1 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIL48++oJJJvDkewzvugVU7EctSvMYJmR74k7qVa5AGFD';
    const target = { host: '127.0.0.1', port: 1, username: 'u', password: 'p', knownHosts, timeoutMs: 500 };
    // nothing listens there: a VALIDATION (not UNREACHABLE) answer shows nothing was attempted
    await assert.rejects(d.isolate(target, { exceptions }), (e: IsolationError) => e.code === 'VALIDATION' && /set elements/.test(e.message));
    await d.close();
  });
});

describe('lockout guard', () => {
  const target = validate(
    targetSchema,
    { host: '198.18.0.2', username: 'u', password: 'p', knownHosts: 'k', managementCidrs: ['198.18.0.0/28', '2001:db8::/64'] },
    't',
  );
  const ep = { clientAddr: '198.18.0.1', clientPort: 50000, serverAddr: '198.18.0.2', serverPort: 2222 };

  it('keeps the detected channel and the extra management CIDRs on the sshd port', () => {
    assert.deepEqual(managementOf({ endpoints: ep }, target), [
      { addr: '198.18.0.1', port: 2222 },
      { addr: '198.18.0.0/28', port: 2222 },
      { addr: '2001:db8::/64', port: 2222 },
    ]);
    assert.deepEqual(managementOf({ endpoints: { ...ep, clientAddr: '::ffff:198.18.0.1' } }, target)[0], { addr: '198.18.0.1', port: 2222 });
  });

  it('refuses to isolate when the channel is unknown, unless forced', () => {
    assert.throws(() => managementOf({ endpoints: null }, target), (e: IsolationError) => e.code === 'MANAGEMENT_UNKNOWN');
    assert.throws(() => managementOf({ endpoints: { ...ep, clientAddr: 'garbage' } }, target), (e: IsolationError) => e.code === 'MANAGEMENT_UNKNOWN');
    assert.deepEqual(managementOf({ endpoints: null }, target, true), [
      { addr: '198.18.0.0/28', port: 22 },
      { addr: '2001:db8::/64', port: 22 },
    ]);
  });

  it('validates management CIDRs', () => {
    assert.throws(() => validate(targetSchema, { host: 'h', username: 'u', password: 'p', knownHosts: 'k', managementCidrs: ['nope'] }, 't'), ValidationError);
  });
});
