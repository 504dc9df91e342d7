/**
 * The sudoers blocks of docs/preparing-hosts.md (which the README sends an operator to) are the
 * generator's output: each block between `<!-- sudoers ARGS -->` and `<!-- /sudoers -->` is what
 * `node-red-host-isolation-sudoers ARGS` prints. `node dist/scripts/readme-sudoers.js --write`
 * fills them in; the unit suite fails when one differs (test/unit/sudoers.test.ts), so the page
 * cannot drift from the commands the host scripts run. (The script keeps its name: the lab, the
 * tests and the docs call it by it.)
 */
import * as fs from 'fs';
import * as path from 'path';
import { run } from '../src/bin/sudoers';

const BLOCK = /^( *)<!-- sudoers ([^\n]*?) -->\n\1```\n[\s\S]*?\n\1```\n\1<!-- \/sudoers -->$/gm;

/** The page that holds the generated sudoers blocks, from the repository's root. */
export const SUDOERS_PAGE = path.join('docs', 'preparing-hosts.md');

/** `text` with every sudoers block replaced by the generator's output for its arguments. */
export function fillSudoersBlocks(text: string): string {
  return text.replace(BLOCK, (_m, indent: string, args: string) => {
    const body = run(args.split(/\s+/).filter(Boolean)).replace(/\n$/, '').split('\n').map((l) => `${indent}${l}`).join('\n');
    return `${indent}<!-- sudoers ${args} -->\n${indent}\`\`\`\n${body}\n${indent}\`\`\`\n${indent}<!-- /sudoers -->`;
  });
}

/** The arguments of each block, in order. */
export function sudoersBlocks(text: string): string[] {
  return [...text.matchAll(BLOCK)].map((m) => m[2]);
}

if (require.main === module) {
  const file = path.join(__dirname, '..', '..', SUDOERS_PAGE);
  const before = fs.readFileSync(file, 'utf8');
  const after = fillSudoersBlocks(before);
  if (process.argv.includes('--write')) {
    fs.writeFileSync(file, after);
    console.log(`${sudoersBlocks(after).length} sudoers blocks written`);
  } else if (after !== before) {
    console.error(`${SUDOERS_PAGE}: sudoers blocks differ from the generator (node dist/scripts/readme-sudoers.js --write)`);
    process.exitCode = 1;
  }
}
