import { createPrivateKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { hostname, totalmem } from 'node:os';
import { parseCiRequired, type CiRequired } from './flow/ci.ts';
import { join, resolve } from 'node:path';
import { z } from 'zod';
import { parseModelMap, type ModelMap } from './model-map.ts';
import { parseRepoAllow, repoAllowProblem } from './repo-allow.ts';
import { parseWarmRepos, warmReposProblem, type WarmRepo } from './warm-repos.ts';
import { DEFAULT_PRICES, parsePriceTable, STREAM_FORMATS, type AgentStreamSettings } from './agent-stream/index.ts';
import { MAX_COST_USD_LIMIT } from './protocol.ts';
import { LOG_FORMATS, type LogFormat } from './logger.ts';
import { DEFAULT_EGRESS_ALLOW, parseEgressList } from './egress/allowlist.ts';
import { clusterPrefixProblem, redisTargetFromEnv, RedisSettingError, type RedisTarget } from './redis-connection.ts';

/** The roles one fleet process can run; `fleet start` runs all of them by default. */
export const ROLES = ['bridge', 'spawn', 'review', 'merge', 'board', 'webhook'] as const;
export type Role = (typeof ROLES)[number];

const GIB = 1024 ** 3;

/** A host id: it goes into container labels, volume names and Redis keys. */
export const HOST_ID_PATTERN = /^[A-Za-z0-9._-]{1,64}$/;

/** Docker-style memory size: `4g`, `512m`, `2048k`, or plain bytes. */
export function parseMemory(text: string): number {
  const match = /^(\d+(?:\.\d+)?)\s*([bkmg]?)i?b?$/i.exec(text.trim());
  if (!match) throw new Error(`"${text}" is not a memory size (examples: 4g, 512m)`);
  const units: Record<string, number> = { '': 1, b: 1, k: 1024, m: 1024 ** 2, g: GIB };
  return Math.floor(Number(match[1]) * units[match[2]!.toLowerCase()]!);
}

/** Durations are seconds in the environment (operators think in seconds), milliseconds inside. */
const seconds = (fallback: number) =>
  z.coerce
    .number()
    .positive()
    .default(fallback)
    .transform((s) => Math.round(s * 1000));

const optionalString = z
  .string()
  .optional()
  .transform((v) => (v === undefined || v.trim() === '' ? undefined : v));

const booleanFlag = (fallback: boolean) =>
  z
    .enum(['1', '0', 'true', 'false', 'yes', 'no', 'on', 'off'])
    .optional()
    .transform((v) => (v === undefined ? fallback : ['1', 'true', 'yes', 'on'].includes(v)));

/** A Docker-style size (`4g`, `512m`) in bytes; a bad one is an issue naming its setting. */
/** A comma-separated egress allowlist (presets and hosts); a bad entry is an issue naming it. */
const egressList = (fallback: string) =>
  z
    .string()
    .default(fallback)
    .transform((v, ctx) => {
      try {
        return parseEgressList(v);
      } catch (error) {
        ctx.addIssue({ code: 'custom', message: (error as Error).message });
        return z.NEVER;
      }
    });

const memorySize = (fallback: string) =>
  z
    .string()
    .default(fallback)
    .transform((v, ctx) => {
      try {
        return parseMemory(v);
      } catch (error) {
        ctx.addIssue({ code: 'custom', message: (error as Error).message });
        return z.NEVER;
      }
    });

/**
 * Every setting, read from the environment. Each key is named once, with its default and unit;
 * the names are the environment variables themselves so an error message names what to fix.
 */
const envSchema = z
  .object({
    REDIS_URL: optionalString,
    FLEET_PREFIX: z
      .string()
      .regex(/^[A-Za-z0-9_{}.-]+$/, 'use letters, digits, _ . - and {} (for a Redis Cluster hash tag)')
      .default('fleet'),
    FLEET_DATA_DIR: z.string().min(1).default('./.fleet'),
    FLEET_REDIS_PORT: z.coerce.number().int().min(1).max(65535).default(6379),
    FLEET_HOST_ID: z.string().regex(HOST_ID_PATTERN, 'use 1-64 of [A-Za-z0-9._-]').optional(),
    FLEET_HOST_CONCURRENCY: z.coerce.number().int().min(1).max(1024).optional(),
    FLEET_GLOBAL_CONCURRENCY: z.coerce.number().int().min(0).optional(),
    FLEET_WORKER_IMAGE: z.string().min(1).default('coding-worker:latest'),
    FLEET_RUNTIME: z
      .string()
      .regex(/^[A-Za-z0-9._-]+$/)
      .default('sysbox-runc'),
    FLEET_WORKER_MEMORY: memorySize('4g'),
    FLEET_WORKER_CPUS: z.coerce.number().positive().max(1024).optional(),
    FLEET_WORKER_PIDS: z.coerce.number().int().min(16).default(4096),
    FLEET_WORKER_LOG_MAX: memorySize('64m').refine((bytes) => bytes >= 2 * 1024 ** 2, 'must be at least 2m'),
    FLEET_DOCKER_NETWORK: optionalString,
    FLEET_DOCKER_HOST: optionalString,
    FLEET_DIND: z.enum(['runtime', 'caps', 'off']).default('runtime'),
    FLEET_DIND_CACHE: booleanFlag(false),
    FLEET_DIND_CACHE_MAX: memorySize('20g'),
    // Warm pool (src/warm-pool.ts): started workers waiting for a job, beyond the cap.
    FLEET_WARM_POOL: z.coerce.number().int().min(0).max(64).optional(),
    FLEET_WARM_MAX_IDLE: seconds(1800),
    FLEET_WARM_REPOS: optionalString.superRefine((v, ctx) => {
      const problem = v === undefined ? null : warmReposProblem(v);
      if (problem) ctx.addIssue({ code: 'custom', message: problem });
    }),
    FLEET_GIT_BASE_URL: z.url().default('https://github.com'),
    // The host's git mirror cache (src/git-mirror.ts).
    FLEET_GIT_CACHE: booleanFlag(true),
    FLEET_GIT_CACHE_DIR: optionalString,
    FLEET_GIT_CACHE_MAX: memorySize('20g'),
    FLEET_DRAIN_TIMEOUT: seconds(300),
    FLEET_LOCK_DURATION: seconds(30),
    FLEET_STALLED_INTERVAL: seconds(30),
    FLEET_SPAWN_ATTEMPTS: z.coerce.number().int().min(1).max(20).default(3),
    FLEET_SECRET_KEY: optionalString.refine((v) => v === undefined || v.length >= 32, {
      message: 'must be at least 32 characters (a passphrase or 64 hex characters)',
    }),
    FLEET_GITHUB_TOKEN: optionalString,
    FLEET_REPO_ALLOW: optionalString.superRefine((v, ctx) => {
      const problem = v === undefined ? null : repoAllowProblem(v);
      if (problem) ctx.addIssue({ code: 'custom', message: problem });
    }),
    FLEET_GITHUB_API_URL: z.url().default('https://api.github.com'),
    FLEET_REVIEWER: z.enum(['llm', 'agent']).default('llm'),
    FLEET_REVIEWER_GITHUB_TOKEN: optionalString,
    // The GitHub App (issue 12): per-job installation tokens, scoped to one repository (src/github/app-auth.ts).
    FLEET_GITHUB_APP_ID: optionalString.pipe(
      z
        .string()
        .regex(/^[0-9]+$/, 'must be the numeric App ID')
        .optional(),
    ),
    FLEET_GITHUB_APP_PRIVATE_KEY: optionalString,
    FLEET_GITHUB_APP_PRIVATE_KEY_FILE: optionalString,
    FLEET_GITHUB_APP_INSTALLATION_ID: z.coerce.number().int().min(1).optional(),
    FLEET_GITHUB_AUTH: z.enum(['auto', 'app']).default('auto'),
    FLEET_LLM_BASE_URL: z.url().default('https://api.openai.com/v1'),
    FLEET_LLM_API_KEY: optionalString,
    FLEET_LLM_MODEL: z.string().min(1).default('gpt-4o-mini'),
    FLEET_LLM_MAX_DIFF_CHARS: z.coerce.number().int().min(1000).default(120_000),
    FLEET_LLM_MAX_CHUNKS: z.coerce.number().int().min(1).max(100).default(8),
    FLEET_MERGE_CONFLICT_ROUNDS: z.coerce.number().int().min(0).max(5).default(2),
    FLEET_CI_REQUIRED: optionalString.transform((v, ctx) => {
      try {
        return parseCiRequired(v ?? 'auto');
      } catch (error) {
        ctx.addIssue({ code: 'custom', message: (error as Error).message });
        return z.NEVER;
      }
    }),
    FLEET_CI_TIMEOUT: z.coerce.number().int().min(1).max(1440).default(60),
    FLEET_CI_POLL_MS: z.coerce.number().int().min(50).max(600_000).default(10_000),
    FLEET_AGENT_CMD: optionalString,
    // The agent's stream: usage ledger and budgets (src/agent-stream/).
    FLEET_AGENT_CMD_STREAM: z.enum([...STREAM_FORMATS, 'none']).default('none'),
    FLEET_MAX_COST_USD: z.coerce.number().positive().max(MAX_COST_USD_LIMIT).optional(),
    FLEET_MODEL_PRICES: optionalString.transform((v, ctx) => {
      if (v === undefined) return undefined;
      try {
        return parsePriceTable(v);
      } catch (error) {
        ctx.addIssue({ code: 'custom', message: (error as Error).message });
        return z.NEVER;
      }
    }),
    FACTORY_API_KEY: optionalString,
    ANTHROPIC_API_KEY: optionalString,
    OPENAI_API_KEY: optionalString,
    FLEET_ANTHROPIC_BASE_URL: optionalString.pipe(z.url().optional()),
    FLEET_OPENAI_BASE_URL: optionalString.pipe(z.url().optional()),
    FLEET_DROID_MODEL_PROVIDER: z.enum(['anthropic', 'openai', 'generic-chat-completion-api']).optional(),
    FLEET_DROID_MODEL_BASE_URL: optionalString.pipe(z.url().optional()),
    FLEET_DROID_MODEL_API_KEY: optionalString,
    FLEET_DROID_MODEL_MAX_OUTPUT_TOKENS: z.coerce.number().int().min(256).max(1_000_000).default(16384),
    FLEET_MODEL_MAP: optionalString.transform((v, ctx) => {
      if (v === undefined) return undefined;
      try {
        return parseModelMap(v);
      } catch (error) {
        ctx.addIssue({ code: 'custom', message: (error as Error).message });
        return z.NEVER;
      }
    }),
    FLEET_AGENT_MAX_RETRIES: z.coerce.number().int().min(0).max(20).optional(),
    FLEET_BOARD_PORT: z.coerce.number().int().min(0).max(65535).default(3000),
    FLEET_BOARD_HOST: optionalString,
    FLEET_BOARD_USER: optionalString,
    FLEET_BOARD_PASSWORD: optionalString,
    FLEET_BOARD_READONLY_USER: optionalString,
    FLEET_BOARD_READONLY_PASSWORD: optionalString,
    FLEET_LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
    FLEET_JOB_LOG_LINES: z.coerce.number().int().min(10).default(2000),
    // Terminal logs (issue 13): pretty on a TTY, JSON otherwise.
    FLEET_LOG_FORMAT: z.enum(LOG_FORMATS).default('auto'),
    // GitHub webhooks (issue 13): the `webhook` role.
    FLEET_WEBHOOK_SECRET: optionalString.refine((v) => v === undefined || v.length >= 16, {
      message: 'must be at least 16 characters (the secret set on the GitHub webhook)',
    }),
    FLEET_TRIGGER_LABEL: z.string().trim().min(1).max(50).default('fleet'),
    FLEET_TRIGGER_WORD: z
      .string()
      .regex(/^\S{1,39}$/, 'must be one word of 1-39 characters without spaces, e.g. @fleet')
      .default('@fleet'),
    // Sandbox egress (src/egress/): workers on network none, reaching out only through the host's proxy.
    FLEET_EGRESS: z.enum(['proxy', 'open']).default('proxy'),
    FLEET_EGRESS_ALLOW: egressList(DEFAULT_EGRESS_ALLOW),
    FLEET_EGRESS_REQUEST_ALLOW: egressList(''),
    FLEET_EGRESS_METHODS: z.enum(['all', 'read']).default('all'),
    // Redis topology (issue 15): one of REDIS_URL, REDIS_SENTINELS, REDIS_CLUSTER_NODES; see src/redis-connection.ts.
    REDIS_SENTINELS: optionalString,
    REDIS_SENTINEL_NAME: optionalString,
    REDIS_SENTINEL_PASSWORD: optionalString,
    REDIS_CLUSTER_NODES: optionalString,
    REDIS_USERNAME: optionalString,
    REDIS_PASSWORD: optionalString,
    REDIS_TLS: booleanFlag(false),
    REDIS_TLS_CA_FILE: optionalString,
    // OpenTelemetry (src/tracing.ts), under the SDK's own names; no endpoint: no SDK, no spans, no cost.
    OTEL_EXPORTER_OTLP_ENDPOINT: optionalString.pipe(z.url().optional()),
    OTEL_SERVICE_NAME: z.string().min(1).default('fleet'),
    OTEL_BSP_SCHEDULE_DELAY: z.coerce.number().int().min(0).max(600_000).default(5000),
  })
  .superRefine((env, ctx) => {
    // Redis topology: a combination that cannot work stops start-up, naming the variable.
    try {
      redisTargetFromEnv(env);
      if (env.REDIS_CLUSTER_NODES) {
        const problem = clusterPrefixProblem(env.FLEET_PREFIX);
        if (problem) ctx.addIssue({ code: 'custom', path: ['FLEET_PREFIX'], message: problem });
      }
    } catch (error) {
      if (!(error instanceof RedisSettingError)) throw error;
      ctx.addIssue({ code: 'custom', path: [error.variable], message: error.problem });
    }
    const pairs = [
      ['FLEET_BOARD_USER', 'FLEET_BOARD_PASSWORD'],
      ['FLEET_BOARD_READONLY_USER', 'FLEET_BOARD_READONLY_PASSWORD'],
    ] as const;
    for (const [user, password] of pairs) {
      if ((env[user] === undefined) !== (env[password] === undefined)) {
        ctx.addIssue({ code: 'custom', path: [env[user] ? password : user], message: `set ${user} and ${password} together` });
      }
    }
    // droid's custom model: a provider and where it is, or nothing (then droid needs FACTORY_API_KEY).
    const droid = [env.FLEET_DROID_MODEL_PROVIDER, env.FLEET_DROID_MODEL_BASE_URL, env.FLEET_DROID_MODEL_API_KEY];
    if (droid.some((v) => v !== undefined) && droid.some((v) => v === undefined)) {
      const missing = (['FLEET_DROID_MODEL_PROVIDER', 'FLEET_DROID_MODEL_BASE_URL', 'FLEET_DROID_MODEL_API_KEY'] as const).filter(
        (k) => env[k] === undefined,
      );
      ctx.addIssue({
        code: 'custom',
        path: [missing[0]!],
        message: `droid's custom model needs FLEET_DROID_MODEL_PROVIDER, FLEET_DROID_MODEL_BASE_URL and FLEET_DROID_MODEL_API_KEY together; missing: ${missing.join(', ')}`,
      });
    }
    if (env.FLEET_EGRESS === 'proxy' && env.FLEET_DOCKER_NETWORK !== undefined && env.FLEET_DOCKER_NETWORK !== 'none') {
      ctx.addIssue({
        code: 'custom',
        path: ['FLEET_DOCKER_NETWORK'],
        message:
          'FLEET_EGRESS=proxy runs workers on network none (their only way out is the egress proxy); set FLEET_EGRESS=open to use a Docker network',
      });
    }
    // The App: its id and exactly one key source, or none of it.
    const appKeys = [env.FLEET_GITHUB_APP_PRIVATE_KEY, env.FLEET_GITHUB_APP_PRIVATE_KEY_FILE].filter((v) => v !== undefined).length;
    if (appKeys > 1)
      ctx.addIssue({
        code: 'custom',
        path: ['FLEET_GITHUB_APP_PRIVATE_KEY_FILE'],
        message: 'set FLEET_GITHUB_APP_PRIVATE_KEY or FLEET_GITHUB_APP_PRIVATE_KEY_FILE, not both',
      });
    if ((env.FLEET_GITHUB_APP_ID === undefined) !== (appKeys === 0))
      ctx.addIssue({
        code: 'custom',
        path: [env.FLEET_GITHUB_APP_ID === undefined ? 'FLEET_GITHUB_APP_ID' : 'FLEET_GITHUB_APP_PRIVATE_KEY'],
        message: 'a GitHub App needs FLEET_GITHUB_APP_ID and its private key (FLEET_GITHUB_APP_PRIVATE_KEY or _FILE) together',
      });
    if ((env.FLEET_GITHUB_APP_INSTALLATION_ID !== undefined || env.FLEET_GITHUB_AUTH === 'app') && env.FLEET_GITHUB_APP_ID === undefined)
      ctx.addIssue({
        code: 'custom',
        path: ['FLEET_GITHUB_APP_ID'],
        message: 'FLEET_GITHUB_APP_INSTALLATION_ID and FLEET_GITHUB_AUTH=app need a GitHub App (FLEET_GITHUB_APP_ID and its key)',
      });
    // A repository's pool workers are cloned from its mirror: no cache, nothing to clone from.
    if (env.FLEET_WARM_REPOS !== undefined && (!env.FLEET_GIT_CACHE || env.FLEET_GIT_CACHE_MAX === 0))
      ctx.addIssue({
        code: 'custom',
        path: ['FLEET_WARM_REPOS'],
        message:
          "a repository's pool workers are cloned from the host's git mirror; turn FLEET_GIT_CACHE on (and FLEET_GIT_CACHE_MAX above 0)",
      });
    if (env.FLEET_BOARD_READONLY_USER && !env.FLEET_BOARD_USER) {
      ctx.addIssue({ code: 'custom', path: ['FLEET_BOARD_USER'], message: 'a read-only account needs an admin account too' });
    }
  });

export type FleetEnv = z.input<typeof envSchema>;

/** Resolved configuration: the one object every role reads. */
export interface FleetConfig {
  /** `undefined` means embedded: `fleet start` runs its own redis-server. */
  redisUrl: string | undefined;
  /** Where Redis is (URL, Sentinel or Cluster); `undefined` means embedded. redisUrl is set only for a URL. */
  redis: RedisTarget | undefined;
  prefix: string;
  dataDir: string;
  embeddedRedisPort: number;
  hostId: string;
  /** Worker containers this host runs at once. */
  hostConcurrency: number;
  /** Containers the whole fleet runs at once; 0 removes a limit set earlier, undefined leaves it as it is. */
  globalConcurrency: number | undefined;
  worker: {
    image: string;
    runtime: string;
    memoryBytes: number;
    cpus: number | undefined;
    pidsLimit: number;
    /** Disk Docker's own log of one worker container may use (fleet reads the output as it comes). */
    logMaxBytes: number;
    network: string | undefined;
    dind: 'runtime' | 'caps' | 'off';
    /** A named volume per slot at the inner /var/lib/docker, pruned past `dindCacheMaxBytes`. */
    dindCache: boolean;
    dindCacheMaxBytes: number;
  };
  /** Started workers kept waiting for a job (src/warm-pool.ts); size 0: no pool. */
  /**
   * Started workers kept waiting for a job (src/warm-pool.ts); size 0: no generic pool. `repos`: pool workers that
   * come with one repository already cloned from the host's mirror, and serve only jobs of that repository.
   */
  warmPool: { size: number; maxIdleMs: number; repos: WarmRepo[] };
  dockerHost: string | undefined;
  gitBaseUrl: string;
  /** The host's git mirrors, mounted read-only into workers; undefined: off (FLEET_GIT_CACHE=off or max 0). */
  gitCache: { dir: string; maxBytes: number } | undefined;
  /** Milliseconds. */
  drainTimeoutMs: number;
  lockDurationMs: number;
  stalledIntervalMs: number;
  spawnAttempts: number;
  secretKey: string | undefined;
  githubToken: string | undefined;
  /** FLEET_REPO_ALLOW entries; undefined: every repository. */
  repoAllow: string[] | undefined;
  github: {
    apiUrl: string;
    /** A second account's token: GitHub refuses approval of one's own pull request. */
    reviewerToken: string | undefined;
  };
  /** The GitHub App whose installation tokens spawn jobs use (src/github/app-auth.ts); undefined: none. */
  githubApp: { appId: string; privateKey: string; installationId: number | undefined } | undefined;
  /** Which credential a job uses: `auto` (the request's token, else the App, else FLEET_GITHUB_TOKEN) or `app` (always the App). */
  githubAuth: 'auto' | 'app';
  reviewer: {
    kind: 'llm' | 'agent';
    llm: { baseUrl: string; apiKey: string | undefined; model: string; maxDiffChars: number; maxChunks: number };
  };
  /** Follow-up workers a conflicting pull request gets before the merge gives up. */
  mergeConflictRounds: number;
  /** The wait for CI before a merge: which checks, how long at most, and the first gap between looks. */
  ci: { required: CiRequired; timeoutMs: number; pollMs: number };
  agentKeys: { FACTORY_API_KEY?: string; ANTHROPIC_API_KEY?: string; OPENAI_API_KEY?: string };
  /** Where each agent CLI sends its model calls (a gateway, a proxy); each goes to its own agent's workers only. */
  models: {
    /** Claude Code's ANTHROPIC_BASE_URL (Messages API); undefined: Anthropic's. */
    anthropicBaseUrl: string | undefined;
    /** Codex's model provider (Responses API, with `/v1`); undefined: OpenAI's. */
    openaiBaseUrl: string | undefined;
    /** droid's custom model (`customModels` in its settings): without it droid needs FACTORY_API_KEY. */
    droid:
      | { provider: 'anthropic' | 'openai' | 'generic-chat-completion-api'; baseUrl: string; apiKey: string; maxOutputTokens: number }
      | undefined;
    /** Requested model -> model used, per agent (FLEET_MODEL_MAP). */
    map: ModelMap;
    /** Retries the agent CLI makes on a failed model call; undefined: the CLI's own default. */
    maxRetries: number | undefined;
  };
  /** The command `agent: "custom"` workers run (`sh -c` in the workspace); set by the host, never by a request. */
  customAgentCommand: string | undefined;
  /** Reading the agent's own stream: the custom agent's format, the price table, the default cost cap. */
  agentStream: AgentStreamSettings;
  http: {
    port: number;
    /** Where /metrics, /healthz, /readyz and the board listen; loopback unless the board has credentials. */
    host: string;
    admin: { user: string; password: string } | undefined;
    readonly: { user: string; password: string } | undefined;
  };
  logLevel: string;
  /** `auto`: pretty on a terminal, JSON otherwise. */
  logFormat: LogFormat;
  jobLogLines: number;
  /** The `webhook` role: the deliveries' shared secret and what starts a task. */
  webhook: {
    /** Required when the role runs (checked at its start, so other roles run without it). */
    secret: string | undefined;
    /** An issue given this label becomes a request. */
    triggerLabel: string;
    /** A comment starting with this word is an instruction. */
    triggerWord: string;
  };
  /** Sandbox egress: `proxy` (network none, the host's allowlisting proxy and credential broker) or `open` (Docker's network, the token inside). */
  egress: { mode: 'proxy' | 'open'; allow: string[]; requestAllow: string[]; methods: 'all' | 'read' };
  /** OTLP/HTTP trace export; endpoint null: tracing off. */
  tracing: { endpoint: string | null; serviceName: string; scheduleDelayMs: number };
}

/** Raised when the environment holds a bad setting; the message names every bad key. */
export class ConfigError extends Error {
  override name = 'ConfigError';
}

export function defaultHostConcurrency(workerMemoryBytes: number, hostMemoryBytes = totalmem()): number {
  return Math.max(1, Math.floor((hostMemoryBytes - 2 * GIB) / workerMemoryBytes));
}

/**
 * Pool containers the host's memory holds beyond the cap (each may use FLEET_WORKER_MEMORY, as a worker
 * may), at least 1, and no more than the cap: more idle ones than jobs that can start at once only wait.
 */
export function defaultWarmPool(hostConcurrency: number, workerMemoryBytes: number, hostMemoryBytes = totalmem()): number {
  const beyondCap = Math.floor((hostMemoryBytes - 2 * GIB) / workerMemoryBytes) - hostConcurrency;
  return Math.max(1, Math.min(hostConcurrency, beyondCap));
}

export function loadConfig(env: Record<string, string | undefined> = process.env): FleetConfig {
  const parsed = envSchema.safeParse(env);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((issue) => `${issue.path.join('.') || '(env)'}: ${issue.message}`);
    throw new ConfigError(`bad setting${problems.length > 1 ? 's' : ''}: ${problems.join('; ')}`);
  }
  const e = parsed.data;
  const hostConcurrency = e.FLEET_HOST_CONCURRENCY ?? defaultHostConcurrency(e.FLEET_WORKER_MEMORY);
  const admin = e.FLEET_BOARD_USER ? { user: e.FLEET_BOARD_USER, password: e.FLEET_BOARD_PASSWORD! } : undefined;
  const readonly = e.FLEET_BOARD_READONLY_USER
    ? { user: e.FLEET_BOARD_READONLY_USER, password: e.FLEET_BOARD_READONLY_PASSWORD! }
    : undefined;
  return {
    redisUrl: e.REDIS_URL,
    redis: redisTargetFromEnv(e),
    prefix: e.FLEET_PREFIX,
    dataDir: resolve(e.FLEET_DATA_DIR),
    embeddedRedisPort: e.FLEET_REDIS_PORT,
    hostId:
      e.FLEET_HOST_ID ??
      hostname()
        .replace(/[^A-Za-z0-9._-]/g, '-')
        .slice(0, 64),
    hostConcurrency,
    globalConcurrency: e.FLEET_GLOBAL_CONCURRENCY,
    worker: {
      image: e.FLEET_WORKER_IMAGE,
      runtime: e.FLEET_RUNTIME,
      memoryBytes: e.FLEET_WORKER_MEMORY,
      cpus: e.FLEET_WORKER_CPUS,
      pidsLimit: e.FLEET_WORKER_PIDS,
      logMaxBytes: e.FLEET_WORKER_LOG_MAX,
      network: e.FLEET_DOCKER_NETWORK,
      dind: e.FLEET_DIND,
      dindCache: e.FLEET_DIND_CACHE,
      dindCacheMaxBytes: e.FLEET_DIND_CACHE_MAX,
    },
    warmPool: {
      size: e.FLEET_WARM_POOL ?? defaultWarmPool(hostConcurrency, e.FLEET_WORKER_MEMORY),
      maxIdleMs: e.FLEET_WARM_MAX_IDLE,
      repos: e.FLEET_WARM_REPOS === undefined ? [] : parseWarmRepos(e.FLEET_WARM_REPOS),
    },
    dockerHost: e.FLEET_DOCKER_HOST,
    gitBaseUrl: e.FLEET_GIT_BASE_URL.replace(/\/+$/, ''),
    gitCache:
      e.FLEET_GIT_CACHE && e.FLEET_GIT_CACHE_MAX > 0
        ? { dir: resolve(e.FLEET_GIT_CACHE_DIR ?? join(e.FLEET_DATA_DIR, 'git-mirrors')), maxBytes: e.FLEET_GIT_CACHE_MAX }
        : undefined,
    drainTimeoutMs: e.FLEET_DRAIN_TIMEOUT,
    lockDurationMs: e.FLEET_LOCK_DURATION,
    stalledIntervalMs: e.FLEET_STALLED_INTERVAL,
    spawnAttempts: e.FLEET_SPAWN_ATTEMPTS,
    secretKey: e.FLEET_SECRET_KEY,
    githubToken: e.FLEET_GITHUB_TOKEN,
    repoAllow: e.FLEET_REPO_ALLOW === undefined ? undefined : parseRepoAllow(e.FLEET_REPO_ALLOW),
    github: { apiUrl: e.FLEET_GITHUB_API_URL.replace(/\/+$/, ''), reviewerToken: e.FLEET_REVIEWER_GITHUB_TOKEN },
    githubApp: githubAppOf(e),
    githubAuth: e.FLEET_GITHUB_AUTH,
    reviewer: {
      kind: e.FLEET_REVIEWER,
      llm: {
        baseUrl: e.FLEET_LLM_BASE_URL.replace(/\/+$/, ''),
        apiKey: e.FLEET_LLM_API_KEY,
        model: e.FLEET_LLM_MODEL,
        maxDiffChars: e.FLEET_LLM_MAX_DIFF_CHARS,
        maxChunks: e.FLEET_LLM_MAX_CHUNKS,
      },
    },
    mergeConflictRounds: e.FLEET_MERGE_CONFLICT_ROUNDS,
    ci: { required: e.FLEET_CI_REQUIRED, timeoutMs: e.FLEET_CI_TIMEOUT * 60_000, pollMs: e.FLEET_CI_POLL_MS },
    customAgentCommand: e.FLEET_AGENT_CMD,
    agentStream: {
      customFormat: e.FLEET_AGENT_CMD_STREAM === 'none' ? undefined : e.FLEET_AGENT_CMD_STREAM,
      prices: { ...DEFAULT_PRICES, ...e.FLEET_MODEL_PRICES },
      defaultMaxCostUsd: e.FLEET_MAX_COST_USD,
    },
    agentKeys: {
      FACTORY_API_KEY: e.FACTORY_API_KEY,
      ANTHROPIC_API_KEY: e.ANTHROPIC_API_KEY,
      OPENAI_API_KEY: e.OPENAI_API_KEY,
    },
    models: {
      anthropicBaseUrl: e.FLEET_ANTHROPIC_BASE_URL?.replace(/\/+$/, ''),
      openaiBaseUrl: e.FLEET_OPENAI_BASE_URL?.replace(/\/+$/, ''),
      droid:
        e.FLEET_DROID_MODEL_PROVIDER && e.FLEET_DROID_MODEL_BASE_URL && e.FLEET_DROID_MODEL_API_KEY
          ? {
              provider: e.FLEET_DROID_MODEL_PROVIDER,
              baseUrl: e.FLEET_DROID_MODEL_BASE_URL.replace(/\/+$/, ''),
              apiKey: e.FLEET_DROID_MODEL_API_KEY,
              maxOutputTokens: e.FLEET_DROID_MODEL_MAX_OUTPUT_TOKENS,
            }
          : undefined,
      map: e.FLEET_MODEL_MAP ?? {},
      maxRetries: e.FLEET_AGENT_MAX_RETRIES,
    },
    http: {
      port: e.FLEET_BOARD_PORT,
      host: e.FLEET_BOARD_HOST ?? (admin ? '0.0.0.0' : '127.0.0.1'),
      admin,
      readonly,
    },
    logLevel: e.FLEET_LOG_LEVEL,
    logFormat: e.FLEET_LOG_FORMAT,
    jobLogLines: e.FLEET_JOB_LOG_LINES,
    webhook: { secret: e.FLEET_WEBHOOK_SECRET, triggerLabel: e.FLEET_TRIGGER_LABEL, triggerWord: e.FLEET_TRIGGER_WORD },
    egress: {
      mode: e.FLEET_EGRESS,
      allow: e.FLEET_EGRESS_ALLOW,
      requestAllow: e.FLEET_EGRESS_REQUEST_ALLOW,
      methods: e.FLEET_EGRESS_METHODS,
    },
    tracing: {
      endpoint: e.OTEL_EXPORTER_OTLP_ENDPOINT ?? null,
      serviceName: e.OTEL_SERVICE_NAME,
      scheduleDelayMs: e.OTEL_BSP_SCHEDULE_DELAY,
    },
  };
}

