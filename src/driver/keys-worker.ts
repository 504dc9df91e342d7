/**
 * The worker thread of keys.ts: decrypts one private key (bcrypt_pbkdf, the CPU-heavy part) away
 * from the event loop, answers once, and ends.
 */
import { parentPort, workerData } from 'worker_threads';
import { unlockKey } from './keys';

const { privateKey, passphrase } = workerData as { privateKey: string; passphrase: string };
parentPort!.postMessage(unlockKey(privateKey, passphrase));
