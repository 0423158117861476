import { parseArgs } from 'node:util';
import { channels } from '../protocol.ts';
import { UsageError, type Command } from './command.ts';
import { withOps } from './ops/connect.ts';
import { HOST_ID_PATTERN } from '../config.ts';
import { REQUEST_ID_PATTERN } from '../protocol.ts';
import { runCancel, runDrain, runReap, runUndrain } from './ops/control.ts';
import { runSpawn, SPAWN_EXIT, SpawnUsageError } from './ops/spawn.ts';
import { runStatus } from './ops/status.ts';
import { FOLLOW_POLL_MS, runLogs } from './ops/logs.ts';
import { RESULT_EXIT, runResult } from './ops/result.ts';

const CONNECTION_HELP = `Redis: REDIS_URL, or with it unset the embedded Redis that \`fleet start\` runs on this machine
(redis://127.0.0.1:FLEET_REDIS_PORT, default 6379); this command never starts a server itself.
FLEET_PREFIX must match the fleet's (default fleet).`;

function positional(args: string[], what: string, pattern: RegExp): string {
  const { positionals } = parseArgs({ args, options: {}, allowPositionals: true, strict: true });
  if (positionals.length !== 1) throw new UsageError(`expected exactly one ${what}`);
  const value = positionals[0]!;
  if (!pattern.test(value)) throw new UsageError(`"${value}" is not a valid ${what} (${pattern.source})`);
  return value;
}

function seconds(text: string | undefined, option: string, max = 86_400): number | undefined {
  if (text === undefined) return undefined;
  const value = Number(text);
  if (!Number.isInteger(value) || value < 1 || value > max)
    throw new UsageError(`${option}: "${text}" is not a whole number of seconds from 1 to ${max}`);
  return value;
}

/** A whole number option from `min` to `max`. */
function count(text: string | undefined, option: string, min: number, max: number): number | undefined {
  if (text === undefined) return undefined;
  const value = Number(text);
  if (!Number.isInteger(value) || value < min || value > max)
    throw new UsageError(`${option}: "${text}" is not a whole number from ${min} to ${max}`);
  return value;
}

function dollars(text: string | undefined, option: string): number | undefined {
  if (text === undefined) return undefined;
  const value = Number(text);
  if (!Number.isFinite(value) || value <= 0) throw new UsageError(`${option}: "${text}" is not a positive number of US dollars`);
  return value;
}

