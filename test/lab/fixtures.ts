/**
 * Shared set-up and tear-down for the lab suites. Each `use*` call, made in a `describe` body,
 * registers the mocha hooks that make one thing in `before` and undo it in `after`, and returns
 * that thing at once: a stand-in that forwards to the real object once the `before` hook made it
 * (using it earlier throws and says so). A suite states only what it needs:
 *
 *   const lab = useLab({ hosts: 2, tables: [TABLE] });
 *   const driver = useDriver();
 *   const red = useNodeRed({ flows: () => flows(lab) });
 *
 * Set-up runs in the order of the calls; tear-down in the reverse order, after the suite's last
 * test, all of it even when a part fails (the first failure is reported). A lab, container or
 * runtime this machine lacks: the suite is pending with the reason printed, and fails with CI=true
 * (need.ts). What a suite undoes itself before the lab goes goes in `teardown(fn)`.
 */
import { IsolationDriver, IsolationError, type DriverOptions } from '../../src/driver';
import { launchChromium, type Chromium } from './browser';
import { containerAvailable, createContainer, guardSuites, type ContainerHost, type Suite } from './container';
import { createLab, requireLab, type Lab, type LabOptions } from './lab';
import type { Need } from './need';
import { requireRuntime, startNodeRed, type NodeRed, type Runtime, type StartOptions } from './nodered';
import * as fs from 'fs';
import { strict as assert } from 'assert';

type Undo = () => Promise<unknown> | unknown;
/** per mocha suite, what its fixtures made, to undo last first */
const undos = new WeakMap<Mocha.Suite, Undo[]>();

function suiteOf(ctx: Mocha.Context): Mocha.Suite {
  const suite = ctx.test?.parent;
  if (!suite) throw new Error('a fixture hook outside a suite');
  return suite;
}

/** Inside a hook of the fixture's suite: `fn` runs at tear-down, before what was made earlier is undone. */
function onTeardown(ctx: Mocha.Context, fn: Undo): void {
  const suite = suiteOf(ctx);
  const list = undos.get(suite) ?? [];
  undos.set(suite, list);
  list.push(fn);
}

/** Registers the suite's `after` hook that undoes everything (the first one to run does it all). */
function registerTeardown(): void {
  after(async function () {
    const list = undos.get(suiteOf(this)) ?? [];
    const failures: unknown[] = [];
    for (let fn = list.pop(); fn; fn = list.pop()) {
      try {
        await fn();
      } catch (err) {
        failures.push(err);
      }
    }
    if (failures.length) throw failures[0];
  });
}

/**
 * A stand-in for an object made later (in a `before` hook): every property read, write, `in`,
 * spread and `instanceof` goes to the real one; methods are bound to it.
 */
function late<T extends object>(what: string): { value: T; set(v: T): void } {
  let real: T | undefined;
  const target = (): T => {
    if (real === undefined) throw new Error(`${what} is made in the suite's before hook: not there yet (or the suite was skipped)`);
    return real;
  };
  const value = new Proxy({} as T, {
    get(_, p) {
      const r = target();
      const v: unknown = Reflect.get(r, p, r);
      return typeof v === 'function' ? (v as (...a: unknown[]) => unknown).bind(r) : v;
    },
    set: (_, p, v) => Reflect.set(target(), p, v),
    has: (_, p) => Reflect.has(target(), p),
    ownKeys: () => Reflect.ownKeys(target()),
    getOwnPropertyDescriptor(_, p) {
      const d = Reflect.getOwnPropertyDescriptor(target(), p);
      return d && { ...d, configurable: true };
    },
    getPrototypeOf: () => Reflect.getPrototypeOf(target()),
  });
  return { value, set: (v) => (real = v) };
}

/**
 * A fixture: `make` in `before` (given the hook's context), `undo` at tear-down. Returns the
 * stand-in for what `make` returns.
 */
export function fixture<T extends object>(what: string, make: (ctx: Mocha.Context) => Promise<T> | T, undo: (v: T) => Promise<unknown> | unknown): T {
  const slot = late<T>(what);
  before(async function () {
    const v = await make(this);
    slot.set(v);
    onTeardown(this, () => undo(v));
  });
  registerTeardown();
  return slot.value;
}

/**
 * `fn` at the suite's tear-down, before whatever the fixtures called before this made is undone
 * (so `fn` may still use the lab). Call it in the describe body, after those fixtures.
 */
export function teardown(fn: Undo): void {
  before(function () {
    onTeardown(this, fn);
  });
  registerTeardown();
}

export interface UseLabOptions extends LabOptions {
  /** what else the suite needs (containerAvailable(), chromiumAvailable()): missing, it is pending (a failure with CI=true) */
  needs?: Need[];
  /** the Node-RED runtime it needs, checked after the lab */
  runtime?: Runtime;
  /** tables removed from every lab host at tear-down, before the lab is closed */
  tables?: string[];
}

