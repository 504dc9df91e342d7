/**
 * Issue 22, the cheapest proof that keeps verify-then-commit's guarantee, on a real lab host:
 * - a host whose login is local (the preflight's `login`): the proof is a NEW TCP connection to
 *   its sshd, answered by an SSH identification line; no second login. Counted in sshd's own log
 *   (LogLevel INFO: one "Accepted publickey" per login);
 * - a host whose login depends on the network (sshd's AuthorizedKeysCommand asks a key server on
 *   the peer, over TCP): the proof is a full login over a fresh connection, and an isolation that
 *   cuts the key server (so that no one could log in again) fails VERIFY_FAILED and is rolled
 *   back, where a bare TCP proof would have passed;
 * - a host whose sshd stops answering new connections fails the TCP proof and is rolled back
 *   (driver.test.ts, "when a fresh connection fails").
 */
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as path from 'path';
import type { TargetInput } from '../../src/driver';
import { dropTables, expectCode, useLab, withDriver } from '../lab/fixtures';

const TABLE = 'nrhi_vproof';
const KEY_PORT = 7351;

describe('verify-then-commit: the proof on the lab host (issue 22)', function () {
  this.timeout(120_000);
  const lab = useLab({ hosts: 1 });
  let target: TargetInput;
  const host = () => lab.hosts[0];
  const conf = () => path.join(lab.dir, 'sshd_0.conf');
  const log = () => path.join(lab.dir, 'sshd_0.log');
  let original = '';

  before(() => {
    target = { host: host().v4, username: lab.users.root.username, privateKey: lab.users.root.privateKey, knownHosts: host().knownHosts, table: TABLE, timeoutMs: 15_000 };
    original = fs.readFileSync(conf(), 'utf8');
  });
  afterEach(async () => {
    await dropTables(lab, TABLE, [0]);
    // a new sshd gets a new private /etc too: the files written below go with the old one
    fs.writeFileSync(conf(), original);
    await lab.stopSshd(0);
    await lab.startSshd(0);
  });

  /** sshd_0 restarted with `lines` in place of (or beside) its own */
  const sshdWith = async (edit: (cfg: string) => string) => {
    fs.writeFileSync(conf(), edit(original));
    await lab.stopSshd(0);
    await lab.startSshd(0);
  };
  const logins = () => (fs.existsSync(log()) ? fs.readFileSync(log(), 'utf8').match(/Accepted publickey for /g)?.length ?? 0 : 0);

  it('a host whose login is local: proved by a new TCP connection its sshd answers, with no second login', async () => {
    await sshdWith((c) => c.replace('LogLevel ERROR', 'LogLevel INFO'));
    await withDriver(async (d) => {
      const caps = await d.capabilities(target);
      assert.deepEqual(caps.login, { network: false, via: null }, JSON.stringify(caps.unknown));
      await d.status(target); // the warm connection
      const before = logins();
      const st = await d.isolate(target, { presets: ['ssh'] });
      assert.equal(st.isolated, true);
      assert.equal(logins(), before, 'no login beside the pooled connection');
      // confirmed: no rollback armed, and the host holds the isolation
      const exp = await lab.nft(host().ns, ['-j', 'list', 'set', 'inet', TABLE, 'exp']);
      assert.ok(!/"elem"/.test(exp.stdout), `no rollback deadline left: ${exp.stdout}`);
    });
    // and a new controller logs in through the isolation (what the proof stood for)
    await withDriver(async (d) => assert.equal((await d.status(target)).isolated, true));
  });

  it('a host whose login asks the network (AuthorizedKeysCommand): a full login proves it, and an isolation that cuts the key server is rolled back', async () => {
    const pub = fs.readFileSync(path.join(lab.dir, 'authorized_keys', lab.users.root.username), 'utf8').trim().split('\n')[0];
    // the key server: the peer's echo server hands back the key line the command sends it
    const script = [
      '#!/bin/bash',
      `exec timeout 3 bash -c 'exec 3<>/dev/tcp/${lab.peer.v4}/${KEY_PORT} || exit 1; printf "%s\\n" "$1" >&3; IFS= read -r k <&3 && printf "%s\\n" "$k"' akc ${JSON.stringify(pub)}`,
      '',
    ].join('\n');
    await sshdWith((c) =>
      c
        .replace(/^AuthorizedKeysFile .*$/m, 'AuthorizedKeysFile none')
        .replace('LogLevel ERROR', 'LogLevel INFO')
        .concat('AuthorizedKeysCommand /bin/bash /etc/nrhi-akc.sh %u\nAuthorizedKeysCommandUser nobody\n'),
    );
    // written once sshd runs (each sshd start gets a fresh private /etc): its key command, and the
    // same lines where the preflight reads the host's sshd configuration (its /etc)
    await lab.hostFile(0, '/etc/nrhi-akc.sh', script);
    await lab.hostFile(0, '/etc/ssh/sshd_config.d/nrhi-akc.conf', 'AuthorizedKeysCommand /bin/bash /etc/nrhi-akc.sh %u\nAuthorizedKeysCommandUser nobody\n');
    const keys = await lab.listen(lab.peer.ns, KEY_PORT);
    try {
      await withDriver(async (d) => {
        const caps = await d.capabilities(target);
        assert.equal(caps.login.network, true);
        assert.match(caps.login.via ?? '', /AuthorizedKeysCommand/i);
        await d.status(target);
        // not excepted: a new login can no longer get its key (a bare TCP proof would pass: sshd
        // still answers); the fresh login fails, and the isolation is rolled back: the host is free
        const err = await expectCode(d.isolate(target, { presets: ['ssh'] }), 'VERIFY_FAILED');
        assert.equal(err.details.rolledBack, true, err.message);
        assert.equal((await d.status(target)).isolated, false, 'rolled back: free');
        // excepted: the key server stays reachable, one fresh login proves it, the isolation is confirmed
        const before = logins();
        const ok = await d.isolate(target, { presets: ['ssh'], exceptions: [{ direction: 'out', proto: 'tcp', addr: lab.peer.v4, port: KEY_PORT }] });
        assert.equal(ok.isolated, true);
        assert.equal(logins(), before + 1, 'one fresh login proved it');
        // and a new login through the isolation works
        await withDriver(async (d2) => assert.equal((await d2.status(target)).isolated, true));
      });
    } finally {
      keys.close();
    }
  });
});
