import { z } from 'zod';

/**
 * The wire contract with the orchestrator (shared/PROTOCOL.md). The legacy parts are binding:
 * the Python orchestrator builds `SpawnResult(**data)` and raises on any key it does not know.
 */
export const channels = {
  spawn: 'worker:spawn',
  cancel: 'worker:cancel',
  result: (requestId: string) => `worker:result:${requestId}`,
  events: (requestId: string) => `worker:events:${requestId}`,
  allEvents: 'worker:events:all',
  resultKey: (requestId: string) => `fleet:result:${requestId}`,
} as const;

/** How long a late reader can still find a result under `fleet:result:{id}`. */
export const RESULT_TTL_SECONDS = 24 * 60 * 60;
export const MAX_TASK_BYTES = 1024 * 1024;
/** AGENTS.md is guidance, not payload: it is copied into every step of a flow, so it stays small. */
export const MAX_AGENTS_BYTES = 256 * 1024;
/** Every text of one request together (tasks and AGENTS.md): what one message may make fleet store. */
export const MAX_REQUEST_TEXT_BYTES = 4 * 1024 * 1024;
export const MAX_TASKS = 20;
export const LOGS_TAIL_LINES = 200;
/** Bounds of the v2 budgets: a turn cap beyond this, or a cost cap beyond this, is a typo, not a budget. */
export const MAX_TURNS_LIMIT = 10_000;
export const MAX_COST_USD_LIMIT = 10_000;

export const AGENTS = ['droid', 'claude', 'codex', 'custom'] as const;
export type Agent = (typeof AGENTS)[number];

/** BullMQ job ids may not contain ':'; request ids become job ids, channel names and branch names. */
export const REQUEST_ID_PATTERN = /^[A-Za-z0-9._-]{1,128}$/;

/**
 * Why a name cannot be one component of a git branch (`fleet/{request_id}/{scope}`), or null. The
 * characters are already limited to [A-Za-z0-9._-]; these are git's own rules for the rest.
 */
function refComponentProblem(name: string): string | null {
  if (name.startsWith('.')) return 'may not start with "."';
  if (name.endsWith('.')) return 'may not end with "."';
  if (name.includes('..')) return 'may not contain ".."';
  if (name.endsWith('.lock')) return 'may not end with ".lock"';
  return null;
}

/**
 * Why `name` is not a branch name git accepts, or null: the rules of `git check-ref-format --branch`
 * (git-check-ref-format(1)), checked in the order a reader would look, so the reason names the real fault.
 */
