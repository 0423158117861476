import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { InvalidRequestError } from '../../errors.ts';
import { validateSpawnRequest } from '../../intake.ts';
import { channels, type FleetEvent, type SpawnResult } from '../../protocol.ts';
import { withTimeout } from '../../timeout.ts';
import { terminalSafe, terminalSafeDeep } from '../terminal-text.ts';
import type { OpsContext } from './connect.ts';

export interface SpawnOptions {
  repo: string;
  /** Optional only with `v2.tasksFile`: the request's own task_content then names its scopes. */
  taskFile?: string;
  agentsFile?: string;
  title?: string;
  model?: string;
  timeoutSeconds?: number;
  id?: string;
  /** v2 fields (PROTOCOL §2): each is sent only when given, so a plain spawn stays a legacy request. */
  v2?: SpawnV2Options;
  wait: boolean;
  /** Seconds; undefined waits until the result. */
  waitTimeoutSeconds?: number;
}

/** The v2 request fields `fleet spawn` sets from its options; undefined ones are left out of the request. */
export interface SpawnV2Options {
  agent?: string;
  /** `--pr`: mode "pr" (a branch and a pull request) instead of a push to the default branch. */
  pr?: boolean;
  baseBranch?: string;
  review?: boolean;
  merge?: boolean;
  fixRounds?: number;
  /** A JSON file holding the `tasks` list, `[{scope, task_content, task_title?, agents_content?}]`. */
  tasksFile?: string;
  followUp?: number;
  format?: string;
  maxTurns?: number;
  maxCostUsd?: number;
}

/** Exit codes of `fleet spawn`. */
export const SPAWN_EXIT = { success: 0, failed: 1, usage: 2, waitTimeout: 3 } as const;

export class SpawnUsageError extends Error {
  override name = 'SpawnUsageError';
}

