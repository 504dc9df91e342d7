/**
 * The runtime settings of the pack, read from Node-RED's settings.js when the runtime loads it:
 * the limits of the one driver every node shares. Declared through the config node's
 * `registerType(..., { settings })`, as Node-RED asks of a node's settings (names start with the
 * type's camel-cased name), and validated here: a bad value stops the pack from loading, with the
 * setting's name in the log, rather than running with a limit nobody chose.
 */
import { z } from 'zod';
import { validate, type DriverOptions } from '../../driver';

interface Setting {
  /** the driver option it sets (left out: the driver's own default) */
  option: keyof DriverOptions;
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
};

/** What `registerType` takes: the settings this pack reads, not exported to the editor (so no default to declare). */
export function settingsDeclaration(): Record<string, { exportable: boolean }> {
  return Object.fromEntries(Object.keys(SETTINGS).map((name) => [name, { exportable: false }]));
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
    if (v !== undefined) (opts as Record<string, number>)[s.option] = Math.round(v * s.scale);
  }
  return opts;
}
