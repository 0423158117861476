import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { channels, type EgressReport } from '../../src/protocol.ts';
import { describeDocker } from '../support/docker.ts';
import { EventRecorder, publishJson, ResultListener, startTestFleet, testEnv, TEST_TOKEN, uid, type TestFleet } from '../support/fleet.ts';
import { startGitHttpServer, type GitHttpServer } from '../support/git-http.ts';
import { freePort, startRedis, type TestRedis } from '../support/redis.ts';
import { startGitHubTestServer, type GitHubTestServer } from '../servers/github.ts';
import { buildWorkerImage } from '../worker-image/harness.ts';

// The real worker image under FLEET_EGRESS=proxy, through an in-process fleet: the container runs on network
// none, the agent (a custom script) reaches an allowed loopback web server through the proxy and is refused
// another, root's git clones and pushes through the credential broker to a loopback smart-HTTP forge that
// insists on the token, and while the agent runs the test scans the live container for the token.

const run = promisify(execFile);
const REPO = 'acme/widgets';

let redisServer: TestRedis;
let redis: Redis;
let results: ResultListener;
let events: EventRecorder;
let github: GitHubTestServer;
let forge: GitHttpServer;
let web: Server;
let fleet: TestFleet;
let root: string;
let allowedPort: number;
let deniedPort: number;

const bare = () => join(root, `${REPO}.git`);
const gitBare = async (...args: string[]) => (await run('git', ['--git-dir', bare(), ...args])).stdout.trim();

