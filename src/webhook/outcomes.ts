/**
 * Posts each webhook-started request's outcome on the issue or pull request it came from, once its result
 * arrives. The requests waiting are kept in Redis (`webhookPending`), so a restarted webhook host picks them up
 * again and answers those whose result came while it was down (results are kept 24 h). Several webhook hosts
 * may watch one request: a claim key lets one of them post.
 */
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { Forge } from '../forge.ts';
import type { FleetKeys } from '../keys.ts';
import { channels, type SpawnResult } from '../protocol.ts';
import { readResult } from '../results.ts';
import { outcomeReply } from './replies.ts';

/** Where an outcome is posted. */
export interface OutcomeTarget {
  repo: string;
  /** The issue or pull request number. */
  number: number;
}

/** How long the claim of a posted outcome lasts: longer than results are kept, so nobody posts it twice. */
const ANSWERED_TTL_SECONDS = 2 * 24 * 60 * 60;

export class OutcomeWatcher {
  private readonly inFlight = new Set<Promise<void>>();
  private stopped = false;

  constructor(
    private readonly deps: {
      redis: Redis;
      /** A connection for SUBSCRIBE only. */
      subscriber: Redis;
      keys: FleetKeys;
      /** The forge of the host's token: outcomes are posted as fleet's own account. */
      forge: Forge;
      logger: Logger;
    },
  ) {}

  /** Subscribes to every pending request's result and answers the ones already finished. */
  async start(): Promise<void> {
    this.deps.subscriber.on('message', (channel: string, message: string) => {
      if (this.stopped) return;
      const id = channel.slice(channels.result('').length);
      let result: SpawnResult;
      try {
        result = JSON.parse(message) as SpawnResult;
      } catch (error) {
        this.deps.logger.error({ err: error, request_id: id }, 'a result on its channel is not JSON; its outcome is not posted');
        return;
      }
      this.track(this.answer(id, result));
    });
    const pending = await this.deps.redis.hkeys(this.deps.keys.webhookPending);
    if (pending.length) await this.deps.subscriber.subscribe(...pending.map((id) => channels.result(id)));
    for (const id of pending) this.track(this.answerIfFinished(id));
    this.deps.logger.info({ pending: pending.length }, 'webhook outcomes watched');
  }

  /** Remembers where a request's outcome goes, then waits for its result (which may already be there). */
  async watch(requestId: string, target: OutcomeTarget): Promise<void> {
    await this.deps.redis.hset(this.deps.keys.webhookPending, requestId, JSON.stringify(target));
    await this.deps.subscriber.subscribe(channels.result(requestId));
    // A fast request may have finished between the enqueue and the SUBSCRIBE.
    this.track(this.answerIfFinished(requestId));
  }

  /** Takes no new result, and waits for the comments being posted. */
  async stop(): Promise<void> {
    this.stopped = true;
    await Promise.allSettled([...this.inFlight]);
  }

  private track(work: Promise<void>): void {
    // The end of the line for an outcome: there is no caller to throw to, so the failure is logged loudly and
    // the entry stays pending: the next start of a webhook host tries again.
    const tracked = work
      .catch((error: unknown) =>
        this.deps.logger.error({ err: error }, 'posting a webhook outcome failed; it is tried again at the next start'),
      )
      .finally(() => this.inFlight.delete(tracked));
    this.inFlight.add(tracked);
  }

  private async answerIfFinished(requestId: string): Promise<void> {
    const result = await readResult(this.deps.redis, requestId);
    if (result) await this.answer(requestId, result);
  }

  private async answer(requestId: string, result: SpawnResult): Promise<void> {
    const { redis, keys } = this.deps;
    const raw = await redis.hget(keys.webhookPending, requestId);
    if (raw === null) return;
    const claimed = await redis.set(keys.webhookAnswered(requestId), '1', 'EX', ANSWERED_TTL_SECONDS, 'NX');
    if (claimed !== 'OK') return;
    const target = JSON.parse(raw) as OutcomeTarget;
    try {
      const comment = await this.deps.forge.postComment(target.repo, target.number, outcomeReply(result));
      this.deps.logger.info(
        { request_id: requestId, repo: target.repo, number: target.number, success: result.success, comment: comment.url },
        'webhook outcome posted',
      );
    } catch (error) {
      // Let a later try (this host's next start, another host) post it.
      await redis.del(keys.webhookAnswered(requestId));
      throw error;
    }
    await redis.hdel(keys.webhookPending, requestId);
    await this.deps.subscriber.unsubscribe(channels.result(requestId));
  }
}
