import { readFileSync } from 'node:fs';
import type { StoredRequest } from '../queues/spawn.ts';
import type { FleetConfig } from './config.ts';
import { LABELS, type ContainerSpec, type InputFile } from './container-runtime.ts';
import { EGRESS_MOUNT } from './egress/session.ts';
import { MIRROR_ENV, MIRROR_MOUNT } from './git-mirror.ts';
import { mapModel } from './model-map.ts';
import type { Agent } from './protocol.ts';

/** The API key each agent needs, and the only one its container gets. */
export const AGENT_KEY: Record<Agent, keyof FleetConfig['agentKeys'] | undefined> = {
  droid: 'FACTORY_API_KEY',
  claude: 'ANTHROPIC_API_KEY',
  codex: 'OPENAI_API_KEY',
  custom: undefined,
};

/**
 * Docker-in-Docker without sysbox, for test machines only: the capabilities the inner dockerd
 * needs and no seccomp/AppArmor confinement — far weaker isolation than sysbox, never a default.
 * The worker image owns the list (worker-image/dind-caps.json, measured against the image).
 */
export const CAPS_DIND = (() => {
  const file = JSON.parse(readFileSync(new URL('../worker-image/dind-caps.json', import.meta.url), 'utf8')) as {
    CapAdd: string[];
    SecurityOpt: string[];
    CgroupnsMode?: string;
    Env?: string[];
  };
  return {
    capAdd: file.CapAdd,
    securityOpt: file.SecurityOpt,
    cgroupnsMode: file.CgroupnsMode,
    env: Object.fromEntries((file.Env ?? []).map((pair) => [pair.slice(0, pair.indexOf('=')), pair.slice(pair.indexOf('=') + 1)])),
  };
})();

export interface SpecInput {
  request: StoredRequest;
  /** The plain GitHub token, handed to the container's entrypoint (never to the agent). */
  githubToken: string;
  /** Branch the worker pushes; '' = the cloned default branch (legacy). */
  branch: string;
  /** Overrides the request's base_branch (a flow step knows its base). */
  baseBranch?: string | null;
  /** Why this worker runs, for flow steps: task, fix (review feedback), rebase (conflict), review. */
  purpose?: 'task' | 'fix' | 'rebase' | 'review';
  scope?: string;
  /** The exact commit a reviewer must see; the worker fails with head_changed if the branch moved. */
  headSha?: string;
  /** W3C trace context of the run's span (src/tracing.ts): agent CLIs that emit OpenTelemetry join the request's trace. */
  traceparent?: string;
  jobId: string;
  lockToken: string;
  attempt: number;
  /** Named volume for the inner /var/lib/docker, when the slot cache is on. */
  dindVolume?: string;
  /**
   * FLEET_EGRESS=proxy: the job's egress session (src/egress/session.ts). The container then runs on network
   * none with the proxy's socket mounted, and gets no GITHUB_TOKEN: the broker adds it outside.
   */
  egress?: { env: Record<string, string>; binds: Record<string, string> };
  /** The host's bare mirror of the repository (src/git-mirror.ts), mounted read-only for the clone. */
  gitMirror?: string;
  config: Pick<FleetConfig, 'hostId' | 'prefix' | 'gitBaseUrl' | 'worker' | 'agentKeys' | 'customAgentCommand' | 'models'>;
}

/** The model the worker's agent uses: the request's, through the host's FLEET_MODEL_MAP. */
export function modelFor(request: Pick<StoredRequest, 'agent' | 'model'>, config: Pick<FleetConfig, 'models'>): string {
  return mapModel(config.models.map, request.agent, request.model);
}

/**
 * Where this agent's CLI sends its model calls, and how often it retries one: only the agent's own
 * endpoint settings go in (a claude worker never learns codex's gateway or droid's model key).
 */