describeDocker('a worker under FLEET_EGRESS=proxy', () => {
  beforeAll(async () => {
    const image = await buildWorkerImage();
    redisServer = await startRedis();
    redis = new Redis(redisServer.url);
    results = await ResultListener.start(redisServer.url);
    events = await EventRecorder.start(redisServer.url);

    root = mkdtempSync(join(tmpdir(), 'fleet-egress-forge-'));
    mkdirSync(join(root, 'acme'));
    await run('git', ['init', '--quiet', '--bare', '--initial-branch=main', bare()]);
    const seed = join(root, 'seed');
    await run('git', ['init', '--quiet', '--initial-branch=main', seed]);
    writeFileSync(join(seed, 'README.md'), '# widgets\n');
    await run('git', ['-C', seed, 'add', 'README.md']);
    await run('git', ['-C', seed, '-c', 'user.name=t', '-c', 'user.email=t@fleet.invalid', 'commit', '--quiet', '-m', 'seed']);
    await run('git', ['-C', seed, 'push', '--quiet', bare(), 'main']);
    await run('git', ['init', '--quiet', '--bare', '--initial-branch=main', join(root, 'acme/other.git')]);
    await run('git', ['-C', seed, 'push', '--quiet', join(root, 'acme/other.git'), 'main']);

    github = await startGitHubTestServer();
    github.addRepo(REPO);
    github.pushBranch(REPO, 'main', await gitBare('rev-parse', 'main'));
    // The forge tells the GitHub test server about every pushed branch, so the PR can be opened on it.
    forge = await startGitHttpServer(root, TEST_TOKEN, {
      onPushed: async () => {
        const refs = await gitBare('for-each-ref', '--format=%(refname:short) %(objectname)', 'refs/heads');
        for (const line of refs.split('\n')) {
          const [branch, sha] = line.split(' ');
          github.pushBranch(REPO, branch!, sha!);
        }
      },
    });
    web = createServer((_req, res) => res.end('allowed host says hi\n'));
    await new Promise<void>((ok) => web.listen(0, '127.0.0.1', ok));
    allowedPort = (web.address() as AddressInfo).port;
    deniedPort = await freePort();

    fleet = await startTestFleet(
      testEnv(redisServer.url, image, {
        FLEET_EGRESS: 'proxy',
        FLEET_EGRESS_ALLOW: `127.0.0.1:${allowedPort}`,
        FLEET_GIT_BASE_URL: forge.url,
        FLEET_GITHUB_API_URL: github.url,
        FLEET_AGENT_CMD: 'sh TASK.md',
        FLEET_DIND: 'off',
        FLEET_WORKER_MEMORY: '1g',
      }),
      ['bridge', 'spawn'],
    );
  }, 30 * 60_000);

  afterAll(async () => {
    await fleet?.stop();
    events?.close();
    await results?.close();
    redis?.disconnect();
    await redisServer?.stop();
    await forge?.stop();
    await github?.close();
    await new Promise((ok) => web?.close(ok));
    if (root) rmSync(root, { recursive: true, force: true });
  });

  it('reaches only allowed hosts, reports the refusal everywhere, pushes through the broker, and holds no token', async () => {
    const id = uid('egress');
    // The container's loopback is not the host's: the agent asks for the proxy even for 127.0.0.1.
    const task = [
      `curl -sS --noproxy '' -o reached.txt http://127.0.0.1:${allowedPort}/`,
      `if curl -fsS --noproxy '' -o /dev/null http://127.0.0.1:${deniedPort}/ 2> denied.err; then echo reached > denied.txt; fi`,
      `curl -sS --noproxy '' -w '%{http_code}' -o /dev/null http://127.0.0.1:${deniedPort}/ > denied-status.txt || true`,
      'ls /sys/class/net > interfaces.txt',
      // A push to another repository through the broker (root's key or not, the broker refuses the path).
      `(git init -q /tmp/steal && cd /tmp/steal && git -c user.name=a -c user.email=a@b.invalid commit -q --allow-empty -m steal && env -u NO_PROXY -u no_proxy git push ${forge.url}/acme/other.git HEAD:refs/heads/stolen) 2> push-other.err || echo refused > push-other.txt`,
      'echo "agent is waiting for the scan"',
      'while [ ! -e /tmp/scanned ]; do sleep 0.1; done',
    ].join('\n');
    await publishJson(redis, channels.spawn, {
      request_id: id,
      repo: REPO,
      github_token: TEST_TOKEN,
      task_content: task,
      task_title: 'Egress check',
      model: 'claude-sonnet-4-5-20250929',
      agents_content: null,
      timeout_seconds: 300,
      agent: 'custom',
      mode: 'pr',
      result_format: 'v2',
    });

    // The agent runs (its stage's event is out): scan the live container as root, then let the agent finish.
    await expect.poll(() => events.of(id).some((e) => e.event_type === 'progress' && e.stage === 'run'), { timeout: 240_000 }).toBe(true);
    const { stdout: ids } = await run('docker', ['ps', '-q', '--filter', `label=fleet.request_id=${id}`]);
    const container = ids.trim();
    expect(container).not.toBe('');
    const inspect = (await run('docker', ['inspect', container])).stdout;
    expect(inspect).not.toContain(TEST_TOKEN);
    expect(JSON.parse(inspect)[0].HostConfig.NetworkMode).toBe('none');
    // Read out of the container and searched here, so that no process in it ever holds what is searched for.
    const dump = async (script: string) =>
      (await run('docker', ['exec', container, 'sh', '-c', script], { encoding: 'latin1', maxBuffer: 512 * 1024 * 1024 })).stdout;
    const environs = await dump('cat /proc/[0-9]*/environ /proc/[0-9]*/cmdline 2>/dev/null; true');
    expect(environs).toContain('FLEET_REQUEST_ID='); // the dump did read the environments
    expect(environs).not.toContain(TEST_TOKEN);
    // Every file written since the input was copied in, and the usual places for secrets.
    const written = await dump(
      'find / -xdev \\( -path /proc -o -path /sys \\) -prune -o -type f -newer /fleet/input/TASK.md -print0 2>/dev/null | xargs -0 -r cat 2>/dev/null; true',
    );
    const places = await dump('tar -cf - /run /fleet /workspace /tmp /home /root /etc 2>/dev/null; true');
    expect(places.length).toBeGreaterThan(0);
    expect(written).not.toContain(TEST_TOKEN);
    expect(places).not.toContain(TEST_TOKEN);
    await run('docker', ['exec', container, 'touch', '/tmp/scanned']);

    const result = (await results.next(id, 240_000)) as unknown as Record<string, unknown> & { egress: EgressReport };
    expect(result).toMatchObject({ success: true, error_type: null });
    const commit = result.commit_sha as string;
    // The push went through the broker: the forge has the commit, and saw the token on the push.
    expect(await gitBare('rev-parse', `fleet/${id}`)).toBe(commit);
    expect(forge.requests.some((r) => r.method === 'POST' && r.path.endsWith('/git-receive-pack') && r.authorized)).toBe(true);
    const show = (path: string) => gitBare('show', `${commit}:${path}`);
    expect(await show('reached.txt')).toBe('allowed host says hi');
    expect(await show('denied-status.txt')).toBe('403');
    await expect(show('denied.txt')).rejects.toThrow();
    expect((await show('interfaces.txt')).split('\n')).toEqual(['lo']);

    expect(await show('push-other.txt')).toBe('refused');
    expect(await show('push-other.err')).toContain('403');
    expect((await run('git', ['--git-dir', join(root, 'acme/other.git'), 'branch', '--list', 'stolen'])).stdout.trim()).toBe('');
    expect(forge.requests.some((r) => r.path.includes('acme/other'))).toBe(false);

    const refused = { method: 'GET', host: '127.0.0.1', port: deniedPort, reason: 'not_allowed' };
    const otherRepo = { method: 'GET', host: '127.0.0.1', port: forge.port, reason: 'other_repository' };
    expect(result.egress).toEqual({
      mode: 'proxy',
      methods: 'all',
      refused_entries: [],
      blocked: [
        { ...refused, count: 2 },
        { ...otherRepo, count: 1 },
      ],
    });
    const egressEvents = events.of(id).filter((e) => e.event_type === 'progress' && e.stage === 'egress');
    expect(egressEvents.map((e) => (e as { message: string }).message)).toEqual([
      `blocked GET 127.0.0.1:${deniedPort}: not in the allowlist`,
      `blocked GET 127.0.0.1:${forge.port}: another repository than the job's`,
    ]);
    const pr = result.pull_request as { number: number };
    const body = github.pullState(REPO, pr.number).body;
    expect(body).toContain('## Blocked network access');
    expect(body).toContain(`GET 127.0.0.1:${deniedPort}\`: not_allowed (2 times)`);
    expect(body).toContain(`GET 127.0.0.1:${forge.port}\`: other_repository`);

    const metrics = await (await fetch(`http://127.0.0.1:${fleet.httpPort}/metrics`)).text();
    expect(metrics).toMatch(/fleet_egress_blocked_total\{reason="not_allowed"\} 2/);
    expect(metrics).toMatch(/fleet_egress_blocked_total\{reason="other_repository"\} 1/);
  }, 360_000);
});
