import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Redis } from 'ioredis';
import { channels, type FlowResult } from '../../src/protocol.ts';
import { startGitHubTestServer, type GitHubTestServer } from '../servers/github.ts';
import { startLlmTestServer, type LlmTestServer } from '../servers/llm.ts';
import { testImage } from '../support/docker.ts';
import { publishJson, ResultListener, startTestFleet, testEnv, uid, type TestFleet } from '../support/fleet.ts';
import { startRedis, type TestRedis } from '../support/redis.ts';

/**
 * Stands in for `git push` from a test worker: the busybox worker (network host) POSTs
 * `{repo, branch, sha, resolves_conflict?}` here and the GitHub test server moves the branch,
 * as GitHub would after a real push. A push that resolves a conflict clears the PR's conflict.
 */
export interface PushReceiver {
  url: string;
  pushes: { repo: string; branch: string; sha: string }[];
  /** The TASK.md of every fix worker, in the order they ran. */
  fixTasks: string[];
  close(): Promise<void>;
}

export async function startPushReceiver(github: GitHubTestServer): Promise<PushReceiver> {
  const pushes: { repo: string; branch: string; sha: string }[] = [];
  const fixTasks: string[] = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (req.url === '/task') {
        fixTasks.push(Buffer.concat(chunks).toString());
        res.writeHead(204).end();
        return;
      }
      try {
        const body = JSON.parse(Buffer.concat(chunks).toString()) as {
          repo: string;
          branch: string;
          sha: string;
          resolves_conflict?: boolean;
        };
        github.pushBranch(body.repo, body.branch, body.sha);
        if (body.resolves_conflict) {
          const pr = openPullOf(github, body.repo, body.branch);
          if (pr !== undefined) github.setConflicting(body.repo, pr, false);
        }
        pushes.push({ repo: body.repo, branch: body.branch, sha: body.sha });
        res.writeHead(204).end();
      } catch (error) {
        res.writeHead(400).end(String(error));
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    pushes,
    fixTasks,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** The number of the open pull request from `branch`, looked up the way a test can: one by one. */
export function openPullOf(github: GitHubTestServer, repo: string, branch: string): number | undefined {
  for (let number = 1; number < 1000; number++) {
    let pull: ReturnType<GitHubTestServer['pullState']>;
    try {
      pull = github.pullState(repo, number);
    } catch {
      return undefined;
    }
    if (pull.head === branch && pull.state === 'open') return number;
  }
  return undefined;
}

/**
 * A scope's task as the test worker runs it: a fenced sh block that "pushes" a fresh commit
 * to its branch and reports it, whatever its purpose (task, fix, rebase).
 */
export function pushingTask(options: { pushUrl: string; file: string; summary: string }): string {
  return [
    `Change ${options.file}.`,
    '',
    '```sh',
    // As an agent reviewer (FLEET_REVIEWER=agent) the same script answers with a verdict instead: the
    // summary is the verdict object alone, as worker-image/fleet-worker reports it.
    'if [ "$FLEET_PURPOSE" = review ]; then',
    `  echo '::fleet-event:: {"event_type":"completed","commit_sha":null,"branch":null,"files_changed":[],"summary":"{\\"approved\\": true, \\"feedback\\": \\"agent approves\\", \\"comments\\": []}"}'`,
    '  exit 0',
    'fi',
    // A fix worker hands its TASK.md to the test, which checks what fleet told it.
    `if [ "$FLEET_PURPOSE" = fix ]; then wget -q -O /dev/null --post-data "$(cat /fleet/input/TASK.md)" ${options.pushUrl}/task || exit 5; fi`,
    'SHA=$(cat /proc/sys/kernel/random/uuid /proc/sys/kernel/random/uuid | sha256sum | cut -c1-40)',
    'RESOLVES=false; [ "$FLEET_PURPOSE" = rebase ] && RESOLVES=true',
    `BODY="{\\"repo\\":\\"$REPO\\",\\"branch\\":\\"$FLEET_BRANCH\\",\\"sha\\":\\"$SHA\\",\\"resolves_conflict\\":$RESOLVES}"`,
    `wget -q -O /dev/null --header 'content-type: application/json' --post-data "$BODY" ${options.pushUrl}/push || exit 5`,
    `echo "::fleet-event:: {\\"event_type\\":\\"completed\\",\\"commit_sha\\":\\"$SHA\\",\\"branch\\":\\"$FLEET_BRANCH\\",\\"files_changed\\":[\\"${options.file}\\"],\\"summary\\":\\"${options.summary} ($FLEET_PURPOSE)\\"}"`,
    '```',
  ].join('\n');
}

/** What the flow suites share: Redis, the GitHub and LLM test servers, the push receiver and the result listener. */
export interface FlowLab {
  redisServer: TestRedis;
  redis: Redis;
  github: GitHubTestServer;
  llm: LlmTestServer;
  pushes: PushReceiver;
  results: ResultListener;
  /** A fleet with every role against the lab's servers (overrides on top); stopped by stopFleets() or close(). */
  fleet(overrides?: Record<string, string>): Promise<TestFleet>;
  /** A new repository on the GitHub test server. */
  newRepo(): string;
  /** A scope's task that "pushes" `file` through the lab's push receiver (pushingTask). */
  task(file: string, summary: string): string;
  /** Publishes a request and waits for its one result. */
  send(request: Record<string, unknown>, timeoutMs?: number): Promise<FlowResult & { pull_request?: { number: number } }>;
  stopFleets(): Promise<void>;
  close(): Promise<void>;
}

/**
 * Starts a flow lab. `users` maps tokens to GitHub logins; `reviewerToken` is the fleet's reviewer account.
 * Fleets use the test image on network host, and poll CI every 300 ms (these repositories have no CI unless a
 * test plays it: a merge looks once more for checks, a moment later).
 */
export async function startFlowLab(options: { users: Record<string, string>; reviewerToken: string }): Promise<FlowLab> {
  const redisServer = await startRedis();
  const redis = new Redis(redisServer.url);
  const github = await startGitHubTestServer({ users: options.users });
  const llm = await startLlmTestServer();
  const pushes = await startPushReceiver(github);
  const results = await ResultListener.start(redisServer.url);
  const fleets: TestFleet[] = [];
  const stopFleets = async () => {
    for (const f of fleets.splice(0)) await f.stop();
  };
  return {
    redisServer,
    redis,
    github,
    llm,
    pushes,
    results,
    async fleet(overrides = {}) {
      const started = await startTestFleet(
        testEnv(redisServer.url, testImage(), {
          FLEET_DOCKER_NETWORK: 'host',
          FLEET_GITHUB_API_URL: github.url,
          FLEET_LLM_BASE_URL: llm.url,
          FLEET_LLM_API_KEY: 'llm-test-key-123456',
          FLEET_REVIEWER_GITHUB_TOKEN: options.reviewerToken,
          FLEET_CI_POLL_MS: '300',
          ...overrides,
        }),
        ['bridge', 'spawn', 'review', 'merge'],
      );
      fleets.push(started);
      return started;
    },
    newRepo() {
      const repo = `acme/${uid('repo')}`;
      github.addRepo(repo);
      return repo;
    },
    task: (file, summary) => pushingTask({ pushUrl: pushes.url, file, summary }),
    async send(request, timeoutMs = 120_000) {
      await publishJson(redis, channels.spawn, request);
      return (await results.next(request.request_id as string, timeoutMs)) as FlowResult & { pull_request?: { number: number } };
    },
    stopFleets,
    async close() {
      await stopFleets();
      await results.close();
      await pushes.close();
      await llm.close();
      await github.close();
      redis.disconnect();
      await redisServer.stop();
    },
  };
}
