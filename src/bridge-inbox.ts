/**
 * The bridge's in-process queue between the Redis socket and the work a message needs. The
 * subscriber (its own thread, src/bridge-reader.ts) only hands raw messages here, so it keeps
 * reading at socket speed and Redis never has to hold a burst in the subscriber's output buffer
 * (where, past `client-output-buffer-limit pubsub`, Redis closes the connection and every message
 * in it is lost). Decoding, validation, sealing and enqueueing run from here with bounded
 * concurrency.
 */
export interface InboxLimits {
  /** Messages received and not yet handled, at most; past it, new ones are dropped (and answered). @defaultValue 100 000 */
  maxMessages: number;
  /** Bytes of those messages at most. @defaultValue 512 MiB */
  maxBytes: number;
  /** Messages handled at once. @defaultValue 64 */
  concurrency: number;
}

export const DEFAULT_INBOX_LIMITS: InboxLimits = { maxMessages: 100_000, maxBytes: 512 * 1024 * 1024, concurrency: 64 };

export interface InboxStats {
  /** Messages waiting (not yet being handled). */
  depth: number;
  /** Bytes of the waiting messages. */
  bytes: number;
  /** Messages being handled now. */
  active: number;
  /** The most messages that ever waited at once. */
  peakDepth: number;
}

export interface Inbox<T> {
  /** Takes a message; the reader has kept the bound before it got here. */
  push(item: T): void;
  stats(): InboxStats;
  /** Settles when nothing waits and nothing is being handled. */
  idle(): Promise<void>;
}

export function createInbox<T>(options: {
  limits: Pick<InboxLimits, 'concurrency'>;
  size: (item: T) => number;
  /** Handles one message; a rejection is the caller's to log (handle must not throw for bad input). */
  handle: (item: T) => Promise<void>;
}): Inbox<T> {
  const { limits } = options;
  // A ring of arrays would save a little; a head index over one array keeps shift() O(1) as well.
  let waiting: T[] = [];
  let head = 0;
  let bytes = 0;
  let active = 0;
  let peakDepth = 0;
  let idleWaiters: (() => void)[] = [];

  const depth = () => waiting.length - head;
  const settleIdle = () => {
    if (depth() === 0 && active === 0 && idleWaiters.length) {
      const waiters = idleWaiters;
      idleWaiters = [];
      for (const resolve of waiters) resolve();
    }
  };

  const pump = () => {
    while (active < limits.concurrency && depth() > 0) {
      const item = waiting[head]!;
      waiting[head++] = undefined as T;
      if (head > 1024 && head * 2 > waiting.length) {
        waiting = waiting.slice(head);
        head = 0;
      }
      bytes -= options.size(item);
      active++;
      options
        .handle(item)
        .catch(() => {})
        .finally(() => {
          active--;
          // Handing the next message on in a later turn lets the socket be read in between.
          setImmediate(pump);
          settleIdle();
        });
    }
    settleIdle();
  };

  return {
    push(item) {
      waiting.push(item);
      bytes += options.size(item);
      peakDepth = Math.max(peakDepth, depth());
      // Not handled in the socket's read callback: the read path only queues.
      if (depth() === 1) setImmediate(pump);
    },
    stats: () => ({ depth: depth(), bytes, active, peakDepth }),
    idle: () => (depth() === 0 && active === 0 ? Promise.resolve() : new Promise<void>((resolve) => idleWaiters.push(resolve))),
  };
}
