import type { Redis } from 'ioredis';
import type { Logger } from 'pino';

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

export interface SubscriptionEvents {
  disconnected?(): void;
  resubscribed?(): void;
}

export interface Subscription {
  stats(): SubscriptionStats;
  /** Unsubscribes; a close after this is not a loss. */
  stop(): Promise<void>;
}

const LOST_WARNING =
  'messages published on these channels until the bridge resubscribes are LOST (pub/sub keeps nothing). ' +
  'If the Redis log says "scheduled to be closed ASAP for overcoming of output buffer limits", a burst exceeded ' +
  'client-output-buffer-limit pubsub: see README "Bursts". Senders that cannot afford loss use the durable path.';

/**
 * Subscribes and keeps watch: a pub/sub connection that drops loses every message Redis held for
 * it and every one published before it is back, so each drop and each resubscribe is a warning
 * and a count, never silent. ioredis reconnects by itself; on each `ready` we subscribe again
 * ourselves and await it, so `subscribed` is true only once Redis has confirmed the channels.
 */
export async function watchSubscription(options: {
  subscriber: Redis;
  channels: string[];
  logger: Logger;
  events?: SubscriptionEvents;
}): Promise<Subscription> {
  const { subscriber, channels, logger } = options;
  let subscribed = false;
  let stopping = false;
  let disconnects = 0;
  let resubscribes = 0;
  let lastDisconnectAt: number | null = null;

  const onClose = () => {
    if (stopping || !subscribed) return;
    subscribed = false;
    disconnects++;
    lastDisconnectAt = Date.now();
    logger.warn({ channels, disconnects }, `bridge subscriber disconnected: ${LOST_WARNING}`);
    options.events?.disconnected?.();
  };
  const onReady = () => {
    if (stopping || subscribed) return;
    subscriber.subscribe(...channels).then(
      () => {
        if (stopping || subscribed) return;
        subscribed = true;
        resubscribes++;
        const awayMs = lastDisconnectAt === null ? null : Date.now() - lastDisconnectAt;
        logger.warn({ channels, resubscribes, away_ms: awayMs }, `bridge resubscribed after ${awayMs ?? '?'} ms; ${LOST_WARNING}`);
        options.events?.resubscribed?.();
      },
      (error: unknown) => logger.warn({ err: error, channels }, 'bridge could not resubscribe yet; ioredis retries on its next reconnect'),
    );
  };
  subscriber.on('close', onClose);
  subscriber.on('ready', onReady);

  await subscriber.subscribe(...channels);
  subscribed = true;

  return {
    stats: () => ({
      subscribed,
      disconnects,
      resubscribes,
      lastDisconnectAt: lastDisconnectAt === null ? null : new Date(lastDisconnectAt).toISOString(),
    }),
    async stop() {
      stopping = true;
      subscribed = false;
      subscriber.off('close', onClose);
      subscriber.off('ready', onReady);
      await subscriber.unsubscribe(...channels).catch(() => {});
    },
  };
}
