/**
 * Every program the pack runs on a host, by name: the only command lines it ever sends. None
 * contains anything from a request: data goes on stdin, and each program checks it again.
 */
import { APPLY } from './apply';
import { NFT_EXEC, WHOAMI } from './commands';
import { PREFLIGHT } from './preflight';
import { PROBE } from './probe';
import { DISCOVER_SCRIPT, LOOKUP_SCRIPT } from './servers';
import { STATUS } from './status';

/** The commands of an action (its keys as the fake host and the tests name them). */
export const COMMANDS = {
  nft: NFT_EXEC.root,
  sudoNft: NFT_EXEC.sudo,
  apply: APPLY.root,
  sudoApply: APPLY.sudo,
  whoami: WHOAMI,
  status: STATUS.root,
  sudoStatus: STATUS.sudo,
  /** the blocking probe: run as the SSH user (a connect needs no privilege) */
  probe: PROBE,
} as const;

/** All of them, the preflight's and the server discovery's too: each is pinned by a golden file (test/golden/). */
export const PROGRAMS: readonly string[] = [...Object.values(COMMANDS), ...Object.values(PREFLIGHT), DISCOVER_SCRIPT, LOOKUP_SCRIPT];
