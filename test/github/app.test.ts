/**
 * GitHub App installation tokens (issue 12 item 3) against the GitHub test server, which checks the App's
 * JWT with its public key: minted per job for the job's repository with contents and pull-requests write,
 * used to open the pull request, revoked at job end; refused afterwards and on any other repository.
 * Real Redis, real fleet (bridge + spawn roles), real Octokit with the shared limiters; the worker container
 * is the fake runtime (the token's life is the host's business, not the container's). A flow with review and
 * merge runs every step (spawn, review, merge) with tokens of its own, through the review and merge roles and
 * the LLM test server.
 */
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import pino from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createAppAuth } from '@octokit/auth-app';
import { loadConfig, type Role } from '../../src/config.ts';
import { REDACTED, Redactor } from '../../src/redact.ts';
import { createGitHubForges, GitHubAppError } from '../../src/github/index.ts';
import { STEP_TOKEN_PERMISSIONS } from '../../src/github/app-auth.ts';
import { channels, type FlowResult, type WorkerResult } from '../../src/protocol.ts';
import { completedEvent } from '../support/fakes/runtime.ts';
import { FakeRuntime } from '../support/fakes/runtime.ts';
import { EventRecorder, legacyRequest, publishJson, ResultListener, startTestFleet, testEnv, TEST_TOKEN, uid } from '../support/fleet.ts';
import { startRedis, type TestRedis } from '../support/redis.ts';
import { startGitHubTestServer, type GitHubTestServer } from '../servers/github.ts';
import { startLlmTestServer, type LlmTestServer } from '../servers/llm.ts';

const APP_ID = '424242';
const OWNER = 'acme';
const keyPair = () => generateKeyPairSync('rsa', { modulusLength: 2048 });
const app = keyPair();
const privateKeyPem = app.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();

/** Every string, hash, list, set and stream value in Redis, to look for a token in. */
async function redisContents(redis: Redis): Promise<string> {
  const parts: string[] = [];
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'COUNT', '500');
    cursor = next;
    for (const key of keys) {
      const type = await redis.type(key);
      parts.push(key);
      if (type === 'string') parts.push((await redis.get(key)) ?? '');
      else if (type === 'hash') parts.push(JSON.stringify(await redis.hgetall(key)));
      else if (type === 'list') parts.push(JSON.stringify(await redis.lrange(key, 0, -1)));
      else if (type === 'set') parts.push(JSON.stringify(await redis.smembers(key)));
      else if (type === 'zset') parts.push(JSON.stringify(await redis.zrange(key, '0', '-1')));
      else if (type === 'stream') parts.push(JSON.stringify(await redis.xrange(key, '-', '+')));
    }
  } while (cursor !== '0');
  return parts.join('\n');
}

