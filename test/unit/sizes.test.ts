/**
 * The house stays one a newcomer can read (issue 21): no class or function of src/ holds more than
 * 150 lines of code (blank and comment lines not counted), and no file more than 800. A piece that
 * must grow past that is split, or named here with why. `npx mocha dist/test/unit/sizes.test.js`
 * prints the largest ones.
 */
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as path from 'path';
import * as ts from 'typescript';
import { REPO_ROOT } from '../lab/nodered';

const MAX_CODE_LINES = 150;
const MAX_FILE_LINES = 800;
/** Pieces allowed past the limit, and why (none today). */
const EXCEPTIONS: Record<string, string> = {};

function sources(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    return e.isDirectory() ? sources(p) : e.name.endsWith('.ts') ? [p] : [];
  });
}

function codeLines(text: string): number {
  return text.split('\n').filter((l) => {
    const t = l.trim();
    return t !== '' && !/^(\/\/|\/\*|\*)/.test(t);
  }).length;
}

interface Piece {
  where: string;
  name: string;
  code: number;
}

function pieces(file: string): Piece[] {
  const sf = ts.createSourceFile(file, fs.readFileSync(file, 'utf8'), ts.ScriptTarget.Latest, true);
  const out: Piece[] = [];
  const visit = (n: ts.Node) => {
    if (ts.isFunctionLike(n) || ts.isClassLike(n)) {
      const line = sf.getLineAndCharacterOfPosition(n.getStart()).line + 1;
      const named = (n as { name?: ts.Node }).name;
      out.push({ where: `${path.relative(REPO_ROOT, file)}:${line}`, name: named ? named.getText(sf) : '(anonymous)', code: codeLines(n.getText(sf)) });
    }
    ts.forEachChild(n, visit);
  };
  visit(sf);
  return out;
}

describe('the size of the code (issue 21)', () => {
  const files = sources(path.join(REPO_ROOT, 'src'));

  it(`no class or function of src/ over ${MAX_CODE_LINES} lines of code`, () => {
    const all = files.flatMap(pieces).sort((a, b) => b.code - a.code);
    console.log(`      largest: ${all.slice(0, 5).map((p) => `${p.name} ${p.code} (${p.where})`).join(', ')}`);
    const over = all.filter((p) => p.code > MAX_CODE_LINES && !EXCEPTIONS[`${p.where.split(':')[0]}#${p.name}`]);
    assert.deepEqual(over, [], 'split these, or name them in EXCEPTIONS with why');
  });

  it(`no file of src/ over ${MAX_FILE_LINES} lines`, () => {
    const long = files.map((f) => ({ file: path.relative(REPO_ROOT, f), lines: fs.readFileSync(f, 'utf8').split('\n').length })).filter((f) => f.lines > MAX_FILE_LINES);
    assert.deepEqual(long, []);
  });
});
