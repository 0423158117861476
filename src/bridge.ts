import type { Logger } from 'pino';
import { createInbox, DEFAULT_INBOX_LIMITS, type InboxLimits, type InboxStats } from './bridge-inbox.ts';
import { startReader, type SubscriberConnection, type SubscriptionStats } from './bridge-reader.ts';
import { checkPubsubLimit } from './bridge-redis-limits.ts';
import { startBridgeHeartbeat, type BridgeHeartbeat } from './bridge-registry.ts';
import { excerptOf, spawnHandler } from './bridge-spawn.ts';
import { startIntakeConsumer, type IntakeConsumer } from './bridge-stream.ts';
import { cancelRequest } from './cancel.ts';
import type { IntakeDeps } from './intake.ts';
import { cancelRequestSchema, channels } from './protocol.ts';

export { MAX_MESSAGE_BYTES } from './bridge-spawn.ts';
export type { SubscriberConnection } from './bridge-reader.ts';

/** Counts the bridge reports as they happen (metrics); gauges are read from `stats()`. */
export interface BridgeObserver {
  disconnected?(): void;
  resubscribed?(): void;
  dropped?(count: number): void;
}

export interface BridgeDeps extends IntakeDeps {
  /** The subscriber's own connection, opened in the reader thread; ioredis resubscribes on it after every reconnect. */
  subscriber: SubscriberConnection;
  logger: Logger;
  onRejected?: (reason: string) => void;
  onAccepted?: (outcome: string) => void;
  observer?: BridgeObserver;
  /** The in-process queue's bounds. @defaultValue DEFAULT_INBOX_LIMITS */
  inbox?: Partial<InboxLimits>;
  /** Writes this bridge's record for `fleet status` under this host id; unset: no record. */
  hostId?: string;
  /** Reads the durable intake stream too. @defaultValue true */
  intake?: boolean;
}

export interface BridgeStats extends SubscriptionStats {
  inbox: InboxStats & { dropped: number };
}

export interface Bridge {
  stop(): Promise<void>;
  /** Settles when every message received so far has been handled (shutdown). */
  idle(): Promise<void>;
  /** Messages handled since start, spawn and cancel alike (dropped ones included). */
  handled(): number;
  /** Settles once `count` messages have been handled: how tests wait without sleeping. */
  waitForHandled(count: number): Promise<void>;
  stats(): BridgeStats;
  /** Entries of the durable intake stream this bridge has handled. */
  intakeHandled(): number;
}

type Message = { channel: string; raw: Buffer };

/**
 * Bridges the orchestrator's pub/sub channels (and the durable intake stream) into the `spawn`
 * queue. The subscriber's socket only feeds an in-process inbox, so Redis never holds a burst
 * for us; every message is then handled on its own: whatever one holds, it cannot stop the bridge
 * or touch another request.
 */