describe('GitHub App installation tokens (test GitHub server checks the JWT with the public key)', () => {
  let redisServer: TestRedis;
  let redis: Redis;
  let github: GitHubTestServer;
  let results: ResultListener;
  let events: EventRecorder;
  let llm: LlmTestServer;
  const stops: (() => Promise<void>)[] = [];

  beforeAll(async () => {
    redisServer = await startRedis();
    redis = new Redis(redisServer.url);
    github = await startGitHubTestServer({ users: { [TEST_TOKEN]: 'legacy-user' } });
    github.apps.registerApp({ appId: APP_ID, slug: 'fleet-test', publicKey: app.publicKey });
    results = await ResultListener.start(redisServer.url);
    events = await EventRecorder.start(redisServer.url);
    llm = await startLlmTestServer();
  });
  afterEach(async () => {
    for (const stop of stops.splice(0)) await stop();
  });
  afterAll(async () => {
    events?.close();
    await llm?.close();
    await results?.close();
    await github?.close();
    redis?.disconnect();
    await redisServer?.stop();
  });

  /** A repository the App is installed on (alone), with its installation. */
  function installedRepo(permissions: Record<string, 'read' | 'write'> = { contents: 'write', pull_requests: 'write', issues: 'write' }) {
    const name = uid('repo');
    github.addRepo(`${OWNER}/${name}`);
    const installation = github.apps.install({ appId: APP_ID, account: OWNER, repositories: [name], permissions });
    return { repo: `${OWNER}/${name}`, installation };
  }

  /** A fake worker that "pushes" its branch (as git would) and reports the commit; records whether a token was live then. */
  function pushingRuntime(live: { tokensAtRun: number[] }) {
    return new FakeRuntime((spec) => {
      const repo = spec.env.REPO ?? '';
      const sha = randomBytes(20).toString('hex');
      live.tokensAtRun.push([...github.apps.issued.values()].filter((t) => t.revokedAt === null).length);
      if (repo) github.pushBranch(repo, spec.env.FLEET_BRANCH!, sha);
      return { lines: [completedEvent({ commit_sha: sha, branch: spec.env.FLEET_BRANCH! })] };
    });
  }

  async function fleet(runtime: FakeRuntime, overrides: Record<string, string>, roles: Role[] = ['bridge', 'spawn']) {
    const env = testEnv(redisServer.url, undefined, {
      FLEET_GITHUB_API_URL: github.url,
      FLEET_GITHUB_APP_ID: APP_ID,
      FLEET_GITHUB_APP_PRIVATE_KEY: privateKeyPem,
      ...overrides,
    });
    const started = await startTestFleet(env, roles, { runtime });
    stops.push(() => started.stop());
    return started;
  }

  const tokensFor = (repo: string) => [...github.apps.issued.values()].filter((t) => t.repositories.includes(repo.toLowerCase()));

  it('a request without a token: one token for its repository alone, opens the PR, revoked at job end, found nowhere', async () => {
    const { repo, installation } = installedRepo();
    const live = { tokensAtRun: [] as number[] };
    const runtime = pushingRuntime(live);
    await fleet(runtime, {}); // no installation id: looked up per repository
    const { github_token: _none, ...request } = legacyRequest({ repo, mode: 'pr', result_format: 'v2' });
    await publishJson(redis, channels.spawn, request);
    const result = (await results.next(request.request_id as string)) as WorkerResult;

    expect(result).toMatchObject({ success: true, error_type: null });
    const [token, ...more] = tokensFor(repo);
    expect(more).toEqual([]);
    // Scoped: this repository, contents and pull requests write (GitHub adds metadata read), from its installation.
    expect(token).toMatchObject({
      installationId: installation.id,
      repositories: [repo.toLowerCase()],
      permissions: { contents: 'write', pull_requests: 'write', metadata: 'read' },
    });
    // Minted at claim: live while the worker ran; revoked at the end.
    expect(live.tokensAtRun).toEqual([1]);
    expect(token!.revokedAt).not.toBeNull();
    // The pull request was opened with it: its author is the App's bot.
    const pr = result.pull_request!;
    expect(github.pullState(repo, pr.number).author).toBe('fleet-test[bot]');
    const opened = github.requests.find((r) => r.method === 'POST' && r.path === `/repos/${repo}/pulls`);
    expect(opened).toMatchObject({ login: 'fleet-test[bot]', status: 201 });
    expect(github.apps.refusedJwts).toEqual([]);
    // The installation was looked up with the JWT, the token minted with it.
    expect(github.requests.some((r) => r.method === 'GET' && r.path === `/repos/${repo}/installation` && r.status === 200)).toBe(true);

    // Revoked means refused: GitHub answers 401 to a revoked token.
    const after = await fetch(`${github.url}/repos/${repo}`, { headers: { authorization: `token ${token!.token}` } });
    expect(after.status).toBe(401);

    // Never in Redis, events or the result.
    const everything = await redisContents(redis);
    expect(everything).not.toContain(token!.token);
    const seen = JSON.stringify([await events.untilResult(request.request_id as string), results.raw.get(request.request_id as string)]);
    expect(seen).not.toContain(token!.token);
    expect(seen).not.toContain('ghs_');
  });

  it('FLEET_GITHUB_AUTH=app, no host or request token: a v2 PR is reviewed and merged, each step with its own token, all revoked', async () => {
    const { repo, installation } = installedRepo({ contents: 'write', pull_requests: 'write', checks: 'read', statuses: 'read' });
    const live = { tokensAtRun: [] as number[] };
    await fleet(
      pushingRuntime(live),
      {
        FLEET_GITHUB_AUTH: 'app',
        FLEET_LLM_BASE_URL: llm.url,
        FLEET_LLM_API_KEY: 'llm-test-key-123456',
        // No CI on this repository: the merge looks once more for checks a moment later (a second run of the step).
        FLEET_CI_POLL_MS: '300',
      },
      ['bridge', 'spawn', 'review', 'merge'],
    );
    const { github_token: _none, ...request } = legacyRequest({ repo, mode: 'pr', review: true, merge: true, result_format: 'v2' });
    await publishJson(redis, channels.spawn, request);
    const result = (await results.next(request.request_id as string, 60_000)) as FlowResult;

    expect(result).toMatchObject({ success: true, error_type: null });
    const [scope] = result.scopes;
    expect(scope).toMatchObject({ merged: true, error_type: null });
    // The App opened the PR, so GitHub refuses its approval of it: the verdict goes on record as a COMMENT review.
    expect(scope!.reviews.map((r) => [r.approved, r.review_event])).toEqual([[true, 'COMMENT']]);
    const pr = github.pullState(repo, scope!.pull_request!.number);
    expect(pr).toMatchObject({ merged: true, author: 'fleet-test[bot]' });
    expect(pr.reviews.map((r) => r.login)).toEqual(['fleet-test[bot]']);
    // Every call on the repository acted as the App's bot: no personal token anywhere.
    const onRepo = github.requests.filter((r) => r.path.startsWith(`/repos/${repo}/`) && r.path !== `/repos/${repo}/installation`);
    expect(new Set(onRepo.map((r) => r.login))).toEqual(new Set(['fleet-test[bot]']));
    expect(onRepo.filter((r) => r.method === 'PUT' && r.path.endsWith('/merge')).map((r) => r.status)).toEqual([200]);

    // One token per step run, each for this repository alone with the step's permissions, used, never refused.
    const tokens = tokensFor(repo);
    const withPermissions = (permissions: Record<string, string>) =>
      tokens.filter((t) => JSON.stringify(t.permissions) === JSON.stringify({ ...permissions, metadata: 'read' }));
    const spawnTokens = withPermissions({ contents: 'write', pull_requests: 'write' });
    const reviewTokens = withPermissions(STEP_TOKEN_PERMISSIONS.review);
    const mergeTokens = withPermissions(STEP_TOKEN_PERMISSIONS.merge);
    expect(spawnTokens).toHaveLength(1);
    expect(reviewTokens).toHaveLength(1);
    // The merge parked once for CI (a delayed job): its second run minted a new token.
    expect(mergeTokens.length).toBeGreaterThanOrEqual(2);
    expect(spawnTokens.length + reviewTokens.length + mergeTokens.length).toBe(tokens.length);
    for (const t of tokens) {
      expect(t).toMatchObject({ installationId: installation.id, repositories: [repo.toLowerCase()] });
      expect(t.uses).toBeGreaterThan(0);
      expect(t.refused).toEqual({ revoked: 0, otherRepository: 0, permission: 0 });
      // Revoked by the time the result was out.
      expect(t.revokedAt).not.toBeNull();
    }
    expect(github.apps.refusedJwts).toEqual([]);
    // Each run's token was dead before the next step or run began: the step's outcome (or its park) came after
    // its revocation. A token's mint time is its expiry less the server's token lifetime.
    const mintedAt = (t: (typeof tokens)[number]) => t.expiresAt - github.apps.tokenLifetimeMs;
    const inOrder = [...spawnTokens, ...reviewTokens, ...mergeTokens];
    for (let i = 1; i < inOrder.length; i++) expect(inOrder[i - 1]!.revokedAt!).toBeLessThanOrEqual(mintedAt(inOrder[i]!));

    // Never in Redis, events or the result.
    const everything = await redisContents(redis);
    for (const t of tokens) expect(everything).not.toContain(t.token);
    const seen = JSON.stringify([await events.untilResult(request.request_id as string), results.raw.get(request.request_id as string)]);
    expect(seen).not.toContain('ghs_');
  });

  it('FLEET_GITHUB_AUTH=auto: a request with its own token is reviewed and merged with it, and no token is minted', async () => {
    const { repo } = installedRepo({ contents: 'write', pull_requests: 'write', checks: 'read', statuses: 'read' });
    await fleet(
      pushingRuntime({ tokensAtRun: [] }),
      { FLEET_LLM_BASE_URL: llm.url, FLEET_LLM_API_KEY: 'llm-test-key-123456', FLEET_CI_POLL_MS: '300' },
      ['bridge', 'spawn', 'review', 'merge'],
    );
    const request = legacyRequest({ repo, mode: 'pr', review: true, merge: true, result_format: 'v2' });
    await publishJson(redis, channels.spawn, request);
    const result = (await results.next(request.request_id as string, 60_000)) as FlowResult;

    expect(result).toMatchObject({ success: true, error_type: null });
    expect(result.scopes[0]).toMatchObject({ merged: true });
    expect(tokensFor(repo)).toEqual([]);
    const onRepo = github.requests.filter((r) => r.path.startsWith(`/repos/${repo}/`));
    expect(new Set(onRepo.map((r) => r.login))).toEqual(new Set(['legacy-user']));
  });

  it("the bridge's follow-up check acts as the App too: a read-only token, revoked before the job is queued", async () => {
    const { repo, installation } = installedRepo({ contents: 'write', pull_requests: 'write' });
    const live = { tokensAtRun: [] as number[] };
    await fleet(pushingRuntime(live), { FLEET_GITHUB_AUTH: 'app', FLEET_GITHUB_APP_INSTALLATION_ID: String(installation.id) });
    const { github_token: _none, ...first } = legacyRequest({ repo, mode: 'pr', result_format: 'v2' });
    await publishJson(redis, channels.spawn, first);
    const opened = (await results.next(first.request_id as string)) as WorkerResult;
    expect(opened).toMatchObject({ success: true });
    const number = opened.pull_request!.number;
    const checks = () => tokensFor(repo).filter((t) => JSON.stringify(t.permissions) === '{"pull_requests":"read","metadata":"read"}');
    expect(checks()).toEqual([]);

    const { github_token: _also, ...followUp } = legacyRequest({ repo, mode: 'pr', follow_up: { pull_request: number } });
    await publishJson(redis, channels.spawn, followUp);
    expect(await results.next(followUp.request_id as string)).toMatchObject({ success: true });
    const [check, ...more] = checks();
    expect(more).toEqual([]);
    expect(check).toMatchObject({ repositories: [repo.toLowerCase()], refused: { revoked: 0, otherRepository: 0, permission: 0 } });
    expect(check!.revokedAt).not.toBeNull();
    // While the follow-up's worker ran, its own token was the only live one: the check's was revoked before queueing.
    expect(live.tokensAtRun).toEqual([1, 1]);
    const read = github.requests.filter((r) => r.method === 'GET' && r.path === `/repos/${repo}/pulls/${number}`);
    expect(read[0]).toMatchObject({ login: 'fleet-test[bot]', status: 200 });

    // A pull request the repository does not have: the App's read says so, and the request is refused.
    const { github_token: _neither, ...missing } = legacyRequest({ repo, mode: 'pr', follow_up: { pull_request: 9999 } });
    await publishJson(redis, channels.spawn, missing);
    const refused = await results.next(missing.request_id as string);
    expect(refused).toMatchObject({ success: false, error_type: 'invalid_request' });
    expect(refused.error_message).toMatch(`${repo} has no pull request #9999`);
    expect(checks()).toHaveLength(2);
    expect(checks().every((t) => t.revokedAt !== null)).toBe(true);
    expect(await redisContents(redis)).not.toContain('ghs_');
  });

  it('a legacy request keeps its own token; FLEET_GITHUB_AUTH=app uses the App even then', async () => {
    const { repo } = installedRepo();
    const live = { tokensAtRun: [] as number[] };
    const first = await fleet(pushingRuntime(live), { FLEET_GITHUB_APP_INSTALLATION_ID: '1' });
    const legacy = legacyRequest({ repo, mode: 'pr' });
    await publishJson(redis, channels.spawn, legacy);
    expect(await results.next(legacy.request_id as string)).toMatchObject({ success: true });
    expect(tokensFor(repo)).toEqual([]);
    const legacyPr = github.requests.filter((r) => r.method === 'POST' && r.path === `/repos/${repo}/pulls`);
    expect(legacyPr.map((r) => r.login)).toEqual(['legacy-user']);
    await first.stop();
    stops.length = 0;

    const { repo: repo2, installation } = installedRepo();
    await fleet(pushingRuntime(live), { FLEET_GITHUB_AUTH: 'app', FLEET_GITHUB_APP_INSTALLATION_ID: String(installation.id) });
    const preferred = legacyRequest({ repo: repo2, mode: 'pr' });
    await publishJson(redis, channels.spawn, preferred);
    expect(await results.next(preferred.request_id as string)).toMatchObject({ success: true });
    expect(tokensFor(repo2)).toHaveLength(1);
    expect(tokensFor(repo2)[0]!.revokedAt).not.toBeNull();
    expect(github.requests.filter((r) => r.method === 'POST' && r.path === `/repos/${repo2}/pulls`).map((r) => r.login)).toEqual([
      'fleet-test[bot]',
    ]);
    // With the id configured, no look-up.
    expect(github.requests.some((r) => r.path === `/repos/${repo2}/installation`)).toBe(false);
  });

  it('a repository the App is not installed on: spawn_error naming it, no container, no token', async () => {
    const repo = `${OWNER}/${uid('bare')}`;
    github.addRepo(repo);
    const runtime = new FakeRuntime();
    await fleet(runtime, { FLEET_SPAWN_ATTEMPTS: '1' });
    const { github_token: _none, ...request } = legacyRequest({ repo, mode: 'pr' });
    await publishJson(redis, channels.spawn, request);
    const result = await results.next(request.request_id as string);
    expect(result).toMatchObject({ success: false, error_type: 'spawn_error' });
    expect(result.error_message).toMatch(new RegExp(`not installed on ${repo}`));
    expect(runtime.createCalls).toEqual([]);
    expect(tokensFor(repo)).toEqual([]);
  });

  it('a JWT signed with another key is refused by the server: the job fails, no container starts', async () => {
    const { repo, installation } = installedRepo();
    const runtime = new FakeRuntime();
    const keyDir = mkdtempSync(join(tmpdir(), 'fleet-app-key-'));
    const wrongKeyFile = join(keyDir, 'key.pem');
    writeFileSync(wrongKeyFile, keyPair().privateKey.export({ type: 'pkcs1', format: 'pem' }).toString());
    await fleet(runtime, {
      FLEET_GITHUB_APP_PRIVATE_KEY: '',
      FLEET_GITHUB_APP_PRIVATE_KEY_FILE: wrongKeyFile,
      FLEET_GITHUB_APP_INSTALLATION_ID: String(installation.id),
      FLEET_SPAWN_ATTEMPTS: '1',
    });
    const { github_token: _none, ...request } = legacyRequest({ repo, mode: 'pr' });
    await publishJson(redis, channels.spawn, request);
    const result = await results.next(request.request_id as string);
    expect(result).toMatchObject({ success: false, error_type: 'spawn_error' });
    expect(github.apps.refusedJwts).toContain('signature');
    expect(runtime.createCalls).toEqual([]);
    expect(tokensFor(repo)).toEqual([]);
  });
});

