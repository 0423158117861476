import { parseArgs } from 'node:util';
import { channels } from '../protocol.ts';
import { UsageError, type Command } from './command.ts';
import { withOps } from './ops/connect.ts';
import { HOST_ID_PATTERN } from '../config.ts';
import { REQUEST_ID_PATTERN } from '../protocol.ts';
import { runCancel, runDrain, runReap, runUndrain } from './ops/control.ts';
import { runSpawn, SPAWN_EXIT, SpawnUsageError } from './ops/spawn.ts';
import { runStatus } from './ops/status.ts';

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

const spawn: Command = {
  summary: 'publish a legacy spawn request (as the orchestrator does) and optionally wait for its result',
  usage:
    'fleet spawn --repo OWNER/NAME --task-file FILE [--agents-file FILE] [--title T] [--model M] [--timeout S] [--id ID] [--wait [--wait-timeout S]]',
  help: `Publishes one legacy request (all eight keys of PROTOCOL §2) on ${channels.spawn}, where every running
bridge picks it up. Without --wait it prints the request id and exits once the message is published.

Options:
  --repo OWNER/NAME    repository to work on (required)
  --task-file FILE     the task (TASK.md content), at most 1 MiB; "-" reads stdin (required)
  --agents-file FILE   AGENTS.md content to give the agent (default: none)
  --title T            commit title (default "AI generated changes")
  --model M            model name (default claude-sonnet-4-5-20250929)
  --timeout S          seconds the worker may run, 1-86400 (default 600)
  --id ID              request id, 1-128 of [A-Za-z0-9._-] (default: cli-<time>-<random>)
  --wait               subscribe to ${channels.result('ID')} before publishing, then print the result
                       JSON on stdout; on a terminal, lifecycle events from ${channels.events('ID')}
                       are shown on stderr while waiting
  --wait-timeout S     with --wait: stop waiting after S seconds (the request itself goes on)

GitHub token: taken from GITHUB_TOKEN, else FLEET_GITHUB_TOKEN; with neither, the request carries no
token and the spawn host uses its own FLEET_GITHUB_TOKEN.

Exit status: 0 published (or, with --wait, the result says success); 1 the result is a failure, or no
bridge was subscribed so the message was lost; 2 bad arguments or an invalid request; 3 --wait-timeout
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
        wait: { type: 'boolean', default: false },
        'wait-timeout': { type: 'string' },
      },
    });
    if (!values.repo) throw new UsageError('--repo OWNER/NAME is required');
    if (!values['task-file']) throw new UsageError('--task-file FILE is required');
    if (values['wait-timeout'] !== undefined && !values.wait) throw new UsageError('--wait-timeout needs --wait');
    const options = {
      repo: values.repo,
      taskFile: values['task-file'],
      agentsFile: values['agents-file'],
      title: values.title,
      model: values.model,
      timeoutSeconds: seconds(values.timeout, '--timeout'),
      id: values.id,
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

/** The operator commands beside `start` (spawn, cancel, status, drain, undrain, reap). */
export function registerOperationsCommands(register: (name: string, command: Command) => void): void {
  register('spawn', spawn);
  register('cancel', cancel);
  register('status', status);
  register('drain', drain);
  register('undrain', undrain);
  register('reap', reap);
}