export function agentModelEnv(agent: Agent, models: FleetConfig['models']): Record<string, string> {
  const env: Record<string, string> = {};
  if (agent === 'claude' && models.anthropicBaseUrl) env.ANTHROPIC_BASE_URL = models.anthropicBaseUrl;
  if (agent === 'codex' && models.openaiBaseUrl) env.OPENAI_BASE_URL = models.openaiBaseUrl;
  if (agent === 'droid' && models.droid) {
    env.FLEET_DROID_MODEL_PROVIDER = models.droid.provider;
    env.FLEET_DROID_MODEL_BASE_URL = models.droid.baseUrl;
    env.FLEET_DROID_MODEL_API_KEY = models.droid.apiKey;
    env.FLEET_DROID_MODEL_MAX_OUTPUT_TOKENS = String(models.droid.maxOutputTokens);
  }
  if (agent !== 'custom' && models.maxRetries !== undefined) env.FLEET_AGENT_MAX_RETRIES = String(models.maxRetries);
  return env;
}

/**
 * Files of Docker's log of a worker. Two, so that fleet, still reading a file when Docker rotates it, can
 * finish that one before it moves on to the new one; more would only keep more disk.
 */
export const WORKER_LOG_FILES = 2;

/**
 * Docker allows [a-zA-Z0-9][a-zA-Z0-9_.-]. A flow step's job id holds '~' (src/flow ids), which Docker
 * refuses; '_' is doubled first so that the escape is one-to-one and a request id can never take the
 * container name of another request's step.
 */
export function containerName(prefix: string, jobId: string, attempt: number): string {
  const escaped = jobId.replace(/_/g, '__').replace(/~/g, '_t');
  return `${prefix.replace(/[^A-Za-z0-9_.-]/g, '')}-${escaped}-${attempt}`.replace(/^[^A-Za-z0-9]+/, 'w');
}

/** Where a worker clones `owner/name` from (the host's git mirror fetches the same URL). */
export function repoGitUrl(config: Pick<FleetConfig, 'gitBaseUrl'>, repo: string): string {
  return `${config.gitBaseUrl}/${repo}.git`;
}

/** Pure: the container for one attempt of one request. Unit-tested without Docker. */
export function buildContainerSpec(input: SpecInput): ContainerSpec {
  const { request, config } = input;
  const agent: Agent = request.agent;
  const env: Record<string, string> = {
    FLEET_REQUEST_ID: request.request_id,
    REPO: request.repo,
    FLEET_GIT_URL: repoGitUrl(config, request.repo),
    FLEET_BRANCH: input.branch,
    FLEET_BASE_BRANCH: (input.baseBranch === undefined ? request.base_branch : input.baseBranch) ?? '',
    FLEET_AGENT: agent,
    MODEL: modelFor(request, config),
    TASK_TITLE: request.task_title,
    GITHUB_TOKEN: input.githubToken,
  };
  if (input.egress) {
    delete env.GITHUB_TOKEN;
    Object.assign(env, input.egress.env);
  }
  const keyName = AGENT_KEY[agent];
  const key = keyName ? config.agentKeys[keyName] : undefined;
  if (keyName && key) env[keyName] = key;
  if (agent === 'custom' && config.customAgentCommand) env.FLEET_AGENT_CMD = config.customAgentCommand;
  Object.assign(env, agentModelEnv(agent, config.models));
  if (input.purpose) env.FLEET_PURPOSE = input.purpose;
  if (input.scope) env.FLEET_SCOPE = input.scope;
  if (input.headSha) env.FLEET_HEAD_SHA = input.headSha;
  if (input.traceparent) env.TRACEPARENT = input.traceparent;
  // fleet-worker hands it to the agent CLI; the host also enforces it from the agent's stream.
  if (request.max_turns !== undefined) env.FLEET_MAX_TURNS = String(request.max_turns);
  Object.assign(env, dindEnv(config.worker));
  if (input.gitMirror) env[MIRROR_ENV] = MIRROR_MOUNT;

  return {
    ...sandboxOf(config.worker, input.dindVolume),
    name: containerName(config.prefix, input.jobId, input.attempt),
    env,
    labels: {
      [LABELS.requestId]: request.request_id,
      [LABELS.host]: config.hostId,
      [LABELS.job]: input.jobId,
      [LABELS.lock]: input.lockToken,
      [LABELS.prefix]: config.prefix,
    },
    network: input.egress ? 'none' : config.worker.network,
    binds: { ...(input.egress?.binds ?? {}), ...(input.gitMirror ? { [input.gitMirror]: MIRROR_MOUNT } : {}) },
  };
}

