/** The blocking probe's input gate, its conflict check and the reading of the host's answer. */
import { strict as assert } from 'assert';
import { isolateRequestSchema, probeConflict, probeSchema } from '../../src/driver/policy';
import { parseProbe, probeInput, reached } from '../../src/driver/host/probe';

describe('blocking probe', () => {
  it('takes one IPv4 or IPv6 address, canonical, TCP, port 443 unless named', () => {
    assert.deepEqual(probeSchema.parse({ addr: '198.51.100.7' }), { addr: '198.51.100.7', port: 443, proto: 'tcp' });
    assert.deepEqual(probeSchema.parse({ addr: '2001:DB8:0::7', port: 80 }), { addr: '2001:db8::7', port: 80, proto: 'tcp' });
    for (const bad of [
      { addr: '198.51.100.0/24' },
      { addr: 'example.org' },
      { addr: '198.51.100.7; reboot' },
      { addr: '127.0.0.1' },
      { addr: '::1' },
      { addr: '0.0.0.0' },
      { addr: '224.0.0.1' },
      { addr: '198.51.100.7', port: 0 },
      { addr: '198.51.100.7', port: 65536 },
      { addr: '198.51.100.7', port: '443' },
      { addr: '198.51.100.7', proto: 'udp' },
      { addr: '198.51.100.7', extra: 1 },
    ]) {
      assert.equal(probeSchema.safeParse(bad).success, false, JSON.stringify(bad));
    }
    assert.equal(isolateRequestSchema.safeParse({ mode: 'audit', probe: { addr: '198.51.100.7' } }).success, false, 'audit cuts nothing');
  });

  it('refuses a probe that an address exception or the management channel lets through, not an owner exception', () => {
    const probe = probeSchema.parse({ addr: '198.51.100.7', port: 443 });
    const mgmt = [{ addr: '198.18.0.1', port: 22 }];
    assert.equal(probeConflict(probe, [], mgmt), null);
    assert.match(probeConflict(probe, [], [{ addr: '198.51.100.0/24', port: 22 }]) ?? '', /management/);
    assert.match(probeConflict(probe, [{ direction: 'out', proto: 'tcp', addr: '198.51.100.0/24' }], mgmt) ?? '', /exception/);
    assert.match(probeConflict(probe, [{ direction: 'out', proto: 'any' }], mgmt) ?? '', /exception/);
    assert.match(probeConflict(probe, [{ direction: 'out', proto: 'tcp', port: '400-500' }], mgmt) ?? '', /exception/);
    assert.equal(probeConflict(probe, [{ direction: 'out', proto: 'tcp', port: '400-442' }], mgmt), null);
    assert.equal(probeConflict(probe, [{ direction: 'out', proto: 'udp', addr: '198.51.100.7' }], mgmt), null);
    assert.equal(probeConflict(probe, [{ direction: 'in', proto: 'tcp', addr: '198.51.100.7' }], mgmt), null);
    assert.equal(probeConflict(probe, [{ direction: 'out', proto: 'tcp', addr: '2001:db8::7' }], mgmt), null);
    assert.equal(probeConflict(probe, [{ direction: 'out', proto: 'tcp', uid: 0 }], mgmt), null, 'an owner exception is what the probe is for');
  });

  it('reads the host: a handshake or a RST is reached, a timeout or another failure is not', () => {
    assert.deepEqual(parseProbe('nrhi-probe connected\n'), { word: 'connected', text: '' });
    assert.deepEqual(parseProbe('noise\nnrhi-probe failed bash: connect: Operation not permitted\n'), { word: 'failed', text: 'bash: connect: Operation not permitted' });
    assert.equal(parseProbe('nrhi-probe maybe\n'), null);
    assert.equal(parseProbe(''), null);
    assert.deepEqual((['connected', 'refused', 'timeout', 'failed'] as const).map(reached), [true, true, false, false]);
    assert.equal(probeInput({ addr: '198.51.100.7', port: 443, proto: 'tcp' }), 'probe\n198.51.100.7\n443\n3\n');
  });
});
