/**
 * Every program the pack runs on a host, and the stdin it sends them, pinned byte for byte
 * (test/golden/). A change to what runs on a host shows here as a diff a reviewer reads; a move
 * of code that should change nothing (the reshaping of the driver) is proved to be a move.
 * `UPDATE_GOLDEN=1 npm run test:unit` writes the files anew, for a change that means to alter them.
 */
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as path from 'path';
import { nftInput } from '../../src/driver/host/apply';
import { bootGuardExec } from '../../src/driver/host/boot';
import { COMMANDS, PROGRAMS as ALL_PROGRAMS } from '../../src/driver/host/programs';
import { severFilters } from '../../src/driver/host/sever';
import { statusInput } from '../../src/driver/host/status';
import { targetSchema } from '../../src/driver/policy';
import { PREFLIGHT, preflightInput } from '../../src/driver/host/preflight';
import { renderBootUnit, renderIsolate, renderList, renderRelease, type StateDoc } from '../../src/driver/ruleset';
import { DISCOVER_SCRIPT, LOOKUP_SCRIPT, lookupInput } from '../../src/driver/host/servers';
import { probeInput } from '../../src/driver/host/probe';

const DIR = path.resolve(__dirname, '..', '..', '..', 'test', 'golden');

const target = targetSchema.parse({ host: '198.18.0.10', username: 'isolator', password: 'x', knownHosts: 'k', sudo: true, table: 'nrhi_golden' });
const doc: StateDoc = {
  v: 1,
  since: '2026-12-02T00:00:00.000Z',
  reason: 'golden',
  mode: 'enforce',
  expiresAt: '2026-12-02T00:15:00.000Z',
  management: [{ addr: '198.18.0.1', port: 22 }],
  exceptions: [
    { direction: 'in', proto: 'tcp', addr: '198.18.0.3', port: 8443 },
    { direction: 'out', proto: 'udp', addr: '198.18.0.5', port: 53 },
  ],
};
const gen = 4242;
const batch = renderIsolate(target.table, doc, gen);

/** name -> the exact text a host receives */
const PROGRAMS: Record<string, string> = {
  'command-nft.sh': COMMANDS.nft,
  'command-sudo-nft.sh': COMMANDS.sudoNft,
  'command-apply.sh': COMMANDS.apply,
  'command-sudo-apply.sh': COMMANDS.sudoApply,
  'command-whoami.sh': COMMANDS.whoami,
  'command-status.sh': COMMANDS.status,
  'command-sudo-status.sh': COMMANDS.sudoStatus,
  'command-probe.sh': COMMANDS.probe,
  'preflight-root.sh': PREFLIGHT.root,
  'preflight-sudo.sh': PREFLIGHT.sudo,
  'discover.sh': DISCOVER_SCRIPT,
  'lookup.sh': LOOKUP_SCRIPT,
  'boot-guard-exec.txt': bootGuardExec(target.table, gen),
  'boot-unit.service': renderBootUnit(target.table, batch, bootGuardExec(target.table, gen)),
  'stdin-isolate.txt': nftInput(target, batch, {
    seconds: 900,
    release: renderRelease(target.table, doc),
    notice: 'isolated',
    releaseNotice: 'released',
    boot: '-',
    sever: severFilters(doc.management, doc.exceptions),
    guard: { gen, batch },
  }).stdin,
  'stdin-nft.txt': nftInput(target, renderList(target.table)).stdin,
  'stdin-status.txt': statusInput(target, renderList(target.table)).stdin,
  'stdin-preflight.txt': preflightInput(target, 'gate').stdin,
  'stdin-lookup.txt': lookupInput(['ns1.example.org'], ['backup']),
  'stdin-probe.txt': probeInput({ addr: '2001:db8::7', port: 443, proto: 'tcp' }),
};

describe('golden: what runs on a host, byte for byte', () => {
  const update = process.env.UPDATE_GOLDEN === '1';
  if (update) fs.mkdirSync(DIR, { recursive: true });
  for (const [name, text] of Object.entries(PROGRAMS)) {
    it(name, () => {
      const file = path.join(DIR, name);
      if (update) fs.writeFileSync(file, text);
      assert.ok(fs.existsSync(file), `${file} is missing: UPDATE_GOLDEN=1 writes it`);
      assert.equal(text, fs.readFileSync(file, 'utf8'), `${name} differs from test/golden/${name} (UPDATE_GOLDEN=1 if the change is meant)`);
    });
  }
  it('pins every program of the command table', () => {
    for (const cmd of [...Object.values(COMMANDS), ...Object.values(PREFLIGHT), ...ALL_PROGRAMS]) {
      assert.ok(Object.values(PROGRAMS).includes(cmd), `a command without a golden file: ${cmd.slice(0, 60)}`);
    }
  });
});
