/**
 * Acts on one verified, first-seen delivery: reads what it asks, checks that whoever asked may write to the
 * repository, and enqueues the request through the same intake as every other path (validation, one job per
 * request id). Whoever may not write gets a polite reply; fleet's own account and bots are never obeyed.
 */
import type { Logger } from 'pino';
import { type InvalidRequestError, isErrorNamed } from '../errors.ts';
import type { Forge } from '../forge.ts';
import { enqueueSpawn, validateSpawnRequest, type IntakeDeps } from '../intake.ts';
import { repoAllowed } from '../repo-allow.ts';
import { intentOf, type Intent, type TriggerSettings } from './intents.ts';
import type { OutcomeWatcher } from './outcomes.ts';
import { emptyInstructionReply, invalidReply, refusalReply } from './replies.ts';
import { requestOf, type FollowUp } from './requests.ts';

export interface Delivery {
  id: string;
  /** X-GitHub-Event. */
  event: string;
  payload: unknown;
}

/** What became of a delivery; the HTTP answer carries it, so GitHub's delivery log shows it. */
export type DeliveryOutcome =
  | { outcome: 'ignored'; reason: string }
  | { outcome: 'refused'; reason: string }
  | { outcome: 'invalid'; reason: string }
  | { outcome: 'enqueued' | 'duplicate' | 'already_final' | 'cancelled'; request_id: string };

export interface WebhookHandlerDeps {
  /** The intake, with the host token as `hostToken` and no token in any request. */
  intake: IntakeDeps;
  /** The forge of the host's token: permission checks, replies, pull requests. */
  forge: Forge;
  /** Logins of fleet's own accounts (the host's and the reviewer's tokens): never obeyed. */
  ownLogins: () => Promise<ReadonlySet<string>>;
  outcomes: OutcomeWatcher;
  trigger: TriggerSettings;
  logger: Logger;
}

const WRITE_OR_HIGHER = new Set(['admin', 'write']);

/** The pull request a comment continues: an open one fleet opened in this repository. */
async function fleetPullRequest(forge: Forge, repo: string, number: number): Promise<FollowUp | undefined> {
  const pr = await forge.getPullRequest(repo, number);
  const fromFleet = pr.headRef.startsWith('fleet/') && pr.headRepo.toLowerCase() === repo.toLowerCase();
  return fromFleet && pr.state === 'open' ? { pullRequest: number } : undefined;
}

export function webhookHandler(deps: WebhookHandlerDeps) {
  const log = deps.logger;

  const reply = async (intent: Exclude<Intent, { kind: 'ignore' }>, body: string) => {
    await deps.forge.postComment(intent.repo, intent.number, body);
  };

  return async function handle(delivery: Delivery): Promise<DeliveryOutcome> {
    const intent = intentOf(delivery.event, delivery.payload, deps.trigger);
    if (intent.kind === 'ignore') return { outcome: 'ignored', reason: intent.reason };
    const where = { delivery: delivery.id, repo: intent.repo, number: intent.number, sender: intent.sender, kind: intent.kind };
    // A repository this fleet may not work on gets no reply: its token may not even reach it.
    if (!repoAllowed(intent.repo, deps.intake.repoAllow)) {
      log.warn(where, 'webhook delivery for a repository outside FLEET_REPO_ALLOW ignored');
      return { outcome: 'ignored', reason: `${intent.repo} is not in FLEET_REPO_ALLOW` };
    }
    if ((await deps.ownLogins()).has(intent.sender.toLowerCase())) return { outcome: 'ignored', reason: "fleet's own account" };

    const { permission } = await deps.forge.getCollaboratorPermission(intent.repo, intent.sender);
    if (!WRITE_OR_HIGHER.has(permission)) {
      log.info({ ...where, permission }, 'webhook instruction refused: no write access');
      await reply(intent, refusalReply(intent.sender, intent.repo, permission));
      return { outcome: 'refused', reason: `${intent.sender} has ${permission} permission` };
    }

    let followUp: FollowUp | undefined;
    if (intent.kind === 'comment' && intent.onPullRequest) {
      followUp = await fleetPullRequest(deps.forge, intent.repo, intent.number);
      if (followUp && !intent.instruction) {
        await reply(intent, emptyInstructionReply(deps.trigger.word));
        return { outcome: 'invalid', reason: 'no instruction after the trigger word' };
      }
    }
    const reviewComments =
      intent.kind === 'review' ? await deps.forge.getReviewComments(intent.repo, intent.number, intent.reviewId) : undefined;
    const request = requestOf(intent, delivery.id, { followUp, reviewComments });
    try {
      const valid = validateSpawnRequest(request);
      const outcome = await enqueueSpawn(valid, deps.intake, 'webhook');
      log.info({ ...where, request_id: valid.request_id, outcome, follow_up: valid.follow_up?.pull_request }, 'webhook request accepted');
      if (outcome === 'enqueued') await deps.outcomes.watch(valid.request_id, { repo: intent.repo, number: intent.number });
      return { outcome, request_id: valid.request_id };
    } catch (error) {
      if (!isErrorNamed(error, 'InvalidRequestError')) throw error;
      const reason = (error as InvalidRequestError).message;
      log.warn({ ...where, reason }, 'webhook request refused by intake');
      await reply(intent, invalidReply(reason));
      return { outcome: 'invalid', reason };
    }
  };
}

export type WebhookHandler = ReturnType<typeof webhookHandler>;
