import type { FlowProducer } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { Router } from 'express';
import type { SpawnQueue } from '../../queues/spawn.ts';
import type { FleetConfig } from '../config.ts';
import type { GitHubForges } from '../github/index.ts';
import type { FleetKeys } from '../keys.ts';
import type { SecretBox } from '../secrets.ts';
import { webhookHandler } from '../webhook/handler.ts';
import { OutcomeWatcher } from '../webhook/outcomes.ts';
import { createWebhookRouter, WEBHOOK_MOUNT, WEBHOOK_ROUTE } from '../webhook/router.ts';

export interface WebhookRoleDeps {
  config: FleetConfig;
  queue: SpawnQueue;
  flows: FlowProducer;
  redis: Redis;
  /** A connection for SUBSCRIBE only (results of the requests it started). */
  subscriber: Redis;
  secrets: SecretBox;
  keys: FleetKeys;
  forges: GitHubForges;
  logger: Logger;
}

export interface WebhookRole {
  /** Mounted on the process's HTTP server at {@link WEBHOOK_MOUNT}. */
  mount: { path: string; router: Router };
  stop(): Promise<void>;
}

/** Thrown at start when a setting the role cannot run without is missing; the message says which and why. */
export class WebhookSetupError extends Error {
  override name = 'WebhookSetupError';
}

/**
 * The `webhook` role: GitHub deliveries become requests. Jobs it starts use the host's token
 * (FLEET_GITHUB_TOKEN), which never goes into a request, Redis or a log line.
 */
export async function startWebhookRole(deps: WebhookRoleDeps): Promise<WebhookRole> {
  const { config } = deps;
  const log = deps.logger.child({ role: 'webhook', host: config.hostId });
  const secret = config.webhook.secret;
  if (!secret)
    throw new WebhookSetupError(
      'the webhook role needs FLEET_WEBHOOK_SECRET: the secret set on the GitHub webhook (16+ characters), so that deliveries can be verified',
    );
  const hostToken = config.githubToken;
  if (!hostToken)
    throw new WebhookSetupError(
      'the webhook role needs FLEET_GITHUB_TOKEN: the token of the jobs it starts, its permission checks and its comments',
    );
  const forge = deps.forges.forToken(hostToken);
  // Fleet's own accounts, read once when first needed: their comments and reviews are never instructions.
  let own: Promise<ReadonlySet<string>> | undefined;
  const ownLogins = () => {
    own ??= Promise.all(
      [hostToken, config.github.reviewerToken]
        .filter((t): t is string => Boolean(t))
        .map((t) => deps.forges.forToken(t).getAuthenticatedLogin()),
    ).then((logins) => new Set(logins.map((l) => l.toLowerCase())));
    // A failed look-up is not kept: the next delivery asks again.
    own.catch(() => {
      own = undefined;
    });
    return own;
  };
  const outcomes = new OutcomeWatcher({ redis: deps.redis, subscriber: deps.subscriber, keys: deps.keys, forge, logger: log });
  await outcomes.start();
  const handle = webhookHandler({
    intake: {
      queue: deps.queue,
      flows: deps.flows,
      redis: deps.redis,
      keys: deps.keys,
      secrets: deps.secrets,
      attempts: config.spawnAttempts,
      keepLogs: config.jobLogLines,
      repoAllow: config.repoAllow,
      forges: deps.forges,
      hostToken,
    },
    forge,
    ownLogins,
    outcomes,
    trigger: { label: config.webhook.triggerLabel, word: config.webhook.triggerWord },
    logger: log,
  });
  const router = createWebhookRouter({ secret, redis: deps.redis, keys: deps.keys, handle, logger: log });
  log.info(
    { path: `${WEBHOOK_MOUNT}${WEBHOOK_ROUTE}`, trigger_label: config.webhook.triggerLabel, trigger_word: config.webhook.triggerWord },
    'webhook role ready',
  );
  return { mount: { path: WEBHOOK_MOUNT, router }, stop: () => outcomes.stop() };
}
