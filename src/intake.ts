import type { FlowProducer } from 'bullmq';
import type { Redis } from 'ioredis';
import { FLOW_RETENTION_SECONDS } from '../queues/common.ts';
import { SPAWN_JOB_NAME, spawnJobOptions, type FollowUpTarget, type SpawnJobData, type SpawnQueue } from '../queues/spawn.ts';
import { InvalidRequestError, isErrorNamed } from './errors.ts';
import type { PullRequest } from './forge.ts';
import { GitHubAppError, STEP_TOKEN_PERMISSIONS } from './github/app-auth.ts';
import { jobUsesApp, type GitHubForges, type InstallationLease } from './github/index.ts';
import { buildRequestFlow, needsFlow } from './flow/build.ts';
import { spawnRequestSchema, WORKER_TYPES, type SpawnRequest } from './protocol.ts';
import type { FleetKeys } from './keys.ts';
import { failureResult, publishFinal, readResult } from './results.ts';
import { repoAllowed, repoRefusal } from './repo-allow.ts';
import type { SecretBox } from './secrets.ts';
import { currentTraceId } from './tracing.ts';

/** The request's trace id for its job data, when it is traced (the bridge's receive span is active). */
function traceField(): { traceId?: string } {
  const traceId = currentTraceId();
  return traceId ? { traceId } : {};
}

/** A rejection reason is kept in a list, a log line and a 24 h result: it names a few problems, briefly. */
export const MAX_REASON_CHARS = 1000;
const MAX_ISSUES_NAMED = 5;
const MAX_KEYS_NAMED = 5;

/** `"a", "b" and 3 more`: a message with thousands of unknown keys still makes a short reason. */
function nameKeys(keys: string[]): string {
  const named = keys.slice(0, MAX_KEYS_NAMED).map((k) => JSON.stringify(k.slice(0, 64)));
  return keys.length > MAX_KEYS_NAMED ? `${named.join(', ')} and ${keys.length - MAX_KEYS_NAMED} more` : named.join(', ');
}

/** Cuts a reason to {@link MAX_REASON_CHARS}, marking the cut. */
export function boundReason(reason: string): string {
  return reason.length <= MAX_REASON_CHARS ? reason : `${reason.slice(0, MAX_REASON_CHARS - 1)}…`;
}

/** Validates a decoded message; the error names the first bad fields (at most five). */
export function validateSpawnRequest(input: unknown): SpawnRequest {
  if (typeof input !== 'object' || input === null || Array.isArray(input)) {
    throw new InvalidRequestError('the request must be a JSON object');
  }
  const parsed = spawnRequestSchema.safeParse(input);
  if (parsed.success) return parsed.data;
  const issues = parsed.error.issues.slice(0, MAX_ISSUES_NAMED).map((issue) => {
    if (issue.code === 'unrecognized_keys') {
      // Inside an object field (a task, follow_up) the keys are named with the field they are in.
      const within = issue.path.length ? `${issue.path.join('.')}.` : '';
      return `unknown field${issue.keys.length > 1 ? 's' : ''} ${nameKeys(issue.keys.map((k) => within + k))}`;
    }
    const field = issue.path.join('.') || '(request)';
    const missing =
      issue.code === 'invalid_type' && (input as Record<string, unknown>)[String(issue.path[0])] === undefined && issue.path.length === 1;
    return missing ? `field "${field}" is required` : `field "${field}" ${issue.message}`;
  });
  const first = parsed.error.issues[0]?.path.join('.');
  throw new InvalidRequestError(boundReason(`invalid spawn request: ${issues.join('; ')}`), first);
}

export interface IntakeDeps {
  queue: SpawnQueue;
  /** Adds requests with tasks or review as flows (src/flow.ts). */
  flows: FlowProducer;
  redis: Redis;
  keys: FleetKeys;
  secrets: SecretBox;
  attempts: number;
  keepLogs: number;
  /** FLEET_REPO_ALLOW; undefined: every repository. */
  repoAllow?: readonly string[];
  /** GitHub, to check the pull request a follow-up names; without it follow-ups are refused. */
  forges?: Pick<GitHubForges, 'forToken'> & Partial<Pick<GitHubForges, 'app'>>;
  /** The host's own token, for requests that bring none. */
  hostToken?: string;
  /** FLEET_GITHUB_AUTH: whether a request's follow-up check acts as `forges.app` (as its job will). @defaultValue auto */
  githubAuth?: 'auto' | 'app';
}

