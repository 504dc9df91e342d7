/**
 * The runtime settings of the pack, read from Node-RED's settings.js when the runtime loads it:
 * the limits of the one driver every node shares. Declared through the config node's
 * `registerType(..., { settings })`, as Node-RED asks of a node's settings (names start with the
 * type's camel-cased name), and validated here: a bad value stops the pack from loading, with the
 * setting's name in the log, rather than running with a limit nobody chose.
 */
import { z } from 'zod';
import { validate, type DriverOptions } from '../../driver';

/** The most isolationTargetMaxHosts may be. */
export const MAX_HOSTS_CEILING = 100_000;

interface Setting {
  /** the driver option it sets (left out: the driver's own default); none: a limit the nodes apply (`fleetLimit`) */
  option?: keyof DriverOptions;
  schema: z.ZodNumber;
  /** setting unit -> driver option unit */
  scale: number;
  doc: string;
}

export const SETTINGS: Record<string, Setting> = {
  isolationTargetMaxConcurrent: {
    option: 'maxConcurrent',
    schema: z.number().int().min(1).max(4096),
    scale: 1,
    doc: 'operations running at once across all hosts; the rest wait their turn',
  },
  isolationTargetPoolSize: {
    option: 'maxConnections',
    schema: z.number().int().min(1).max(65536),
    scale: 1,
    doc: 'SSH connections kept open at once; beyond it the least recently used idle one closes',
  },
  isolationTargetIdleTimeout: {
    option: 'idleMs',
    schema: z.number().min(1).max(86400),
    scale: 1000,
    doc: 'seconds an unused connection stays open',
  },
  isolationTargetVerifyWindow: {
    option: 'verifyWindowS',
    schema: z.number().int().min(5).max(3600),
    scale: 1,
    doc: 'verify-then-commit: seconds after which the host rolls an unconfirmed isolation back by itself',
  },
  isolationTargetMaxHosts: {
    schema: z.number().int().min(1).max(MAX_HOSTS_CEILING),
    scale: 1,
    doc: "most hosts one message's msg.hosts may name, whatever a node's own Max hosts says (the blast radius of one message)",
  },
};

/** isolationTargetMaxHosts when settings.js leaves it out: the limit msg.hosts always had. */
export const DEFAULT_MAX_HOSTS = 1000;

/**
 * The runtime's bound on the hosts of one message (isolationTargetMaxHosts), validated like the
 * driver's settings (a bad value throws a ValidationError naming it).
 */
export function fleetLimit(settings: Record<string, unknown>): number {
  const v = settings.isolationTargetMaxHosts ?? undefined;
  const parsed = validate(z.object({ isolationTargetMaxHosts: SETTINGS.isolationTargetMaxHosts.schema.optional() }), { isolationTargetMaxHosts: v }, 'settings');
  return parsed.isolationTargetMaxHosts ?? DEFAULT_MAX_HOSTS;
}

/**
 * What `registerType` takes: the settings this pack reads. Only isolationTargetMaxHosts is exported
 * to the editor (with its default, for a settings.js that leaves it out), so a node's Max hosts
 * field can say what the runtime allows; the driver's limits stay on the server.
 */
export function settingsDeclaration(): Record<string, { exportable: boolean; value?: number }> {
  return {
    ...Object.fromEntries(Object.keys(SETTINGS).map((name) => [name, name === 'isolationTargetMaxHosts' ? { exportable: true, value: DEFAULT_MAX_HOSTS } : { exportable: false }])),
    // pending isolations (common/pending.ts): the context store that keeps them, the first retry's wait in seconds
    isolationTargetPendingStore: { exportable: false },
    isolationTargetPendingBackoff: { exportable: false },
  };
}

/**
 * The driver's options from the runtime's settings; a ValidationError names each bad setting. A
 * setting left out leaves its option out, so the driver's own default applies (one source for it).
 */
export function driverOptions(settings: Record<string, unknown>): DriverOptions {
  const shape = Object.fromEntries(Object.entries(SETTINGS).map(([name, s]) => [name, s.schema.optional()]));
  const given = Object.fromEntries(Object.keys(SETTINGS).map((name) => [name, settings[name] ?? undefined]));
  const parsed = validate(z.object(shape), given, 'settings') as Record<string, number | undefined>;
  const opts: DriverOptions = {};
  for (const [name, s] of Object.entries(SETTINGS)) {
    const v = parsed[name];
    if (v !== undefined && s.option !== undefined) (opts as Record<string, number>)[s.option] = Math.round(v * s.scale);
  }
  return opts;
}