/** The App's settings, its key read (from the _FILE path) and checked to be a private key, or undefined. */
function githubAppOf(e: z.output<typeof envSchema>): FleetConfig['githubApp'] {
  if (e.FLEET_GITHUB_APP_ID === undefined) return undefined;
  const source = e.FLEET_GITHUB_APP_PRIVATE_KEY_FILE === undefined ? 'FLEET_GITHUB_APP_PRIVATE_KEY' : 'FLEET_GITHUB_APP_PRIVATE_KEY_FILE';
  let privateKey: string;
  try {
    // Environments often carry a PEM on one line with literal "\n".
    privateKey =
      e.FLEET_GITHUB_APP_PRIVATE_KEY_FILE === undefined
        ? e.FLEET_GITHUB_APP_PRIVATE_KEY!.replace(/\\n/g, '\n')
        : readFileSync(e.FLEET_GITHUB_APP_PRIVATE_KEY_FILE, 'utf8');
    createPrivateKey(privateKey);
  } catch (error) {
    throw new ConfigError(`bad setting: ${source}: not a readable PEM private key (${(error as Error).message.split('\n')[0]})`);
  }
  return { appId: e.FLEET_GITHUB_APP_ID, privateKey, installationId: e.FLEET_GITHUB_APP_INSTALLATION_ID };
}

/** The settings `fleet start --help` lists, so the help text cannot drift from the schema. */
export const SETTINGS = Object.keys(envSchema.shape ?? {}) as string[];
