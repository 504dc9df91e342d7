/** The one driver (one connection pool) every node of the runtime shares. */
import { IsolationDriver } from '../../driver';
import { driverOptions } from './settings';

let shared: IsolationDriver | undefined;

/**
 * The driver every node uses: connections to a host are pooled and its operations serialised. Built
 * once, by the first node module the runtime loads, with the limits of settings.js (see
 * settings.ts; a bad value throws, and the pack does not load). Later calls return the same driver.
 */
export function sharedDriver(settings?: Record<string, unknown>): IsolationDriver {
  if (!shared) shared = new IsolationDriver(settings ? driverOptions(settings) : {});
  return shared;
}