const spawn: Command = {
  summary: 'publish a spawn request (legacy or v2, as the orchestrator does) and optionally wait for its result',
  usage:
    'fleet spawn --repo OWNER/NAME (--task-file FILE | --tasks FILE.json) [--agents-file FILE] [--title T] [--model M] [--timeout S] [--id ID] [--agent A] [--pr] [--base BRANCH] [--review [--merge] [--fix-rounds N]] [--follow-up PR] [--max-turns N] [--max-cost-usd USD] [--format legacy|v2] [--wait [--wait-timeout S]]',
  help: `Publishes one request (PROTOCOL §2) on ${channels.spawn}, where every running bridge picks it up. With
legacy options only it is exactly the orchestrator's eight-key request; each v2 option adds its v2 key.
Without --wait it prints the request id and exits once the message is published.

Options:
  --repo OWNER/NAME    repository to work on (required)
  --task-file FILE     the task (TASK.md content), at most 1 MiB; "-" reads stdin (required unless --tasks)
  --agents-file FILE   AGENTS.md content to give the agent (default: none)
  --title T            commit title (default "AI generated changes")
  --model M            model name (default claude-sonnet-4-5-20250929)
  --timeout S          seconds the worker may run, 1-86400 (default 600)
  --id ID              request id, 1-128 of [A-Za-z0-9._-] (default: cli-<time>-<random>)

v2 options (each sets one v2 key; the bridge checks them as it checks any sender's):
  --agent A            agent: droid (the fleet's default), claude, codex or custom          (agent)
  --pr                 push a branch fleet/ID and open a pull request                        (mode "pr")
  --base BRANCH        branch the work starts from and the pull request targets            (base_branch)
  --review             review the pull request (needs --pr, or --tasks)                     (review)
  --merge              merge it once approved (needs --review)                              (merge)
  --fix-rounds N       rounds a worker may fix review feedback, 0-5                         (fix_rounds)
  --tasks FILE.json    a JSON list [{"scope", "task_content", "task_title"?, "agents_content"?}]:
                       one worker and pull request per scope, on fleet/ID/SCOPE             (tasks)
  --follow-up PR       continue fleet's open pull request number PR (needs --pr)            (follow_up)
  --max-turns N        stop the agent after N model turns                                   (max_turns)
  --max-cost-usd USD   stop the agent once it has spent USD                                 (max_cost_usd)
  --format FORMAT      result format: legacy (the eleven keys) or v2 (pull requests, reviews,
                       merges, timings, usage, trace_id)                                     (result_format)

Waiting:
  --wait               subscribe to ${channels.result('ID')} before publishing, then print the result
                       JSON on stdout; on a terminal, lifecycle events from ${channels.events('ID')}
                       are shown on stderr while waiting
  --wait-timeout S     with --wait: stop waiting after S seconds (the request itself goes on)
\`fleet logs ID -f\` follows the request's output; \`fleet result ID\` prints its result later.

GitHub token: taken from GITHUB_TOKEN, else FLEET_GITHUB_TOKEN; with neither, the request carries no
token and the spawn host uses its own FLEET_GITHUB_TOKEN.

Exit status: ${SPAWN_EXIT.success} published (or, with --wait, the result says success); ${SPAWN_EXIT.failed} the result is a failure, or no
bridge was subscribed so the message was lost; ${SPAWN_EXIT.usage} bad arguments or an invalid request; ${SPAWN_EXIT.waitTimeout} --wait-timeout
passed without a result. An id that already has a result is not run again: its result is printed.

${CONNECTION_HELP}`,
  async run(args) {
    const { values } = parseArgs({
      args,
      strict: true,
      options: {
        repo: { type: 'string' },
        'task-file': { type: 'string' },
        'agents-file': { type: 'string' },
        title: { type: 'string' },
        model: { type: 'string' },
        timeout: { type: 'string' },
        id: { type: 'string' },
        agent: { type: 'string' },
        pr: { type: 'boolean', default: false },
        base: { type: 'string' },
        review: { type: 'boolean', default: false },
        merge: { type: 'boolean', default: false },
        'fix-rounds': { type: 'string' },
        tasks: { type: 'string' },
        'follow-up': { type: 'string' },
        'max-turns': { type: 'string' },
        'max-cost-usd': { type: 'string' },
        format: { type: 'string' },
        wait: { type: 'boolean', default: false },
        'wait-timeout': { type: 'string' },
      },
    });
    if (!values.repo) throw new UsageError('--repo OWNER/NAME is required');
    if (!values['task-file'] && !values.tasks) throw new UsageError('--task-file FILE is required (or --tasks FILE.json)');
    if (values['wait-timeout'] !== undefined && !values.wait) throw new UsageError('--wait-timeout needs --wait');
    if (values.format !== undefined && values.format !== 'legacy' && values.format !== 'v2')
      throw new UsageError(`--format: "${values.format}" is not legacy or v2`);
    const options = {
      repo: values.repo,
      taskFile: values['task-file'],
      agentsFile: values['agents-file'],
      title: values.title,
      model: values.model,
      timeoutSeconds: seconds(values.timeout, '--timeout'),
      id: values.id,
      v2: {
        agent: values.agent,
        pr: values.pr,
        baseBranch: values.base,
        review: values.review,
        merge: values.merge,
        fixRounds: count(values['fix-rounds'], '--fix-rounds', 0, 5),
        tasksFile: values.tasks,
        followUp: count(values['follow-up'], '--follow-up', 1, Number.MAX_SAFE_INTEGER),
        format: values.format,
        maxTurns: count(values['max-turns'], '--max-turns', 1, 10_000),
        maxCostUsd: dollars(values['max-cost-usd'], '--max-cost-usd'),
      },
      wait: values.wait,
      waitTimeoutSeconds: seconds(values['wait-timeout'], '--wait-timeout', 7 * 86_400),
    };
    try {
      return await withOps((ops) => runSpawn(ops, options, { env: process.env, out: process.stdout, err: process.stderr }));
    } catch (error) {
      if (error instanceof SpawnUsageError) {
        process.stderr.write(`fleet spawn: ${error.message}\n`);
        return SPAWN_EXIT.usage;
      }
      throw error;
    }
  },
};

