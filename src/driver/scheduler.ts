/**
 * When an operation runs and how long it may take: at most `maxConcurrent` operations at once
 * (the rest wait their turn, in order), the operations of one host one after another, and a
 * deadline that starts when an operation gets its slot, not while it waits for one.
 */
import { TimeoutError } from './errors';

/** A counting semaphore: at most `max` functions run at once, the others wait in order. */
export class Slots {
  private running = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(private readonly max: number) {}

  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.running >= this.max) await new Promise<void>((resolve) => this.waiting.push(resolve));
    else this.running++;
    try {
      return await fn();
    } finally {
      const next = this.waiting.shift();
      if (next) next();
      else this.running--;
    }
  }
}

/** An operation's time limit: the moment it ends, and what to say when it has passed. */
export class Deadline {
  constructor(
    readonly host: string,
    /** the target's time limit (ms), for the error */
    readonly timeoutMs: number,
    /** epoch ms */
    readonly at: number,
  ) {}

  /** The ms left, or TIMEOUT (`what` was about to start) when none is. */
  left(what: string): number {
    const ms = this.at - Date.now();
    if (ms <= 0) throw new TimeoutError(this.host, what, this.timeoutMs);
    return ms;
  }

  /** The ms left, possibly zero or less (for waits that may run past the deadline on purpose). */
  get msLeft(): number {
    return this.at - Date.now();
  }
}

export class Scheduler {
  private readonly queues = new Map<string, Promise<unknown>>();
  private readonly slots: Slots;

  constructor(maxConcurrent: number) {
    this.slots = new Slots(maxConcurrent);
  }

  /**
   * Runs `fn` after every earlier operation of the same `key` (one host) has finished, in a slot,
   * with a deadline `timeoutMs` from the moment the slot is given.
   */
  run<T>(key: string, host: string, timeoutMs: number, fn: (deadline: Deadline) => Promise<T>): Promise<T> {
    const prev = this.queues.get(key) ?? Promise.resolve();
    const start = () => this.slots.run(() => fn(new Deadline(host, timeoutMs, Date.now() + timeoutMs)));
    const result = prev.then(start, start);
    const tail = result.catch(() => undefined);
    this.queues.set(key, tail);
    void tail.then(() => {
      if (this.queues.get(key) === tail) this.queues.delete(key);
    });
    return result;
  }
}
