/**
 * Issue 20 item 7: severing keeps only the flows an exception names, in its own direction. A
 * connection opened before isolation that nft drops but the cut keeps is frozen, not cut, and
 * resumes after release: a reverse shell from an excepted local port, to an excepted peer, or one
 * whose peer's source port is an excepted destination port. Each is opened on the lab before
 * isolation (as root, or as nobody), and each must be dead after release, while the flows the
 * exceptions name work all along. These failed on the code before: its keep filter ignored
 * direction.
 */
import { strict as assert } from 'assert';
import type { TargetInput } from '../../src/driver';
import type { Exception } from '../../src/driver/policy';
import { dropTables, useDriver, useLab } from '../lab/fixtures';
import type { Closable, Connection } from '../lab/lab';

const TABLE = 'nrhi_sevdir';
const NOBODY = 65534;

describe('adversary: severing keeps each exception\'s own direction only', function () {
  this.timeout(120_000);
  const lab = useLab({ hosts: 1 });
  const driver = useDriver();
  let target: TargetInput;
  const open: (Connection | Closable)[] = [];

  before(() => {
    const h = lab.hosts[0];
    target = { host: h.v4, username: lab.users.root.username, privateKey: lab.users.root.privateKey, knownHosts: h.knownHosts, table: TABLE, timeoutMs: 15_000 };
  });

  afterEach(async () => {
    for (const c of open.splice(0)) c.close();
    await dropTables(lab, TABLE, [0]);
  });

  const host = () => lab.hosts[0];
  const track = <T extends Closable>(c: T): T => {
    open.push(c);
    return c;
  };

  /**
   * Isolates with `exceptions` (the connections already open), then checks: `kept` work while
   * isolated and after release; `cut` are dead after release (cut, not frozen).
   */
  async function play(exceptions: Exception[], kept: Record<string, Connection>, cut: Record<string, Connection>, as = target): Promise<void> {
    for (const [name, c] of Object.entries({ ...kept, ...cut })) assert.equal(await c.roundTrip(), true, `${name} works before isolation`);
    const st = await driver.isolate(as, { exceptions, verify: false });
    assert.equal(st.isolated, true);
    assert.deepEqual(st.warnings, []);
    assert.ok((st.severed ?? 0) >= Object.keys(cut).length, `severed ${st.severed}, expected at least ${Object.keys(cut).length}`);
    for (const [name, c] of Object.entries(kept)) assert.equal(await c.roundTrip(), true, `${name} is kept and works while isolated`);
    await driver.unisolate(as);
    for (const [name, c] of Object.entries(cut)) assert.equal(await c.roundTrip(), false, `${name} was cut: it does not resume after release`);
    for (const [name, c] of Object.entries(kept)) assert.equal(await c.roundTrip(), true, `${name} still works after release`);
  }

  it('inbound exception to our port (any peer): a reverse shell FROM that port is cut, the service\'s inbound connection kept', async () => {
    const h = host();
    // the service listens on the host's v4 address only: its port stays free on the v6 address
    track(await lab.listen(h.ns, 7201, { addr: h.v4 }));
    track(await lab.listen(lab.peer.ns, 7202));
    const kept = { 'peer -> host:7201 (the service)': track(await lab.openConnection(lab.peer.ns, h.v4, 7201)) };
    const cut = {
      // the excepted port, on the address the service does not listen on, as nobody
      'host [v6]:7201 -> peer:7202 as nobody': track(await lab.openConnection(h.ns, lab.peer.v6, 7202, { from: { port: 7201, addr: h.v6 }, uid: NOBODY })),
      // an excepted port no service listens on, as root
      'host:7205 -> peer:7202 as root': track(await lab.openConnection(h.ns, lab.peer.v4, 7202, { from: { port: 7205 } })),
    };
    await play(
      [
        { direction: 'in', proto: 'tcp', port: 7201 },
        { direction: 'in', proto: 'tcp', port: 7205 },
      ],
      kept,
      cut,
    );
  });

  it('inbound exception from a peer to our port: a reverse shell from that port to that peer is cut', async () => {
    const h = host();
    track(await lab.listen(h.ns, 7211, { addr: h.v4 }));
    track(await lab.listen(lab.peer.ns, 7212));
    const kept = { 'peer -> host:7211': track(await lab.openConnection(lab.peer.ns, h.v4, 7211)) };
    const cut = {
      'host [v6]:7211 -> peer [v6]:7212 as nobody': track(await lab.openConnection(h.ns, lab.peer.v6, 7212, { from: { port: 7211, addr: h.v6 }, uid: NOBODY })),
      'host:7215 -> peer:7212 as root': track(await lab.openConnection(h.ns, lab.peer.v4, 7212, { from: { port: 7215 } })),
    };
    await play(
      [
        { direction: 'in', proto: 'tcp', addr: lab.peer.v6, port: 7211 },
        { direction: 'in', proto: 'tcp', addr: lab.peer.v4, port: 7211 },
        { direction: 'in', proto: 'tcp', addr: lab.peer.v4, port: 7215 },
      ],
      kept,
      cut,
    );
  });

  it('inbound exception from a peer (any port): a connection from the host to that peer is cut', async () => {
    const h = host();
    track(await lab.listen(h.ns, 7221));
    track(await lab.listen(lab.peer.ns, 7222));
    const kept = {
      'peer -> host:7221': track(await lab.openConnection(lab.peer.ns, h.v4, 7221)),
      'peer [v6] -> host:7221': track(await lab.openConnection(lab.peer.ns, h.v6, 7221)),
    };
    const cut = {
      'host -> peer:7222 as nobody': track(await lab.openConnection(h.ns, lab.peer.v4, 7222, { uid: NOBODY })),
      'host -> peer [v6]:7222 as root': track(await lab.openConnection(h.ns, lab.peer.v6, 7222)),
    };
    await play(
      [
        { direction: 'in', proto: 'tcp', addr: lab.peer.v4 },
        { direction: 'in', proto: 'any', addr: lab.peer.v6 },
      ],
      kept,
      cut,
    );
  });

  it('outbound exception to a peer\'s port: the host\'s own local port or the peer\'s source port being it keeps nothing', async () => {
    const h = host();
    track(await lab.listen(lab.peer.ns, 7231, { addr: lab.server.v4 }));
    track(await lab.listen(lab.peer.ns, 7232));
    track(await lab.listen(h.ns, 7233));
    const kept = {
      'host -> server:7231': track(await lab.openConnection(h.ns, lab.server.v4, 7231)),
      'host -> server:7231 as nobody': track(await lab.openConnection(h.ns, lab.server.v4, 7231, { uid: NOBODY })),
    };
    const cut = {
      // our LOCAL port is the excepted one, to another peer
      'host:7231 -> peer:7232 as nobody': track(await lab.openConnection(h.ns, lab.peer.v4, 7232, { from: { port: 7231 }, uid: NOBODY })),
      // the peer connects in FROM the excepted port: inbound, which no exception allows
      'peer:7231 -> host:7233': track(await lab.openConnection(lab.peer.ns, h.v4, 7233, { from: { port: 7231, addr: lab.peer.v4 } })),
      'server:7234 -> host:7233 (the excepted peer, inbound)': track(await lab.openConnection(lab.peer.ns, h.v4, 7233, { from: { port: 7234, addr: lab.server.v4 } })),
    };
    await play(
      [
        { direction: 'out', proto: 'tcp', port: 7231 },
        { direction: 'out', proto: 'tcp', addr: lab.server.v4, port: 7234 },
        { direction: 'out', proto: 'tcp', addr: lab.server.v4, port: 7231 },
      ],
      kept,
      cut,
    );
  });

  it('an outbound exception to a peer (any port): what that peer opened to the host is cut, what the host opened kept', async () => {
    const h = host();
    track(await lab.listen(lab.peer.ns, 7241));
    track(await lab.listen(h.ns, 7242));
    const kept = { 'host -> peer:7241': track(await lab.openConnection(h.ns, lab.peer.v4, 7241)) };
    const cut = { 'peer -> host:7242': track(await lab.openConnection(lab.peer.ns, h.v4, 7242)) };
    await play([{ direction: 'out', proto: 'tcp', addr: lab.peer.v4 }], kept, cut);
  });

  it('through the documented sudo rule (the listeners listed without privilege, the per-protocol ss -K lines)', async () => {
    const h = host();
    const sudoTarget: TargetInput = { ...target, username: lab.users.sudo.username, privateKey: lab.users.sudo.privateKey, passphrase: lab.users.sudo.passphrase, sudo: true };
    track(await lab.listen(h.ns, 7251, { addr: h.v4 }));
    track(await lab.listen(lab.peer.ns, 7252, { udp: true }));
    track(await lab.listen(lab.peer.ns, 7253));
    const kept = { 'peer -> host:7251': track(await lab.openConnection(lab.peer.ns, h.v4, 7251)) };
    const cut = {
      'host [v6]:7251 -> peer:7253 as nobody': track(await lab.openConnection(h.ns, lab.peer.v6, 7253, { from: { port: 7251, addr: h.v6 }, uid: NOBODY })),
      // UDP too: no exception names this datagram flow
      'host -> peer:7252 udp': track(await lab.openConnection(h.ns, lab.peer.v4, 7252, { udp: true })),
    };
    await play([{ direction: 'in', proto: 'tcp', port: 7251 }], kept, cut, sudoTarget);
  });
});
