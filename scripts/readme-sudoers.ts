/**
 * The README's sudoers blocks are the generator's output: each block between
 * `<!-- sudoers ARGS -->` and `<!-- /sudoers -->` is what `node-red-host-isolation-sudoers ARGS`
 * prints. `node dist/scripts/readme-sudoers.js --write` fills them in; the unit suite fails when
 * one differs (test/unit/sudoers.test.ts), so the README cannot drift from the commands the host
 * scripts run.
 */
import * as fs from 'fs';
import * as path from 'path';
import { run } from '../src/bin/sudoers';

const BLOCK = /^( *)<!-- sudoers ([^\n]*?) -->\n\1```\n[\s\S]*?\n\1```\n\1<!-- \/sudoers -->$/gm;

/** The README with every sudoers block replaced by the generator's output for its arguments. */
export function fillSudoersBlocks(readme: string): string {
  return readme.replace(BLOCK, (_m, indent: string, args: string) => {
    const body = run(args.split(/\s+/).filter(Boolean)).replace(/\n$/, '').split('\n').map((l) => `${indent}${l}`).join('\n');
    return `${indent}<!-- sudoers ${args} -->\n${indent}\`\`\`\n${body}\n${indent}\`\`\`\n${indent}<!-- /sudoers -->`;
  });
}

/** The arguments of each block, in order. */
export function sudoersBlocks(readme: string): string[] {
  return [...readme.matchAll(BLOCK)].map((m) => m[2]);
}

if (require.main === module) {
  const file = path.join(__dirname, '..', '..', 'README.md');
  const before = fs.readFileSync(file, 'utf8');
  const after = fillSudoersBlocks(before);
  if (process.argv.includes('--write')) {
    fs.writeFileSync(file, after);
    console.log(`${sudoersBlocks(after).length} sudoers blocks written`);
  } else if (after !== before) {
    console.error('README.md: sudoers blocks differ from the generator (node dist/scripts/readme-sudoers.js --write)');
    process.exitCode = 1;
  }
}