describe('GitHubApp.mint through the metered client', () => {
  let redisServer: TestRedis;
  let github: GitHubTestServer;

  beforeAll(async () => {
    redisServer = await startRedis();
    github = await startGitHubTestServer();
    github.apps.registerApp({ appId: APP_ID, slug: 'fleet-test', publicKey: app.publicKey });
  });
  afterAll(async () => {
    await github?.close();
    await redisServer?.stop();
  });

  it('scopes a token to one repository: another is 404 to read and 403 to write; revoked is 401', async () => {
    github.addRepo(`${OWNER}/one`);
    github.addRepo(`${OWNER}/two`);
    const installation = github.apps.install({
      appId: APP_ID,
      account: OWNER,
      repositories: ['one', 'two'],
      permissions: { contents: 'write', pull_requests: 'write', administration: 'write' },
    });
    const forges = createGitHubForges({
      apiUrl: github.url,
      redis: redisServer.url,
      prefix: uid('gh'),
      logger: pino({ level: 'silent' }),
      app: { appId: APP_ID, privateKey: privateKeyPem, installationId: undefined },
    });
    try {
      const lease = await forges.app!.mint(`${OWNER}/one`);
      expect(lease.installationId).toBe(installation.id);
      expect(github.apps.issued.get(lease.token)).toMatchObject({
        repositories: [`${OWNER}/one`],
        permissions: { contents: 'write', pull_requests: 'write', metadata: 'read' },
      });
      const forge = forges.forToken(lease.token);
      expect(await forge.getDefaultBranch(`${OWNER}/one`)).toBe('main');
      await expect(forge.getDefaultBranch(`${OWNER}/two`)).rejects.toMatchObject({ name: 'NotFoundError' });
      github.pushBranch(`${OWNER}/two`, 'feature');
      await expect(forge.openPullRequest({ repo: `${OWNER}/two`, head: 'feature', base: 'main', title: 't', body: 'b' })).rejects.toThrow(
        /not accessible by integration/,
      );
      expect(github.apps.issued.get(lease.token)!.refused.otherRepository).toBe(2);

      await lease.revoke();
      expect(github.apps.issued.get(lease.token)!.revokedAt).not.toBeNull();
      const revoked = forges.forToken(lease.token);
      await expect(revoked.getDefaultBranch(`${OWNER}/one`)).rejects.toThrow();
      expect(github.apps.issued.get(lease.token)!.refused.revoked).toBe(1);
      // Every call went through the client: the JWT calls too, none refused.
      expect(github.apps.refusedJwts).toEqual([]);
      expect(github.requests.some((r) => r.method === 'DELETE' && r.path === '/installation/token' && r.status === 204)).toBe(true);
    } finally {
      await forges.close();
    }
  });

  it('an App not installed on the repository: GitHubAppError naming it', async () => {
    github.addRepo(`${OWNER}-other/three`);
    const forges = createGitHubForges({
      apiUrl: github.url,
      redis: redisServer.url,
      prefix: uid('gh'),
      logger: pino({ level: 'silent' }),
      app: { appId: APP_ID, privateKey: privateKeyPem, installationId: undefined },
    });
    try {
      const minted = forges.app!.mint(`${OWNER}-other/three`);
      await expect(minted).rejects.toBeInstanceOf(GitHubAppError);
      await expect(minted).rejects.toThrow(`not installed on ${OWNER}-other/three`);
    } finally {
      await forges.close();
    }
  });
});

