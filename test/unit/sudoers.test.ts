/**
 * The sudoers lines come from one place (src/driver/sudoers.ts), generated from the commands the
 * host scripts run: every `sudo -n` command of the rendered scripts is one the generator pins (a
 * root command written inline fails here), the lines pass `visudo -cf` for every feature set, the
 * blocks of docs/preparing-hosts.md are the generator's output, and no node's help shows a bare nft line or its
 * own idea of which nft versions refuse `socket cgroupv2`.
 */
import { strict as assert } from 'assert';
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { run } from '../../src/bin/sudoers';
import { NFT_CMD, ROOT_COMMANDS, SS_KILL, SS_PROTOS } from '../../src/driver/host/commands';
import { COMMANDS } from '../../src/driver/host/programs';
import { CGROUPV2_NEEDS, CGROUPV2_REFUSED_BY, PREFLIGHT } from '../../src/driver/host/preflight';
import { escapeArg, parseFeatures, rootCommands, sudoersLines, SUDOERS_FEATURES, type SudoersFeature } from '../../src/driver/sudoers';
import { cgroupv2Text, sharedHelp } from '../../src/editor/help';
import { fillSudoersBlocks, sudoersBlocks, SUDOERS_PAGE } from '../../scripts/readme-sudoers';
import { REPO_ROOT } from '../lab/nodered';

const VISUDO = ['/usr/sbin/visudo', '/usr/bin/visudo'].find((f) => fs.existsSync(f));
const ALL = [...SUDOERS_FEATURES];

