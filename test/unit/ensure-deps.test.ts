/**
 * The set-up of `npm test`, `npm run demo` and `npm run bench` (scripts/ensure-deps.js): which
 * Debian packages a missing command needs, and how they are installed. The install itself was run
 * on the lab machine (NRHI_ASSUME_MISSING=sudo,ping); here, the plan.
 */
import { strict as assert } from 'assert';
import * as path from 'path';
import { REPO_ROOT } from '../lab/nodered';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const deps = require(path.join(REPO_ROOT, 'scripts', 'ensure-deps.js')) as {
  missingPackages(purpose: string, have: (cmd: string) => boolean): { packages: string[]; commands: string[] };
  aptCommands(packages: string[]): [string, string[]][];
};

describe('ensure-deps: the set-up of npm test, demo and bench', () => {
  it('names the Debian package of each missing command, once', () => {
    const none = () => false;
    assert.deepEqual(deps.missingPackages('test', none).packages.sort(), ['ansible-core', 'chromium', 'debootstrap', 'iproute2', 'iputils-ping', 'nftables', 'openssh-client', 'openssh-server', 'passwd', 'procps', 'sudo', 'systemd-container']);
    assert.deepEqual(deps.missingPackages('demo', none).packages.includes('chromium'), false, 'the demo needs no browser');
    assert.deepEqual(deps.missingPackages('demo', none).packages.includes('ansible-core'), false, 'nor Ansible');
    assert.ok(deps.missingPackages('bench', none).commands.includes('ssh'), 'the bench runs the ssh client (its peer)');
    const onlySudoAndPing = (cmd: string) => cmd !== 'sudo' && cmd !== 'visudo' && cmd !== 'ping';
    assert.deepEqual(deps.missingPackages('test', onlySudoAndPing), { packages: ['sudo', 'iputils-ping'], commands: ['sudo', 'visudo', 'ping'] });
    assert.deepEqual(deps.missingPackages('test', () => true), { packages: [], commands: [] });
    assert.throws(() => deps.missingPackages('nope', none), /unknown purpose/);
  });

  it('installs with apt-get update, then apt-get install -y, waiting for the dpkg lock', () => {
    const cmds = deps.aptCommands(['sudo', 'iputils-ping']);
    assert.deepEqual(
      cmds.map(([c, a]) => [c, a.filter((x) => !x.startsWith('-'))]),
      [
        ['apt-get', ['DPkg::Lock::Timeout=600', 'update']],
        ['apt-get', ['DPkg::Lock::Timeout=600', 'install', 'sudo', 'iputils-ping']],
      ],
    );
    assert.ok(cmds[1][1].includes('-y'));
  });
});
