/**
 * Protected hosts against a real lab host: a refused isolation never reaches the host (no TCP
 * connection to its sshd, no session, nothing in the driver's pool), while releasing a protected
 * host that was isolated by mistake, reading its status and loosening it keep working.
 */
import { strict as assert } from 'assert';
import { IsolationDriver, IsolationError, type TargetInput } from '../../src/driver';
import { errorCode } from '../lab/errors';
import { useLab } from '../lab/fixtures';
import { labTarget } from '../lab/lab';

const TABLE = 'nrhi_protect';

describe('protected hosts on the lab', function () {
  this.timeout(120_000);
  const lab = useLab({ hosts: 2 });

  /** TCP connections established to the host's sshd, as the host sees them */
  const sessions = async (i: number) => {
    const r = await lab.exec(lab.hosts[i].ns, ['ss', '-Htn', 'state', 'established', '( sport = :22 )']);
    assert.equal(r.code, 0, r.stderr);
    return r.stdout.split('\n').filter((l) => l.trim() !== '').length;
  };

  it('refuses a listed host, a member of a listed CIDR and the controller itself without a single connection; others in the same call work', async () => {
    const d = new IsolationDriver();
    try {
      const t = (i: number, extra: Record<string, unknown> = {}) => labTarget(lab, i, TABLE, 15_000, extra) as TargetInput;
      const cidr = `${lab.hosts[0].v4.split('.').slice(0, 3).join('.')}.${Number(lab.hosts[0].v4.split('.')[3]) & ~3}/30`;
      const before = await sessions(0);
      assert.equal(await errorCode(d.isolate(t(0, { protectedHosts: [lab.hosts[0].v4] }), { verify: false })), 'PROTECTED_HOST');
      assert.equal(await errorCode(d.isolate(t(0, { protectedHosts: [cidr] }), {})), 'PROTECTED_HOST');
      assert.equal(await errorCode(d.isolate(t(0, { protectedHosts: [lab.hosts[0].v6], host: lab.hosts[0].v6, knownHosts: lab.hosts[0].knownHostsV6 }), {})), 'PROTECTED_HOST');
      assert.equal(await errorCode(d.setExceptions(t(0, { protectedHosts: [cidr] }), 'replace', [])), 'PROTECTED_HOST');
      assert.equal(await errorCode(d.setMode(t(0, { protectedHosts: [cidr] }), 'enforce')), 'PROTECTED_HOST');
      // the controller's own address on the lab link: protected without being listed
      const err = await d.isolate(t(0, { host: lab.controller.v4 }), {}).catch((e: unknown) => e);
      assert.ok(err instanceof IsolationError && err.code === 'PROTECTED_HOST', String(err));
      assert.match(err.message, /controller's own addresses/);
      assert.equal(d.connections, 0, 'the driver opened no connection');
      assert.equal(await sessions(0), before, 'the host saw no SSH connection');
      assert.equal((await lab.exec(lab.hosts[0].ns, ['nft', 'list', 'table', 'inet', TABLE])).code, 1, 'no table on the host');
      // the host next to it, not protected, is isolated by the same driver
      const st = await d.isolate(t(1, { protectedHosts: [lab.hosts[0].v4] }), { verify: false });
      assert.equal(st.state, 'isolated');
      await d.unisolate(t(1));
    } finally {
      await d.close();
    }
  });

  it('a protected host isolated by mistake can still be read, loosened and released', async () => {
    const d = new IsolationDriver();
    try {
      const plain = labTarget(lab, 0, TABLE, 15_000) as TargetInput;
      await d.isolate(plain, { verify: false });
      const guarded: TargetInput = { ...plain, protectedHosts: [lab.hosts[0].v4] };
      assert.equal(await errorCode(d.isolate(guarded, { verify: false })), 'PROTECTED_HOST');
      assert.equal((await d.status(guarded)).state, 'isolated');
      const added = await d.setExceptions(guarded, 'add', [{ direction: 'out', proto: 'tcp', addr: lab.peer.v4, port: 443 }]);
      assert.equal(added.exceptions.length, 1);
      assert.equal((await d.setMode(guarded, 'audit')).state, 'audit');
      assert.equal((await d.unisolate(guarded)).isolated, false);
      assert.equal((await lab.exec(lab.hosts[0].ns, ['nft', 'list', 'table', 'inet', TABLE])).code, 1, 'released');
    } finally {
      await d.close();
    }
  });
});
