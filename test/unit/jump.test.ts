/** The jump host (bastion) of a target: its schema, and the pool keys that keep paths apart. */
import { strict as assert } from 'assert';
import { jumpSchema, targetSchema, validate, ValidationError } from '../../src/driver';
import { Bastions, ConnectionPool } from '../../src/driver/transport';
import { targetOf, type TargetNode } from '../../src/nodes/common';

const jump = { host: '198.19.0.2', username: 'jump', privateKey: 'JKEY', knownHosts: '198.19.0.2 ssh-ed25519 AAAA' };
const target = { host: '198.18.0.2', username: 'isolator', privateKey: 'KEY', knownHosts: '198.18.0.2 ssh-ed25519 AAAA' };

describe('jump host', () => {
  it('is validated like a target: host, port, user, pinned key, a credential, nothing else', () => {
    const t = validate(targetSchema, { ...target, jump }, 'target');
    assert.deepEqual(t.jump, { ...jump, port: 22 });
    for (const bad of [
      { ...jump, knownHosts: '' },
      { ...jump, privateKey: undefined },
      { ...jump, host: '198.19.0.2; reboot' },
      { ...jump, username: 'a b' },
      { ...jump, port: 0 },
      { ...jump, sudo: true },
      { ...jump, jump },
    ]) {
      assert.throws(
        () => validate(targetSchema, { ...target, jump: bad }, 'target'),
        (e: unknown) => e instanceof ValidationError && e.issues.some((i) => i.path.startsWith('target.jump')),
        JSON.stringify(bad),
      );
    }
    assert.equal(jumpSchema.safeParse({ ...jump, password: 'pw', privateKey: undefined }).success, true);
  });

  it('a host reached through a bastion never shares a pooled session with the same host reached directly, or through another bastion', () => {
    const direct = validate(targetSchema, target, 'target');
    const via = validate(targetSchema, { ...target, jump }, 'target');
    const via2 = validate(targetSchema, { ...target, jump: { ...jump, privateKey: 'OTHER' } }, 'target');
    const keys = new Set([ConnectionPool.key(direct), ConnectionPool.key(via), ConnectionPool.key(via2)]);
    assert.equal(keys.size, 3);
    assert.notEqual(Bastions.key(via.jump!), Bastions.key(via2.jump!));
    assert.equal(Bastions.key(via.jump!), Bastions.key(validate(targetSchema, { ...target, host: '198.18.0.3', jump }, 'target').jump!), 'hosts behind one bastion share it');
  });

  it('the config node gives the jump by its fields (credentials from the store) or by another target; no chains', () => {
    const node = (config: Record<string, unknown>, credentials: Record<string, string>, other?: TargetNode) =>
      ({ config: { host: target.host, username: target.username, knownHosts: target.knownHosts, ...config }, credentials, jumpNode: () => other ?? null }) as unknown as TargetNode;
    const byFields = targetOf(node({ jumpHost: jump.host, jumpPort: '2222', jumpUser: jump.username, jumpKnownHosts: jump.knownHosts }, { privateKey: 'KEY', jumpPrivateKey: 'JKEY' }));
    assert.deepEqual(byFields.jump, { host: jump.host, port: 2222, username: 'jump', knownHosts: jump.knownHosts, privateKey: 'JKEY', passphrase: undefined, password: undefined });
    assert.equal(targetOf(node({}, { privateKey: 'KEY' })).jump, undefined);
    const bastion = node({ host: jump.host, username: jump.username, knownHosts: jump.knownHosts }, { privateKey: 'JKEY' });
    const byTarget = targetOf(node({ jumpTarget: 'b1' }, { privateKey: 'KEY' }, bastion));
    assert.deepEqual(byTarget.jump, { host: jump.host, port: 22, username: 'jump', knownHosts: jump.knownHosts, privateKey: 'JKEY', passphrase: undefined, password: undefined });
    assert.throws(() => targetOf(node({ jumpTarget: 'gone' }, { privateKey: 'KEY' })), ValidationError);
    const chained = node({ host: jump.host, username: 'jump', knownHosts: jump.knownHosts, jumpHost: '198.19.0.9' }, { privateKey: 'JKEY' });
    assert.throws(() => targetOf(node({ jumpTarget: 'b2' }, { privateKey: 'KEY' }, chained)), /another jump host/);
  });
});
