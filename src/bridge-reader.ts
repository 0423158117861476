import { Worker } from 'node:worker_threads';
import type { Logger } from 'pino';
import type { InboxLimits } from './bridge-inbox.ts';
import { connectionSpec, singleTarget, type ConnectionSpec, type RedisTarget } from './redis-connection.ts';

/**
 * Where the bridge's subscriber connects (its own connection, in its own thread): a URL, or any
 * target (Sentinel, Cluster) of src/redis-connection.ts.
 */
export type SubscriberConnection = ({ url: string } | { target: RedisTarget }) & {
  /** Shown in CLIENT LIST, where an operator reads its output buffer (omem). */
  connectionName?: string;
};

function subscriberSpec(connection: SubscriberConnection): ConnectionSpec {
  const target = 'target' in connection ? connection.target : singleTarget(connection.url);
  return connectionSpec(target, 'subscriber', connection.connectionName ?? 'fleet:bridge-sub');
}

/** What the bridge tells metrics and its registry record about its subscriber connection. */
export interface SubscriptionStats {
  subscribed: boolean;
  /** Times the connection dropped while the bridge ran (Redis closed it, or the network did). */
  disconnects: number;
  /** Times the bridge subscribed again after such a drop. */
  resubscribes: number;
  /** ISO time of the last drop, if any. */
  lastDisconnectAt: string | null;
}

export interface ReaderEvents {
  message(channel: string, raw: Buffer): void;
  /** The bound was reached: the reader dropped this message. */
  dropped(channel: string, requestId: string | null, bytes: number): void;
  disconnected?(): void;
  resubscribed?(): void;
}

export interface Reader {
  stats(): SubscriptionStats;
  /** The main thread is done with a message: its bytes leave the bound. */
  handled(bytes: number): void;
  stop(): Promise<void>;
}

const LOST_WARNING =
  'messages published on these channels until the bridge resubscribes are LOST (pub/sub keeps nothing). ' +
  'If the Redis log says "scheduled to be closed ASAP for overcoming of output buffer limits", a burst exceeded ' +
  'client-output-buffer-limit pubsub: see README "Bursts". Senders that cannot afford loss use the durable intake.';

type ThreadEvent =
  | { type: 'subscribed' | 'stopped' }
  | { type: 'failed' | 'error'; message: string }
  | { type: 'messages'; messages: { channel: string; raw: Uint8Array }[] }
  | { type: 'dropped'; channel: string; requestId: string | null; bytes: number }
  | { type: 'disconnected' | 'resubscribed'; at: number };

/**
 * Runs the subscriber in a worker thread (src/bridge-reader-thread.mjs) that only reads: the
 * main thread's work on a burst can no longer slow the reading down, so Redis does not pile the
 * burst up in its output buffer. The thread keeps the in-process bound (messages handed over and
 * not yet handled) and drops past it; every drop, disconnect and resubscribe comes here, where it
 * is logged and counted, never silent.
 */
export async function startReader(options: {
  connection: SubscriberConnection;
  channels: string[];
  limits: Pick<InboxLimits, 'maxMessages' | 'maxBytes'>;
  logger: Logger;
  events: ReaderEvents;
}): Promise<Reader> {
  const { channels, logger, events } = options;
  const thread = new Worker(new URL('./bridge-reader-thread.mjs', import.meta.url), {
    // The thread gets the connection as plain data, decided by the same factory as every other connection.
    workerData: { spec: subscriberSpec(options.connection), channels, ...options.limits },
  });
  let subscribed = false;
  let stopping = false;
  let disconnects = 0;
  let resubscribes = 0;
  let lastDisconnectAt: number | null = null;
  let ack = { count: 0, bytes: 0 };
  let ackScheduled = false;
  const exited = new Promise<number>((resolve) => thread.once('exit', resolve));

  const started = new Promise<void>((resolve, reject) => {
    thread.once('error', reject);
    void exited.then((code) => reject(new Error(`the bridge's reader thread exited (${code}) before it subscribed`)));
    thread.on('message', (event: ThreadEvent) => {
      switch (event.type) {
        case 'messages':
          for (const { channel, raw } of event.messages) events.message(channel, Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength));
          break;
        case 'dropped':
          events.dropped(event.channel, event.requestId, event.bytes);
          break;
        case 'subscribed':
          subscribed = true;
          resolve();
          break;
        case 'failed':
          reject(new Error(`the bridge could not subscribe to ${channels.join(', ')}: ${event.message}`));
          break;
        case 'disconnected':
          if (stopping) break;
          subscribed = false;
          disconnects++;
          lastDisconnectAt = event.at;
          logger.warn({ channels, disconnects }, `bridge subscriber disconnected: ${LOST_WARNING}`);
          events.disconnected?.();
          break;
        case 'resubscribed': {
          subscribed = true;
          resubscribes++;
          const awayMs = lastDisconnectAt === null ? null : event.at - lastDisconnectAt;
          logger.warn({ channels, resubscribes, away_ms: awayMs }, `bridge resubscribed after ${awayMs ?? '?'} ms; ${LOST_WARNING}`);
          events.resubscribed?.();
          break;
        }
        case 'error':
          if (!stopping) logger.warn({ problem: event.message }, 'redis subscriber error');
          break;
        case 'stopped':
          break;
      }
    });
  });
  try {
    await started;
  } catch (error) {
    await thread.terminate();
    throw error;
  }

  return {
    stats: () => ({
      subscribed,
      disconnects,
      resubscribes,
      lastDisconnectAt: lastDisconnectAt === null ? null : new Date(lastDisconnectAt).toISOString(),
    }),
    handled(bytes) {
      ack.count++;
      ack.bytes += bytes;
      // One acknowledgement per turn, not one per message.
      if (!ackScheduled) {
        ackScheduled = true;
        setImmediate(() => {
          ackScheduled = false;
          thread.postMessage({ type: 'handled', ...ack });
          ack = { count: 0, bytes: 0 };
        });
      }
    },
    async stop() {
      stopping = true;
      subscribed = false;
      thread.postMessage({ type: 'stop' });
      // The thread unsubscribes, hands over what it holds, and exits; a wedged one is ended.
      const timer = setTimeout(() => void thread.terminate(), 5_000);
      await exited;
      clearTimeout(timer);
    },
  };
}