/**
 * The open pull request fleet made that a follow-up continues, or an InvalidRequestError that says
 * why not: it must exist in the request's repository, be open, and come from a `fleet/` branch there.
 * It is read with the identity the request's job will act with: the GitHub App (jobUsesApp) or a personal token.
 */
export async function resolveFollowUp(
  request: SpawnRequest,
  deps: Pick<IntakeDeps, 'forges' | 'hostToken' | 'githubAuth'>,
): Promise<FollowUpTarget> {
  const app = deps.forges?.app;
  if (!jobUsesApp({ requestHasToken: request.github_token !== undefined, auth: deps.githubAuth ?? 'auto', app }))
    return checkFollowUp(request, deps, request.github_token ?? deps.hostToken);
  // As the App, as the job will act: a read-only token for this check alone, revoked before the request is queued.
  // A failed revocation fails the intake like any GitHub error here: the sender hears it, nothing is queued.
  let lease: InstallationLease;
  try {
    lease = await app!.mint(request.repo, STEP_TOKEN_PERMISSIONS.followUp);
  } catch (error) {
    if (error instanceof GitHubAppError)
      throw new InvalidRequestError(`field "follow_up": the GitHub App cannot read ${request.repo}: ${error.message}`, 'follow_up');
    throw error;
  }
  try {
    return await checkFollowUp(request, deps, lease.token);
  } finally {
    await lease.revoke();
  }
}

async function checkFollowUp(request: SpawnRequest, deps: Pick<IntakeDeps, 'forges'>, token: string | undefined): Promise<FollowUpTarget> {
  const number = request.follow_up!.pull_request;
  if (!deps.forges || !token) {
    throw new InvalidRequestError(
      'field "follow_up": this fleet cannot read GitHub here (no GitHub client or no token), so it cannot continue a pull request',
      'follow_up',
    );
  }
  let pr: PullRequest;
  try {
    pr = await deps.forges.forToken(token).getPullRequest(request.repo, number);
  } catch (error) {
    if (isErrorNamed(error, 'NotFoundError'))
      throw new InvalidRequestError(`field "follow_up": ${request.repo} has no pull request #${number}`, 'follow_up');
    throw error;
  }
  if (pr.state !== 'open')
    throw new InvalidRequestError(
      `field "follow_up": pull request #${number} of ${request.repo} is ${pr.merged ? 'merged' : 'closed'}`,
      'follow_up',
    );
  if (!pr.headRef.startsWith('fleet/') || pr.headRepo.toLowerCase() !== request.repo.toLowerCase()) {
    throw new InvalidRequestError(
      `field "follow_up": pull request #${number} of ${request.repo} was not made by fleet (its head is ${pr.headRepo}:${pr.headRef})`,
      'follow_up',
    );
  }
  return { pullRequest: number, branch: pr.headRef, baseBranch: pr.baseRef };
}

export type IntakeOutcome = 'enqueued' | 'duplicate' | 'already_final' | 'cancelled';

/** Whether a request id is taken: a spawn job, or a flow (whose root lives on another queue) claimed it. */
export async function requestExists(id: string, deps: Pick<IntakeDeps, 'queue' | 'redis' | 'keys'>): Promise<boolean> {
  const { job, claimed } = await lookUp(deps.redis, id, deps);
  return job || claimed;
}

/**
 * Puts a valid request on the `spawn` queue with jobId = request_id: BullMQ's add is atomic on
 * the id, so any number of bridges and resends make one job. The token is sealed before it
 * touches Redis.
 */
export async function enqueueSpawn(request: SpawnRequest, deps: IntakeDeps, source: SpawnJobData['source']): Promise<IntakeOutcome> {
  const id = request.request_id;
  if (!repoAllowed(request.repo, deps.repoAllow)) throw new InvalidRequestError(repoRefusal(request.repo), 'repo');
  // A flow, or a follow-up (whose pull request is checked first), is looked up before anything is added.
  if (!needsFlow(request) && !request.follow_up) return addWhileLookingUp(request, deps, source);
  const { final, job, claimed, cancelled } = await lookUp(deps.redis, id, deps);
  if (final) return 'already_final';
  if (job || claimed) return 'duplicate';
  if (cancelled) return answerCancelled(request, deps);
  const followUp = request.follow_up ? await resolveFollowUp(request, deps) : undefined;
  const data = jobData(request, deps, source, followUp);
  if (needsFlow(request)) {
    // Several bridges may pass the look-ups above at once; only the one that claims the id adds the flow.
    if ((await deps.redis.set(deps.keys.flowClaim(id), '1', 'EX', FLOW_RETENTION_SECONDS, 'NX')) !== 'OK') return 'duplicate';
    try {
      await deps.flows.add(
        buildRequestFlow(request, data.sealedToken, {
          attempts: deps.attempts,
          keepLogs: deps.keepLogs,
          acceptedAt: data.acceptedAt,
          source,
          followUp,
          traceId: data.traceId,
        }),
      );
    } catch (error) {
      // Nothing was added: free the id so a resend is not taken for a duplicate of nothing.
      await deps.redis.del(deps.keys.flowClaim(id)).catch(() => {});
      throw error;
    }
    return 'enqueued';
  }
  // The look-up above only spares work; two bridges passing it at once still make one job here.
  await deps.queue.add(SPAWN_JOB_NAME, data, spawnJobOptions(id, { attempts: deps.attempts, keepLogs: deps.keepLogs }));
  return 'enqueued';
}