export async function startBridge(deps: BridgeDeps): Promise<Bridge> {
  const log = deps.logger.child({ role: 'bridge' });
  const handler = spawnHandler({ ...deps, logger: log });
  let handledCount = 0;
  const handledWaiters: { count: number; resolve: () => void }[] = [];
  const markHandled = () => {
    handledCount++;
    for (const waiter of handledWaiters.filter((w) => w.count <= handledCount)) {
      handledWaiters.splice(handledWaiters.indexOf(waiter), 1);
      waiter.resolve();
    }
  };

  const onCancel = async (raw: Buffer) => {
    let parsed: unknown;
    try {
      parsed = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(raw));
    } catch {
      log.warn({ excerpt: excerptOf(raw) }, 'ignored a cancel message that is not JSON text');
      return;
    }
    const cancel = cancelRequestSchema.safeParse(parsed);
    if (!cancel.success) {
      log.warn(
        { excerpt: excerptOf(raw), problem: cancel.error.issues[0]?.message },
        'ignored a cancel message without a valid request_id',
      );
      return;
    }
    const outcome = await cancelRequest(cancel.data.request_id, deps);
    log.info({ request_id: cancel.data.request_id, outcome }, 'cancel handled');
  };

  const limits = { ...DEFAULT_INBOX_LIMITS, ...deps.inbox };
  const inbox = createInbox<Message>({
    limits,
    size: (m) => m.raw.length,
    handle: ({ channel, raw }) =>
      (channel === channels.spawn ? handler.fromMessage(raw) : onCancel(raw))
        .catch((error) => log.error({ err: error, channel }, 'a message could not be handled (Redis unavailable?)'))
        .finally(() => {
          reader.handled(raw.length);
          markHandled();
        }),
  });

  let heartbeat: BridgeHeartbeat | undefined;
  let dropped = 0;
  /** The bound was reached: the message is dropped, loudly, and its sender answered when its id can be read. */
  const drop = (channel: string, requestId: string | null, bytes: number) => {
    dropped++;
    deps.observer?.dropped?.(1);
    log.error(
      { channel, request_id: requestId, bytes, inbox: inbox.stats(), dropped },
      `bridge inbox full (${limits.maxMessages} messages / ${limits.maxBytes} bytes): DROPPED a message${requestId ? ` of request ${requestId}` : ' (no readable request id)'}`,
    );
    void heartbeat?.beat().catch(() => {});
    const answer =
      channel === channels.spawn
        ? handler.fail(
            requestId ?? undefined,
            'overloaded',
            'the bridge was overloaded (its in-process queue was full) and dropped this request: nothing was queued. Send it again with a new request_id, or use the durable intake (README "Bursts").',
          )
        : Promise.resolve(false);
    answer
      .catch((error) => log.error({ err: error, request_id: requestId }, 'could not publish the result of a dropped request'))
      .finally(markHandled);
  };

  const reader = await startReader({
    connection: deps.subscriber,
    channels: [channels.spawn, channels.cancel],
    limits,
    logger: log,
    events: {
      message: (channel, raw) => inbox.push({ channel, raw }),
      dropped: drop,
      disconnected: () => {
        deps.observer?.disconnected?.();
        void heartbeat?.beat().catch(() => {});
      },
      resubscribed: () => {
        deps.observer?.resubscribed?.();
        void heartbeat?.beat().catch(() => {});
      },
    },
  });
  log.info({ channels: [channels.spawn, channels.cancel], inbox: limits }, 'bridge subscribed');
  await checkPubsubLimit(deps.redis, log);

  const stats = (): BridgeStats => ({ ...reader.stats(), inbox: { ...inbox.stats(), dropped } });
  let intake: IntakeConsumer | undefined;
  try {
    if (deps.hostId) {
      heartbeat = startBridgeHeartbeat({
        redis: deps.redis,
        keys: deps.keys,
        hostId: deps.hostId,
        logger: log,
        state: () => {
          const s = stats();
          return {
            subscribed: s.subscribed,
            disconnects: s.disconnects,
            resubscribes: s.resubscribes,
            last_disconnect_at: s.lastDisconnectAt,
            dropped: s.inbox.dropped,
            inbox_depth: s.inbox.depth,
            inbox_peak_depth: s.inbox.peakDepth,
          };
        },
      });
      await heartbeat.beat();
    }

    if (deps.intake ?? true) {
      intake = await startIntakeConsumer({
        redis: deps.redis,
        keys: deps.keys,
        secrets: deps.secrets,
        handler,
        consumerName: `${deps.hostId ?? 'bridge'}:${process.pid}:${Math.random().toString(36).slice(2, 8)}`,
        logger: log,
      });
    }
  } catch (error) {
    // A bridge that cannot start leaves no thread or record behind.
    await heartbeat?.stop();
    await reader.stop();
    throw error;
  }

  return {
    idle: () => inbox.idle(),
    handled: () => handledCount,
    waitForHandled: (count) =>
      count <= handledCount ? Promise.resolve() : new Promise<void>((resolve) => handledWaiters.push({ count, resolve })),
    stats,
    intakeHandled: () => intake?.handled() ?? 0,
    async stop() {
      await reader.stop();
      await intake?.stop();
      await inbox.idle();
      await heartbeat?.stop();
    },
  };
}
