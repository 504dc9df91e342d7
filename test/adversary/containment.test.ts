/**
 * The isolation tried as the attacker on the isolated host (root or any user there) and on the
 * peer would try it: every path the isolation should close, with real packets on the lab, and
 * the lockout paths it must keep. Each test here failed on the code before issue 11.
 */
import { strict as assert } from 'assert';
import * as fs from 'fs';
import { IsolationDriver, type TargetInput } from '../../src/driver';
import { nftInput } from '../../src/driver/host/apply';
import { renderIsolate, renderRollback, type StateDoc } from '../../src/driver/ruleset';
import { connect } from '../../src/driver/transport';
import { validate, targetSchema, type Exception } from '../../src/driver/policy';
import { dropTables, useDriver, useLab, expectCode } from '../lab/fixtures';
import { SUDOERS_LINES } from '../lab/lab';

const TABLE = 'nrhi_adv';


const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('adversary: containment against the host it contains', function () {
  this.timeout(120_000);
  const lab = useLab({ hosts: 1 });
  const driver = useDriver({ verifyWindowS: 5 });
  let target: TargetInput;
  /** a second address on the peer: the host's real DNS/NTP/LDAP server (the attacker is the peer's .3) */
  let server: string;

  before(() => {
    const h = lab.hosts[0];
    target = { host: h.v4, username: lab.users.root.username, privateKey: lab.users.root.privateKey, knownHosts: h.knownHosts, table: TABLE, timeoutMs: 15_000 };
    server = lab.server.v4;
  });

  afterEach(async () => {
    await dropTables(lab, TABLE, [0]);
    await dropTables(lab, 'other_tool', [0]);
    await lab.nft(lab.peer.ns, ['delete', 'table', 'inet', 'nrhi_count']).catch(() => undefined);
  });

  const host = () => lab.hosts[0];

  /** A counter table on the peer (a lab namespace): packets from the host matching `match`. */
  async function peerCounter(match: string): Promise<() => Promise<number>> {
    await lab.nft(lab.peer.ns, ['add', 'table', 'inet', 'nrhi_count']);
    // prerouting: multicast to a group the peer has not joined never reaches its input hook
    await lab.nft(lab.peer.ns, ['add', 'chain', 'inet', 'nrhi_count', 'in', '{ type filter hook prerouting priority -300 ; policy accept ; }']);
    await lab.nft(lab.peer.ns, ['add', 'rule', 'inet', 'nrhi_count', 'in', ...match.split(' '), 'counter']);
    return async () => {
      const out = (await lab.nft(lab.peer.ns, ['list', 'chain', 'inet', 'nrhi_count', 'in'])).stdout;
      return Number(/packets (\d+)/.exec(out)?.[1] ?? NaN);
    };
  }

  it('cuts every connection open before isolation, both directions, TCP and UDP, v4 and v6: none resumes after release', async () => {
    const h = host();
    const stop = [
      await lab.listen(h.ns, 7101),
      await lab.listen(h.ns, 7101, { udp: true }),
      await lab.listen(lab.peer.ns, 7102),
      await lab.listen(lab.peer.ns, 7102, { udp: true }),
      await lab.listen(lab.peer.ns, 7103),
    ];
    const conns = {
      'peer->host tcp v4': await lab.openConnection(lab.peer.ns, h.v4, 7101),
      'peer->host tcp v6': await lab.openConnection(lab.peer.ns, h.v6, 7101),
      'host->peer tcp v4': await lab.openConnection(h.ns, lab.peer.v4, 7102),
      'host->peer tcp v6': await lab.openConnection(h.ns, lab.peer.v6, 7102),
      'host->peer udp v4': await lab.openConnection(h.ns, lab.peer.v4, 7102, { udp: true }),
      'host->peer udp v6': await lab.openConnection(h.ns, lab.peer.v6, 7102, { udp: true }),
    };
    // an exception names this one: it is kept, and works all along
    const kept = await lab.openConnection(h.ns, lab.peer.v4, 7103);
    try {
      for (const [name, c] of Object.entries(conns)) assert.equal(await c.roundTrip(), true, `${name} works before`);
      const exceptions: Exception[] = [{ direction: 'out', proto: 'tcp', addr: lab.peer.v4, port: 7103 }];
      const st = await driver.isolate(target, { exceptions });
      assert.ok(st.severed !== null && st.severed >= 6, `severed ${st.severed}: ${JSON.stringify(st.warnings)}`);
      assert.deepEqual(st.warnings, []);
      assert.equal(await kept.roundTrip(), true, 'the excepted connection is not cut');
      assert.equal((await driver.status(target)).isolated, true, 'the management channel is not cut');
      await driver.unisolate(target);
      for (const [name, c] of Object.entries(conns)) assert.equal(await c.roundTrip(), false, `${name} does not resume after release`);
      assert.equal(await kept.roundTrip(), true, 'the excepted connection still works');
    } finally {
      for (const c of [...Object.values(conns), kept]) c.close();
      for (const s of stop) s.close();
    }
  });

  it('cuts what a timed isolation froze, so nothing resumes when it ends by itself', async () => {
    const l = await lab.listen(lab.peer.ns, 7104);
    const c = await lab.openConnection(host().ns, lab.peer.v4, 7104);
    try {
      assert.equal(await c.roundTrip(), true);
      const st = await driver.isolate(target, { duration: 2, verify: false });
      assert.ok((st.severed ?? 0) >= 1);
      await sleep(3500);
      assert.ok(!(await lab.nft(host().ns, ['list', 'tables'])).stdout.includes(TABLE), 'released by its timer');
      assert.equal(await c.roundTrip(), false, 'the reverse shell does not come back');
    } finally {
      c.close();
      l.close();
    }
  });

  it('says so plainly when the host cannot cut connections (no ss), instead of claiming it did', async () => {
    const l = await lab.listen(lab.peer.ns, 7105);
    const c = await lab.openConnection(host().ns, lab.peer.v4, 7105);
    // `ss` vanishes from the host (in its own mount namespace only)
    const hide = await lab.hostExec(0, ['sh', '-c', 'for d in /usr/bin /bin /usr/sbin /sbin; do [ -e $d/ss ] && mount --bind /dev/null $d/ss; done; true']);
    assert.equal(hide.code, 0, hide.stderr);
    try {
      const st = await driver.isolate(target, { verify: false });
      assert.equal(st.isolated, true);
      assert.equal(st.severed, null);
      assert.ok(st.warnings.some((w) => /NOT cut/.test(w) && /ss/.test(w)), JSON.stringify(st.warnings));
    } finally {
      await lab.hostExec(0, ['sh', '-c', 'for d in /usr/bin /bin /usr/sbin /sbin; do umount $d/ss 2>/dev/null; done; true']);
      c.close();
      l.close();
    }
  });

  it('says so when the kernel cannot destroy sockets: the connections left are counted, not claimed cut', async () => {
    const l = await lab.listen(lab.peer.ns, 7111);
    const c = await lab.openConnection(host().ns, lab.peer.v4, 7111);
    // an `ss` whose -K destroys nothing (as on a kernel without CONFIG_INET_DIAG_DESTROY): it lists only
    const real = `${lab.dir}/ss.real`;
    fs.copyFileSync('/usr/bin/ss', real);
    // (ss -K prints the sockets it closed and silently skips those the kernel will not close)
    fs.writeFileSync(
      `${lab.dir}/ss.nokill`,
      `#!/bin/sh\nk=\nfor a; do shift; if [ "$a" = -K ]; then k=1; else set -- "$@" "$a"; fi; done\nif [ -n "$k" ]; then exec ${real} "$@" >/dev/null; fi\nexec ${real} "$@"\n`,
      { mode: 0o755 },
    );
    const wrap = await lab.hostExec(0, ['mount', '--bind', `${lab.dir}/ss.nokill`, '/usr/bin/ss']);
    assert.equal(wrap.code, 0, wrap.stderr);
    try {
      const st = await driver.isolate(target, { verify: false });
      assert.equal(st.severed, 0);
      assert.ok(st.warnings.some((w) => /could not be cut/.test(w) && /CONFIG_INET_DIAG_DESTROY/.test(w)), JSON.stringify(st.warnings));
    } finally {
      await lab.hostExec(0, ['umount', '/usr/bin/ss']);
      c.close();
      l.close();
    }
  });

  it('presets open their ports to the host\'s own servers only: the attacker\'s 53, 123, 389 and 636 stay closed', async () => {
    await lab.hostFile(0, '/etc/resolv.conf', `# written by the lab\nnameserver ${server}\n`);
    await lab.hostFile(0, '/etc/hosts', `127.0.0.1 localhost\n${server} time.lab.example\n`);
    await lab.hostFile(0, '/etc/chrony/chrony.conf', 'pool time.lab.example iburst\nsourcedir /run/chrony-dhcp\n');
    await lab.hostFile(0, '/etc/ldap/ldap.conf', `URI ldap://${server}/ ldaps://${server}:636\n`);
    // the real servers answer from their own address; the attacker listens on the peer's others
    const stop = [];
    for (const addr of [server, lab.peer.v4, lab.peer.v6]) {
      stop.push(await lab.listen(lab.peer.ns, 53, { addr }), await lab.listen(lab.peer.ns, 53, { udp: true, addr }), await lab.listen(lab.peer.ns, 123, { udp: true, addr }));
      stop.push(await lab.listen(lab.peer.ns, 389, { addr }), await lab.listen(lab.peer.ns, 636, { addr }));
    }
    const h = host();
    try {
      const st = await driver.isolate(target, { presets: ['dns', 'ntp', 'ldap', 'ldaps', 'icmp', 'dhcp'] });
      const named = st.exceptions.filter((e) => /preset (dns|ntp|ldap)/.test(e.comment ?? ''));
      assert.ok(named.length > 0 && named.every((e) => e.addr === server), JSON.stringify(named));
      assert.ok(named.some((e) => /resolv\.conf/.test(e.comment ?? '')), 'the state says where the servers came from');
      for (const [port, udp] of [[53, false], [53, true], [123, true], [389, false], [636, false]] as const) {
        const reach = (addr: string) => (udp ? lab.udpRoundTrip(h.ns, addr, port) : lab.tryConnect(h.ns, addr, port));
        assert.equal(await reach(server), true, `${udp ? 'udp' : 'tcp'} ${port} to the host's own server`);
        assert.equal(await reach(lab.peer.v4), false, `${udp ? 'udp' : 'tcp'} ${port} to the attacker`);
        assert.equal(await reach(lab.peer.v6), false, `${udp ? 'udp' : 'tcp'} ${port} to the attacker over v6`);
      }
    } finally {
      for (const s of stop) s.close();
      await lab.hostFile(0, '/etc/chrony/chrony.conf', null);
    }
  });

  it('a preset whose servers cannot be found is refused, never opened to any address', async () => {
    await lab.hostFile(0, '/etc/resolv.conf', 'nameserver 127.0.0.1\n'); // a local resolver with unknown upstreams
    await lab.hostFile(0, '/etc/ldap/ldap.conf', '# no directory configured\n');
    // the servers are read once per connection: a fresh driver reads the host as it is now
    const d = new IsolationDriver();
    try {
      await expectCode(d.isolate(target, { presets: ['dns'] }), 'SERVERS_UNKNOWN');
      await expectCode(d.isolate(target, { presets: ['ldaps'] }), 'SERVERS_UNKNOWN');
    } finally {
      await d.close();
    }
    assert.ok(!(await lab.nft(host().ns, ['list', 'tables'])).stdout.includes(TABLE), 'nothing applied');
    // named by the operator instead: those and only those
    const st = await driver.isolate(target, { presets: ['dns'], servers: { dns: [server] } });
    assert.ok(st.exceptions.every((e) => e.addr === server));
    await expectCode(driver.isolate(target, { presets: ['dns'], servers: { dns: ['0.0.0.0/0'] } }), 'VALIDATION');
  });

  it('the ssh preset opens SSH to the management networks only, not to anyone with stolen credentials', async () => {
    const st = await driver.isolate(target, { presets: ['ssh'] });
    assert.ok(st.exceptions.every((e) => e.addr === lab.controller.v4), JSON.stringify(st.exceptions));
    assert.equal(await lab.tcpOpen(lab.peer.ns, host().v4, 22), false, 'stolen credentials from the peer get no SSH');
    assert.equal(await lab.tcpOpen(lab.peer.ns, host().v6, 22), false);
    assert.equal((await driver.status(target)).isolated, true, 'the controller keeps its channel');
  });

  it('ICMP: echo in and its reply pass with the icmp preset; no echo request leaves, root or not', async () => {
    const echoIn = await peerCounter('icmp type echo-request');
    const st = await driver.isolate(target, { presets: ['icmp'] });
    assert.equal(st.isolated, true);
    assert.equal(await lab.ping(lab.peer.ns, host().v4), true, 'ping from the peer gets its answer');
    assert.equal(await lab.ping(lab.peer.ns, host().v6), true, 'ping6 from the peer gets its answer');
    // the attacker on the host pings data out, as an unprivileged user and as root
    const nobody = await lab.exec(host().ns, ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', 'ping', '-n', '-q', '-c', '2', '-W', '1', '-p', 'deadbeef', lab.peer.v4]);
    assert.notEqual(nobody.code, 0, 'no answer to the unprivileged ping');
    assert.equal(await lab.ping(host().ns, lab.peer.v4), false);
    assert.equal(await echoIn(), 0, 'no echo request from the host reached the peer');
    await driver.unisolate(target);
    assert.equal(await lab.ping(host().ns, lab.peer.v4), true);
    assert.ok((await echoIn()) > 0, 'the counter sees pings once released');
  });

  it('IPv6 multicast listener reports leave the isolated host (MLD), on the link only', async () => {
    const reports = await peerCounter('icmpv6 type mld2-listener-report ip6 saddr fe80::/10');
    await driver.isolate(target, {});
    // joining a group makes the kernel send MLDv2 reports
    const join = `const s=require('dgram').createSocket('udp6');s.bind(0,()=>{s.addMembership('ff02::4242','::%eth0');setTimeout(()=>process.exit(0),1500)})`;
    const r = await lab.exec(host().ns, [process.execPath, '-e', join]);
    assert.equal(r.code, 0, r.stderr);
    assert.ok((await reports()) > 0, 'an MLD report reached the link');
  });

  it('packet-too-big about an excepted flow reaches the host (path MTU keeps working)', async () => {
    const h = host();
    const l = await lab.listen(lab.peer.ns, 7106, { udp: true });
    try {
      await driver.isolate(target, { exceptions: [{ direction: 'out', proto: 'udp', addr: lab.peer.v6, port: 7106 }] });
      // the host sends on the excepted flow from a known port; the peer answers with a crafted
      // ICMPv6 packet-too-big (MTU 1280) that quotes that datagram, as a router on the path would
      // (the socket stays open: the kernel applies a packet-too-big to the socket that sent)
      const send = `const s=require('dgram').createSocket('udp6');s.bind(7107,()=>s.send('x'.repeat(1400),7106,'${lab.peer.v6}',()=>setTimeout(()=>process.exit(0),2500)))`;
      const sender = lab.exec(h.ns, [process.execPath, '-e', send]);
      await sleep(700);
      const ptb = [
        'import socket,struct,sys',
        'src,dst=sys.argv[1],sys.argv[2]',
        "inner=struct.pack('!IHBB',6<<28,8+1400,17,64)+socket.inet_pton(socket.AF_INET6,dst)+socket.inet_pton(socket.AF_INET6,src)",
        "inner+=struct.pack('!HHHH',7107,7106,8+1400,0)+b'x'*64",
        "msg=struct.pack('!BBHI',2,0,0,1280)+inner",
        's=socket.socket(socket.AF_INET6,socket.SOCK_RAW,socket.IPPROTO_ICMPV6)',
        's.sendto(msg,(dst,0))',
      ].join('\n');
      const r = await lab.exec(lab.peer.ns, ['python3', '-c', ptb, lab.peer.v6, h.v6]);
      assert.equal(r.code, 0, r.stderr);
      await sleep(300);
      const route = await lab.exec(h.ns, ['ip', '-6', 'route', 'get', lab.peer.v6]);
      assert.equal((await sender).code, 0);
      assert.match(route.stdout, /mtu 1280/, `the host learnt the path MTU: ${route.stdout}`);
    } finally {
      l.close();
    }
  });

  it('another tool\'s conntrack mark opens no reply path into the isolated host', async () => {
    const h = host();
    // "another tool" on the host marks every flow with the bit the pack once used for owner exceptions
    await lab.nft(h.ns, ['add', 'table', 'inet', 'other_tool']);
    await lab.nft(h.ns, ['add', 'chain', 'inet', 'other_tool', 'out', '{ type filter hook output priority -300 ; policy accept ; }']);
    await lab.nft(h.ns, ['add', 'rule', 'inet', 'other_tool', 'out', 'ct', 'mark', 'set', 'ct', 'mark', 'or', '0x00100000']);
    const onHost = await lab.openConnection(h.ns, lab.peer.v4, 7108, { localPort: 7109 });
    const onPeer = await lab.openConnection(lab.peer.ns, h.v4, 7109, { localPort: 7108 });
    try {
      onHost.send('hello-from-host');
      assert.equal(await onPeer.waitFor('hello-from-host', 1500), true, 'the flow exists');
      await driver.isolate(target, { exceptions: [{ direction: 'out', proto: 'tcp', uid: 'nobody', port: 443 }] });
      onPeer.send('data-into-isolation');
      assert.equal(await onHost.waitFor('data-into-isolation', 1500), false, 'a marked reply does not get in');
    } finally {
      onHost.close();
      onPeer.close();
    }
  });

  it('user names reach nft as numbers: a keyword or unknown name is VALIDATION and changes nothing; "@set" cgroups are refused', async () => {
    for (const uid of ['tcp', 'nosuchuser']) {
      await expectCode(driver.isolate(target, { exceptions: [{ direction: 'out', proto: 'tcp', uid }] }), 'VALIDATION');
    }
    await expectCode(driver.isolate(target, { exceptions: [{ direction: 'out', proto: 'tcp', cgroup: '@owner4' }] }), 'VALIDATION');
    assert.ok(!(await lab.nft(host().ns, ['list', 'tables'])).stdout.includes(TABLE), 'nothing applied');
    const st = await driver.isolate(target, { exceptions: [{ direction: 'out', proto: 'tcp', uid: 'nobody', port: 443 }] });
    assert.equal(st.exceptions[0].uid, 65534);
    await expectCode(driver.setExceptions(target, 'add', [{ direction: 'out', proto: 'udp', uid: 'udp' }]), 'VALIDATION');
  });

  it('arms the rollback for an isolation whose state is over 128 KiB (no argument-size limit)', async () => {
    // ~80 crossing exceptions with long comments: the previous isolation's batch exceeds 128 KiB
    const big: Exception[] = [];
    for (let i = 0; i < 40; i++) big.push({ direction: 'in', proto: 'tcp', addr: `198.18.${i}.0/25`, comment: `collector ${i} `.padEnd(120, 'x') });
    for (let i = 0; i < 40; i++) big.push({ direction: 'in', proto: 'tcp', addr: '198.18.0.0/18', port: 2000 + 2 * i, comment: `port ${i} `.padEnd(120, 'y') });
    const previous = await driver.isolate(target, { exceptions: big, verify: false, reason: 'r'.repeat(1000) });
    const listing = await lab.nft(host().ns, ['-j', 'list', 'table', 'inet', TABLE]);
    const gen = Number(/"name": ?"gen"[^}]*"elem": ?\[(\d+)\]/.exec(listing.stdout)?.[1]);
    assert.ok(Number.isInteger(gen), 'generation read');
    const doc: StateDoc = { v: 1, since: previous.since!, reason: previous.reason, mode: 'enforce', expiresAt: null, management: previous.management, exceptions: previous.exceptions };
    const rollback = renderRollback(TABLE, Math.floor(Date.now() / 1000) + 3, { doc, gen });
    assert.ok(JSON.stringify(rollback).length > 128 * 1024, `rollback batch is ${JSON.stringify(rollback).length} bytes`);
    // what verify-then-commit sends first: the new isolation with the rollback armed on the host
    const deadline = Math.floor(Date.now() / 1000) + 3;
    const next: StateDoc = { ...doc, exceptions: [], reason: 'newer' };
    const t = validate(targetSchema, target, 'target');
    const { cmd, stdin } = nftInput(t, renderIsolate(TABLE, next, gen + 1, deadline), { seconds: 3, release: renderRollback(TABLE, deadline, { doc, gen }) });
    const conn = await connect(t, 10_000);
    try {
      const res = await conn.exec(cmd, stdin, 10_000);
      assert.equal(res.code, 0, res.stderr);
    } finally {
      conn.close();
    }
    assert.equal((await new IsolationDriver().status(target).then((s) => s.reason)), 'newer', 'the new isolation is in, unconfirmed');
    await sleep(5000);
    const after = await driver.status(target);
    assert.equal(after.reason, previous.reason, 'the host rolled back to the previous isolation by itself');
    assert.equal(after.exceptions.length, big.length);
  });

  it('a rollback puts back the previous isolation\'s own release timer', async () => {
    const d = new IsolationDriver({ verifyWindowS: 5 });
    try {
      const first = await d.isolate(target, { duration: 8, verify: false, reason: 'timed' });
      assert.ok(first.expiresAt);
      await lab.stopSshd(0); // the listener goes away; the established session survives
      const err = await expectCode(d.isolate(target, { reason: 'newer' }), 'VERIFY_FAILED');
      assert.equal(err.details.rolledBack, true, err.message);
      await lab.startSshd(0);
      assert.equal((await d.status(target)).reason, 'timed', 'rolled back to the timed isolation');
      await sleep(Math.max(0, Date.parse(first.expiresAt!) - Date.now()) + 2500);
      assert.ok(!(await lab.nft(host().ns, ['list', 'tables'])).stdout.includes(TABLE), 'the timed isolation still ended on time');
    } finally {
      await lab.startSshd(0).catch(() => undefined);
      await d.close();
    }
  });

  it('the documented sudo rule runs the pack (and cuts connections), and no other nft or ss command', async () => {
    const h = host();
    const sudoTarget: TargetInput = { ...target, username: lab.users.sudo.username, privateKey: lab.users.sudo.privateKey, passphrase: lab.users.sudo.passphrase, sudo: true };
    assert.match(SUDOERS_LINES('u'), /nft -j -f -$/m);
    const l = await lab.listen(lab.peer.ns, 7110);
    const c = await lab.openConnection(h.ns, lab.peer.v4, 7110);
    try {
      const st = await driver.isolate(sudoTarget, {});
      assert.ok((st.severed ?? 0) >= 1, JSON.stringify(st));
      assert.deepEqual(st.warnings, []);
      await driver.unisolate(sudoTarget);
      assert.equal(await c.roundTrip(), false);
    } finally {
      c.close();
      l.close();
    }
    // the account cannot make nft read a file as root
    const as = ['setpriv', `--reuid=${lab.users.sudo.username}`, '--init-groups', '--'];
    const shadow = await lab.exec(h.ns, [...as, 'sudo', '-n', 'nft', '-f', '/etc/shadow']);
    assert.notEqual(shadow.code, 0);
    assert.match(shadow.stderr, /sudo/);
  });
});