/** Every command a script runs through `sudo -n` (or asks about with `sudo -n -l`), as the script writes it. */
function sudoCommands(script: string): string[] {
  const found = [...script.matchAll(/sudo -n (?:-l )?((?:[^;|&>)\n"']|"[^"\n]*")+)/g)].map((m) => m[1].trim().replace(/\s+\d$/, ''));
  return [...new Set(found)];
}

/** Every non-empty subset of the features. */
function subsets(): SudoersFeature[][] {
  const out: SudoersFeature[][] = [];
  for (let m = 1; m < 1 << ALL.length; m++) out.push(ALL.filter((_f, i) => m & (1 << i)));
  return out;
}

describe('sudoers lines generated from the host scripts', () => {
  it('every sudo -n command the scripts run is one the generator pins, and every pinned one is run', () => {
    const pinned = new Set<string>(Object.values(ROOT_COMMANDS).flatMap((g) => Object.values(g)));
    pinned.add(NFT_CMD);
    // the cut: one ss command line in the script, run with each of SS_PROTOS (each pinned in SS_KILL)
    const ssInScript = 'ss -K -H -n $p state connected -F -';
    for (const [k, protos] of Object.entries(SS_PROTOS)) {
      assert.equal(ssInScript.replace('$p', protos), SS_KILL[k as keyof typeof SS_KILL]);
      const call = `sever "$k${k === 'udp' ? 'u' : 't'}" `;
      assert.ok(COMMANDS.sudoApply.includes(`${call}${protos}`) || COMMANDS.sudoApply.includes(`${call}"${protos}"`), `the script cuts with ${protos}`);
    }
    for (const s of Object.values(SS_KILL)) pinned.add(s);
    const scripts = { sudoApply: COMMANDS.sudoApply, sudoStatus: COMMANDS.sudoStatus, sudoNft: COMMANDS.sudoNft, preflight: PREFLIGHT.sudo };
    for (const [name, script] of Object.entries(scripts)) {
      const unpinned = sudoCommands(script).filter((c) => c !== ssInScript && !pinned.has(c));
      assert.deepEqual(unpinned, [], `${name} runs these as root but no sudoers feature grants them: make each a constant of ROOT_COMMANDS (host/commands.ts)`);
    }
    const run = new Set(sudoCommands(COMMANDS.sudoApply));
    const unused = [...pinned].filter((c) => !run.has(c) && !Object.values(SS_KILL).includes(c as never));
    assert.deepEqual(unused, [], 'granted but never run by the apply script');
    // the generator turns exactly these into lines
    const generated = rootCommands({ table: 'node_red_isolation', features: ALL }).map((c) => c.shell);
    assert.deepEqual(new Set(generated), pinned);
  });

  it('the lines pass visudo -cf for every set of features', function () {
    if (!VISUDO) {
      if (process.env.CI === 'true') throw new Error('visudo missing (the sudo package)');
      this.skip();
    }
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'nrhi-sudoers-'));
    try {
      for (const features of subsets()) {
        for (const [user, table] of [
          ['isolator', 'node_red_isolation'],
          ['svc.nr-1', 'T9'],
        ]) {
          const file = path.join(dir, `${features.join('_')}-${table}`);
          fs.writeFileSync(file, `${sudoersLines({ user, table, features }).join('\n')}\n`, { mode: 0o440 });
          execFileSync(VISUDO!, ['-cqf', file], { stdio: ['ignore', 'pipe', 'pipe'] });
        }
      }
      // and visudo is a real check: a broken line fails it
      const bad = path.join(dir, 'bad');
      fs.writeFileSync(bad, 'isolator ALL=(root) NOPASSWD /usr/sbin/nft -j -f -\n', { mode: 0o440 });
      assert.throws(() => execFileSync(VISUDO!, ['-cqf', bad], { stdio: ['ignore', 'pipe', 'pipe'] }));
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('pins every argument: no bare program, sudoers characters escaped, host-picked numbers as digits only', () => {
    const lines = sudoersLines({ user: 'isolator', table: 'node_red_isolation', features: ALL });
    for (const l of lines.filter((x) => !x.startsWith('#'))) {
      assert.match(l, /^isolator ALL=\(root\) NOPASSWD: \/usr\/s?bin\/[a-z-]+ \S/, `${l}: a program and its arguments`);
    }
    assert.ok(lines.includes('isolator ALL=(root) NOPASSWD: /usr/sbin/nft -j -f -'));
    assert.ok(!lines.some((l) => /NOPASSWD: \/usr\/sbin\/nft$/.test(l)));
    assert.ok(lines.includes('isolator ALL=(root) NOPASSWD: /usr/bin/systemd-run --quiet --collect --unit\\=nrhi-guard-node_red_isolation -p Type\\=simple /bin/bash /run/nrhi-guard/guard.sh node_red_isolation'));
    // the unexpanded pattern is matched as the literal it is, not as a wildcard
    assert.ok(lines.includes('isolator ALL=(root) NOPASSWD: /usr/bin/rm -f /run/nrhi-release/node_red_isolation.\\*'));
    assert.equal(escapeArg('a=b,c:d\\e*f?[g]'), 'a\\=b\\,c\\:d\\\\e\\*f\\?\\[g\\]');
    for (const bad of ['a b', 'a"b', 'a#b', '!x', '', "it's"]) assert.throws(() => escapeArg(bad), /cannot pin/, bad);
    // the timer's lines: regular expressions that take digits where the host picks them, nothing more
    const arm = rootCommands({ table: 'node_red_isolation', features: ['timer'] }).find((c) => c.shell === ROOT_COMMANDS.timer.arm)!;
    const re = new RegExp(arm.cmnd.slice(arm.cmnd.indexOf(' ') + 1));
    const args = arm.argv.slice(1).join(' ');
    assert.match(args, re);
    assert.match(args, /--on-active=30 .* \/bin\/sh \/run\/nrhi-release\/node_red_isolation\.4242\.sh \/run\/nrhi-release\/node_red_isolation\.4242 nrhi-release:node_red_isolation:4026531840:$/);
    for (const evil of [args.replace('--on-active=30', '--on-active=30 -p ExecStartPre=/bin/sh'), args.replace('.4242.sh', '.4242.sh /etc/shadow'), `${args} x`, args.replace('node_red_isolation.4242 ', '/etc/x ')]) {
      assert.doesNotMatch(evil, re, evil);
    }
    const tee = rootCommands({ table: 'node_red_isolation', features: ['timer'] }).find((c) => c.shell === ROOT_COMMANDS.timer.data)!;
    const teeRe = new RegExp(tee.cmnd.slice(tee.cmnd.indexOf(' ') + 1));
    assert.match('/run/nrhi-release/node_red_isolation.77', teeRe);
    for (const evil of ['/run/nrhi-release/node_red_isolation.77 /etc/shadow', '/run/nrhi-release/node_red_isolationX77', '/etc/shadow']) assert.doesNotMatch(evil, teeRe, evil);
  });

  it('refuses a user or table sudoers would read otherwise', () => {
    for (const user of ['ALL', 'Defaults', 'ADMINS', 'a b', 'a,b', 'a:b', '%wheel', 'x=y', '#0', '']) {
      assert.throws(() => sudoersLines({ user, table: 't', features: ['isolate'] }), /user must be/, user);
    }
    for (const table of ['a-b', 'a b', '1a', 'a*', '']) assert.throws(() => sudoersLines({ user: 'u', table, features: ['guard'] }), /table name/, table);
    assert.throws(() => parseFeatures('isolate,root'), /root/);
    assert.throws(() => sudoersLines({ user: 'u', table: 't', features: ['all' as SudoersFeature] }), /unknown feature/);
    // a table name with `_` and digits, a user with `.` and `-`: as they are (nothing to escape)
    assert.ok(sudoersLines({ user: 'svc.nr-1', table: 'T_9', features: ['guard'] }).some((l) => l.startsWith('svc.nr-1 ALL=(root) NOPASSWD: /usr/bin/tee /run/nrhi-guard/T_9.key')));
  });

  it('the command prints the lines for its arguments', () => {
    assert.equal(run([]), `${sudoersLines({ user: 'isolator', table: 'node_red_isolation', features: ['isolate'] }).join('\n')}\n`);
    const out = run(['--user', 'nr', '--table=t1', '--features', 'isolate,persist,guard', '--path', 'ss=/usr/sbin/ss']);
    assert.equal(out, `${sudoersLines({ user: 'nr', table: 't1', features: ['isolate', 'persist', 'guard'], paths: { ss: '/usr/sbin/ss' } }).join('\n')}\n`);
    assert.match(out, /^nr ALL=\(root\) NOPASSWD: \/usr\/sbin\/ss -K -H -n -t -u state connected -F -$/m);
    assert.throws(() => run(['--features', 'nope']), /nope/);
    assert.throws(() => run(['--path', 'sh=/bin/sh']), /PROGRAM one of/);
    assert.throws(() => run(['--user']), /needs a value/);
    const pkg = JSON.parse(fs.readFileSync(path.join(REPO_ROOT, 'package.json'), 'utf8')) as { bin: Record<string, string> };
    assert.equal(pkg.bin['node-red-host-isolation-sudoers'], 'dist/src/bin/sudoers.js');
    const printed = execFileSync(process.execPath, [path.join(REPO_ROOT, pkg.bin['node-red-host-isolation-sudoers']), '--features', 'guard'], { encoding: 'utf8' });
    assert.equal(printed, run(['--features', 'guard']));
  });

  it("the sudoers blocks of docs/preparing-hosts.md are the generator's output (node dist/scripts/readme-sudoers.js --write)", () => {
    const readme = fs.readFileSync(path.join(REPO_ROOT, SUDOERS_PAGE), 'utf8');
    const blocks = sudoersBlocks(readme);
    assert.deepEqual(
      blocks.map((b) => parseFeatures(/--features (\S+)/.exec(b)![1])).flat().sort(),
      [...ALL].sort(),
      'a block per feature',
    );
    const filled = fillSudoersBlocks(readme);
    if (filled !== readme) {
      const a = readme.split('\n');
      const b = filled.split('\n');
      const i = a.findIndex((l, k) => l !== b[k]);
      assert.fail(`${SUDOERS_PAGE} line ${i + 1} differs from the generator:\n  page:      ${a[i]}\n  generated: ${b[i]}\n(run: npm run build && node dist/scripts/readme-sudoers.js --write)`);
    }
    // and no other sudoers line on that page, nor in the README or any docs page, than generated ones
    const generated = new Set(sudoersLines({ user: 'isolator', table: 'node_red_isolation', features: ALL }));
    const docs = fs.readdirSync(path.join(REPO_ROOT, 'docs')).filter((f) => f.endsWith('.md')).map((f) => path.join('docs', f));
    const pages = [...new Set([SUDOERS_PAGE, 'README.md', 'SECURITY.md', ...docs])];
    const stray = pages.flatMap((page) =>
      fs
        .readFileSync(path.join(REPO_ROOT, page), 'utf8')
        .split('\n')
        .map((l) => l.trim())
        .filter((l) => /\bNOPASSWD:/.test(l) && (page !== SUDOERS_PAGE || !generated.has(l)))
        .map((l) => `${page}: ${l}`),
    );
    assert.deepEqual(stray, [], `sudoers lines outside the generated blocks of ${SUDOERS_PAGE}`);
  });

  describe('the help', () => {
    // each node's folder, src/nodes/<type>/ (common/ holds no node)
    const sources = fs.readdirSync(path.join(REPO_ROOT, 'src', 'nodes')).filter((t) => t !== 'common' && !t.includes('.')).map((t) => `${t}.html`);
    // a node's editor HTML and its help (locales/en-US/<type>.html), in its folder
    const both = (dir: string, f: string) => ['', 'locales/en-US/'].map((sub) => fs.readFileSync(path.join(dir, f.replace(/\.html$/, ''), `${sub}${f}`), 'utf8')).join('\n');
    const built = (f: string) => both(path.join(REPO_ROOT, 'dist', 'src', 'nodes'), f);
    const source = (f: string) => both(path.join(REPO_ROOT, 'src', 'nodes'), f);

    it('shows no bare nft line: only the generated lines, from the same source', () => {
      for (const f of sources) {
        for (const text of [source(f), built(f)]) {
          assert.doesNotMatch(text, /NOPASSWD: *\/usr\/s?bin\/nft(?! -j -f -$)/m, `${f}: a bare nft line`);
          const generated = new Set(sudoersLines({ user: 'isolator', table: 'node_red_isolation', features: ALL }));
          const stray = text
            .split('\n')
            .map((l) => l.replace(/<\/?pre>/g, '').trim())
            .filter((l) => /NOPASSWD:/.test(l) && !generated.has(l));
          assert.deepEqual(stray, [], `${f}: sudoers lines that are not the generator's`);
        }
      }
      const target = built('isolation-target.html');
      for (const l of sudoersLines({ user: 'isolator', table: 'node_red_isolation', features: ['isolate'] })) assert.ok(target.includes(l), `isolation-target's help shows ${l}`);
      assert.ok(target.includes('npx node-red-host-isolation-sudoers --user isolator --table node_red_isolation --features isolate,persist,guard,timer'));
      assert.ok(!/#shared sudoers/.test(target));
    });

    it('says one thing about socket cgroupv2 and the nft versions that refuse it: what the driver says', () => {
      const text = cgroupv2Text();
      assert.equal(sharedHelp().cgroupv2, text);
      for (const v of CGROUPV2_REFUSED_BY) {
        assert.ok(text.includes(v), `the help names ${v}`);
        assert.ok(CGROUPV2_NEEDS.includes(v), `the UNSUPPORTED error names ${v}`);
      }
      let mentions = 0;
      for (const f of sources) {
        const html = built(f);
        if (html.includes(text)) mentions++;
        const rest = html.split(text).join('');
        // nothing else near a word on units or cgroups names an nft version
        for (const m of rest.matchAll(/cgroup|unit\?/gi)) {
          const around = rest.slice(Math.max(0, m.index - 300), m.index + 300);
          assert.doesNotMatch(around, /\b\d+\.\d+\.\d+\b|newer than|older than/, `${f}: its own words on nft versions and cgroupv2: ${around}`);
        }
      }
      assert.ok(mentions >= 2, 'isolate-host and isolation-status both speak of it');
      for (const f of ['isolate-host.html', 'isolation-status.html']) assert.ok(built(f).includes(text), `${f}: the shared cgroupv2 text`);
      // the help as it was: its own version claim is caught
      const old = 'cgroups need Linux 5.13+ and an nft newer than 1.0.6; otherwise the node fails';
      assert.match(old.slice(0, 300), /\b\d+\.\d+\.\d+\b|newer than|older than/);
    });
  });
});
