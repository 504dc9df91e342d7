/** exception-set's saved configs, version by version (see common/migrate.ts). */
import { fillDefaults, type Migration } from '../common/migrate';

export const MIGRATIONS: readonly Migration[] = [
  { version: 1, why: 'versions begin: op "add", no exceptions of its own', up: fillDefaults({ op: 'add', exceptions: [] }) },
];