function readInput(path: string, what: string): string {
  try {
    return readFileSync(path === '-' ? 0 : path, 'utf8');
  } catch (error) {
    throw new SpawnUsageError(`${what}: cannot read ${path}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
  }
}

export function newRequestId(): string {
  return `cli-${Date.now().toString(36)}-${randomBytes(4).toString('hex')}`;
}

/**
 * The request (PROTOCOL §2): every one of the eight legacy keys set as the orchestrator sets
 * them, then the v2 keys whose options were given. The token: GITHUB_TOKEN, else FLEET_GITHUB_TOKEN; with neither, the key is left out and
 * the spawn host uses its own FLEET_GITHUB_TOKEN.
 */
export function buildLegacyRequest(options: SpawnOptions, env: Record<string, string | undefined>): Record<string, unknown> {
  const token = env.GITHUB_TOKEN?.trim() || env.FLEET_GITHUB_TOKEN?.trim() || undefined;
  const tasks = options.v2?.tasksFile === undefined ? undefined : readTasks(options.v2.tasksFile);
  const request: Record<string, unknown> = {
    request_id: options.id ?? newRequestId(),
    repo: options.repo,
    ...(token ? { github_token: token } : {}),
    task_content: options.taskFile !== undefined ? readInput(options.taskFile, '--task-file') : tasksSummary(tasks),
    task_title: options.title ?? 'AI generated changes',
    model: options.model ?? 'claude-sonnet-4-5-20250929',
    agents_content: options.agentsFile ? readInput(options.agentsFile, '--agents-file') : null,
    timeout_seconds: options.timeoutSeconds ?? 600,
    ...v2Fields(options.v2 ?? {}, tasks),
  };
  try {
    validateSpawnRequest(request);
  } catch (error) {
    if (error instanceof InvalidRequestError) throw new SpawnUsageError(error.message);
    throw error;
  }
  return request;
}

/** The v2 keys, in PROTOCOL §2's order, each only when its option was given. */
function v2Fields(v2: SpawnV2Options, tasks: unknown[] | undefined): Record<string, unknown> {
  const fields: Record<string, unknown> = {
    agent: v2.agent,
    mode: v2.pr ? 'pr' : undefined,
    base_branch: v2.baseBranch,
    review: v2.review || undefined,
    merge: v2.merge || undefined,
    fix_rounds: v2.fixRounds,
    follow_up: v2.followUp === undefined ? undefined : { pull_request: v2.followUp },
    tasks,
    result_format: v2.format,
    max_turns: v2.maxTurns,
    max_cost_usd: v2.maxCostUsd,
  };
  return Object.fromEntries(Object.entries(fields).filter(([, value]) => value !== undefined));
}

/** `--tasks FILE.json`: a JSON list; its entries are checked with the rest of the request (validateSpawnRequest). */
function readTasks(path: string): unknown[] {
  const text = readInput(path, '--tasks');
  let tasks: unknown;
  try {
    tasks = JSON.parse(text);
  } catch (error) {
    throw new SpawnUsageError(`--tasks: ${path} is not JSON: ${(error as Error).message}`);
  }
  if (!Array.isArray(tasks)) throw new SpawnUsageError(`--tasks: ${path} must hold a JSON list of {"scope", "task_content"} objects`);
  return tasks;
}

/** A request with scopes still carries the legacy task_content (the orchestrator's "started" summary reads it). */
function tasksSummary(tasks: unknown[] | undefined): string {
  if (!tasks) throw new SpawnUsageError('--task-file FILE is required (or --tasks FILE.json)');
  const scopes = tasks.map((t) => String((t as { scope?: unknown } | null)?.scope ?? '?'));
  return `Tasks in ${tasks.length} scope${tasks.length === 1 ? '' : 's'}: ${scopes.join(', ')}`;
}

/**
 * A result as published, for printing: the same JSON with every string made terminal-safe (a worker chose
 * the summary, the error message and the logs tail), and whether it reports success.
 */
export function printableResult(id: string, message: string): { json: string; success: boolean } {
  let result: SpawnResult;
  try {
    result = JSON.parse(message) as SpawnResult;
  } catch {
    throw new Error(`the result published for ${id} is not JSON: ${terminalSafe(message.slice(0, 200))}`);
  }
  return { json: JSON.stringify(terminalSafeDeep(result)), success: result.success === true };
}

/** One line for the operator; every field but the time came from the worker or its request. */
function describeEvent(event: FleetEvent): string {
  const time = event.timestamp.slice(11, 19);
  switch (event.event_type) {
    case 'started':
      return `${time} started on ${event.repo}: ${event.task_summary}`;
    case 'progress':
      return `${time} ${event.progress_pct !== null ? `${String(event.progress_pct).padStart(3)}% ` : ''}${event.stage ? `[${event.stage}] ` : ''}${event.message}`;
    case 'completed':
      return `${time} completed${event.commit_sha ? ` ${event.commit_sha.slice(0, 12)}` : ''}${event.branch ? ` on ${event.branch}` : ''}`;
    case 'failed':
      return `${time} failed: ${event.error_type}: ${event.error_message}`;
  }
}

/**
 * Publishes a request on `worker:spawn`. With `wait`, the result channel is subscribed
 * before publishing (pub/sub keeps nothing for late subscribers) and the result is printed.
 */
export async function runSpawn(
  ops: OpsContext,
  options: SpawnOptions,
  io: { env: Record<string, string | undefined>; out: NodeJS.WritableStream; err: NodeJS.WritableStream & { isTTY?: boolean } },
): Promise<number> {
  const request = buildLegacyRequest(options, io.env);
  const id = request.request_id as string;
  const previous = await ops.redis.get(channels.resultKey(id));
  if (previous) {
    const printable = printableResult(id, previous);
    io.err.write(`fleet spawn: request ${id} already has a result (ids are kept 24 h); the fleet will not run it again. Its result:\n`);
    io.out.write(`${printable.json}\n`);
    return printable.success ? SPAWN_EXIT.success : SPAWN_EXIT.failed;
  }

  const progress = Boolean(io.err.isTTY);
  let settle!: (result: string) => void;
  const result = new Promise<string>((resolve) => (settle = resolve));
  if (options.wait) {
    const sub = ops.subscriber();
    sub.on('message', (channel: string, message: string) => {
      if (channel === channels.result(id)) settle(message);
      else if (progress) {
        try {
          io.err.write(`  ${terminalSafe(describeEvent(JSON.parse(message) as FleetEvent))}\n`);
        } catch {
          // An event we cannot read is no reason to stop waiting for the result.
        }
      }
    });
    await sub.subscribe(channels.result(id), ...(progress ? [channels.events(id)] : []));
  }

  const receivers = await ops.redis.publish(channels.spawn, JSON.stringify(request));
  if (receivers === 0) {
    io.err.write(
      `fleet spawn: nobody is subscribed to ${channels.spawn}, so the request was lost: start a bridge (\`fleet start --roles bridge\`) on this Redis\n`,
    );
    return SPAWN_EXIT.failed;
  }
  if (!options.wait) {
    io.err.write(
      `fleet spawn: published ${id} (${receivers} bridge${receivers > 1 ? 's' : ''} listening); \`fleet status\` shows the queue\n`,
    );
    io.out.write(`${id}\n`);
    return SPAWN_EXIT.success;
  }
  if (progress)
    io.err.write(`fleet spawn: ${id} published; waiting for its result (Ctrl-C stops waiting, not the request: \`fleet cancel ${id}\`)\n`);

  // `result` never rejects: a rejection here is the wait running out.
  const outcome =
    options.waitTimeoutSeconds === undefined
      ? await result
      : await withTimeout(result, options.waitTimeoutSeconds * 1000, 'the result').catch(() => undefined);
  if (outcome === undefined) {
    io.err.write(
      `fleet spawn: no result for ${id} within ${options.waitTimeoutSeconds} s; the request goes on (\`fleet cancel ${id}\` stops it)\n`,
    );
    return SPAWN_EXIT.waitTimeout;
  }
  const printable = printableResult(id, outcome);
  io.out.write(`${printable.json}\n`);
  return printable.success ? SPAWN_EXIT.success : SPAWN_EXIT.failed;
}
