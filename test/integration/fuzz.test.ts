/**
 * The fuzzer's rendered batches against real nft: every request the schemas accept renders a
 * batch that `nft -j -c -f -` (check mode: parsed and validated by nft and the kernel, nothing
 * applied) accepts on the lab host, except what the host says it cannot do (a unit or cgroup
 * exception where nft lacks `socket cgroupv2`), which must fail as exactly that.
 */
import { strict as assert } from 'assert';
import fc from 'fast-check';
import { nftInput } from '../../src/driver/host/apply';
import { checkCase, requestArb, targetArb } from '../fuzz/properties';
import type { Batch } from '../../src/driver/ruleset';
import { useLab } from '../lab/fixtures';

const CASES = Number(process.env.FUZZ_NFT_CASES ?? 240);
const GROUP = 12;

describe('fuzz: nft check mode accepts every rendered batch (lab host)', function () {
  this.timeout(300_000);
  const lab = useLab({ hosts: 1 });

  it(`${CASES} generated requests: valid ones pass nft -c, the rest are ValidationErrors`, async () => {
    const ns = lab.hosts[0].ns;
    const check = (batch: Batch) => lab.exec(ns, ['nft', '-j', '-c', '-f', '-'], JSON.stringify(batch), 60_000);
    const plain: Batch[] = [];
    const cgroup: Batch[] = [];
    let tried = 0;
    // bounded: at most 50 times as many draws as cases wanted
    for (let draws = 0; plain.length + cgroup.length < CASES && draws < CASES * 50; draws++) {
      const [[t, r]] = fc.sample(fc.tuple(targetArb, requestArb), { numRuns: 1, seed: 4242 + draws });
      tried++;
      const { batch } = checkCase(t, r, `nrhi_fz${plain.length + cgroup.length}`);
      if (!batch) continue;
      (JSON.stringify(batch).includes('"cgroupv2"') ? cgroup : plain).push(batch);
    }
    assert.ok(plain.length >= CASES / 2, `enough plain batches (${plain.length} of ${tried} draws)`);
    for (let i = 0; i < plain.length; i += GROUP) {
      const group = plain.slice(i, i + GROUP);
      const r = await check({ nftables: group.flatMap((b) => b.nftables) });
      if (r.code !== 0) {
        // find the culprit, and show it
        for (const b of group) {
          const one = await check(b);
          assert.equal(one.code, 0, `nft -c refused a rendered batch: ${one.stderr}\n${JSON.stringify(b).slice(0, 2000)}`);
        }
      }
    }
    for (const b of cgroup.slice(0, 10)) {
      const r = await check(b);
      if (r.code !== 0) assert.match(r.stderr, /Invalid socket key|cgroupv2|No such file or directory/, 'a unit/cgroup batch fails only for what the host lacks');
    }
    // and nothing in any of them reached a command line: the batches go on stdin only
    const { cmd } = nftInput({ host: '198.18.0.2', port: 22, username: 'x', knownHosts: 'x', password: 'x', sudo: false, timeoutMs: 1000, table: 'nrhi_fz0', managementCidrs: [], protectedHosts: [] }, plain[0]);
    assert.ok(!cmd.includes('nrhi_fz0') && !cmd.includes('{'));
  });
});
