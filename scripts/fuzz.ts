/**
 * `npm run fuzz`: 100,000 generated requests (or `--cases N`) through every schema and the
 * renderer, checking the same properties as the unit test: each is a ValidationError or a batch
 * that stays data (constant command line, stdin of fixed shape, record round-trips). Prints the
 * count of cases, how many rendered, how many were refused, and stops at the first violation
 * with the case that caused it (exit 1). `--nft` also has nft's check mode on a lab host accept
 * every rendered batch (as root; slower).
 */
import fc from 'fast-check';
import { checkCase, requestArb, targetArb } from '../test/fuzz/properties';
import type { Batch } from '../src/driver/ruleset';

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(name);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
}

async function main(): Promise<void> {
  const cases = arg('--cases', 100_000);
  const seed = arg('--seed', Date.now() % 2 ** 31);
  const withNft = process.argv.includes('--nft');
  let rendered = 0;
  let refused = 0;
  const batches: Batch[] = [];
  const started = Date.now();
  fc.assert(
    fc.property(targetArb, requestArb, (t, r) => {
      const { batch } = checkCase(t, r, `nrhi_fz${batches.length % 1000}`);
      if (batch) {
        rendered++;
        if (withNft && !JSON.stringify(batch).includes('"cgroupv2"')) batches.push(batch);
      } else refused++;
    }),
    { numRuns: cases, seed },
  );
  console.log(`fuzz: ${rendered + refused} cases (seed ${seed}): ${rendered} rendered, ${refused} refused with ValidationError, 0 violations, ${((Date.now() - started) / 1000).toFixed(1)} s`);
  if (!withNft) return;
  const { createLab } = await import('../test/lab/lab');
  const lab = await createLab({ hosts: 1 });
  try {
    let checked = 0;
    const GROUP = 25;
    for (let i = 0; i < batches.length; i += GROUP) {
      const group = batches.slice(i, i + GROUP);
      const names = new Set<string>();
      // distinct table names inside one check transaction
      const renamed = group.map((b, k) => JSON.parse(JSON.stringify(b).replaceAll(/"nrhi_fz\d+"/g, `"nrhi_fzc${k}"`)) as Batch);
      renamed.forEach((_, k) => names.add(`nrhi_fzc${k}`));
      const r = await lab.exec(lab.hosts[0].ns, ['nft', '-j', '-c', '-f', '-'], JSON.stringify({ nftables: renamed.flatMap((b) => b.nftables) }), 120_000);
      if (r.code !== 0) {
        console.error(`nft -c refused a group: ${r.stderr}`);
        process.exitCode = 1;
        return;
      }
      checked += group.length;
    }
    console.log(`nft -j -c accepted all ${checked} rendered batches (unit/cgroup exceptions excluded: this nft lacks socket cgroupv2 in JSON)`);
  } finally {
    await lab.close();
  }
}

main().catch((err) => {
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});
