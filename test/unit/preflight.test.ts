import { strict as assert } from 'assert';
import { IsolationError } from '../../src/driver';
import { CGROUP_PROBE, MAX_PREFLIGHT_OUTPUT, parseCapabilities, PREFLIGHT, preflightInput, refusal, SS_NOTHING } from '../../src/driver/host/preflight';

const NOW = new Date('2026-11-25T12:00:00Z');
/** what bookworm (nft 1.0.6) answers to the full preflight as root, under systemd */
const BOOKWORM = [
  'nrhi-cap kernel 6.1.0-27-amd64',
  'nrhi-cap uid 0',
  'nrhi-cap nft yes',
  'nrhi-cap nft-v v1.0.6',
  'nrhi-cap list-rc 0',
  'nrhi-cap list -',
  'nrhi-cap cg-rc 1',
  'nrhi-cap cg internal:0:0-0: Error: Invalid socket key value. internal:0:0-0: Error: Invalid LHS of relational. internal:0:0-0: Error: Parsing expr array at index 0 failed.',
  'nrhi-cap systemd yes',
  'nrhi-cap unitdir yes',
  'nrhi-cap protocols no',
  'nrhi-cap login local',
  'nrhi-cap ss yes',
  'nrhi-cap ss-rc 0',
  'nrhi-cap ss-out ',
  'nrhi-cap destroy CONFIG_INET_DIAG_DESTROY=y',
  'nrhi-cap conf flush',
  'nrhi-cap svc enabled',
  'nrhi-cap end .',
  '',
].join('\n');

function withLine(text: string, key: string, value: string): string {
  return text.replace(new RegExp(`^nrhi-cap ${key} .*$`, 'm'), `nrhi-cap ${key} ${value}`);
}

