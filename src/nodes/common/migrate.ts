/**
 * Saved flows outlive the pack that wrote them. Each node's config carries a `version`: the number
 * of its migrations (src/nodes/<type>/migrations.ts) applied to it; a config without one was saved
 * by a pack before versions (version 0). When a default changes (as isolate-host's presets and
 * allowOverrides did), the change is a new migration that writes the old default into configs of
 * an older version, so a saved flow keeps the behaviour it had, and only new nodes get the new
 * default. The runtime migrates each config when the node starts; the editor runs the same
 * migrations when the node is edited (bundled into the editor code) and saves the new version.
 * Pure: no Node-RED, no I/O.
 */

export type Config = Record<string, unknown>;

export interface Migration {
  /** the version a config has after this step (steps are numbered 1, 2, ...) */
  readonly version: number;
  /** why the step exists: what changed in the pack */
  readonly why: string;
  /** the step: a new config from one of version - 1 (never changes its argument) */
  readonly up: (config: Config) => Config;
}

export interface Migrated<C> {
  config: C & { version: number };
  /** the version the config was saved with (0: none) */
  from: number;
  /** saved by a newer pack than this one: left as it is */
  newer: boolean;
}

/** The version a saved config says it has: 0 when it has none (or none that is a whole number >= 0). */
export function versionOf(config: Config): number {
  const v = config.version;
  const n = typeof v === 'string' && v.trim() !== '' ? Number(v) : v;
  return typeof n === 'number' && Number.isInteger(n) && n >= 0 ? n : 0;
}

/** The version the last step gives; the editor's default for a new node. */
export function currentVersion(migrations: readonly Migration[]): number {
  return migrations.length === 0 ? 0 : migrations[migrations.length - 1].version;
}

/** A config brought up to the current version, step by step; a config from a newer pack is kept. */
export function migrate<C extends Config>(config: C, migrations: readonly Migration[]): Migrated<C> {
  migrations.forEach((m, i) => {
    if (m.version !== i + 1) throw new Error(`migration ${i} has version ${m.version}: steps are numbered 1, 2, ...`);
  });
  const from = versionOf(config);
  const current = currentVersion(migrations);
  if (from > current) return { config: config as C & { version: number }, from, newer: true };
  let c: Config = { ...config };
  for (const m of migrations.slice(from)) c = { ...m.up(c), version: m.version };
  return { config: { ...c, version: current } as C & { version: number }, from, newer: false };
}

/** A step that writes a value into each field a config leaves out (absent or null): the defaults of its time. */
export function fillDefaults(defaults: Config): (config: Config) => Config {
  return (config) => {
    const out: Config = { ...config };
    for (const [k, v] of Object.entries(defaults)) if (out[k] === undefined || out[k] === null) out[k] = structuredClone(v);
    return out;
  };
}
