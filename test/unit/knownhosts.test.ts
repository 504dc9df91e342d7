import { strict as assert } from 'assert';
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { fingerprint, parseKnownHosts, verifyHostKey } from '../../src/driver/knownhosts';

// Real keys from ssh-keygen, and hashed lines hashed by ssh-keygen itself.
describe('known_hosts', () => {
  let dir: string;
  let ed: { line: string; blob: Buffer; file: string };
  let rsa: { line: string; blob: Buffer };
  let other: { line: string; blob: Buffer };

  function key(name: string, type: string): { line: string; blob: Buffer; file: string } {
    const file = path.join(dir, name);
    execFileSync('ssh-keygen', ['-q', '-t', type, ...(type === 'rsa' ? ['-b', '2048'] : []), '-N', '', '-f', file]);
    const pub = fs.readFileSync(`${file}.pub`, 'utf8').trim().split(' ');
    return { line: `${pub[0]} ${pub[1]}`, blob: Buffer.from(pub[1], 'base64'), file };
  }

  before(function () {
    try {
      execFileSync('ssh-keygen', ['-?'], { stdio: 'ignore' });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') {
        if (process.env.CI === 'true') throw new Error('ssh-keygen missing in CI', { cause: e });
        this.skip();
      }
    }
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nrhi-kh-'));
    ed = key('ed', 'ed25519');
    rsa = key('rsa', 'rsa');
    other = key('other', 'ed25519');
  });
  after(() => dir && fs.rmSync(dir, { recursive: true, force: true }));

  it('accepts the pinned key and refuses another for the same host', () => {
    const kh = parseKnownHosts(`# comment\n\n198.18.0.2 ${ed.line} root@lab\r\n`);
    assert.deepEqual(verifyHostKey(kh, '198.18.0.2', 22, ed.blob), { ok: true, keyType: 'ssh-ed25519' });
    assert.deepEqual(verifyHostKey(kh, '198.18.0.2', 22, other.blob), { ok: false, reason: 'mismatch' });
    assert.deepEqual(verifyHostKey(kh, '198.18.0.3', 22, ed.blob), { ok: false, reason: 'unknown-host' });
    assert.deepEqual(verifyHostKey(kh, '198.18.0.2', 2222, ed.blob), { ok: false, reason: 'unknown-host' }, 'plain entries are port 22 only');
  });

  it('accepts any of several pinned keys (ed25519 and rsa)', () => {
    const kh = parseKnownHosts(`web-01 ${ed.line}\nweb-01 ${rsa.line}\n`);
    assert.equal(verifyHostKey(kh, 'WEB-01', 22, rsa.blob).ok, true, 'case-insensitive');
    assert.equal(verifyHostKey(kh, 'web-01', 22, ed.blob).ok, true);
  });

  it('handles ports, IPv6, wildcards and negation', () => {
    const kh = parseKnownHosts(
      [`[198.18.0.2]:2222 ${ed.line}`, `[2001:db8::11]:2200,2001:db8::11 ${ed.line}`, `*.lab,!bad.lab ${other.line}`, `[198.18.0.9]:22 ${ed.line}`].join('\n'),
    );
    assert.equal(verifyHostKey(kh, '198.18.0.2', 2222, ed.blob).ok, true);
    assert.equal(verifyHostKey(kh, '198.18.0.2', 22, ed.blob).ok, false);
    assert.equal(verifyHostKey(kh, '2001:db8::11', 22, ed.blob).ok, true);
    assert.equal(verifyHostKey(kh, '2001:db8::11', 2200, ed.blob).ok, true);
    assert.equal(verifyHostKey(kh, 'h1.lab', 22, other.blob).ok, true);
    assert.deepEqual(verifyHostKey(kh, 'bad.lab', 22, other.blob), { ok: false, reason: 'unknown-host' });
    assert.equal(verifyHostKey(kh, '198.18.0.9', 22, ed.blob).ok, true, '[host]:22 is accepted');
    assert.equal(verifyHostKey(kh, 'x.lab.evil', 22, other.blob).ok, false, 'no partial matches');
  });

  it('matches lines hashed by ssh-keygen -H', () => {
    const file = path.join(dir, 'known_hosts');
    fs.writeFileSync(file, `198.18.0.2 ${ed.line}\n[198.18.0.5]:2022 ${rsa.line}\n`);
    execFileSync('ssh-keygen', ['-H', '-f', file], { stdio: 'ignore' });
    const text = fs.readFileSync(file, 'utf8');
    assert.ok(text.startsWith('|1|'), 'hashed by OpenSSH');
    const kh = parseKnownHosts(text);
    assert.equal(verifyHostKey(kh, '198.18.0.2', 22, ed.blob).ok, true);
    assert.equal(verifyHostKey(kh, '198.18.0.5', 2022, rsa.blob).ok, true);
    assert.deepEqual(verifyHostKey(kh, '198.18.0.2', 22, other.blob), { ok: false, reason: 'mismatch' });
    assert.deepEqual(verifyHostKey(kh, '198.18.0.3', 22, ed.blob), { ok: false, reason: 'unknown-host' });
  });

  it('refuses revoked keys even when also pinned, and ignores cert authorities', () => {
    const kh = parseKnownHosts(`198.18.0.2 ${ed.line}\n@revoked * ${ed.line}\n@cert-authority * ${other.line}\n`);
    assert.deepEqual(verifyHostKey(kh, '198.18.0.2', 22, ed.blob), { ok: false, reason: 'revoked' });
    assert.deepEqual(verifyHostKey(kh, '198.18.0.7', 22, other.blob), { ok: false, reason: 'unknown-host' });
  });

  it('rejects malformed lines naming the line', () => {
    const [type, b64] = ed.line.split(' ');
    const bad = [`198.18.0.2 ${type}`, `198.18.0.2 ${type} not*base64`, `198.18.0.2 ssh-rsa ${b64}`, `@bogus h ${ed.line}`, `|1|abc|def ${ed.line}`];
    for (const l of bad) {
      assert.throws(() => parseKnownHosts(`# ok\n${l}`), (e: Error & { code?: string }) => e.code === 'VALIDATION' && /line 2/.test(e.message), l);
    }
  });

  it('prints fingerprints as ssh-keygen does', () => {
    const out = execFileSync('ssh-keygen', ['-lf', `${ed.file}.pub`], { encoding: 'utf8' });
    assert.equal(out.split(' ')[1], fingerprint(ed.blob));
  });
});
