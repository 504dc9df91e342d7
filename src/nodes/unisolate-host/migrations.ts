/** unisolate-host's saved configs, version by version (see common/migrate.ts). */
import { fillDefaults, type Migration } from '../common/migrate';

export const MIGRATIONS: readonly Migration[] = [
  { version: 1, why: 'versions begin: no wall notice unless one is set', up: fillDefaults({ wall: '' }) },
];
