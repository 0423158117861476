import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.ts';
import { allows, parseEgressList, resolveEgressPolicy, rulesOf } from '../../src/egress/allowlist.ts';
import { brokerDecision, forgeOf, gitRepoOfPath } from '../../src/egress/broker.ts';
import { pullRequestBody } from '../../src/pr-text.ts';
import { spawnRequestSchema } from '../../src/protocol.ts';

describe('egress allowlists', () => {
  it('expands presets, and matches hosts, subdomains and ports', () => {
    const rules = parseEgressList('github, npm,example.com:8443,*.corp.test').flatMap(rulesOf);
    expect(allows(rules, 'api.github.com', 443)).toBe(true);
    expect(allows(rules, 'objects.githubusercontent.com', 443)).toBe(true);
    expect(allows(rules, 'registry.npmjs.org', 80)).toBe(true);
    expect(allows(rules, 'registry.npmjs.org', 8080)).toBe(false);
    expect(allows(rules, 'example.com', 8443)).toBe(true);
    expect(allows(rules, 'example.com', 443)).toBe(false);
    expect(allows(rules, 'a.b.corp.test', 443)).toBe(true);
    expect(allows(rules, 'corp.test', 443)).toBe(false);
    expect(allows(rules, 'evilgithub.com', 443)).toBe(false);
    expect(allows(rules, '169.254.169.254', 80)).toBe(false);
  });

  it('names a bad entry', () => {
    expect(() => parseEgressList('github,no spaces')).toThrow(/"no spaces" is neither a preset/);
    expect(() => parseEgressList('host:70000')).toThrow(/port outside/);
  });

  it('a request narrows; widening needs the host list of what requests may add; methods only narrow', () => {
    const policy = resolveEgressPolicy({
      hostAllow: ['github', 'npm'],
      requestAllowable: ['pypi'],
      extraHosts: [{ host: 'gateway.test', port: 8080 }],
      hostMethods: 'all',
      request: { allow: ['npm', 'pypi', 'evil.test'], methods: 'read' },
    });
    expect(allows(policy.rules, 'registry.npmjs.org', 443)).toBe(true);
    expect(allows(policy.rules, 'pypi.org', 443)).toBe(true);
    expect(allows(policy.rules, 'github.com', 443)).toBe(false);
    expect(allows(policy.rules, 'evil.test', 443)).toBe(false);
    expect(allows(policy.rules, 'gateway.test', 8080)).toBe(true);
    expect(policy).toMatchObject({ methods: 'read', refused: ['evil.test'] });
    expect(
      resolveEgressPolicy({ hostAllow: [], requestAllowable: [], extraHosts: [], hostMethods: 'read', request: { methods: 'all' } })
        .methods,
    ).toBe('read');
  });
});

describe('the broker', () => {
  const forge = forgeOf('https://github.com');
  const base = { forge, repo: 'acme/widgets', brokerKey: 'k'.repeat(64), token: 'ghp_real' };
  const basic = (password: string) => `Basic ${Buffer.from(`x:${password}`).toString('base64')}`;

  it('knows which repository a git request is for', () => {
    expect(gitRepoOfPath(forge, '/acme/widgets.git/info/refs?service=git-receive-pack')).toBe('acme/widgets');
    expect(gitRepoOfPath(forge, '/acme/widgets/git-upload-pack')).toBe('acme/widgets');
    expect(gitRepoOfPath(forge, '/acme/widgets/pulls')).toBeNull();
    expect(gitRepoOfPath(forgeOf('http://127.0.0.1:9/git'), '/git/acme/w.git/info/refs')).toBe('acme/w');
  });

  it('adds the token for the own repository with the key, challenges without it, refuses other repositories', () => {
    const own = '/acme/widgets.git/git-receive-pack';
    expect(brokerDecision({ ...base, path: own, authorization: basic(base.brokerKey) })).toEqual({
      kind: 'forward',
      authorization: `Basic ${Buffer.from('x-access-token:ghp_real').toString('base64')}`,
    });
    expect(brokerDecision({ ...base, path: own, authorization: basic('wrong') })).toEqual({ kind: 'challenge' });
    expect(brokerDecision({ ...base, path: own, authorization: undefined })).toEqual({ kind: 'challenge' });
    expect(brokerDecision({ ...base, path: '/acme/other.git/git-receive-pack', authorization: basic(base.brokerKey) })).toEqual({
      kind: 'refuse',
      repo: 'acme/other',
    });
    // Not git: forwarded with no Authorization at all (the worker's own header never reaches the forge).
    expect(brokerDecision({ ...base, path: '/acme/widgets', authorization: basic(base.brokerKey) })).toEqual({
      kind: 'forward',
      authorization: null,
    });
  });
});

describe('egress in requests, settings and PR bodies', () => {
  const request = { request_id: 'r1', repo: 'acme/widgets', task_content: 'x' };

  it('the v2 field takes presets and hosts and names a bad one', () => {
    expect(spawnRequestSchema.parse({ ...request, egress: { allow: ['npm', 'api.test:8443'], methods: 'read' } }).egress).toEqual({
      allow: ['npm', 'api.test:8443'],
      methods: 'read',
    });
    const bad = spawnRequestSchema.safeParse({ ...request, egress: { allow: ['http://x'] } });
    expect(bad.success).toBe(false);
    expect(bad.error!.issues[0]!.path).toEqual(['egress', 'allow', 0]);
    expect(spawnRequestSchema.safeParse({ ...request, egress: { methods: 'POST' } }).success).toBe(false);
  });

  it('proxy is the default, and a Docker network needs FLEET_EGRESS=open', () => {
    expect(loadConfig({}).egress).toMatchObject({ mode: 'proxy', methods: 'all' });
    expect(loadConfig({}).egress.allow).toContain('github');
    expect(() => loadConfig({ FLEET_DOCKER_NETWORK: 'host' })).toThrow(
      /FLEET_DOCKER_NETWORK: FLEET_EGRESS=proxy runs workers on network none/,
    );
    expect(loadConfig({ FLEET_DOCKER_NETWORK: 'host', FLEET_EGRESS: 'open' }).worker.network).toBe('host');
    expect(() => loadConfig({ FLEET_EGRESS_ALLOW: 'github,bad entry' })).toThrow(/FLEET_EGRESS_ALLOW: "bad entry"/);
  });

  it('the PR body lists blocked connections', () => {
    const body = pullRequestBody({
      requestId: 'r1',
      scope: null,
      summary: 's',
      task: 't',
      files: [],
      egress: {
        mode: 'proxy',
        methods: 'all',
        refused_entries: [],
        blocked: [{ method: 'CONNECT', host: 'evil.test', port: 443, reason: 'not_allowed', count: 3 }],
      },
    });
    expect(body).toContain('## Blocked network access');
    expect(body).toContain('- `CONNECT evil.test:443`: not_allowed (3 times)');
    expect(pullRequestBody({ requestId: 'r1', scope: null, summary: 's', task: 't', files: [] })).not.toContain('Blocked');
  });
});
