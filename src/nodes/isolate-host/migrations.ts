/** isolate-host's saved configs, version by version (see common/migrate.ts). */
import { fillDefaults, type Migration } from '../common/migrate';

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    why:
      'versions begin: a config saved without one gets, for each field it leaves out, the value the pack then used ' +
      '(no preset: since be675c3 a node without presets has none, no longer ["ssh"]; allowOverrides off: msg fields ' +
      'count only when ticked; verify on)',
    up: fillDefaults({
      presets: [],
      exceptions: [],
      mode: 'enforce',
      duration: 0,
      verify: true,
      force: false,
      wall: '',
      persist: false,
      allowOverrides: false,
    }),
  },
  {
    version: 2,
    why:
      'msg.hosts is capped per node (maxHosts; new nodes: 10): a flow saved before keeps the limit it had, ' +
      '1000 hosts per message (a fleet sweep that worked keeps working), still bounded by isolationTargetMaxHosts',
    up: fillDefaults({ maxHosts: 1000 }),
  },
  {
    version: 3,
    why:
      'a host that is away (UNREACHABLE, SSH connect TIMEOUT) may keep its isolation pending (pendingFor, seconds): ' +
      'a flow saved before keeps the behaviour it had, the error at once (pendingFor 0, off; also the default of new nodes)',
    up: fillDefaults({ pendingFor: 0 }),
  },
];
