/** A node's config as it starts: migrated to the current version (see migrate.ts). */
import type { Node } from 'node-red';
import { migrate, type Config, type Migration } from './migrate';

/** The node's config at the current version; a config saved by a newer pack is used as it is, with a warning. */
export function startConfig<C extends object>(node: Node, config: C, migrations: readonly Migration[]): C & { version: number } {
  const m = migrate(config as unknown as Config, migrations);
  if (m.newer) node.warn(`saved by a newer version of this pack (config version ${m.from}): used as it is`);
  return m.config as unknown as C & { version: number };
}
