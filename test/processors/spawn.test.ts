import type { Job } from 'bullmq';
import { describe, expect, it } from 'vitest';
import { processSpawn, type SpawnDeps } from '../../processors/spawn.ts';
import { SPAWN_JOB_NAME, spawnJobOptions, type SpawnJobData, type SpawnJobResult, type StoredRequest } from '../../queues/spawn.ts';
import { DiskFullError, DockerUnavailableError, type HostFaultError, SpawnError } from '../../src/errors.ts';
import { GitHubAppError } from '../../src/github/app-auth.ts';
import { failureResult, publishFinal, readResult } from '../../src/results.ts';
import { createSecretBox } from '../../src/secrets.ts';
import { FakeGitHub, newSha } from '../support/fakes/forge.ts';
import { completedEvent, eventLine, failedEvent, FakeRuntime, ManualTimers, type ContainerScript } from '../support/fakes/runtime.ts';
import { NOW, secrets, silentLogger, uid, useLab, WORKER_TOKEN } from './support.ts';

const lab = useLab();

function storedRequest(overrides: Partial<StoredRequest> = {}): StoredRequest {
  return {
    request_id: uid('req'),
    repo: 'acme/widgets',
    task_content: 'Add a README',
    task_title: 'Add README',
    model: 'claude-sonnet-4-5-20250929',
    agents_content: null,
    timeout_seconds: 60,
    agent: 'claude',
    result_format: 'v2',
    ...overrides,
  };
}

/** Adds a spawn job as the bridge does (job id = request id) and takes it as a worker would. */
async function addSpawn(request: StoredRequest, data: Partial<SpawnJobData> = {}, attempts = 3) {
  const jobData: SpawnJobData = { request, sealedToken: secrets.seal(WORKER_TOKEN), source: 'api', acceptedAt: NOW, ...data };
  await lab.bench.queues.spawn.add(SPAWN_JOB_NAME, jobData, spawnJobOptions(request.request_id, { attempts, keepLogs: 100 }));
  return lab.bench.take<SpawnJobData, SpawnJobResult>('spawn', request.request_id);
}

function spawnDeps(runtime: FakeRuntime, extra: Partial<SpawnDeps> & { repoAllow?: string[] } = {}): SpawnDeps {
  const { repoAllow, ...rest } = extra;
  return {
    runtime,
    redis: lab.bench.redis,
    logger: silentLogger,
    secrets,
    keys: lab.bench.keys,
    config: {
      hostId: 'unit-host',
      prefix: lab.bench.prefix,
      gitBaseUrl: 'https://github.test',
      worker: {
        image: 'coding-worker:test',
        runtime: 'runc',
        memoryBytes: 256 * 1024 ** 2,
        cpus: undefined,
        pidsLimit: 100,
        logMaxBytes: 1024 ** 2,
        network: 'none',
        dind: 'off',
        dindCache: false,
        dindCacheMaxBytes: 0,
      },
      agentKeys: {},
      githubToken: undefined,
      repoAllow,
      customAgentCommand: undefined,
      agentStream: { customFormat: undefined, prices: {}, defaultMaxCostUsd: undefined },
      models: { anthropicBaseUrl: undefined, openaiBaseUrl: undefined, droid: undefined, map: {}, maxRetries: undefined },
      egress: { mode: 'open', allow: [], requestAllow: [], methods: 'all' },
    },
    now: () => new Date(NOW),
    ...rest,
  };
}

/** Runs the processor on a taken job and settles it as BullMQ would. */
function run(taken: { job: Job<SpawnJobData, SpawnJobResult>; token: string }, deps: SpawnDeps, signal?: AbortSignal) {
  return lab.bench.settle(taken.job, taken.token, processSpawn(taken.job, deps, { token: taken.token, signal }));
}

/** The one result of a request, read back from Redis and from the channel; fails on a second one. */
async function oneResult(id: string): Promise<Record<string, unknown>> {
  await lab.recorder.fence();
  const published = lab.recorder.results(id);
  expect(published).toHaveLength(1);
  expect(await readResult(lab.bench.redis, id)).toEqual(published[0]);
  return published[0]!;
}

const script = (s: ContainerScript) => new FakeRuntime(() => s);