const result: Command = {
  summary: 'print the stored result of a request',
  usage: 'fleet result REQUEST_ID',
  help: `Prints the result of a request as it was published on ${channels.result('ID')} (kept 24 h under
${channels.resultKey('ID')}), one JSON line on stdout, with control characters a worker put in it removed.
A request sent with result_format "v2" (\`fleet spawn --format v2\`) has the v2 keys after the legacy eleven.

Exit status: ${RESULT_EXIT.success} the result says success; ${RESULT_EXIT.failed} the result is a failure, or Redis cannot be reached;
${RESULT_EXIT.usage} bad arguments; ${RESULT_EXIT.pending} no result yet: the request is queued or running; ${RESULT_EXIT.unknown} no result and no job: an unknown
request id, or its result expired.

${CONNECTION_HELP}`,
  async run(args) {
    const id = positional(args, 'request id', REQUEST_ID_PATTERN);
    return withOps((ops) => runResult(ops, id, { out: process.stdout, err: process.stderr }));
  },
};

const logs: Command = {
  summary: "print a request's worker output (every scope and step), and follow it live with -f",
  usage: 'fleet logs REQUEST_ID [-f|--follow]',
  help: `Prints the job logs of a request: the output lines of its worker containers, as the spawn hosts store
them in BullMQ (the newest FLEET_JOB_LOG_LINES entries per job). A request with scopes or a review runs as a
flow of several jobs; every one is shown, each line tagged with its queue and step:
  [spawn] ...              a plain request's worker
  [spawn api] ...          the worker of scope "api"
  [spawn api~fix1] ...     its first fix round; [review api], [merge api] for the steps after it
Lines are printed with control characters removed (a worker's output is untrusted).

Options:
  -f, --follow   keep printing new lines, of new jobs too (a fix round, a reviewer), every ${FOLLOW_POLL_MS} ms
                 until the request's result is stored, then exit with its verdict

Exit status: ${RESULT_EXIT.success} printed (with -f: the request succeeded); ${RESULT_EXIT.failed} with -f the request failed, or Redis
cannot be reached; ${RESULT_EXIT.usage} bad arguments; ${RESULT_EXIT.unknown} no job of that id (unknown, not enqueued yet, or removed).

${CONNECTION_HELP}`,
  async run(args) {
    const { values, positionals } = parseArgs({
      args,
      strict: true,
      allowPositionals: true,
      options: { follow: { type: 'boolean', short: 'f', default: false } },
    });
    const id = positional(positionals, 'request id', REQUEST_ID_PATTERN);
    return withOps((ops) => runLogs(ops, id, { follow: values.follow }, { out: process.stdout, err: process.stderr }));
  },
};

const cancel: Command = {
  summary: 'cancel a request, waiting or running, on whichever host has it',
  usage: 'fleet cancel REQUEST_ID',
  help: `Cancels a request durably: a flag (kept 24 h) stops it even if it arrives or starts later, a waiting
job is removed and its failure result (error_type "cancelled") published, and a running one is
stopped by its host, which publishes the result. Prints what happened; exits 0 once the
cancellation is recorded, 1 when Redis cannot be reached.

${CONNECTION_HELP}`,
  async run(args) {
    const id = positional(args, 'request id', REQUEST_ID_PATTERN);
    return withOps((ops) => runCancel(ops, id, process.stdout));
  },
};

