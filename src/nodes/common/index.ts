/** What every node shares (src/nodes/common): one module per job. */
export * from './audit';
export * from './config';
export * from './driver';
export * from './fanout';
export * from './input';
export * from './message';
export * from './migrate';
export * from './pending';
export * from './request';
export * from './settings';
export * from './status';
export * from './target';