/** Removes table inet `table` from every lab host (or those `indexes`), where it is. */
export async function dropTables(lab: Lab, table: string, indexes: number[] = lab.hosts.map((h) => h.index)): Promise<void> {
  for (const i of indexes) await lab.nft(lab.hosts[i].ns, ['delete', 'table', 'inet', table]).catch(() => undefined);
}

/** A lab (createLab) for the suite, made in `before`, closed at tear-down. */
export function useLab(opts: UseLabOptions = {}): Lab {
  const { needs = [], runtime, tables = [], ...labOpts } = opts;
  return fixture(
    'the lab',
    async (ctx) => {
      requireLab(ctx, ...needs);
      if (runtime) requireRuntime(ctx, runtime);
      return createLab(labOpts);
    },
    async (lab) => {
      for (const t of tables) await dropTables(lab, t);
      await lab.close();
    },
  );
}

/** An IsolationDriver for the suite, closed at tear-down. */
export function useDriver(opts?: DriverOptions): IsolationDriver {
  return fixture('the driver', () => new IsolationDriver(opts), (d) => d.close());
}

/** `fn` with a driver of its own, closed afterwards whatever `fn` does. */
export async function withDriver<T>(fn: (d: IsolationDriver) => Promise<T>, opts?: DriverOptions): Promise<T> {
  const d = new IsolationDriver(opts);
  try {
    return await fn(d);
  } finally {
    await d.close();
  }
}

export interface Containers {
  lab: Lab;
  /** one per suite, in the order of `suites` (container `i` boots at lab offset 100 + i); filled in `before` */
  hosts: ContainerHost[];
}

/**
 * A lab (one namespace host unless `hosts` says otherwise) and a container of each of `suites`
 * (NRHI_GUARD_SUITES's, by default) booted on it; all closed at tear-down. `logBoot` prints how long
 * the containers took to come up.
 */
export function useContainers(suites: Suite[] = guardSuites(), opts: UseLabOptions & { logBoot?: boolean } = {}): Containers {
  const { logBoot, ...labOpts } = opts;
  const lab = useLab({ hosts: 1, ...labOpts, needs: [containerAvailable(), ...(labOpts.needs ?? [])] });
  const hosts: ContainerHost[] = [];
  before(async function () {
    const t0 = Date.now();
    onTeardown(this, async () => {
      for (const h of hosts) await h.close();
    });
    for (const [i, suite] of suites.entries()) hosts.push(await createContainer(lab, suite, i));
    if (logBoot) console.log(`      (containers up in ${Date.now() - t0} ms: ${hosts.map((h) => `${h.suite} ${h.lastBootMs} ms`).join(', ')})`);
  });
  registerTeardown();
  return { lab, hosts };
}

/** whether NRHI_NODERED_LOG=1 asks to see the runtimes' own output */
const QUIET = process.env.NRHI_NODERED_LOG !== '1';

/**
 * A Node-RED runtime (startNodeRed; quiet unless NRHI_NODERED_LOG=1), with `flows()` deployed
 * when given; stopped at tear-down and its user dir removed (unless the suite gave it one).
 */
export function useNodeRed(opts: StartOptions & { flows?: (red: NodeRed) => object[] } = {}): NodeRed {
  const { flows, ...start } = opts;
  const slot = late<NodeRed>('the Node-RED runtime');
  before(async function () {
    const red = await startNodeRed({ quiet: QUIET, ...start });
    slot.set(red);
    onTeardown(this, () => stopNodeRed(red, start.userDir === undefined));
    if (flows) await red.deploy(flows(slot.value));
  });
  registerTeardown();
  return slot.value;
}

/** Stops a runtime and (`removeDir`) removes its user dir. */
export async function stopNodeRed(red: NodeRed, removeDir = true): Promise<void> {
  await red.stop();
  if (removeDir) fs.rmSync(red.userDir, { recursive: true, force: true });
}

/** Headless Chromium (launchChromium) for the suite, closed at tear-down. */
export function useChromium(viewport: { width: number; height: number }): Chromium {
  return fixture('the browser', () => launchChromium(viewport), (b) => b.close());
}

/** Collects unhandled promise rejections while the suite runs; each test must end with none. */
export function noUnhandledRejections(): unknown[] {
  const unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown) => unhandled.push(reason);
  before(function () {
    process.on('unhandledRejection', onUnhandled);
    onTeardown(this, () => process.removeListener('unhandledRejection', onUnhandled));
  });
  registerTeardown();
  afterEach(() => {
    assert.deepEqual(unhandled, [], 'no unhandled rejection');
  });
  return unhandled;
}

/** Awaits `p` and asserts that it fails with an IsolationError of `code` (or one of `code`); returns it. */
export async function expectCode(p: Promise<unknown>, code: string | string[]): Promise<IsolationError> {
  const codes = Array.isArray(code) ? code : [code];
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof IsolationError, `expected IsolationError, got ${String(err)}`);
    assert.ok(codes.includes(err.code), `expected ${codes.join('|')}, got ${err.code}: ${err.message}`);
    return err;
  }
  assert.fail(`expected error ${codes.join('|')}, got success`);
}