const status: Command = {
  summary: 'show queue counts and the spawn hosts (cap, running, last seen)',
  usage: 'fleet status [--json] [--prune-stale]',
  help: `Shows job counts of the spawn, review and merge queues (waiting, prioritized, delayed, active,
completed, failed; paused and global concurrency when set) and every registered spawn host: its cap,
running containers, last heartbeat, state (ok, drained, or STALE when it missed three heartbeats,
i.e. it crashed or lost Redis), version, pid and start time. Drained hosts that are not
running are listed too. Then every bridge: subscribed or NOT SUBSCRIBED, how often its subscriber
connection dropped and resubscribed (pub/sub messages published meanwhile were lost), messages it
dropped from a full inbox, and the entries waiting in the durable intake stream.

Options:
  --json          print the same as JSON (queues, hosts, drained)
  --prune-stale   first forget the records of stale hosts and bridges

Exit status: 0, or 1 when Redis cannot be reached.

${CONNECTION_HELP}`,
  async run(args) {
    const { values } = parseArgs({
      args,
      strict: true,
      options: { json: { type: 'boolean', default: false }, 'prune-stale': { type: 'boolean', default: false } },
    });
    return withOps((ops) => runStatus(ops, { json: values.json, pruneStale: values['prune-stale'] }, process.stdout, process.stderr));
  },
};

const drain: Command = {
  summary: 'stop a host taking new jobs; its running jobs finish (stays drained until undrain)',
  usage: 'fleet drain HOST',
  help: `Drains spawn host HOST (its FLEET_HOST_ID, as \`fleet status\` lists it): it takes no new jobs and
its running jobs finish normally. A key in Redis keeps it drained across restarts until
\`fleet undrain HOST\`; a host that is not running now starts drained. Stopping the process
(SIGTERM) is a different thing: it drains too, but running jobs get FLEET_DRAIN_TIMEOUT and then go
back to the queue.

Exit status: 0, 2 for a malformed host id, 1 when Redis cannot be reached.

${CONNECTION_HELP}`,
  async run(args) {
    const host = positional(args, 'host id', HOST_ID_PATTERN);
    return withOps((ops) => runDrain(ops, host, process.stdout));
  },
};

const undrain: Command = {
  summary: 'let a drained host take jobs again',
  usage: 'fleet undrain HOST',
  help: `Removes HOST's drain mark and tells the host, if running, to take jobs again.

Exit status: 0, 2 for a malformed host id, 1 when Redis cannot be reached.

${CONNECTION_HELP}`,
  async run(args) {
    const host = positional(args, 'host id', HOST_ID_PATTERN);
    return withOps((ops) => runUndrain(ops, host, process.stdout));
  },
};

const reap: Command = {
  summary: 'remove orphaned worker containers on this host',
  usage: 'fleet reap',
  help: `Removes this host's orphaned worker containers (labels fleet.host=FLEET_HOST_ID, fleet.prefix=FLEET_PREFIX)
whose job attempt no longer holds its BullMQ lock: containers left by a crash or an unclean stop.
A running spawn host does the same at start and every minute; containers of live jobs are kept.
Prints the ids of the containers it removed.

Uses the local Docker daemon (FLEET_DOCKER_HOST, else DOCKER_HOST, else the default socket).
Exit status: 0, or 1 when Docker or Redis cannot be reached.

${CONNECTION_HELP}`,
  async run(args) {
    parseArgs({ args, options: {}, strict: true });
    return withOps((ops) => runReap(ops, process.stdout));
  },
};

/** The operator commands beside `start` (spawn, result, logs, cancel, status, drain, undrain, reap). */
export function registerOperationsCommands(register: (name: string, command: Command) => void): void {
  register('spawn', spawn);
  register('result', result);
  register('logs', logs);
  register('cancel', cancel);
  register('status', status);
  register('drain', drain);
  register('undrain', undrain);
  register('reap', reap);
}
