import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { FlowResult } from '../../src/protocol.ts';
import { describeDocker } from '../support/docker.ts';
import { completedLine, eventLine, uid } from '../support/fleet.ts';
import type { GitHubTestServer } from '../servers/github.ts';
import { type FlowLab, type PushReceiver, pushingTask, startFlowLab } from '../flow/support.ts';
import { FLEET_BIN, runFleet } from './support.ts';

const WORKER_TOKEN = `ghp_${'W0rkerTokenForCliV2'.repeat(2)}`;
const REVIEWER_TOKEN = `ghp_${'Rev1ewerTokenForCliV2'.repeat(2)}`;

/** An HTTP endpoint a worker (network host) blocks on until the test releases it: output the test controls. */
async function startGate() {
  const held: ServerResponse[] = [];
  let arrived!: () => void;
  const reached = new Promise<void>((resolve) => (arrived = resolve));
  const server = createServer((_req, res) => {
    held.push(res);
    arrived();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/gate`,
    reached,
    release: () => {
      for (const res of held.splice(0)) res.end('open\n');
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

describeDocker('the CLI speaks v2: spawn with every v2 field, result, logs -f (real fleet, Docker, test GitHub)', () => {
  let lab: FlowLab;
  let github: GitHubTestServer;
  let pushes: PushReceiver;
  let redisUrl: string;
  let prefix: string;
  let dir: string;

  beforeAll(async () => {
    lab = await startFlowLab({ users: { [WORKER_TOKEN]: 'fleet-bot', [REVIEWER_TOKEN]: 'fleet-reviewer' }, reviewerToken: REVIEWER_TOKEN });
    ({ github, pushes } = lab);
    redisUrl = lab.redisServer.url;
    prefix = (await lab.fleet()).config.prefix;
    dir = mkdtempSync(join(tmpdir(), 'fleet-cli-v2-'));
  });
  afterAll(async () => {
    await lab?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const cli = (args: string[]) => runFleet(args, { REDIS_URL: redisUrl, FLEET_PREFIX: prefix, GITHUB_TOKEN: WORKER_TOKEN });

  it('fleet spawn --tasks --review --merge --format v2 --wait: two scopes reviewed and merged; result and logs read it back', async () => {
    const repo = `acme/${uid('repo')}`;
    github.addRepo(repo);
    // Each worker says which scope it works on before the pushing script runs: a line for the job log.
    const task = (scope: string, file: string) =>
      pushingTask({ pushUrl: pushes.url, file, summary: `${scope} done` }).replace('```sh\n', `\`\`\`sh\necho working on ${scope}\n`);
    const tasksFile = join(dir, 'tasks.json');
    writeFileSync(
      tasksFile,
      JSON.stringify([
        { scope: 'web', task_content: task('web', 'web/app.ts') },
        { scope: 'api', task_content: task('api', 'api/server.ts') },
      ]),
    );
    const id = uid('cli-v2');
    const spawned = await cli([
      'spawn',
      '--repo',
      repo,
      '--tasks',
      tasksFile,
      '--review',
      '--merge',
      '--fix-rounds',
      '1',
      '--base',
      'main',
      '--format',
      'v2',
      '--id',
      id,
      '--wait',
    ]);
    expect(spawned.stderr).toBe('');
    expect(spawned.code).toBe(0);
    const result = JSON.parse(spawned.stdout) as FlowResult;
    expect(result).toMatchObject({ request_id: id, success: true, error_type: null });
    expect(result.scopes.map((s) => [s.scope, s.branch, s.merged])).toEqual([
      ['web', `fleet/${id}/web`, true],
      ['api', `fleet/${id}/api`, true],
    ]);
    expect(result.pull_requests).toHaveLength(2);
    for (const pr of result.pull_requests) expect(github.pullState(repo, pr.number)).toMatchObject({ merged: true, base: 'main' });

    // `fleet result` prints the stored result, the same JSON.
    const stored = await cli(['result', id]);
    expect(stored.code).toBe(0);
    expect(JSON.parse(stored.stdout)).toEqual(result);

    // `fleet logs` shows each scope's worker output, tagged with its step.
    const logs = await cli(['logs', id]);
    expect(logs.code).toBe(0);
    expect(logs.stdout).toMatch(/^\[spawn web\] working on web$/m);
    expect(logs.stdout).toMatch(/^\[spawn api\] working on api$/m);
  });

  it('fleet result and fleet logs exit 4 for a request fleet does not know; bad options exit 2', async () => {
    const [result, logs, badFormat, badRounds] = await Promise.all([
      cli(['result', 'no-such-request']),
      cli(['logs', 'no-such-request']),
      cli(['spawn', '--repo', 'acme/widgets', '--task-file', join(dir, 'x'), '--format', 'v3']),
      cli(['spawn', '--repo', 'acme/widgets', '--task-file', join(dir, 'x'), '--fix-rounds', '9']),
    ]);
    expect([result.code, result.stdout]).toEqual([4, '']);
    expect(result.stderr).toContain('no result and no job for no-such-request');
    expect(logs.code).toBe(4);
    expect(badFormat.code).toBe(2);
    expect(badFormat.stderr).toContain('--format');
    expect(badRounds.code).toBe(2);
    expect(badRounds.stderr).toContain('--fix-rounds');
  });

  it('fleet logs -f prints a running worker line before the worker finishes, then the rest, and exits with the verdict', async () => {
    const gate = await startGate();
    try {
      const taskFile = join(dir, 'gated.md');
      writeFileSync(
        taskFile,
        [
          eventLine({ event_type: 'started', repo: 'acme/widgets', task_summary: 'gated' }),
          'echo line-before-the-gate',
          `wget -q -O /dev/null ${gate.url} || exit 7`,
          'echo line-after-the-gate',
          completedLine('gated done'),
        ].join('\n'),
      );
      const id = uid('cli-follow');
      const published = await cli(['spawn', '--repo', 'acme/widgets', '--task-file', taskFile, '--id', id]);
      expect(published.code).toBe(0);
      // The worker has printed its first line and now waits on the gate.
      await gate.reached;

      const follower = spawn(process.execPath, [FLEET_BIN, 'logs', id, '-f'], {
        env: { PATH: process.env.PATH!, HOME: '/tmp', REDIS_URL: redisUrl, FLEET_PREFIX: prefix },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let out = '';
      let err = '';
      follower.stderr.on('data', (chunk: Buffer) => (err += chunk.toString()));
      const exited = new Promise<number | null>((resolve) => follower.once('exit', (code) => resolve(code)));
      await new Promise<void>((resolve) => {
        follower.stdout.on('data', (chunk: Buffer) => {
          out += chunk.toString();
          if (out.includes('line-before-the-gate')) resolve();
        });
      });
      // Streamed while the worker still runs: no result yet, the follower still waits, the later line not out.
      expect(await runFleet(['result', id], { REDIS_URL: redisUrl, FLEET_PREFIX: prefix })).toMatchObject({ code: 3 });
      expect(follower.exitCode).toBeNull();
      expect(out).not.toContain('line-after-the-gate');

      gate.release();
      expect(await exited).toBe(0);
      expect(out).toMatch(/^\[spawn\] line-before-the-gate\n(?:.*\n)*\[spawn\] line-after-the-gate$/m);
      expect(err).toContain(`${id} succeeded`);
    } finally {
      gate.release();
      await gate.close();
    }
  });
});