describe('GitHub App settings', () => {
  const base = { FLEET_SECRET_KEY: 'x'.repeat(32) };
  it('reads the key from the variable (with \\n escapes) or the file, and names what is wrong', () => {
    const oneLine = privateKeyPem.replace(/\n/g, '\\n');
    expect(loadConfig({ ...base, FLEET_GITHUB_APP_ID: APP_ID, FLEET_GITHUB_APP_PRIVATE_KEY: oneLine }).githubApp).toEqual({
      appId: APP_ID,
      privateKey: privateKeyPem,
      installationId: undefined,
    });
    const dir = mkdtempSync(join(tmpdir(), 'fleet-app-key-'));
    writeFileSync(join(dir, 'key.pem'), privateKeyPem);
    expect(
      loadConfig({
        ...base,
        FLEET_GITHUB_APP_ID: APP_ID,
        FLEET_GITHUB_APP_PRIVATE_KEY_FILE: join(dir, 'key.pem'),
        FLEET_GITHUB_APP_INSTALLATION_ID: '9',
      }).githubApp,
    ).toMatchObject({ installationId: 9 });
    expect(loadConfig(base)).toMatchObject({ githubApp: undefined, githubAuth: 'auto' });
    expect(() => loadConfig({ ...base, FLEET_GITHUB_APP_ID: APP_ID })).toThrow(/FLEET_GITHUB_APP_ID and its private key/);
    expect(() => loadConfig({ ...base, FLEET_GITHUB_APP_PRIVATE_KEY: privateKeyPem })).toThrow(/FLEET_GITHUB_APP_ID/);
    expect(() =>
      loadConfig({
        ...base,
        FLEET_GITHUB_APP_ID: APP_ID,
        FLEET_GITHUB_APP_PRIVATE_KEY: privateKeyPem,
        FLEET_GITHUB_APP_PRIVATE_KEY_FILE: join(dir, 'key.pem'),
      }),
    ).toThrow(/not both/);
    expect(() => loadConfig({ ...base, FLEET_GITHUB_APP_ID: APP_ID, FLEET_GITHUB_APP_PRIVATE_KEY: 'not a key' })).toThrow(
      /FLEET_GITHUB_APP_PRIVATE_KEY: not a readable PEM private key/,
    );
    expect(() => loadConfig({ ...base, FLEET_GITHUB_APP_ID: APP_ID, FLEET_GITHUB_APP_PRIVATE_KEY_FILE: join(dir, 'missing.pem') })).toThrow(
      /FLEET_GITHUB_APP_PRIVATE_KEY_FILE/,
    );
    expect(() => loadConfig({ ...base, FLEET_GITHUB_APP_ID: 'my-app', FLEET_GITHUB_APP_PRIVATE_KEY: privateKeyPem })).toThrow(
      /numeric App ID/,
    );
    expect(() => loadConfig({ ...base, FLEET_GITHUB_AUTH: 'app' })).toThrow(/FLEET_GITHUB_AUTH=app need a GitHub App/);
  });
});

describe('redaction of App credentials', () => {
  it('masks an App JWT and a PEM private key by their shapes', async () => {
    const { token: jwt } = await createAppAuth({ appId: APP_ID, privateKey: privateKeyPem })({ type: 'app' });
    const r = new Redactor();
    expect(r.redact(`authorization: bearer ${jwt} sent`)).toBe(`authorization: bearer ${REDACTED} sent`);
    expect(r.redact(`key=${privateKeyPem}!`)).toBe(`key=${REDACTED}\n!`);
  });
});