describe('preflight: parsing what a host says it can do', () => {
  it('reads an honest answer, every field', () => {
    const c = parseCapabilities(BOOKWORM, 'root', 'full', NOW);
    assert.deepEqual(
      { ...c, limits: undefined },
      {
        checkedAt: NOW.toISOString(),
        privilege: 'root',
        kernel: '6.1.0-27-amd64',
        nft: { present: true, version: '1.0.6', json: true, socketCgroupv2: false },
        ss: { present: true, kill: true, kernelDestroy: true },
        systemd: { running: true, unitDir: true },
        sudo: null,
        nftablesConf: { present: true, flushesRuleset: true, serviceEnabled: true },
        protocols: false,
        login: { network: false, via: null },
        root: true,
        unknown: {},
        limits: undefined,
      },
    );
    assert.ok(c.limits.some((l) => /nft 1\.0\.6.*socket cgroupv2/.test(l)), c.limits.join('; '));
    assert.ok(c.limits.some((l) => /flushes the ruleset/.test(l)), c.limits.join('; '));
  });

  it('login: local, a finding of the network, or unknown (which verify treats as the network: it logs in)', () => {
    assert.deepEqual(parseCapabilities(withLine(BOOKWORM, 'login', 'net nsswitch:passwd:sss'), 'root', 'full', NOW).login, { network: true, via: 'nsswitch:passwd:sss' });
    assert.deepEqual(parseCapabilities(withLine(BOOKWORM, 'login', 'net pam:pam_sss.so'), 'root', 'full', NOW).login, { network: true, via: 'pam:pam_sss.so' });
    for (const lie of ['locally', 'net ', 'net a b', 'net $(reboot)', `net ${'x'.repeat(200)}`]) {
      const c = parseCapabilities(withLine(BOOKWORM, 'login', lie), 'root', 'full', NOW);
      assert.deepEqual(c.login, { network: null, via: null }, lie);
      assert.equal(c.unknown['login.network'], 'unexpected answer');
    }
    const none = parseCapabilities(BOOKWORM.replace(/^nrhi-cap login .*\n/m, ''), 'root', 'gate', NOW);
    assert.deepEqual(none.login, { network: null, via: null });
  });

  it('the login question is answered with shell builtins only (no program started for it)', () => {
    for (const script of [PREFLIGHT.root, PREFLIGHT.sudo]) {
      const at = script.indexOf('lf=; lnet()');
      const end = script.indexOf('p login local');
      assert.ok(at > 0 && end > at);
      const part = script.slice(at, end);
      assert.doesNotMatch(part, /\$\((?!\()|`|\b(grep|sed|awk|cat|tr|head|ls|find)\b/);
    }
  });

  it('nft off the SSH user\'s PATH but run by sudo (secure_path) is present: never NFT_MISSING', () => {
    for (const mode of ['full', 'gate'] as const) {
      const text = withLine(BOOKWORM, 'nft', 'no');
      const c = parseCapabilities(mode === 'full' ? text : text.split('\n').filter((l) => !/^nrhi-cap (list|list-rc) /.test(l)).join('\n'), 'sudo', mode, NOW);
      assert.equal(c.nft.present, true, mode);
      assert.equal(c.nft.json, true, mode);
      assert.equal(refusal('h', c, { persist: false, exceptions: [] }), null, mode);
    }
    // and truly absent (the probe found no nft either): refused
    const none = withLine(withLine(withLine(BOOKWORM, 'nft', 'no'), 'list-rc', '127'), 'list', 'sudo: nft: command not found');
    const c = parseCapabilities(withLine(withLine(none, 'cg-rc', '127'), 'cg', 'sudo: nft: command not found'), 'sudo', 'full', NOW);
    assert.equal(c.nft.present, false);
    assert.equal(refusal('h', c, { persist: false, exceptions: [] })?.code, 'NFT_MISSING');
  });

  it('the short preflight says what it did not ask, and why', () => {
    // what the short preflight prints: no listing (the probe answers for JSON), nothing of ss, the config or sudo -l
    const gate = BOOKWORM.split('\n').filter((l) => !/^nrhi-cap (list|list-rc|ss|ss-rc|ss-out|destroy|conf|svc) /.test(l)).join('\n');
    const c = parseCapabilities(gate, 'sudo', 'gate', NOW);
    assert.equal(c.nft.version, '1.0.6');
    assert.equal(c.nft.json, true, "the probe's JSON parse error proves nft took JSON");
    assert.equal(c.nft.socketCgroupv2, false);
    assert.equal(c.ss.kill, null);
    assert.equal(c.nftablesConf.flushesRuleset, null);
    assert.match(c.unknown['ss.kill'], /not asked before an isolate/);
    assert.match(c.unknown['sudo.persist'], /not asked before an isolate/);
    assert.equal(c.sudo?.nft, true);
  });

  it('the short preflight: sudo refusing nft, nft not runnable, nft without JSON', () => {
    const gate = (cg: string, rc = '1') =>
      ['nrhi-cap nft yes', 'nrhi-cap nft-v nftables v1.0.6 (Lester Gooch #5)', `nrhi-cap cg-rc ${rc}`, `nrhi-cap cg ${cg}`, 'nrhi-cap systemd no', 'nrhi-cap unitdir yes', 'nrhi-cap end .'].join('\n');
    const refused = parseCapabilities(gate('sudo: a password is required'), 'sudo', 'gate', NOW);
    assert.equal(refused.sudo?.nft, false);
    assert.equal(refused.nft.json, null);
    assert.equal(refusal('h', refused, { persist: false, exceptions: [] })?.code, 'PRIVILEGE');
    const gone = parseCapabilities(gate('sh: 1: nft: not found', '127'), 'root', 'gate', NOW);
    assert.equal(refusal('h', gone, { persist: false, exceptions: [] })?.code, 'NFT_MISSING');
    const noJson = parseCapabilities(gate('Error: JSON support not compiled-in'), 'root', 'gate', NOW);
    assert.equal(noJson.nft.json, false);
    assert.equal(refusal('h', noJson, { persist: false, exceptions: [] })?.code, 'UNSUPPORTED');
    const accepted = parseCapabilities(gate('internal:0:0-0: Error: Could not process rule: No such file or directory'), 'sudo', 'gate', NOW);
    assert.deepEqual([accepted.nft.json, accepted.nft.socketCgroupv2, accepted.sudo?.nft], [true, true, true], 'a parser that takes it: only the abort answers');
    const odd = parseCapabilities(gate('Error: Could not process rule: No buffer space available'), 'root', 'gate', NOW);
    assert.equal(odd.nft.json, null);
    assert.match(odd.unknown['nft.json'], /No buffer space/);
    assert.equal(refusal('h', odd, { persist: true, exceptions: [{ direction: 'out', proto: 'any', unit: 'x.service' }] }), null, 'unknown refuses nothing');
  });

  it("a busy host's listing cut on the host is still JSON; a flood cut there is not", () => {
    const busy = withLine(withLine(BOOKWORM, 'list-rc', '141'), 'list', `{"nftables": [{"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}}, {"table": ${'x'.repeat(1200)}`);
    assert.equal(parseCapabilities(busy, 'root', 'full', NOW).nft.json, true);
    const flood = withLine(withLine(BOOKWORM, 'list-rc', 'cut'), 'list', 'A'.repeat(1500));
    const c = parseCapabilities(flood, 'root', 'full', NOW);
    assert.equal(c.nft.json, null);
    assert.match(c.unknown['nft.json'], /cut on the host/);
  });

  it('sudo refusing ss -K but not nft: reported, and nothing refused for it', () => {
    const text = withLine(withLine(BOOKWORM, 'ss-rc', '1'), 'ss-out', "Sorry, user nrhia is not allowed to execute '/usr/bin/ss -K -H -n -t -u state connected -F -' as root on h.");
    const c = parseCapabilities(`${text}nrhi-cap persist no\n`, 'sudo', 'full', NOW);
    assert.deepEqual(c.sudo, { nft: true, ss: false, persist: null }, 'persist came after the end line: not read');
    assert.equal(c.ss.kill, false);
    assert.ok(c.limits.some((l) => /sudo refuses `ss -K`/.test(l)), c.limits.join('; '));
    assert.equal(refusal('h', c, { persist: false, exceptions: [] }), null);
  });

  it('no end line: every missing field says the answer ended early', () => {
    const cut = BOOKWORM.split('\n').slice(0, 5).join('\n');
    const c = parseCapabilities(cut, 'root', 'full', NOW);
    assert.equal(c.nft.version, '1.0.6');
    assert.equal(c.systemd.running, null);
    assert.match(c.unknown['systemd.running'], /ended early/);
    assert.equal(c.nft.socketCgroupv2, null);
  });

  it('a lying host: duplicates, escapes, junk and impossible answers are not believed', () => {
    const lies = [
      'nrhi-cap kernel 6.1.0\u001b]0;owned\u0007',
      'nrhi-cap kernel 9.9.9', // a second answer: the first counts
      'nrhi-cap uid root',
      'nrhi-cap nft maybe',
      'nrhi-cap nft-v v1.0.6; rm -rf /',
      'nrhi-cap list-rc 0',
      'nrhi-cap cg-rc 0', // the probe can never apply
      'nrhi-cap cg ',
      'nrhi-cap systemd yes\u202e',
      'nrhi-cap unitdir yes',
      'nrhi-cap unitdir no',
      'nrhi-cap protocols ' + 'y'.repeat(5000),
      'nrhi-cap conf flush',
      'nrhi-cap svc enabled\u0000',
      'nrhi-cap destroy CONFIG_INET_DIAG_DESTROY=y # really',
      'nrhi-cap __proto__ polluted',
      'nrhi-cap constructor x',
      'nrhi-cap end .',
    ].join('\n');
    const c = parseCapabilities(lies, 'root', 'full', NOW);
    assert.equal(c.kernel, null);
    assert.equal(c.root, null);
    assert.equal(c.nft.present, null);
    assert.equal(c.nft.version, '1.0.6', 'the version pattern, nothing after it');
    assert.equal(c.nft.socketCgroupv2, null);
    assert.match(c.unknown['nft.socketCgroupv2'], /not believed/);
    assert.equal(c.systemd.running, null);
    assert.equal(c.systemd.unitDir, true, 'the first answer');
    assert.equal(c.protocols, null);
    assert.equal(c.nftablesConf.serviceEnabled, null);
    assert.equal(c.ss.kernelDestroy, null);
    assert.equal(({} as Record<string, unknown>).polluted, undefined);
    // every reason is clean text
    // eslint-disable-next-line no-control-regex
    for (const why of Object.values(c.unknown)) assert.doesNotMatch(why, /[\u0000-\u0008\u001b\u202e]/);
    // and a lie refuses nothing it cannot prove
    assert.equal(refusal('h', c, { persist: true, exceptions: [{ direction: 'out', proto: 'any', unit: 'x.service' }] }), null);
  });

  it('a flood is read in a bounded window and fast', () => {
    // the honest lines, then 10 MB of junk, then a late answer and the end line: past the window
    const junk = `${'A'.repeat(1000)}\n`.repeat(10_000) + 'nrhi-cap protocols yes\nnrhi-cap end .\n';
    const head = BOOKWORM.replace('nrhi-cap end .\n', '').replace('nrhi-cap protocols no\n', '');
    const t0 = Date.now();
    const c = parseCapabilities(head + junk, 'root', 'full', NOW);
    assert.ok(Date.now() - t0 < 500, 'parsed in under 0.5 s');
    assert.equal(c.nft.version, '1.0.6');
    assert.equal(c.systemd.running, true);
    assert.equal(c.protocols, null, 'the late answer is past the window');
    assert.match(c.unknown.protocols, /ended early/);
    const one = parseCapabilities('nrhi-cap kernel ' + 'x'.repeat(MAX_PREFLIGHT_OUTPUT * 4), 'sudo', 'full', NOW);
    assert.equal(one.kernel, null);
  });

  it('refuses up front what the host cannot do, naming its nft version and the feature', () => {
    const c = parseCapabilities(BOOKWORM, 'root', 'full', NOW);
    const unit = [{ direction: 'out' as const, proto: 'any' as const, unit: 'ssh.service' }];
    const err = refusal('h', c, { persist: false, exceptions: unit });
    assert.ok(err instanceof IsolationError);
    assert.equal(err.code, 'UNSUPPORTED');
    assert.match(err.message, /nft 1\.0\.6/);
    assert.match(err.message, /socket cgroupv2/);
    assert.equal(err.details.nftVersion, '1.0.6');
    assert.equal(refusal('h', c, { persist: true, exceptions: [{ direction: 'out', proto: 'tcp', uid: 0 }] }), null, 'uid exceptions work');

    const noSystemd = parseCapabilities(withLine(BOOKWORM, 'unitdir', 'no'), 'root', 'full', NOW);
    assert.equal(refusal('h', noSystemd, { persist: true, exceptions: [] })?.code, 'UNSUPPORTED');
    assert.match(refusal('h', noSystemd, { persist: true, exceptions: [] })!.message, /across reboots.*nft 1\.0\.6/);
    assert.equal(refusal('h', noSystemd, { persist: false, exceptions: [] }), null);

    const noJson = parseCapabilities(withLine(withLine(withLine(BOOKWORM, 'list-rc', '1'), 'list', 'Error: JSON support not compiled-in'), 'nft-v', 'nftables v0.9.0 (Fearless Fosdick)'), 'root', 'full', NOW);
    assert.equal(noJson.nft.json, false);
    const e2 = refusal('h', noJson, { persist: false, exceptions: [] });
    assert.equal(e2?.code, 'UNSUPPORTED');
    assert.match(e2!.message, /JSON.*nft 0\.9\.0/);

    // no nft on PATH, and nft's own command line (root: PATH with /usr/sbin, /sbin) found none either
    const noNft = parseCapabilities(withLine(withLine(withLine(BOOKWORM, 'nft', 'no'), 'list-rc', '127'), 'list', 'sh: 1: nft: not found'), 'root', 'full', NOW);
    assert.equal(refusal('h', noNft, { persist: false, exceptions: [] })?.code, 'NFT_MISSING');
    const notRunnable = parseCapabilities(withLine(withLine(BOOKWORM, 'list-rc', '127'), 'list', 'sh: 1: nft: not found'), 'root', 'full', NOW);
    assert.equal(notRunnable.nft.present, false);

    const sudoNo = parseCapabilities(withLine(withLine(BOOKWORM, 'list-rc', '1'), 'list', 'sudo: a password is required'), 'sudo', 'full', NOW);
    assert.equal(sudoNo.sudo?.nft, false);
    assert.equal(refusal('h', sudoNo, { persist: false, exceptions: [] })?.code, 'PRIVILEGE');
  });

  it('the script is constant: the table and the mode travel on stdin; its probes cannot change anything', () => {
    for (const cmd of Object.values(PREFLIGHT)) {
      assert.doesNotMatch(cmd, /node_red_isolation/);
      assert.ok(cmd.includes(CGROUP_PROBE) && cmd.includes(SS_NOTHING));
    }
    assert.deepEqual(preflightInput({ sudo: true, table: 'tbl' }, 'full'), { cmd: PREFLIGHT.sudo, stdin: 'tbl\nfull\n' });
    // the probe deletes its table twice: no state of the kernel lets that transaction commit
    const cmds = (JSON.parse(CGROUP_PROBE) as { nftables: Record<string, unknown>[] }).nftables;
    assert.deepEqual(cmds.slice(-2), [{ delete: { table: { family: 'inet', name: 'nrhi_preflight_probe' } } }, { delete: { table: { family: 'inet', name: 'nrhi_preflight_probe' } } }]);
    // no socket has two destination ports
    assert.match(SS_NOTHING, /^dport = :1 and dport = :2$/);
  });
});
