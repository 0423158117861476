import type { FlowJob } from 'bullmq';
import { KEEP_FLOW_JOBS, QUEUE_NAMES } from '../../queues/common.ts';
import { MERGE_JOB_NAME, REQUEST_JOB_NAME, type MergeJobData, type RequestJobData } from '../../queues/merge.ts';
import { FLOW_STEP_OPTIONS, REVIEW_JOB_NAME, type ReviewJobData, type ScopeContext } from '../../queues/review.ts';
import { SPAWN_JOB_NAME, spawnJobOptions, type FollowUpTarget, type SpawnJobData, type StoredRequest } from '../../queues/spawn.ts';
import type { SpawnRequest } from '../protocol.ts';
import { scopeBranch, stepJobId } from './ids.ts';

/** Requests with parallel tasks or a review run as a flow; a plain request is one spawn job. */
export function needsFlow(request: Pick<SpawnRequest, 'tasks' | 'review'>): boolean {
  return request.tasks !== undefined || request.review === true;
}

/**
 * Pure: the flow of one request. The root (`request`, on the merge queue) runs last and
 * publishes the result; under it each scope is a chain merge → review → spawn, children first,
 * so the worker runs, then the review, then the merge.
 */
export function buildRequestFlow(
  request: SpawnRequest,
  sealedToken: string | null,
  settings: {
    attempts: number;
    keepLogs: number;
    acceptedAt: number;
    source: SpawnJobData['source'];
    followUp?: FollowUpTarget;
    traceId?: string;
  },
): FlowJob {
  const { github_token: _token, tasks, ...stored } = request;
  const scopes = tasks ?? [
    { scope: null, task_content: request.task_content, task_title: request.task_title, agents_content: request.agents_content },
  ];
  const review = Boolean(request.review);
  const merge = Boolean(request.merge);

  const children = scopes.map((t): FlowJob => {
    const scope = t.scope;
    const ctx: ScopeContext = {
      requestId: request.request_id,
      scope,
      repo: request.repo,
      // A follow-up continues its pull request's branch; its PR is found again when the worker pushed.
      branch: settings.followUp?.branch ?? scopeBranch(request.request_id, scope),
      baseBranch: settings.followUp?.baseBranch ?? request.base_branch ?? null,
      sealedToken,
      task: { title: t.task_title ?? request.task_title },
      model: request.model,
      agent: request.agent,
      timeoutSeconds: request.timeout_seconds,
      review,
      merge,
      fixRounds: request.fix_rounds ?? 0,
      resultFormat: request.result_format,
    };
    const spawnRequest: StoredRequest = {
      ...stored,
      task_content: t.task_content,
      task_title: ctx.task.title,
      agents_content: t.agents_content ?? request.agents_content,
      mode: 'pr',
    };
    const spawnData: SpawnJobData = {
      request: spawnRequest,
      sealedToken,
      source: settings.source,
      acceptedAt: settings.acceptedAt,
      flow: { scope, purpose: 'task', branch: ctx.branch, baseBranch: ctx.baseBranch },
      ...(settings.traceId ? { traceId: settings.traceId } : {}),
    };
    let node: FlowJob = {
      name: SPAWN_JOB_NAME,
      queueName: QUEUE_NAMES.spawn,
      data: spawnData,
      opts: { ...spawnJobOptions(stepJobId(request.request_id, scope, 'spawn'), settings), ignoreDependencyOnFailure: true },
    };
    if (review) {
      const data: ReviewJobData = { ctx, state: null };
      node = {
        name: REVIEW_JOB_NAME,
        queueName: QUEUE_NAMES.review,
        data,
        opts: { ...FLOW_STEP_OPTIONS, jobId: stepJobId(request.request_id, scope, 'review') },
        children: [node],
      };
    }
    if (merge) {
      const data: MergeJobData = { kind: 'merge', ctx, state: null };
      node = {
        name: MERGE_JOB_NAME,
        queueName: QUEUE_NAMES.merge,
        data,
        opts: { ...FLOW_STEP_OPTIONS, jobId: stepJobId(request.request_id, scope, 'merge') },
        children: [node],
      };
    }
    return node;
  });

  const root: RequestJobData = {
    kind: 'request',
    request: { ...stored, tasks },
    scopes: scopes.map((s) => s.scope),
    acceptedAt: settings.acceptedAt,
    ...(settings.traceId ? { traceId: settings.traceId } : {}),
  };
  // The root keeps the tasks for the dashboard but never the token: that lives sealed in the steps.
  return {
    name: REQUEST_JOB_NAME,
    queueName: QUEUE_NAMES.merge,
    data: root,
    opts: { jobId: request.request_id, attempts: 3, ...KEEP_FLOW_JOBS },
    children,
  };
}
