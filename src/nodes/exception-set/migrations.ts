/** exception-set's saved configs, version by version (see common/migrate.ts). */
import { fillDefaults, type Migration } from '../common/migrate';

export const MIGRATIONS: readonly Migration[] = [
  { version: 1, why: 'versions begin: op "add", no exceptions of its own', up: fillDefaults({ op: 'add', exceptions: [] }) },
  {
    version: 2,
    why: 'msg.hosts is capped per node (maxHosts; new nodes: 10): a flow saved before keeps the limit it had, 1000 hosts per message',
    up: fillDefaults({ maxHosts: 1000 }),
  },
];