/** The env a worker's Docker-in-Docker mode needs, the same for a job's container and a pool's. */
function dindEnv(worker: FleetConfig['worker']): Record<string, string> {
  if (worker.dind === 'off') return { FLEET_DIND: 'off' };
  return worker.dind === 'caps' ? { ...CAPS_DIND.env } : {};
}

/**
 * What every worker container of this host shares, job or pool: image, runtime, limits, the Docker-in-Docker
 * mode's capabilities, the slot's cache volume and Docker's log bounds. One place, so a pool container can never
 * drift from the job containers it stands in for.
 */
function sandboxOf(
  worker: FleetConfig['worker'],
  dindVolume: string | undefined,
): Omit<ContainerSpec, 'name' | 'env' | 'labels' | 'network' | 'binds'> {
  const caps = worker.dind === 'caps';
  return {
    image: worker.image,
    runtime: worker.runtime,
    memoryBytes: worker.memoryBytes,
    nanoCpus: worker.cpus === undefined ? undefined : Math.round(worker.cpus * 1e9),
    pidsLimit: worker.pidsLimit,
    capAdd: caps ? CAPS_DIND.capAdd : [],
    securityOpt: caps ? CAPS_DIND.securityOpt : [],
    cgroupnsMode: caps ? CAPS_DIND.cgroupnsMode : undefined,
    volumes: dindVolume ? { [dindVolume]: '/var/lib/docker' } : {},
    log: { maxFileBytes: Math.floor(worker.logMaxBytes / WORKER_LOG_FILES), maxFiles: WORKER_LOG_FILES },
  };
}

/** TASK.md, AGENTS.md and the request without its secret, for /fleet/input. */
/** Where a worker finds its input files (PROTOCOL §5); a warm pool container's is a host directory of its own. */
export const INPUT_DIR = '/fleet/input';

export function buildInputFiles(request: StoredRequest): InputFile[] {
  const files: InputFile[] = [
    { path: `${INPUT_DIR}/TASK.md`, content: request.task_content },
    { path: `${INPUT_DIR}/request.json`, content: JSON.stringify(request, null, 2) },
  ];
  if (request.agents_content !== null) files.push({ path: `${INPUT_DIR}/AGENTS.md`, content: request.agents_content });
  return files;
}

/**
 * Pure: an idle container of the warm pool (src/warm-pool.ts). The same image, runtime, limits and Docker-in-Docker
 * mode as a job's, and nothing of any request: no token, key, repository or task in its env or labels. A job hands
 * those over at claim (`FLEET_POOL=1`: fleet-worker waits for them).
 * Under FLEET_EGRESS=proxy it gets `egressDir`: an empty host directory of its own, bound read-only where a
 * job's proxy socket goes, on network none; the job's egress session listens in it at claim.
 */
export function buildPoolSpec(input: {
  name: string;
  instance: string;
  dindVolume?: string;
  egressDir?: string;
  /** The host directory bound read-write at /fleet/input, empty until a job's claim is written there. */
  claimDir: string;
  /**
   * FLEET_WARM_REPOS: the repository it clones while idle, from the host's mirror (bound read-only, as a cold
   * job's). Its name and URL are no secret: the token comes with the claim, for the fetch of what is new.
   */
  repo?: { name: string; url: string; mirror: string };
  config: Pick<FleetConfig, 'hostId' | 'prefix' | 'worker'>;
}): ContainerSpec {
  const { config, repo } = input;
  const binds: Record<string, string> = {};
  if (input.egressDir) binds[input.egressDir] = EGRESS_MOUNT;
  if (repo) binds[repo.mirror] = MIRROR_MOUNT;
  return {
    ...sandboxOf(config.worker, input.dindVolume),
    name: input.name,
    env: {
      FLEET_POOL: '1',
      ...dindEnv(config.worker),
      ...(repo ? { REPO: repo.name, FLEET_GIT_URL: repo.url, [MIRROR_ENV]: MIRROR_MOUNT } : {}),
    },
    labels: { [LABELS.host]: config.hostId, [LABELS.prefix]: config.prefix, [LABELS.pool]: input.instance },
    network: input.egressDir ? 'none' : config.worker.network,
    ...(Object.keys(binds).length ? { binds } : {}),
    writableBinds: { [input.claimDir]: INPUT_DIR },
  };
}
