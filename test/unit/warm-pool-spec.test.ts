import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { defaultWarmPool, loadConfig } from '../../src/config.ts';
import { LABELS } from '../../src/container-runtime.ts';
import { buildPoolSpec } from '../../src/container-spec.ts';
import { EGRESS_MOUNT } from '../../src/egress/session.ts';
import { MIRROR_ENV, MIRROR_MOUNT } from '../../src/git-mirror.ts';
import { claimEnv, writeClaim } from '../../src/warm-pool.ts';

const GIB = 1024 ** 3;

describe('warm pool, pure parts', () => {
  const config = loadConfig({
    FLEET_HOST_ID: 'h1',
    FLEET_WORKER_IMAGE: 'img:1',
    FLEET_RUNTIME: 'runc',
    FLEET_DIND: 'caps',
    FLEET_GITHUB_TOKEN: 'ghp_hostTokenThatMustNotLeak0000000000',
    ANTHROPIC_API_KEY: 'sk-ant-hostKeyThatMustNotLeak',
    FLEET_AGENT_CMD: 'sh TASK.md',
  });

  it('a pool container carries the host settings and nothing of a request or a secret', () => {
    const spec = buildPoolSpec({
      name: 'fleet-warm-h1-abc-1',
      instance: 'abc',
      dindVolume: 'vol-1',
      claimDir: '/tmp/fleet-pool-claim-abc-x0',
      config,
    });
    const text = JSON.stringify(spec);
    for (const needle of ['ghp_', 'sk-ant', 'GITHUB_TOKEN', 'ANTHROPIC', 'REPO', 'TASK', 'FLEET_REQUEST_ID', 'FLEET_AGENT_CMD']) {
      expect(text).not.toContain(needle);
    }
    expect(spec.env.FLEET_POOL).toBe('1');
    expect(spec.labels).toEqual({ [LABELS.host]: 'h1', [LABELS.prefix]: 'fleet', [LABELS.pool]: 'abc' });
    expect(spec).toMatchObject({ image: 'img:1', runtime: 'runc', volumes: { 'vol-1': '/var/lib/docker' } });
    expect(spec.capAdd.length).toBeGreaterThan(0);
    // Its /fleet/input is its own claim directory, the only thing it may write on the host.
    expect(spec.writableBinds).toEqual({ '/tmp/fleet-pool-claim-abc-x0': '/fleet/input' });
  });

  it('under FLEET_EGRESS=proxy: network none and its own egress directory bound where the socket goes, nothing else', () => {
    const open = buildPoolSpec({
      name: 'w-1',
      instance: 'abc',
      claimDir: '/tmp/c1',
      config: { ...config, worker: { ...config.worker, network: 'host' } },
    });
    expect(open.network).toBe('host');
    expect(open.binds ?? {}).toEqual({});
    const spec = buildPoolSpec({
      name: 'w-2',
      instance: 'abc',
      egressDir: '/tmp/fleet-pool-egress-abc-x1',
      claimDir: '/tmp/c2',
      config: { ...config, worker: { ...config.worker, network: 'host' } },
    });
    expect(spec.network).toBe('none');
    expect(spec.binds).toEqual({ '/tmp/fleet-pool-egress-abc-x1': EGRESS_MOUNT });
    // The proxy env and the broker key come with the claim, not at create.
    expect(Object.keys(spec.env).filter((name) => /PROXY|EGRESS/i.test(name))).toEqual([]);
  });

  it('the claim env is NUL-separated NAME=VALUE records, a value may hold a newline or =', () => {
    expect(claimEnv({ A: '1', B: 'x=y\nz' })).toBe('A=1\0B=x=y\nz\0');
  });

  it('a claim is written as the files, the root-only env, and `go` last; a file outside /fleet/input is refused', () => {
    const dir = mkdtempSync(join(tmpdir(), 'fleet-test-claim-'));
    try {
      writeClaim(
        dir,
        [
          { path: '/fleet/input/TASK.md', content: '# task' },
          { path: '/fleet/input/broker-key', content: 'k', mode: 0o600 },
        ],
        'A=1\0',
      );
      // No worker has made its wake FIFO here (the pool does, next to it): `go` is written all the same.
      expect(readdirSync(dir).sort()).toEqual(['.claim-env', '.claim-go', 'TASK.md', 'broker-key']);
      expect(readFileSync(join(dir, 'TASK.md'), 'utf8')).toBe('# task');
      expect(statSync(join(dir, 'broker-key')).mode & 0o777).toBe(0o600);
      expect(statSync(join(dir, '.claim-env')).mode & 0o777).toBe(0o600);
      for (const path of ['/etc/passwd', '/fleet/input/../x', '/fleet/input/sub/x', '/fleet/input/.claim-go'])
        expect(() => writeClaim(dir, [{ path, content: 'x' }], '')).toThrow(/straight into \/fleet\/input/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("a repository's pool container mounts that repository's mirror read-only and knows its URL, still without a secret", () => {
    const spec = buildPoolSpec({
      name: 'w-3',
      instance: 'abc',
      claimDir: '/tmp/c3',
      repo: { name: 'acme/widgets', url: 'https://github.com/acme/widgets.git', mirror: '/data/git-mirrors/acme_widgets-0123.git' },
      config,
    });
    expect(spec.binds).toEqual({ '/data/git-mirrors/acme_widgets-0123.git': MIRROR_MOUNT });
    expect(spec.writableBinds).toEqual({ '/tmp/c3': '/fleet/input' });
    expect(spec.env).toMatchObject({
      REPO: 'acme/widgets',
      FLEET_GIT_URL: 'https://github.com/acme/widgets.git',
      [MIRROR_ENV]: MIRROR_MOUNT,
    });
    const text = JSON.stringify(spec);
    for (const needle of ['ghp_', 'sk-ant', 'GITHUB_TOKEN', 'ANTHROPIC', 'TASK', 'FLEET_REQUEST_ID', 'FLEET_AGENT_CMD']) {
      expect(text).not.toContain(needle);
    }
  });

  it('FLEET_WARM_REPOS: owner/name with an optional count, needs the git mirror cache, and names what is wrong', () => {
    expect(loadConfig({ FLEET_WARM_REPOS: 'acme/widgets, acme/api.v2:3' }).warmPool.repos).toEqual([
      { repo: 'acme/widgets', count: 1 },
      { repo: 'acme/api.v2', count: 3 },
    ]);
    expect(loadConfig({}).warmPool.repos).toEqual([]);
    expect(() => loadConfig({ FLEET_WARM_REPOS: 'acme' })).toThrow(/FLEET_WARM_REPOS: entries must be .*not "acme"/);
    expect(() => loadConfig({ FLEET_WARM_REPOS: 'acme/widgets:0' })).toThrow(/count 1 to 64.*"acme\/widgets:0"/);
    expect(() => loadConfig({ FLEET_WARM_REPOS: 'acme/*' })).toThrow(/FLEET_WARM_REPOS/);
    expect(() => loadConfig({ FLEET_WARM_REPOS: 'acme/widgets,ACME/Widgets:2' })).toThrow(/acme\/widgets is named twice/);
    expect(() => loadConfig({ FLEET_WARM_REPOS: 'acme/widgets', FLEET_GIT_CACHE: 'off' })).toThrow(
      /FLEET_WARM_REPOS: .*turn FLEET_GIT_CACHE on/,
    );
    expect(() => loadConfig({ FLEET_WARM_REPOS: 'acme/widgets', FLEET_GIT_CACHE_MAX: '0' })).toThrow(/FLEET_WARM_REPOS/);
  });

  it('default size: what memory holds beyond the cap, at least 1, at most the cap', () => {
    expect(defaultWarmPool(4, 4 * GIB, 18 * GIB)).toBe(1); // (18-2)/4 = 4 = cap: nothing beyond, still 1
    expect(defaultWarmPool(2, 4 * GIB, 18 * GIB)).toBe(2); // 4 - 2
    expect(defaultWarmPool(1, 1 * GIB, 34 * GIB)).toBe(1); // 31 beyond, capped at the cap
    expect(loadConfig({ FLEET_WARM_POOL: '0' }).warmPool.size).toBe(0);
    expect(() => loadConfig({ FLEET_WARM_POOL: '-1' })).toThrow(/FLEET_WARM_POOL/);
    expect(loadConfig({ FLEET_WARM_MAX_IDLE: '60' }).warmPool.maxIdleMs).toBe(60_000);
  });
});