export function branchNameProblem(name: string): string | null {
  if (name === '') return 'may not be empty';
  if (name.startsWith('-')) return 'may not start with "-" (git would take it for an option)';
  if (name === 'HEAD') return 'may not be "HEAD"';
  if (/[\u0000-\u001f\u007f]/.test(name)) return 'may not contain control characters';
  if (name.includes(' ')) return 'may not contain spaces';
  const special = /[~^:?*[\\]/.exec(name);
  if (special) return `may not contain "${special[0]}"`;
  if (name.includes('@{')) return 'may not contain "@{"';
  if (name.endsWith('/')) return 'may not end with "/"';
  if (name.endsWith('.')) return 'may not end with "."';
  for (const component of name.split('/')) {
    if (component === '') return 'may not contain "//" or start with "/"';
    const problem = refComponentProblem(component);
    if (problem) return `${problem} in any part between "/"`;
  }
  return null;
}

const refComponent = (schema: z.ZodString) =>
  schema.superRefine((value, ctx) => {
    const problem = refComponentProblem(value);
    if (problem) ctx.addIssue({ code: 'custom', message: `${problem} (it becomes part of a git branch name)` });
  });

const requestIdSchema = refComponent(
  z
    .string({ error: 'must be a string' })
    .min(1, 'must not be empty')
    .max(128, 'must be at most 128 characters')
    .regex(REQUEST_ID_PATTERN, 'may only hold letters, digits, ".", "_" and "-"'),
);

/** GitHub's rules: an owner is letters, digits and single inner hyphens; a name is not "." or "..". */
const repoSchema = z
  .string({ error: 'must be a string like "owner/name"' })
  .regex(/^[A-Za-z0-9-]{1,39}\/[A-Za-z0-9._-]{1,100}$/, 'must be "owner/name" (GitHub owner and repository name, nothing else)')
  .refine((repo) => /^[A-Za-z0-9](?:-?[A-Za-z0-9])*\//.test(repo), 'the owner may not start or end with "-" or hold "--"')
  .refine((repo) => !/\/\.{1,2}$/.test(repo), 'the repository name may not be "." or ".."');

const utf8Bytes = (text: string) => Buffer.byteLength(text, 'utf8');

const taskContentSchema = z
  .string({ error: 'must be a string' })
  .refine((t) => t.trim().length > 0, 'must not be empty')
  .refine((t) => utf8Bytes(t) <= MAX_TASK_BYTES, `must be at most ${MAX_TASK_BYTES} bytes (1 MiB)`);

/** A title becomes a commit subject and a PR title: one line, no control characters (NUL breaks the container env). */
const titleSchema = z
  .string({ error: 'must be a string' })
  .min(1, 'must not be empty')
  .max(200, 'must be at most 200 characters')
  .refine((t) => t.trim().length > 0, 'must not be blank')
  // eslint-disable-next-line no-control-regex
  .refine((t) => !/[\u0000-\u001f\u007f-\u009f\u2028\u2029]/.test(t), 'must be one line without control characters');

const agentsContentSchema = z
  .string({ error: 'must be a string or null' })
  .refine((a) => utf8Bytes(a) <= MAX_AGENTS_BYTES, `must be at most ${MAX_AGENTS_BYTES} bytes (256 KiB)`);

/** Passed to the agent CLI as `--model`: never an option, never a shell word. */
export const MODEL_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._:/-]{0,199}$/;

const scopeSchema = refComponent(
  z
    .string({ error: 'must be a string' })
    .regex(/^[A-Za-z0-9._-]{1,64}$/, 'must be 1-64 of [A-Za-z0-9._-] (it becomes part of a branch name)'),
);

/** An egress allowlist entry a request may name: a preset (checked by src/egress), a host, `*.domain`, each with an optional `:port`. */
export const EGRESS_ENTRY_PATTERN = /^(?:\*\.)?[a-z0-9](?:[a-z0-9-]{0,62})(?:\.[a-z0-9](?:[a-z0-9-]{0,62}))*(?::\d{1,5})?$/i;

/** v2 `egress`: narrows the host's allowlist (FLEET_EGRESS_ALLOW); widening needs the host's FLEET_EGRESS_REQUEST_ALLOW. */
const egressSchema = z.strictObject(
  {
    allow: z
      .array(
        z
          .string({ error: 'must be a string' })
          .max(253, 'must be at most 253 characters')
          .regex(EGRESS_ENTRY_PATTERN, 'must be a preset, a host, *.domain or host:port'),
        { error: 'must be a list of presets and hosts' },
      )
      .max(50, 'must hold at most 50 entries')
      .optional(),
    methods: z.enum(['all', 'read'], { error: 'must be "all" or "read" (GET and HEAD only)' }).optional(),
  },
  { error: 'must be {"allow"?: [...], "methods"?: "all" | "read"}' },
);

const scopedTaskSchema = z.strictObject({
  scope: scopeSchema,
  task_content: taskContentSchema,
  task_title: titleSchema.optional(),
  agents_content: agentsContentSchema.nullable().optional(),
});

/** The spawn request: the eight legacy keys, then the optional v2 keys. Unknown keys are refused. */
export const spawnRequestSchema = z
  .strictObject({
    request_id: requestIdSchema,
    repo: repoSchema,
    github_token: z.string({ error: 'must be a string' }).min(1, 'must not be empty').max(1024).optional(),
    task_content: taskContentSchema,
    task_title: titleSchema.nullish().transform((t) => t ?? 'AI generated changes'),
    model: z
      .string({ error: 'must be a string' })
      .regex(MODEL_PATTERN, 'must be 1-200 of letters, digits and "._:/-", starting with a letter or digit')
      .nullish()
      .transform((m) => m ?? 'claude-sonnet-4-5-20250929'),
    agents_content: agentsContentSchema
      .nullable()
      .optional()
      .transform((a) => a ?? null),
    timeout_seconds: z
      .number({ error: 'must be an integer number of seconds' })
      .int('must be an integer number of seconds')
      .min(1, 'must be at least 1')
      .max(86400, 'must be at most 86400 (24 hours)')
      .nullish()
      .transform((t) => t ?? 600),
    // v2
    agent: z.enum(AGENTS, { error: `must be one of ${AGENTS.join(', ')}` }).default('droid'),
    mode: z.enum(['push', 'pr'], { error: 'must be "push" or "pr"' }).optional(),
    base_branch: z
      .string({ error: 'must be a string' })
      .superRefine((name, ctx) => {
        // git's own rules first, so "-f" or "a b" is refused for what git would say; then fleet's narrower
        // alphabet (the name reaches the worker's environment and its git commands).
        const problem = branchNameProblem(name);
        if (problem) ctx.addIssue({ code: 'custom', message: `is not a branch name git accepts: it ${problem}` });
        else if (!/^[A-Za-z0-9._/-]{1,200}$/.test(name)) ctx.addIssue({ code: 'custom', message: 'must be 1-200 of [A-Za-z0-9._/-]' });
      })
      .optional(),
    review: z.boolean({ error: 'must be true or false' }).optional(),
    follow_up: z
      .strictObject(
        { pull_request: z.number({ error: 'must be a pull request number' }).int('must be a whole number').min(1, 'must be at least 1') },
        { error: 'must be {"pull_request": N}' },
      )
      .optional(),
    merge: z.boolean({ error: 'must be true or false' }).optional(),
    fix_rounds: z.number({ error: 'must be an integer' }).int().min(0).max(5).optional(),
    tasks: z
      .array(scopedTaskSchema, { error: 'must be a list of {scope, task_content}' })
      .min(1, 'must hold at least one task')
      .max(MAX_TASKS, `must hold at most ${MAX_TASKS} tasks`)
      .optional(),
    result_format: z.enum(['legacy', 'v2'], { error: 'must be "legacy" or "v2"' }).default('legacy'),
    max_turns: z
      .number({ error: 'must be an integer number of turns' })
      .int('must be an integer number of turns')
      .min(1, 'must be at least 1')
      .max(MAX_TURNS_LIMIT, `must be at most ${MAX_TURNS_LIMIT}`)
      .optional(),
    max_cost_usd: z
      .number({ error: 'must be a number of US dollars' })
      .positive('must be more than 0')
      .max(MAX_COST_USD_LIMIT, `must be at most ${MAX_COST_USD_LIMIT}`)
      .optional(),
    egress: egressSchema.optional(),
  })
  .superRefine((req, ctx) => {
    if (req.merge && !req.review) ctx.addIssue({ code: 'custom', path: ['merge'], message: 'needs "review": true' });
    if (req.follow_up && req.mode !== 'pr') ctx.addIssue({ code: 'custom', path: ['follow_up'], message: 'needs "mode": "pr"' });
    if (req.follow_up && req.tasks)
      ctx.addIssue({ code: 'custom', path: ['follow_up'], message: 'continues one pull request: it cannot go with "tasks"' });
    if (req.review && req.mode !== 'pr' && !req.tasks) {
      ctx.addIssue({ code: 'custom', path: ['review'], message: 'needs "mode": "pr"' });
    }
    const textBytes = [
      req.task_content,
      req.agents_content,
      ...(req.tasks ?? []).flatMap((t) => [t.task_content, t.agents_content]),
    ].reduce((sum, text) => sum + (typeof text === 'string' ? utf8Bytes(text) : 0), 0);
    if (textBytes > MAX_REQUEST_TEXT_BYTES) {
      ctx.addIssue({
        code: 'custom',
        path: ['tasks'],
        message: `the tasks and AGENTS.md texts together are ${textBytes} bytes; at most ${MAX_REQUEST_TEXT_BYTES} (4 MiB) are accepted`,
      });
    }
    if (req.tasks) {
      const seen = new Set<string>();
      req.tasks.forEach((task, i) => {
        if (seen.has(task.scope)) ctx.addIssue({ code: 'custom', path: ['tasks', i, 'scope'], message: `"${task.scope}" appears twice` });
        seen.add(task.scope);
      });
    }
  });

/** A validated request, defaults applied. */
export type SpawnRequest = z.output<typeof spawnRequestSchema>;
/** What a sender may send. */
export type SpawnRequestInput = z.input<typeof spawnRequestSchema>;

export const cancelRequestSchema = z.strictObject({ request_id: requestIdSchema });

/**
 * Every `error_type` fleet and its worker image can report: the one list. Results, metrics and the
 * error classes use it, and a test checks it against every type the code and the worker image produce.
 */
export const ERROR_TYPES = [
  // the request
  'invalid_request',
  'overloaded',
  'cancelled',
  'timeout',
  // launching and running the worker
  'spawn_error',
  'secret_mismatch',
  'crash',
  // the kernel killed the worker at its memory limit (FLEET_WORKER_MEMORY); not retried
  'oom_killed',
  'task_failed',
  'clone_failed',
  'push_failed',
  'dind_failed',
  // the agent's stream passed max_turns or max_cost_usd: fleet killed the worker before it committed
  'budget_exceeded',
  // pull-request flows
  'no_changes',
  'pr_failed',
  'review_error',
  'review_incomplete',
  'review_rejected',
  'fix_failed',
  'head_changed',
  'merge_conflict',
  'conflict_unresolved',
  // waiting for CI before the merge (processors/merge.ts)
  'ci_failed',
  'ci_timeout',
  'review_required',
  'github_error',
] as const;
export type ErrorType = (typeof ERROR_TYPES)[number];

/** A type a worker reported that fleet does not know stays visible as itself, but is counted as `other`. */
export function isKnownErrorType(type: string): type is ErrorType {
  return (ERROR_TYPES as readonly string[]).includes(type);
}

/** The legacy result: exactly these eleven keys, in this order. */
export interface SpawnResult {
  request_id: string;
  success: boolean;
  exit_code: number;
  output: string;
  commit_sha: string | null;
  branch: string | null;
  files_changed: string[] | null;
  summary: string | null;
  /** One of {@link ERROR_TYPES}, or what a worker container reported (checked when it is counted). */
  error_type: string | null;
  error_message: string | null;
  logs_tail: string | null;
}

export const LEGACY_RESULT_KEYS = [
  'request_id',
  'success',
  'exit_code',
  'output',
  'commit_sha',
  'branch',
  'files_changed',
  'summary',
  'error_type',
  'error_message',
  'logs_tail',
] as const satisfies readonly (keyof SpawnResult)[];

/** A pull request as v2 results report it. */
export interface PullRequestRef {
  number: number;
  url: string;
  head_sha: string;
}

/** A review's verdict as v2 results report it. */
export interface ReviewRecord {
  approved: boolean;
  feedback: string;
  /** The head the verdict is about: the only SHA the merge step may merge. */
  reviewed_sha: string;
  /** APPROVE / REQUEST_CHANGES, or COMMENT when GitHub refused a review of one's own PR. */
  review_event: 'APPROVE' | 'REQUEST_CHANGES' | 'COMMENT';
  self_review_fallback: boolean;
  coverage: { reviewed_bytes: number; total_bytes: number; truncated: boolean };
}

/**
 * What an agent spent, read from its own JSON stream (src/agent-stream/). Token kinds do not overlap:
 * `input_tokens` are the uncached input tokens, `cached_tokens` the cache reads, `cache_write_tokens` the
 * tokens written to the prompt cache. `cost_usd` is what the CLI reported (`cost_source: "agent"`), else the
 * host's price table applied to the tokens (`"price_table"`), else null (a model without a price).
 */
export interface AgentUsage {
  agent: Agent;
  model: string;
  input_tokens: number;
  output_tokens: number;
  cached_tokens: number;
  cache_write_tokens: number;
  /** Model turns (API round trips) the stream showed. */
  turns: number;
  cost_usd: number | null;
  /** `mixed` only in a sum of several workers' usage whose costs came from different sources. */
  cost_source: 'agent' | 'price_table' | 'mixed' | null;
}

/** A connection the egress proxy refused; repeats of one destination and reason are counted, not listed. */
export interface EgressBlock {
  method: string;
  host: string;
  port: number;
  /** not_allowed: not in the allowlist; method: not GET/HEAD under `methods: "read"`; other_repository: the broker's refusal. */
  reason: 'not_allowed' | 'method' | 'other_repository' | 'bad_request';
  count: number;
}

/** The egress of one worker run, as v2 results report it (absent under FLEET_EGRESS=open). */
export interface EgressReport {
  mode: 'proxy';
  methods: 'all' | 'read';
  /** Entries of the request's `egress.allow` the host did not allow. */
  refused_entries: string[];
  blocked: EgressBlock[];
  /** Blocked attempts past the listed destinations, only counted. */
  unlisted_blocks?: number;
}

/** What one worker run reports: the §3 result, the pull request fleet opened for it (mode "pr"), its agent's usage. */
export type WorkerResult = SpawnResult & { pull_request?: PullRequestRef | null; usage?: AgentUsage; egress?: EgressReport };

/** One scope of a flow as v2 results report it, filled in as far as the scope got. */
/** A required check of the merged (or refused) head, as a v2 scope reports it. */
export interface CheckRecord {
  name: string;
  /** GitHub's conclusion (`success`, `failure`, ...) or a status's state; null while it runs. */
  conclusion: string | null;
  url: string | null;
}

export interface ScopeOutcome {
  scope: string | null;
  branch: string;
  worker: WorkerResult | null;
  pull_request: PullRequestRef | null;
  /** Every review of the PR, in order (a fix round adds one). */
  reviews: ReviewRecord[];
  fix_rounds_used: number;
  merged: boolean;
  merge_sha: string | null;
  conflict_rounds_used: number;
  /** The required checks at the merge step's last look (v2; absent when the scope never reached it). */
  checks?: CheckRecord[];
  /** Milliseconds the merge step waited for CI (v2; absent when it never waited). */
  ci_wait_ms?: number;
  /** Why the scope stopped short (null when it went as far as the request asked). */
  error_type: ErrorType | null;
  error_message: string | null;
}

/** The result of a request that ran as a flow: the legacy keys summarise, v2 keys detail each scope. */
export type FlowResult = SpawnResult & {
  scopes: ScopeOutcome[];
  pull_requests: { scope: string | null; number: number; url: string; approved: boolean | null; merged: boolean }[];
  timings: { accepted_at: string; finished_at: string; duration_ms: number };
  /** The sum of the scopes' worker usage; absent when no worker reported any. */
  usage?: AgentUsage;
};

export const WORKER_TYPES = { droid: 'droid', claude: 'claude_code', codex: 'codex', custom: 'custom' } as const;
export type WorkerType = (typeof WORKER_TYPES)[Agent];

/** Event bodies as a container prints them after `::fleet-event:: `; the host adds the envelope. */
export const containerEventSchema = z.discriminatedUnion('event_type', [
  z.object({ event_type: z.literal('started'), repo: z.string(), task_summary: z.string() }),
  z.object({
    event_type: z.literal('progress'),
    stage: z.string().nullable().default(null),
    message: z.string(),
    progress_pct: z.number().int().min(0).max(100).nullable().default(null),
  }),
  z.object({
    event_type: z.literal('completed'),
    commit_sha: z.string().nullable(),
    branch: z.string().nullable(),
    files_changed: z.array(z.string()),
    summary: z.string().nullable().default(null),
  }),
  z.object({
    event_type: z.literal('failed'),
    error_type: z.string().min(1),
    error_message: z.string(),
    logs_tail: z.string().nullable().default(null),
  }),
]);
export type ContainerEvent = z.output<typeof containerEventSchema>;

/** An event as published on `worker:events:*`. */
export type FleetEvent = ContainerEvent & {
  request_id: string;
  timestamp: string;
  worker_type: WorkerType;
};
