import { Job, type Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { RequestJobData } from '../../queues/merge.ts';
import type { ReviewQueue, ScopeContext } from '../../queues/review.ts';
import type { SpawnJobData, SpawnQueue } from '../../queues/spawn.ts';
import { InvalidRequestError, SpawnError } from '../errors.ts';
import type { GitHubForges } from '../github/index.ts';
import type { FleetKeys } from '../keys.ts';
import type { WorkerResult } from '../protocol.ts';
import { repoAllowed, repoRefusal } from '../repo-allow.ts';
import type { SecretBox } from '../secrets.ts';
import type { ChildEnd } from './children.ts';

/** What the review and merge steps both touch; neither builds a client of its own. */
export interface FlowStepDeps {
  forges: GitHubForges;
  /** The host's own token, for requests that brought none. */
  hostToken: string | undefined;
  /** FLEET_GITHUB_AUTH: which requests' steps act as the GitHub App of `forges.app` (src/flow/step-github.ts). @defaultValue auto */
  githubAuth?: 'auto' | 'app';
  /** FLEET_REPO_ALLOW; undefined: every repository. */
  repoAllow?: readonly string[];
  secrets: SecretBox;
  redis: Redis;
  keys: FleetKeys;
  /** Where follow-up workers (fix, conflict, agent reviewer) are added as children. */
  spawnQueue: SpawnQueue;
  /** Where a merge step adds the re-review after a conflict fix. */
  reviewQueue: ReviewQueue;
  /** The merge queue, where each flow's root job keeps the request's texts (read with {@link scopeTexts}). */
  requestQueue: Queue;
  logger: Logger;
  /** Epoch milliseconds; injected by tests. */
  now: () => number;
}

/** A scope's task and AGENTS.md, as the request gave them. */
export interface ScopeTexts {
  task: string;
  agentsContent: string | null;
}

/**
 * Reads a scope's texts from its flow's root job, the one place a flow stores them. The root lives
 * until every step has ended, so a step that finds none was given a context of another flow.
 */
export async function scopeTexts(ctx: ScopeContext, deps: Pick<FlowStepDeps, 'requestQueue'>): Promise<ScopeTexts> {
  const root = (await Job.fromId(deps.requestQueue, ctx.requestId)) as Job<RequestJobData> | undefined;
  const request = root?.data.kind === 'request' ? root.data.request : undefined;
  if (!request) throw new SpawnError(`the root job of request ${ctx.requestId} is gone: its texts cannot be read`, false);
  if (ctx.scope === null) return { task: request.task_content, agentsContent: request.agents_content };
  const task = request.tasks?.find((t) => t.scope === ctx.scope);
  if (!task) throw new SpawnError(`request ${ctx.requestId} has no scope "${ctx.scope}"`, false);
  return { task: task.task_content, agentsContent: task.agents_content ?? request.agents_content };
}

/** The personal token a scope acts with when it does not act as the App: the request's (sealed in the flow) or the host's. */
export function scopeToken(
  ctx: ScopeContext,
  deps: { secrets: SecretBox; hostToken: string | undefined; repoAllow?: readonly string[] },
): string {
  if (!repoAllowed(ctx.repo, deps.repoAllow)) throw new InvalidRequestError(repoRefusal(ctx.repo), 'repo');
  if (ctx.sealedToken) return deps.secrets.open(ctx.sealedToken);
  if (deps.hostToken) return deps.hostToken;
  throw new SpawnError('the request has no github_token and this host has no FLEET_GITHUB_TOKEN', false);
}

/** A spawn job that is one step of a scope: its own task, on the scope's branch, reporting to its parent. */
export function spawnChildData(
  now: number,
  ctx: ScopeContext,
  purpose: NonNullable<SpawnJobData['flow']>['purpose'],
  task: string,
  agentsContent: string | null,
  options: { baseBranch?: string; headSha?: string } = {},
): SpawnJobData {
  return {
    request: {
      request_id: ctx.requestId,
      repo: ctx.repo,
      task_content: task,
      task_title: ctx.task.title,
      model: ctx.model,
      agents_content: agentsContent,
      timeout_seconds: ctx.timeoutSeconds,
      agent: ctx.agent,
      mode: 'pr',
      result_format: ctx.resultFormat,
    },
    sealedToken: ctx.sealedToken,
    source: 'api',
    acceptedAt: now,
    flow: {
      scope: ctx.scope,
      purpose,
      branch: ctx.branch,
      baseBranch: options.baseBranch ?? ctx.baseBranch,
      ...(options.headSha ? { headSha: options.headSha } : {}),
    },
  };
}

/** Why a worker step did not succeed, or null when it did. */
export function flowStepFailed(end: ChildEnd<WorkerResult>): string | null {
  if (!end.ok) return end.reason;
  if (!end.value.success) return `${end.value.error_type}: ${end.value.error_message}`;
  return null;
}
