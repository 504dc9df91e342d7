/**
 * isolation-target's saved configs, version by version (see common/migrate.ts). Each step keeps the
 * values of its own time written out: never derive them from today's field list, whose defaults
 * may change (that change is then a new step).
 */
import { fillDefaults, type Migration } from '../common/migrate';

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    why: 'versions begin: port 22, a 20 s timeout, no sudo, empty lists (servers read from the host), no jump host',
    up: fillDefaults({
      port: 22,
      timeout: 20,
      sudo: false,
      allowedHosts: [],
      managementCidrs: [],
      protectedHosts: [],
      dnsServers: [],
      ntpServers: [],
      ldapServers: [],
      jumpTarget: '',
      jumpHost: '',
      jumpPort: 22,
      jumpUser: '',
      jumpKnownHosts: '',
    }),
  },
];