describe('processSpawn', () => {
  it('success: events pass through in order, one result, the container removed, logs redacted', async () => {
    const request = storedRequest();
    const runtime = script({
      lines: [
        eventLine({ event_type: 'started', repo: request.repo, task_summary: 'README' }),
        eventLine({ event_type: 'progress', stage: 'edit', message: 'writing', progress_pct: 40 }),
        `cloned with ${WORKER_TOKEN}`,
        completedEvent({ commit_sha: 'f00d', branch: 'main', files_changed: ['README.md'], summary: 'Added README.md' }),
      ],
    });
    const taken = await addSpawn(request);
    const settled = await run(taken, spawnDeps(runtime));

    expect(settled.value).toMatchObject({
      success: true,
      exit_code: 0,
      commit_sha: 'f00d',
      files_changed: ['README.md'],
      summary: 'Added README.md',
      error_type: null,
    });
    expect(await oneResult(request.request_id)).toMatchObject({ success: true, commit_sha: 'f00d' });
    // The container sent its own terminal event: fleet adds none.
    expect(lab.recorder.events(request.request_id).map((e) => e.event_type)).toEqual(['started', 'progress', 'completed']);
    expect(lab.recorder.events(request.request_id)[0]).toMatchObject({
      worker_type: 'claude_code',
      timestamp: new Date(NOW).toISOString(),
    });
    expect(await lab.bench.state('spawn', request.request_id)).toBe('completed');
    expect((await lab.bench.queues.spawn.getJob(request.request_id))!.progress).toBe(100);
    const [container] = runtime.containers;
    expect(container!.spec.env.GITHUB_TOKEN).toBe(WORKER_TOKEN);
    expect(container!.removed).toBeGreaterThan(0);
    const { logs } = await lab.bench.queues.spawn.getJobLogs(request.request_id);
    expect(logs.join('\n')).toContain('cloned with');
    expect(logs.join('\n')).not.toContain(WORKER_TOKEN);
    expect(lab.recorder.containing(WORKER_TOKEN)).toEqual([]);
  });

  it("task failure: the worker's error type passes through, the job fails for good, no second failed event", async () => {
    const request = storedRequest();
    const taken = await addSpawn(request);
    const settled = await run(taken, spawnDeps(script({ lines: [failedEvent('clone_failed', 'repository not found')], exitCode: 2 })));

    expect(settled.error?.name).toBe('UnrecoverableError');
    expect(await oneResult(request.request_id)).toMatchObject({
      success: false,
      exit_code: 2,
      error_type: 'clone_failed',
      error_message: 'repository not found',
    });
    expect(lab.recorder.events(request.request_id).map((e) => e.event_type)).toEqual(['failed']);
    expect(await lab.bench.state('spawn', request.request_id)).toBe('failed');
  });

  it('crash: a non-zero exit without a failed event is a crash, and fleet sends the failed event', async () => {
    const request = storedRequest();
    const taken = await addSpawn(request);
    const settled = await run(taken, spawnDeps(script({ lines: ['segfault'], exitCode: 139 })));

    expect(settled.error?.name).toBe('UnrecoverableError');
    const result = await oneResult(request.request_id);
    expect(result).toMatchObject({ success: false, exit_code: 139, error_type: 'crash', logs_tail: 'segfault' });
    expect(lab.recorder.events(request.request_id)).toEqual([expect.objectContaining({ event_type: 'failed', error_type: 'crash' })]);
  });

  it('the memory limit killed the worker: oom_killed naming the limit and FLEET_WORKER_MEMORY, not retried', async () => {
    const request = storedRequest();
    const runtime = script({ lines: ['allocating'], oomKilled: true });
    const settled = await run(await addSpawn(request, {}, 3), spawnDeps(runtime));

    expect(settled.error?.name).toBe('UnrecoverableError');
    const result = await oneResult(request.request_id);
    expect(result).toMatchObject({ success: false, exit_code: 137, error_type: 'oom_killed', logs_tail: 'allocating' });
    expect(result.error_message).toMatch(/256 MiB/);
    expect(result.error_message).toMatch(/FLEET_WORKER_MEMORY/);
    expect(lab.recorder.events(request.request_id)).toEqual([expect.objectContaining({ event_type: 'failed', error_type: 'oom_killed' })]);
    expect(await lab.bench.state('spawn', request.request_id)).toBe('failed');
    expect(runtime.containers[0]!.removed).toBeGreaterThan(0);
  });

  it('a plain crash reads the exit state and stays a crash; a clean exit does not read it', async () => {
    const crashed = script({ lines: ['boom'], exitCode: 137 });
    const crashedRequest = storedRequest();
    await run(await addSpawn(crashedRequest), spawnDeps(crashed));
    expect(await oneResult(crashedRequest.request_id)).toMatchObject({ error_type: 'crash', exit_code: 137 });
    expect(crashed.containers[0]!.exitStateReads).toBe(1);

    const clean = script({ lines: [completedEvent()] });
    await run(await addSpawn(storedRequest()), spawnDeps(clean));
    expect(clean.containers[0]!.exitStateReads).toBe(0);
  });

  it('timeout: the run timer kills the container; timeout result with exit_code -1', async () => {
    const request = storedRequest({ timeout_seconds: 7 });
    const runtime = script({ lines: ['working'], hang: true });
    const timers = new ManualTimers();
    const taken = await addSpawn(request);
    const settling = run(taken, spawnDeps(runtime, { timers }));
    await timers.nextArmed();
    expect(timers.armed.map((t) => t.ms)).toEqual([7000]);
    expect(timers.fireAll()).toBe(1);
    const settled = await settling;

    expect(settled.error?.name).toBe('UnrecoverableError');
    expect(await oneResult(request.request_id)).toMatchObject({
      success: false,
      exit_code: -1,
      error_type: 'timeout',
      logs_tail: 'working',
    });
    expect(runtime.containers[0]).toMatchObject({ killed: true });
    expect(runtime.containers[0]!.removed).toBeGreaterThan(0);
  });

  it('a run that ends in time disarms its timer', async () => {
    const timers = new ManualTimers();
    const request = storedRequest();
    await run(await addSpawn(request), spawnDeps(script({ lines: [completedEvent()] }), { timers }));
    expect(timers.armed).toHaveLength(1);
    expect(timers.fireAll()).toBe(0);
  });

  it('cancel before start (the cancel flag): cancelled result, no container', async () => {
    const request = storedRequest();
    const runtime = script({ lines: [completedEvent()] });
    await lab.bench.redis.set(lab.bench.keys.cancelled(request.request_id), '1');
    const settled = await run(await addSpawn(request), spawnDeps(runtime));

    expect(settled.error?.name).toBe('UnrecoverableError');
    expect(await oneResult(request.request_id)).toMatchObject({ error_type: 'cancelled', exit_code: -1 });
    // The flag is read while the container is made (off the dispatch path): made, never started, removed.
    expect(runtime.containers.map((c) => ({ started: c.started, removed: c.removed }))).toEqual([{ started: false, removed: 1 }]);
  });

  it('a plain job whose id a flow claimed (the bridge adds while it looks up): completes unstarted, publishes nothing', async () => {
    const request = storedRequest();
    const runtime = script({ lines: [completedEvent()] });
    await lab.bench.redis.set(lab.bench.keys.flowClaim(request.request_id), '1');
    const settled = await run(await addSpawn(request), spawnDeps(runtime));

    // Completed, not failed: a failed job's listener would answer the sender for the flow.
    expect(settled.error).toBeUndefined();
    expect(settled.value).toMatchObject({ success: false, error_type: 'invalid_request' });
    expect(await lab.bench.state('spawn', request.request_id)).toBe('completed');
    await lab.recorder.fence();
    expect(lab.recorder.results(request.request_id)).toEqual([]);
    expect(lab.recorder.events(request.request_id)).toEqual([]);
    expect(await readResult(lab.bench.redis, request.request_id)).toBeNull();
    expect(runtime.containers.map((c) => ({ started: c.started, removed: c.removed }))).toEqual([{ started: false, removed: 1 }]);
  });

  it('a flow-claimed plain job the GitHub App gives no token: still completes quietly, publishes nothing', async () => {
    const request = storedRequest();
    const runtime = script({ lines: [completedEvent()] });
    await lab.bench.redis.set(lab.bench.keys.flowClaim(request.request_id), '1');
    const github = new FakeGitHub();
    const app = {
      appId: '1',
      mint: async () => {
        throw new GitHubAppError('the App is not installed on acme/widgets');
      },
    };
    const taken = await addSpawn(request, { sealedToken: null });
    const settled = await run(taken, spawnDeps(runtime, { forges: { ...github.forges, app } }));

    expect(settled.error).toBeUndefined();
    await lab.recorder.fence();
    expect(lab.recorder.results(request.request_id)).toEqual([]);
    expect(await readResult(lab.bench.redis, request.request_id)).toBeNull();
    expect(runtime.createCalls).toEqual([]);
  });

  it('a create that fails for a job cancelled before it started: the cancel is its result, not the launch failure', async () => {
    const request = storedRequest();
    await lab.bench.redis.set(lab.bench.keys.cancelled(request.request_id), '1');
    const runtime = new FakeRuntime(() => ({ createError: new SpawnError('image coding-worker:test is missing', false) }));
    const settled = await run(await addSpawn(request), spawnDeps(runtime));

    expect(settled.error?.name).toBe('UnrecoverableError');
    expect(await oneResult(request.request_id)).toMatchObject({ error_type: 'cancelled', exit_code: -1 });
  });

  it('cancel before start (the job signal already aborted): cancelled result, no container', async () => {
    const request = storedRequest();
    const runtime = script({ lines: [completedEvent()] });
    const controller = new AbortController();
    controller.abort('cancelled');
    await run(await addSpawn(request), spawnDeps(runtime), controller.signal);

    expect((await oneResult(request.request_id)).error_message).toMatch(/before its worker started/);
    expect(runtime.createCalls).toEqual([]);
  });

  it('cancel while running: the container is killed and removed; cancelled result', async () => {
    const request = storedRequest();
    const runtime = script({ lines: ['busy'], hang: true });
    const controller = new AbortController();
    const taken = await addSpawn(request);
    const started = runtime.nextStart();
    const settling = run(taken, spawnDeps(runtime), controller.signal);
    await started;
    controller.abort('cancelled');
    const settled = await settling;

    expect(settled.error?.name).toBe('UnrecoverableError');
    expect(await oneResult(request.request_id)).toMatchObject({ error_type: 'cancelled', exit_code: -1 });
    expect(runtime.containers[0]).toMatchObject({ killed: true });
    expect(runtime.containers[0]!.removed).toBeGreaterThan(0);
  });

  it('drain: the container is stopped and the job goes back to wait without spending an attempt; no result', async () => {
    const request = storedRequest();
    const runtime = script({ lines: ['busy'], hang: true });
    const controller = new AbortController();
    const taken = await addSpawn(request);
    const started = runtime.nextStart();
    const settling = run(taken, spawnDeps(runtime), controller.signal);
    await started;
    controller.abort('drain');
    const settled = await settling;

    expect(settled.error?.name).toBe('WaitingError');
    const job = (await lab.bench.queues.spawn.getJob(request.request_id))!;
    expect(await job.getState()).toBe('waiting');
    expect(job.attemptsMade).toBe(0);
    await lab.recorder.fence();
    expect(lab.recorder.results(request.request_id)).toEqual([]);
    expect(await readResult(lab.bench.redis, request.request_id)).toBeNull();
    expect(runtime.containers[0]).toMatchObject({ killed: true });
    expect(runtime.containers[0]!.removed).toBeGreaterThan(0);
  });

  /** Runs a job into a host fault; checks it went back to wait with no attempt spent and no result. */
  async function expectReturnedForHostFault(runtime: FakeRuntime, attempts = 3) {
    const request = storedRequest();
    const faults: HostFaultError[] = [];
    const settled = await run(await addSpawn(request, {}, attempts), spawnDeps(runtime, { onHostFault: (f) => faults.push(f) }));

    expect(settled.error?.name).toBe('WaitingError');
    const job = (await lab.bench.queues.spawn.getJob(request.request_id))!;
    expect(await job.getState()).toBe('waiting');
    expect(job.attemptsMade).toBe(0);
    await lab.recorder.fence();
    expect(lab.recorder.results(request.request_id)).toEqual([]);
    expect(await readResult(lab.bench.redis, request.request_id)).toBeNull();
    return { request, faults, job };
  }

  it('Docker goes away mid-run (the output stream breaks): the job goes back to wait, no attempt spent, the host told', async () => {
    const lost = new DockerUnavailableError('the Docker daemon cannot be reached (ECONNRESET)');
    const runtime = script({ lines: ['working'], streamError: lost });
    // One attempt only: a host fault must not spend it, or the request would fail for good.
    const { faults, job, request } = await expectReturnedForHostFault(runtime, 1);
    expect(faults).toEqual([lost]);
    expect(runtime.containers[0]!.removed).toBeGreaterThan(0);

    // Docker is back: the same job runs again and ends with exactly one result.
    const again = new FakeRuntime(() => ({ lines: [completedEvent()] }));
    await run(await lab.bench.take<SpawnJobData, SpawnJobResult>('spawn', job.id!), spawnDeps(again));
    expect(await oneResult(request.request_id)).toMatchObject({ success: true });
  });

  it('a full disk at create: the job goes back to wait for another host, no attempt spent, the host told', async () => {
    const full = new DiskFullError("Docker's disk on this host is full (no space left on device)");
    const runtime = new FakeRuntime(() => ({ createError: full }));
    const { faults } = await expectReturnedForHostFault(runtime);
    expect(faults.map((f) => f.name)).toEqual(['DiskFullError']);
    expect(runtime.containers).toEqual([]);
  });

  it('a retryable launch failure is thrown for BullMQ to retry; on the last attempt it is a spawn_error result', async () => {
    const request = storedRequest();
    const runtime = new FakeRuntime(() => ({ createError: new Error('connect ECONNREFUSED /var/run/docker.sock') }));
    const first = await run(await addSpawn(request, {}, 2), spawnDeps(runtime));

    expect(first.error).toMatchObject({ name: 'SpawnError', retryable: true });
    expect(first.error!.message).toMatch(/could not run the worker: connect ECONNREFUSED/);
    const job = (await lab.bench.queues.spawn.getJob(request.request_id))!;
    expect(await job.getState()).toBe('delayed'); // BullMQ's backoff before the retry
    await lab.recorder.fence();
    expect(lab.recorder.results(request.request_id)).toEqual([]);

    await job.promote();
    const second = await run(await lab.bench.take<SpawnJobData, SpawnJobResult>('spawn', request.request_id), spawnDeps(runtime));
    expect(second.error?.name).toBe('UnrecoverableError');
    expect(await oneResult(request.request_id)).toMatchObject({ success: false, error_type: 'spawn_error', exit_code: -1 });
    expect(runtime.createCalls).toHaveLength(2);
    expect(await lab.bench.state('spawn', request.request_id)).toBe('failed');
  });

  it('a launch failure a retry cannot fix is final at once', async () => {
    const request = storedRequest();
    const runtime = new FakeRuntime(() => ({
      createError: new SpawnError('image coding-worker:test is missing: run worker-image/build.sh', false),
    }));
    const settled = await run(await addSpawn(request), spawnDeps(runtime));
    expect(settled.error?.name).toBe('UnrecoverableError');
    expect((await oneResult(request.request_id)).error_message).toMatch(/build\.sh/);
  });

  it('an earlier attempt published a result: that result is reported again, nothing runs, nothing is published twice', async () => {
    const request = storedRequest();
    const earlier = { ...failureResult(request.request_id, 'task_failed', 'it failed the first time'), exit_code: 1 };
    await publishFinal(lab.bench.redis, earlier, { format: 'v2', workerType: 'claude_code', now: new Date(NOW) });
    const runtime = script({ lines: [completedEvent()] });
    const settled = await run(await addSpawn(request), spawnDeps(runtime));

    expect(settled.error?.name).toBe('UnrecoverableError');
    expect(settled.error?.message).toMatch(/it failed the first time/);
    expect(await oneResult(request.request_id)).toMatchObject({ error_type: 'task_failed', exit_code: 1 });
    expect(lab.recorder.events(request.request_id).filter((e) => e.event_type === 'failed')).toHaveLength(1);
    expect(runtime.containers.map((c) => ({ started: c.started, removed: c.removed }))).toEqual([{ started: false, removed: 1 }]);
  });

  it('mode "pr": the pushed branch becomes a pull request, reported in the result', async () => {
    const request = storedRequest({ mode: 'pr' });
    const github = new FakeGitHub();
    const sha = newSha();
    // The container "pushes" its branch as it runs, as the worker image does.
    const runtime = new FakeRuntime((spec) => {
      github.pushBranch(spec.env.REPO!, spec.env.FLEET_BRANCH!, sha);
      return { lines: [completedEvent({ commit_sha: sha, branch: spec.env.FLEET_BRANCH!, summary: 'Added README' })] };
    });
    const settled = await run(await addSpawn(request), spawnDeps(runtime, { forges: github.forges }));

    const branch = `fleet/${request.request_id}`;
    expect(runtime.containers[0]!.spec.env.FLEET_BRANCH).toBe(branch);
    expect(settled.value).toMatchObject({ success: true, branch, pull_request: { number: 1, head_sha: sha } });
    expect(github.callsOf('openPullRequest')).toEqual([
      {
        token: WORKER_TOKEN,
        method: 'openPullRequest',
        args: [expect.objectContaining({ repo: request.repo, head: branch, base: 'main', title: 'Add README' })],
      },
    ]);
    expect(await oneResult(request.request_id)).toMatchObject({ success: true, pull_request: { number: 1 } });
  });

  it('mode "pr": a pull request GitHub refuses is pr_failed, keeping the pushed commit', async () => {
    const request = storedRequest({ mode: 'pr' });
    const github = new FakeGitHub();
    // No push reached GitHub: it refuses a PR from a branch it does not have.
    const runtime = script({ lines: [completedEvent({ commit_sha: 'beef', files_changed: ['x.ts'] })] });
    const settled = await run(await addSpawn(request), spawnDeps(runtime, { forges: github.forges }));

    expect(settled.error?.name).toBe('UnrecoverableError');
    const result = await oneResult(request.request_id);
    expect(result).toMatchObject({ success: false, error_type: 'pr_failed', commit_sha: 'beef', files_changed: ['x.ts'], exit_code: 0 });
    expect(result.error_message).toMatch(/pull request could not be opened: .*does not exist/);
  });

  it('a token sealed with another key: secret_mismatch that says the keys differ, no container', async () => {
    const request = storedRequest();
    const runtime = script({ lines: [completedEvent()] });
    const other = createSecretBox('another-fleet-secret-key-of-32-characters');
    await run(await addSpawn(request, { sealedToken: other.seal(WORKER_TOKEN) }), spawnDeps(runtime));

    const result = await oneResult(request.request_id);
    expect(result).toMatchObject({ error_type: 'secret_mismatch' });
    expect(result.error_message).toMatch(/keys differ/);
    expect(runtime.createCalls).toEqual([]);
  });

  it('FLEET_REPO_ALLOW: a repository outside it is refused as invalid_request, no container', async () => {
    const request = storedRequest({ repo: 'evil/repo' });
    const runtime = script({ lines: [completedEvent()] });
    await run(await addSpawn(request), spawnDeps(runtime, { repoAllow: ['acme/*'] }));

    expect((await oneResult(request.request_id)).error_message).toMatch(/"evil\/repo" is not in this fleet's FLEET_REPO_ALLOW/);
    expect(await readResult(lab.bench.redis, request.request_id)).toMatchObject({ error_type: 'invalid_request' });
    expect(runtime.createCalls).toEqual([]);
  });

  it('a flow step reports to its parent: a failure is its return value, nothing is published', async () => {
    const request = storedRequest({ mode: 'pr' });
    const runtime = script({ lines: [failedEvent('task_failed', 'tests do not pass')], exitCode: 1 });
    const flow = { scope: 'api', purpose: 'fix' as const, branch: `fleet/${request.request_id}/api`, baseBranch: 'main' };
    const settled = await run(await addSpawn(request, { flow }), spawnDeps(runtime));

    expect(settled.value).toMatchObject({ success: false, error_type: 'task_failed', branch: flow.branch });
    expect(runtime.containers[0]!.spec.env).toMatchObject({ FLEET_PURPOSE: 'fix', FLEET_SCOPE: 'api', FLEET_BRANCH: flow.branch });
    await lab.recorder.fence();
    expect(lab.recorder.results(request.request_id)).toEqual([]);
    // Its own events carry the scope; no terminal event of the request comes from a step.
    expect(lab.recorder.events(request.request_id)).toEqual([expect.objectContaining({ event_type: 'failed', scope: 'api' })]);
  });
});

/**
 * The container's own `completed` or `failed` event is held back until fleet knows how the request ends:
 * it used to be forwarded the moment it was printed, so a request could end with two terminal events.
 */
describe('processSpawn: one terminal event, built from the result', () => {
  it("pr_failed sends one failed event, not the worker's completed one first", async () => {
    const request = storedRequest({ mode: 'pr' });
    const runtime = script({ lines: [completedEvent({ commit_sha: 'beef' })] });
    await run(await addSpawn(request), spawnDeps(runtime, { forges: new FakeGitHub().forges }));
    expect(await oneResult(request.request_id)).toMatchObject({ error_type: 'pr_failed' });
    expect(lab.recorder.events(request.request_id).map((e) => e.event_type)).toEqual(['failed']);
  });

  it('a worker that prints completed and then exits non-zero ends with one failed event and a crash result', async () => {
    const request = storedRequest();
    await run(await addSpawn(request), spawnDeps(script({ lines: [completedEvent()], exitCode: 1 })));
    expect(await oneResult(request.request_id)).toMatchObject({ success: false, error_type: 'crash' });
    expect(lab.recorder.events(request.request_id).map((e) => e.event_type)).toEqual(['failed']);
  });
});
