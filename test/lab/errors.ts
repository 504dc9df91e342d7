/**
 * Error codes for assertions, shared by unit and lab tests: what a driver call ended with, as the
 * stable `code` a Catch node would see.
 */
import { strict as assert } from 'assert';
import { IsolationError } from '../../src/driver';

/** `'ok'` when `p` resolves, else the `code` of the IsolationError it rejects with (any other rejection fails the test). */
export async function errorCode(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'ok';
  } catch (err) {
    assert.ok(err instanceof IsolationError, String(err));
    return err.code;
  }
}
