/**
 * The docs hold together: every link of the README, SECURITY.md and docs/*.md points at a file of
 * the repository and, with a `#fragment`, at a heading GitHub makes that anchor of (relative links
 * between pages; the README's absolute GitHub links, which npmjs.com shows, resolved to the same
 * files), and the README keeps the quick start's two commands.
 */
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as path from 'path';
import { REPO_ROOT } from '../lab/nodered';

const REPO_URL = 'https://github.com/soc-playbooks/node-red-host-isolation';
const RAW_URL = 'https://raw.githubusercontent.com/soc-playbooks/node-red-host-isolation';

/** GitHub's anchors of a page's headings: lower case, punctuation dropped, spaces to hyphens, repeats numbered. */
export function anchors(markdown: string): Set<string> {
  const out = new Set<string>();
  const seen = new Map<string, number>();
  let code = false;
  for (const line of markdown.split('\n')) {
    if (/^\s*```/.test(line)) code = !code;
    const m = !code && /^#{1,6} (.*)$/.exec(line);
    if (!m) continue;
    const base = m[1]
      .trim()
      .toLowerCase()
      .replace(/[^\p{L}\p{N}\s_-]/gu, '')
      .replace(/\s/g, '-');
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    out.add(n ? `${base}-${n}` : base);
  }
  return out;
}

/** The links of a page outside code: [text](target) and ![alt](target). */
function links(markdown: string): string[] {
  const text = markdown.replace(/```[\s\S]*?```/g, '').replace(/`[^`\n]*`/g, '');
  return [...text.matchAll(/\]\(([^)\s]+)\)/g)].map((m) => m[1]);
}

describe('the docs', () => {
  const docs = fs.readdirSync(path.join(REPO_ROOT, 'docs')).filter((f) => f.endsWith('.md')).map((f) => path.join('docs', f));
  const pages = ['README.md', 'SECURITY.md', ...docs];

  it('every link points at a file of the repository and a heading of it', () => {
    const broken: string[] = [];
    for (const page of pages) {
      for (const link of links(fs.readFileSync(path.join(REPO_ROOT, page), 'utf8'))) {
        let target: string;
        if (link.startsWith(`${REPO_URL}/blob/main/`)) target = link.slice(`${REPO_URL}/blob/main/`.length);
        else if (link.startsWith(`${RAW_URL}/main/`)) target = link.slice(`${RAW_URL}/main/`.length);
        else if (/^[a-z]+:/.test(link)) continue; // another site
        else if (link.startsWith('#')) target = `${page}${link}`;
        else target = path.posix.join(path.posix.dirname(page), link);
        const [file, fragment] = target.split('#');
        const abs = path.join(REPO_ROOT, file || page);
        if (!fs.existsSync(abs) || !fs.statSync(abs).isFile()) {
          broken.push(`${page}: ${link} (no ${file})`);
          continue;
        }
        if (fragment && !anchors(fs.readFileSync(abs, 'utf8')).has(fragment)) broken.push(`${page}: ${link} (no heading #${fragment})`);
      }
    }
    assert.deepEqual(broken, []);
  });

  it('the README links the docs pages with absolute GitHub links (npmjs.com shows it without docs/)', () => {
    const readme = fs.readFileSync(path.join(REPO_ROOT, 'README.md'), 'utf8');
    const relative = links(readme).filter((l) => !/^[a-z]+:/.test(l) && l !== 'LICENSE');
    assert.deepEqual(relative, []);
    for (const page of docs) assert.ok(readme.includes(`${REPO_URL}/blob/main/${page}`), `the README links ${page}`);
  });

  it("the README keeps the quick start's two commands", () => {
    const readme = fs.readFileSync(path.join(REPO_ROOT, 'README.md'), 'utf8');
    const quick = readme.slice(readme.indexOf('## Quick start'), readme.indexOf('\n## ', readme.indexOf('## Quick start') + 5));
    assert.match(quick, /^npm run demo +# /m);
    assert.match(quick, /^npm test +# /m);
    const pkg = JSON.parse(fs.readFileSync(path.join(REPO_ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
    assert.ok(pkg.scripts.demo && pkg.scripts.test, 'both are scripts of package.json');
  });

  it('docs/README.md starts with the map, and marks the paths not in the tree yet', () => {
    const map = fs.readFileSync(path.join(REPO_ROOT, 'docs', 'README.md'), 'utf8');
    assert.match(map.split('\n').slice(0, 4).join('\n'), /## Where things are/);
    const table = map.slice(map.indexOf('## Where things are'), map.indexOf('## The pages'));
    // each path of the map exists, or says it does not yet
    for (const row of table.split('\n').filter((l) => l.startsWith('| '))) {
      for (const m of row.matchAll(/`((?:src|test|scripts|examples|nodes|resources|icons)\/[^`\s]*)`( \(TODO-path)?/g)) {
        const p = m[1].replace(/<type>/, 'isolate-host');
        if (!m[2]) assert.ok(fs.existsSync(path.join(REPO_ROOT, p)) || p.includes('<'), `${m[1]} exists, or is marked (TODO-path)`);
      }
    }
  });
});
