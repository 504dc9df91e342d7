/** Every node's migrations by type (src/nodes/<type>/migrations.ts), for the editor and the build. */
import type { Migration } from '../nodes/common/migrate';
import { MIGRATIONS as EXCEPTION_SET } from '../nodes/exception-set/migrations';
import { MIGRATIONS as ISOLATE_HOST } from '../nodes/isolate-host/migrations';
import { MIGRATIONS as ISOLATION_STATUS } from '../nodes/isolation-status/migrations';
import { MIGRATIONS as ISOLATION_TARGET } from '../nodes/isolation-target/migrations';
import { MIGRATIONS as UNISOLATE_HOST } from '../nodes/unisolate-host/migrations';

export const NODE_MIGRATIONS: Readonly<Record<string, readonly Migration[]>> = {
  'isolation-target': ISOLATION_TARGET,
  'isolate-host': ISOLATE_HOST,
  'unisolate-host': UNISOLATE_HOST,
  'isolation-status': ISOLATION_STATUS,
  'exception-set': EXCEPTION_SET,
};
