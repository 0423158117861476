import { UnrecoverableError, WaitingError, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { SpawnJobData, SpawnJobResult, SpawnObserver } from '../queues/spawn.ts';
import { monitorFor, usageLine } from '../src/agent-stream/index.ts';
import { GitHubAppError, jobUsesApp, type GitHubForges, type InstallationLease } from '../src/github/index.ts';
import { pullRequestBody } from '../src/pr-text.ts';
import { describeBlock, prepareEgressSession, type EgressSession } from '../src/egress/session.ts';
import type { FleetConfig } from '../src/config.ts';
import { buildContainerSpec, buildInputFiles, modelFor, repoGitUrl } from '../src/container-spec.ts';
import type { ContainerRuntime, WorkerContainer } from '../src/container-runtime.ts';
import { type FleetError, type HostFaultError, InvalidRequestError, isHostFault, SpawnError } from '../src/errors.ts';
import { envelope, publishEvent } from '../src/events.ts';
import type { GitMirrorCache } from '../src/git-mirror.ts';
import type { FleetKeys } from '../src/keys.ts';
import { WORKER_TYPES, type ContainerEvent, type PullRequestRef } from '../src/protocol.ts';
import { redactor } from '../src/redact.ts';
import { repoAllowed, repoRefusal } from '../src/repo-allow.ts';
import { scopeBranch } from '../src/flow/ids.ts';
import { failureResult, publishFinal, readResult, resultFromOutcome } from '../src/results.ts';
import { EXIT_GRACE_MS, runWorker, type RunOutcome, type RunTimers } from '../src/run-worker.ts';
import type { SecretBox } from '../src/secrets.ts';
import { currentTraceparent, inSpan, traceStart } from '../src/tracing.ts';
import type { WarmClaim } from '../src/warm-pool.ts';

/** Everything the spawn processor touches; it builds no client of its own. */
export interface SpawnDeps {
  runtime: ContainerRuntime;
  /** A command connection (not a subscriber). */
  redis: Redis;
  logger: Logger;
  secrets: SecretBox;
  keys: FleetKeys;
  config: Pick<
    FleetConfig,
    | 'hostId'
    | 'prefix'
    | 'gitBaseUrl'
    | 'worker'
    | 'agentKeys'
    | 'githubToken'
    | 'repoAllow'
    | 'customAgentCommand'
    | 'agentStream'
    | 'models'
    | 'egress'
  > &
    Partial<Pick<FleetConfig, 'githubAuth'>>;
  /** GitHub clients per token, for opening the pull request of a `mode: "pr"` request. */
  forges?: GitHubForges;
  /** Started containers waiting for a job (src/warm-pool.ts); a miss starts one of the job's own. */
  warmPool?: { take(repo?: string): WarmClaim | undefined; topUp(): void };
  /** A per-slot inner-Docker volume, when the slot cache is on; released when the job ends. */
  dindVolume?: () => Promise<{ volume: string; release(): void }>;
  /** The host's git mirror cache, updated before each clone; null from it means a plain clone. */
  gitMirror?: Pick<GitMirrorCache, 'prepare'>;
  observer?: SpawnObserver;
  now?: () => Date;
  /** The run's timeout timer; tests inject one they fire by hand. @defaultValue real setTimeout */
  timers?: RunTimers;
  /** Runs before the job's result is published or handed to its flow (the App token's revocation). */
  beforeResult?: () => Promise<void>;
  /** Told when this host (not the task) failed a run, so it stops taking jobs until the fault clears. */
  onHostFault?: (fault: HostFaultError) => void;
}

export interface ProcessContext {
  token: string | undefined;
  signal: AbortSignal | undefined;
}

/**
 * One attempt of one spawn request: launch the worker, follow it, publish the one final result.
 * A retryable launch failure with attempts left is thrown for BullMQ to retry; every final outcome
 * publishes its result first and then completes (success) or fails the job (UnrecoverableError).
 *
 * A job that acts as the GitHub App (jobUsesApp) gets its installation token here, when it is claimed, and
 * the token is revoked when the attempt ends, whatever the outcome.
 */
export async function processSpawn(job: Job<SpawnJobData, SpawnJobResult>, deps: SpawnDeps, ctx: ProcessContext): Promise<SpawnJobResult> {
  const { request } = job.data;
  const app = deps.forges?.app;
  const usesApp =
    repoAllowed(request.repo, deps.config.repoAllow) &&
    jobUsesApp({ requestHasToken: job.data.sealedToken !== null, auth: deps.config.githubAuth ?? 'auto', app });
  if (!usesApp) return runSpawn(job, deps, ctx, undefined);
  let lease: InstallationLease;
  try {
    lease = await app!.mint(request.repo);
  } catch (error) {
    const e = error as Error;
    // A job that was not to run (an earlier result, a flow's id, a cancel) ends as the look-ups say, not as this failure.
    const stopped = await lookUpPreemption(job, deps, ctx);
    if (stopped) return finish(job, stopped.result, deps, stopped);
    // Not installed there, or scoped otherwise: no retry helps. GitHub or the network failing: one may.
    return launchFailed(
      job,
      new SpawnError(`the GitHub App gave no token for ${request.repo}: ${e.message}`, !(e instanceof GitHubAppError)),
      deps,
    );
  }
  // Revoked before the result goes out (finish), so an orchestrator that hears back knows the token is dead;
  // and, once, on every other way out (drain, host fault, a throw). A failed revocation does not change the
  // job's outcome: it is logged, and GitHub ends the token within the hour anyway.
  let revoked: Promise<void> | undefined;
  const revoke = () =>
    (revoked ??= lease
      .revoke()
      .catch((error: Error) =>
        deps.logger.error({ request_id: request.request_id, err: error }, "could not revoke the job's GitHub App installation token"),
      ));
  try {
    return await runSpawn(job, { ...deps, beforeResult: revoke }, ctx, lease.token);
  } finally {
    await revoke();
  }
}

async function runSpawn(
  job: Job<SpawnJobData, SpawnJobResult>,
  deps: SpawnDeps,
  ctx: ProcessContext,
  appToken: string | undefined,
): Promise<SpawnJobResult> {
  const { request } = job.data;
  const id = request.request_id;
  const now = deps.now ?? (() => new Date());
  const log = deps.logger.child({ request_id: id, job: job.id, attempt: job.attemptsStarted });
  const workerType = WORKER_TYPES[request.agent];
  const flow = job.data.flow;
  // A flow step's events carry its scope: several workers of one request report on one channel.
  const scopeField = flow ? { scope: flow.scope } : {};
  const emit = (event: ContainerEvent, extra: Record<string, unknown> = {}) =>
    publishEvent(deps.redis, { ...envelope(event, id, workerType, now()), ...scopeField, ...extra });
  const started = Date.now();

  // Asked while the container is made (issue 11: the dispatch path waits on no round trip it can overlap), sent
  // just after the create call rather than before it; the answer comes before the container starts, and a hit
  // removes it unstarted.
  let looked: Promise<Preempted | undefined> | undefined;
  const preempted = () => (looked ??= lookUpPreemption(job, deps, ctx));
  // Known without a round trip: nothing is made for a job whose signal already says cancelled.
  if (ctx.signal?.reason === 'cancelled') {
    const earlier = await preempted();
    return finish(job, earlier!.result, deps, earlier);
  }

  const branch = flow?.branch ?? job.data.followUp?.branch ?? (request.mode === 'pr' ? scopeBranch(id, null) : '');
  const model = modelFor(request, deps.config);
  if (model !== request.model)
    log.info({ requested_model: request.model, model_used: model, agent: request.agent }, 'model mapped by FLEET_MODEL_MAP');
  let token: string;
  try {
    token = appToken ?? openToken(job.data, deps);
  } catch (error) {
    const e = error as FleetError;
    const earlier = await preempted();
    if (earlier) return finish(job, earlier.result, deps, earlier);
    return finish(job, failureResult(id, e.errorType ?? 'spawn_error', e.message), deps);
  }
  const forgetToken = redactor.add(token);
  // A warm container brings its own slot volume: a job takes a slot only when it starts a container itself.
  const warm = deps.warmPool?.take(request.repo);
  const slot = warm ? undefined : await deps.dindVolume?.();
  // Never throws: a mirror that cannot be updated only costs the speed-up (logged and counted there). A warm
  // container brings its own: its repository cloned from the mirror (it fetches what is new), or none (generic,
  // made before its job's repository was known: a plain clone).
  const mirror = warm ? undefined : await deps.gitMirror?.prepare(repoGitUrl(deps.config, request.repo), token);
  // Once the worker runs its agent, the pool may start a container in place of the one this job took (or, after a
  // miss, the one that job's new mirror allows): earlier, that start would compete with this one. Where the pool keeps
  // containers of this job's repository, the host first brings its mirror up to date (or makes it) with this job's
  // token: the replacement is cloned from it.
  let agentRunning = false;
  const agentStarted = () => {
    if (agentRunning) return;
    agentRunning = true;
    if (!warm) return deps.warmPool?.topUp();
    const gitMirror = deps.gitMirror;
    warm.agentStarted(
      warm.refreshesMirror && gitMirror
        ? () => gitMirror.prepare(repoGitUrl(deps.config, request.repo), token).then((lease) => lease?.release())
        : undefined,
    );
  };
  let container: WorkerContainer | undefined;
  let outcome: RunOutcome | undefined;
  let egress: EgressSession | undefined;
  let teardown: Promise<void> = Promise.resolve();
  let exitGraceMs = 0;
  let stopped: Awaited<ReturnType<typeof preempted>>;
  try {
    // FLEET_EGRESS=proxy: this job's own proxy and credential broker; the container gets no token. The proxy
    // starts while the container is made; the container starts once it listens.
    let listening: Promise<void> | undefined;
    if (deps.config.egress.mode === 'proxy') {
      const prepared = prepareEgressSession({
        repo: request.repo,
        token,
        request: request.egress,
        config: deps.config,
        // A warm container's egress directory is bound in it since before this job: the socket goes there.
        dir: warm?.egressDir,
        hooks: {
          onBlocked: (attempt, first) => {
            log.warn({ egress_blocked: attempt }, `egress blocked: ${describeBlock(attempt)}`);
            deps.observer?.egressBlocked?.(attempt);
            if (!first) return; // one event per destination and reason; the result counts the repeats
            emit({ event_type: 'progress', stage: 'egress', message: `blocked ${describeBlock(attempt)}`, progress_pct: null }).catch(
              (error) => log.error({ err: error }, 'could not publish an egress event'),
            );
          },
        },
      });
      egress = prepared;
      listening = prepared.listening;
    }
    const spec = buildContainerSpec({
      request,
      githubToken: token,
      branch,
      baseBranch: flow ? flow.baseBranch : job.data.followUp?.baseBranch,
      purpose: flow?.purpose,
      scope: flow?.scope ?? undefined,
      headSha: flow?.headSha,
      jobId: job.id!,
      lockToken: ctx.token ?? 'none',
      attempt: job.attemptsStarted,
      dindVolume: slot?.volume,
      egress,
      gitMirror: mirror?.path,
      config: deps.config,
      traceparent: currentTraceparent(),
    });
    // The agent's own stream: transcript, progress, usage and budget (src/agent-stream/).
    // Usage is priced and labelled by the model the agent really runs (after FLEET_MODEL_MAP).
    const stream = monitorFor({ ...request, model }, deps.config.agentStream);
    const launchCaught = async (error: unknown): Promise<SpawnJobResult> => {
      await removeContainer(container, deps, log, id);
      container = undefined;
      if (isHostFault(error)) return await returnForHostFault(job, error, deps, ctx, log);
      return await launchFailed(job, error, deps);
    };
    try {
      const files = [...buildInputFiles(request), ...(egress?.files ?? [])];
      const creating = warm
        ? Promise.resolve(warm.claim(spec, files))
        : inSpan('container create', { 'fleet.request_id': id }, () => deps.runtime.create(spec, files));
      // Both settle before either counts, so a failed create never hides an earlier result, and nothing made leaks.
      const [made, early] = await Promise.allSettled([creating, preempted()]);
      if (made.status === 'fulfilled') container = made.value;
      if (early.status === 'rejected') throw early.reason;
      stopped = early.value;
      // What the look-ups found stands over a failed create (nothing was made; the job was not to run anyway).
      if (made.status === 'rejected' && !stopped) throw made.reason;
    } catch (error) {
      return await launchCaught(error);
    }
    // A hit of the look-ups removes the container unstarted (below); the earlier outcome stands.
    if (!stopped) {
      const created = container as WorkerContainer; // the create settled fulfilled, or it threw above
      try {
        await listening;
        log.info({ container: created.id.slice(0, 12), warm: warm !== undefined }, 'worker container created');
        const spanAttributes = { 'fleet.request_id': id, 'fleet.container': created.id.slice(0, 12) };
        outcome = await inSpan('container run', spanAttributes, () =>
          runWorker(traceStart(created), {
            timeoutMs: request.timeout_seconds * 1000,
            signal: ctx.signal,
            logger: log,
            timers: deps.timers,
            stream,
            hooks: {
              onEvent: async (event) => {
                if (event.event_type === 'started')
                  deps.observer?.containerStarted?.({ requestId: id, startLatencyMs: Date.now() - started });
                if (event.event_type === 'progress' && event.stage === 'run') agentStarted();
                if (event.event_type === 'progress' && event.progress_pct !== null) await job.updateProgress(event.progress_pct);
                // A worker's completed or failed event is held back: the outcome is known only at exit (a
                // non-zero exit after `completed` is a crash; a pull request may still fail to open), and
                // the one terminal event is then built from the result (finish). A flow step's events
                // carry its scope and report the step, so they go out as they come, with the usage so far.
                const terminal = event.event_type === 'completed' || event.event_type === 'failed';
                if (!terminal) await emit(event);
                else if (flow) {
                  const usage = stream?.usage();
                  await emit(event, usage ? { usage } : {});
                }
              },
              onLogLines: async (lines) => {
                await job.log(lines.join('\n'));
              },
            },
          }),
        );
        // Exited 0 by its own word and still stopping its inner dockerd: removal lets it finish (a kill would leave
        // the slot's cache volume mid-write).
        if (outcome.stillExiting) exitGraceMs = EXIT_GRACE_MS;
      } catch (error) {
        return await launchCaught(error);
      }
    }
  } finally {
    forgetToken();
    await warm?.returnUnused();
    // The worker has exited, or said with what code it is exiting: its outcome is known, so the result goes out
    // while the container stops and Docker removes it (issue 11: result before teardown). The job, and with it
    // this host's slot of the cap, ends only once the container is gone (awaited below), so the cap holds by
    // Docker's own count; a crash in between leaves a labelled container the reaper removes. The slot's volume, the egress proxy and the mirror's lease are
    // released once nothing uses them.
    teardown = removeContainer(container, deps, log, id, exitGraceMs).finally(async () => {
      slot?.release();
      await egress?.close();
      await mirror?.release();
    });
  }
  if (stopped) {
    await teardown;
    return finish(job, stopped.result, deps, stopped);
  }
  try {
    return await settle(job, outcome!, { id, model, branch, token, started, flow, request, egress }, deps, ctx, log);
  } finally {
    await teardown;
  }
}

/** The run is over (the container may still be on its way out): the job's one outcome, published and settled. */
async function settle(
  job: Job<SpawnJobData, SpawnJobResult>,
  outcome: RunOutcome,
  run: {
    id: string;
    model: string;
    branch: string;
    token: string;
    started: number;
    flow: SpawnJobData['flow'];
    request: SpawnJobData['request'];
    /** The job's egress session, whose blocked attempts go in the result (FLEET_EGRESS=proxy). */
    egress: EgressSession | undefined;
  },
  deps: SpawnDeps,
  ctx: ProcessContext,
  log: Logger,
): Promise<SpawnJobResult> {
  const { id, model, branch, token, started, flow, request, egress } = run;
  if (outcome.stoppedBy === 'drain') {
    // This host is shutting down: the request is not final, so no result. Put the job back
    // for another host without spending one of its attempts.
    log.warn('worker stopped for drain; the job goes back to the queue');
    await job.moveToWait(ctx.token);
    throw new WaitingError('host draining: job returned to the queue');
  }
  const result: SpawnJobResult = resultFromOutcome(
    id,
    { ...outcome, stoppedBy: outcome.stoppedBy },
    { timeoutSeconds: request.timeout_seconds, branch: branch || null, memoryBytes: deps.config.worker.memoryBytes },
  );
  result.model_used = model;
  if (egress) result.egress = egress.report();
  if (outcome.usage) {
    // Counted here, once per container run (flow steps, fixes and reviewers included); the job log shows
    // it on the board for failed jobs too, which have no return value.
    deps.observer?.agentUsage?.(outcome.usage);
    await job.log(usageLine(outcome.usage));
  }
  const opensPullRequest = flow ? flow.purpose === 'task' : request.mode === 'pr';
  if (opensPullRequest && result.success && result.commit_sha) {
    try {
      result.pull_request = await openPullRequest(job.data, branch, result, token, deps);
    } catch (error) {
      const failed: SpawnJobResult = {
        ...failureResult(
          id,
          'pr_failed',
          `the worker pushed ${branch}, but the pull request could not be opened: ${(error as Error).message}`,
          { branch, logsTail: result.logs_tail, exitCode: 0 },
        ),
        commit_sha: result.commit_sha,
        files_changed: result.files_changed,
      };
      return finish(job, failed, deps, { started });
    }
  }
  return finish(job, result, deps, { started });
}

/** Opens (or finds, on a retried job) the pull request of a pushed branch. */
async function openPullRequest(
  data: SpawnJobData,
  branch: string,
  result: SpawnJobResult,
  token: string,
  deps: SpawnDeps,
): Promise<PullRequestRef> {
  if (!deps.forges) throw new Error('this host has no GitHub client configured');
  const forge = deps.forges.forToken(token);
  const { request } = data;
  const base = data.flow?.baseBranch ?? data.followUp?.baseBranch ?? request.base_branch ?? (await forge.getDefaultBranch(request.repo));
  const pr = await forge.openPullRequest({
    repo: request.repo,
    head: branch,
    base,
    title: request.task_title,
    body: pullRequestBody({
      requestId: request.request_id,
      scope: data.flow?.scope ?? null,
      summary: result.summary,
      task: request.task_content,
      files: result.files_changed ?? [],
      egress: result.egress,
    }),
  });
  return { number: pr.number, url: pr.url, head_sha: pr.headSha };
}

async function removeContainer(
  container: WorkerContainer | undefined,
  deps: SpawnDeps,
  log: Logger,
  requestId: string,
  graceMs = 0,
): Promise<void> {
  if (!container) return;
  deps.observer?.containerStopped?.({ requestId });
  await container
    .remove({ graceMs })
    .catch((error) =>
      log.error({ err: error, container: container.id.slice(0, 12) }, 'could not remove the worker container; `fleet reap` will'),
    );
}

function openToken(data: SpawnJobData, deps: SpawnDeps): string {
  // Checked where a token is opened too: a request may have come in through a bridge configured otherwise.
  if (!repoAllowed(data.request.repo, deps.config.repoAllow)) throw new InvalidRequestError(repoRefusal(data.request.repo), 'repo');
  if (data.sealedToken) return deps.secrets.open(data.sealedToken);
  if (deps.config.githubToken) return deps.config.githubToken;
  throw new SpawnError('the request has no github_token and this host has no FLEET_GITHUB_TOKEN: send one or configure the host', false);
}

/**
 * Docker went away or the disk is full: the task did nothing wrong, so, as on drain, the job goes back to
 * the queue without spending an attempt and without a result, for another host or for this one once healthy.
 */
async function returnForHostFault(
  job: Job<SpawnJobData, SpawnJobResult>,
  fault: HostFaultError,
  deps: SpawnDeps,
  ctx: ProcessContext,
  log: Logger,
): Promise<never> {
  log.error({ err: fault }, `host fault (${fault.name}), not the task's: the job goes back to the queue without spending an attempt`);
  deps.onHostFault?.(fault);
  await job.moveToWait(ctx.token);
  throw new WaitingError(`host fault: ${fault.message}`);
}

/** A launch failure: retried while attempts remain and a retry can help, otherwise final. */
async function launchFailed(job: Job<SpawnJobData, SpawnJobResult>, error: unknown, deps: SpawnDeps): Promise<SpawnJobResult> {
  const e =
    error instanceof SpawnError ? error : new SpawnError(`could not run the worker: ${(error as Error).message}`, true, { cause: error });
  const attempts = job.opts.attempts ?? 1;
  if (e.retryable && job.attemptsMade + 1 < attempts) {
    deps.logger.warn(
      { request_id: job.data.request.request_id, err: e },
      `launch failed; BullMQ retries (attempt ${job.attemptsMade + 1} of ${attempts})`,
    );
    throw e;
  }
  return finish(job, failureResult(job.data.request.request_id, 'spawn_error', e.message), deps);
}

/**
 * What stops a job before its container starts, looked up in Redis:
 * - a result already exists: an earlier attempt published it and then lost its host before BullMQ recorded the
 *   job done; that outcome is reported again instead of running the task twice;
 * - a flow claimed the id of this plain job: the bridge adds such a job while it looks that up, and removes it
 *   unless a worker took it first (src/intake.ts);
 * - the request was cancelled.
 */
async function lookUpPreemption(
  job: Job<SpawnJobData, SpawnJobResult>,
  deps: SpawnDeps,
  ctx: ProcessContext,
): Promise<Preempted | undefined> {
  const id = job.data.request.request_id;
  const plain = !job.data.flow;
  const [earlier, cancelled, claimedByFlow] = await Promise.all([
    plain ? readResult(deps.redis, id) : null,
    deps.redis.exists(deps.keys.cancelled(id)),
    plain ? deps.redis.exists(deps.keys.flowClaim(id)) : 0,
  ]);
  if (earlier) return { result: earlier, alreadyPublished: true };
  if (claimedByFlow)
    return {
      result: failureResult(id, 'invalid_request', 'a request with this id runs as a flow; this plain duplicate of it was not run'),
      duplicateOfFlow: true,
    };
  if (cancelled || ctx.signal?.reason === 'cancelled')
    return { result: failureResult(id, 'cancelled', 'the request was cancelled before its worker started') };
  return undefined;
}

/** What the look-ups found that stops a job before its container starts. */
interface Preempted {
  result: SpawnJobResult;
  /** An earlier attempt's result, published already. */
  alreadyPublished?: boolean;
  /** The request is a flow's: this job completes quietly, the flow answers the sender. */
  duplicateOfFlow?: boolean;
}

/** Publishes the final result (once), the terminal event when the container sent none, and settles the job. */
async function finish(
  job: Job<SpawnJobData, SpawnJobResult>,
  result: SpawnJobResult,
  deps: SpawnDeps,
  options: { alreadyPublished?: boolean; duplicateOfFlow?: boolean; started?: number } = {},
): Promise<SpawnJobResult> {
  await deps.beforeResult?.();
  if (options.duplicateOfFlow) {
    // No result and no failure (a failed job's listener would publish one): the flow's result is the request's.
    deps.logger.warn({ request_id: result.request_id, job: job.id }, result.error_message ?? 'duplicate of a flow');
    return result;
  }
  if (job.data.flow) {
    // A flow step reports to its parent job, which publishes the request's one result and event.
    deps.observer?.jobFinished?.({ requestId: result.request_id, result, durationMs: Date.now() - (options.started ?? Date.now()) });
    deps.logger.info(
      {
        request_id: result.request_id,
        scope: job.data.flow.scope,
        purpose: job.data.flow.purpose,
        success: result.success,
        error_type: result.error_type,
      },
      'flow worker finished',
    );
    return result;
  }
  if (!options.alreadyPublished) {
    const { request } = job.data;
    await publishFinal(deps.redis, result, {
      format: request.result_format,
      workerType: WORKER_TYPES[request.agent],
      now: (deps.now ?? (() => new Date()))(),
      traceId: job.data.traceId,
    });
  }
  deps.observer?.jobFinished?.({ requestId: result.request_id, result, durationMs: Date.now() - (options.started ?? Date.now()) });
  deps.logger.info(
    { request_id: result.request_id, success: result.success, error_type: result.error_type, exit_code: result.exit_code },
    'request finished',
  );
  // The board shows the last progress a worker reported; a finished request is at 100 %.
  if (result.success) await job.updateProgress(100);
  if (!result.success) throw new UnrecoverableError(`${result.error_type}: ${result.error_message}`);
  return result;
}