/** The request's job data; its token sealed before it touches Redis. */
function jobData(request: SpawnRequest, deps: IntakeDeps, source: SpawnJobData['source'], followUp?: FollowUpTarget): SpawnJobData {
  const { github_token: token, ...stored } = request;
  return {
    request: stored,
    sealedToken: token ? deps.secrets.seal(token) : null,
    source,
    acceptedAt: Date.now(),
    ...(followUp ? { followUp } : {}),
    ...traceField(),
  };
}

/** The cancel overtook the request (handlers run concurrently, senders reorder): it never starts. */
async function answerCancelled(request: SpawnRequest, deps: IntakeDeps): Promise<'cancelled'> {
  await publishFinal(deps.redis, failureResult(request.request_id, 'cancelled', 'the request was cancelled before a worker took it'), {
    format: request.result_format,
    workerType: WORKER_TYPES[request.agent],
  });
  return 'cancelled';
}

/**
 * A plain request's job is added in the same turn as its look-ups, sent after them on the queue's own connection:
 * Redis answers the look-ups as things stood before the add (the job, the flow claim and the cancel flag share the
 * prefix's slot in a Cluster), and the bridge waits one round trip instead of two (issue 11 item 4). Where the
 * look-ups forbid the job this add made (a final result, a flow with this id, a cancel that came first), it is
 * removed; a worker that took it already meets the same checks before its container starts (processors/spawn.ts).
 */
async function addWhileLookingUp(request: SpawnRequest, deps: IntakeDeps, source: SpawnJobData['source']): Promise<IntakeOutcome> {
  const id = request.request_id;
  const data = jobData(request, deps, source);
  // BullMQ's adapter of the queue's ioredis connection: it hands every command on to that connection.
  const client = (await deps.queue.getBackend().client) as unknown as LookUpClient;
  // Sent now, before the add is.
  const lookups = lookUp(client, id, deps);
  const adding = deps.queue.add(SPAWN_JOB_NAME, data, spawnJobOptions(id, { attempts: deps.attempts, keepLogs: deps.keepLogs }));
  // Both settle before either counts. A failed look-up is thrown; a job the add made meets the processor's checks.
  const [looked, added] = await Promise.allSettled([lookups, adding]);
  if (looked.status === 'rejected') throw looked.reason;
  if (added.status === 'rejected') throw added.reason;
  const { final, job: existed, claimed, cancelled } = looked.value;
  // The job was there before this add, which left it as it was.
  if (existed) return final ? 'already_final' : 'duplicate';
  if (!final && !claimed && !cancelled) return 'enqueued';
  // 0 when a worker has it already: the processor then finds what the look-ups found.
  await deps.queue.remove(id);
  if (final) return 'already_final';
  if (claimed) return 'duplicate';
  return answerCancelled(request, deps);
}

type LookUpClient = Pick<Redis, 'get' | 'exists'>;

/**
 * What Redis holds of a request: its final result, its spawn job, a flow's claim on its id, its cancel flag.
 * Independent look-ups, sent together in this turn (before whatever the caller sends next): one round trip. The
 * job's hash is asked whether it exists, not read (getJob would read and parse it whole).
 */
async function lookUp(client: LookUpClient, id: string, deps: Pick<IntakeDeps, 'queue' | 'keys'>) {
  const [final, job, claimed, cancelled] = await Promise.all([
    readResult(client, id),
    client.exists(deps.queue.toKey(id)),
    client.exists(deps.keys.flowClaim(id)),
    client.exists(deps.keys.cancelled(id)),
  ]);
  return { final, job: job === 1, claimed: claimed === 1, cancelled: cancelled === 1 };
}
