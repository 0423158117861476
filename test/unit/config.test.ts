import { describe, expect, it } from 'vitest';
import { ConfigError, defaultHostConcurrency, loadConfig, parseMemory, SETTINGS } from '../../src/config.ts';
import { SETTING_DESCRIPTIONS } from '../../src/cli/settings-help.ts';

describe('loadConfig', () => {
  it('applies documented defaults to an empty environment', () => {
    const config = loadConfig({});
    expect(config.redisUrl).toBeUndefined();
    expect(config.prefix).toBe('fleet');
    expect(config.worker.image).toBe('coding-worker:latest');
    expect(config.worker.runtime).toBe('sysbox-runc');
    expect(config.worker.memoryBytes).toBe(4 * 1024 ** 3);
    expect(config.worker.dind).toBe('runtime');
    expect(config.gitBaseUrl).toBe('https://github.com');
    expect(config.http.port).toBe(3000);
    expect(config.http.host).toBe('127.0.0.1');
    expect(config.drainTimeoutMs).toBe(300_000);
    expect(config.hostConcurrency).toBeGreaterThanOrEqual(1);
  });

  it('accepts a Redis Cluster hash-tag prefix', () => {
    expect(loadConfig({ FLEET_PREFIX: '{fleet}' }).prefix).toBe('{fleet}');
  });

  it.each([
    ['FLEET_WORKER_MEMORY', 'lots'],
    ['FLEET_HOST_CONCURRENCY', '0'],
    ['FLEET_HOST_CONCURRENCY', 'two'],
    ['FLEET_BOARD_PORT', '70000'],
    ['FLEET_SECRET_KEY', 'short'],
    ['FLEET_PREFIX', 'has space'],
    ['FLEET_GIT_BASE_URL', 'not a url'],
    ['FLEET_DIND', 'privileged'],
    ['FLEET_DRAIN_TIMEOUT', '-5'],
  ])('refuses %s=%s with a message naming the setting', (key, value) => {
    expect(() => loadConfig({ [key]: value })).toThrow(ConfigError);
    expect(() => loadConfig({ [key]: value })).toThrow(new RegExp(key));
  });

  it('names both halves of an incomplete board account', () => {
    expect(() => loadConfig({ FLEET_BOARD_USER: 'admin' })).toThrow(/FLEET_BOARD_PASSWORD/);
  });

  it('listens on all interfaces only once the board has credentials', () => {
    const config = loadConfig({ FLEET_BOARD_USER: 'admin', FLEET_BOARD_PASSWORD: 'pw' });
    expect(config.http.host).toBe('0.0.0.0');
    expect(config.http.admin).toEqual({ user: 'admin', password: 'pw' });
  });

  it('converts seconds to milliseconds', () => {
    expect(loadConfig({ FLEET_DRAIN_TIMEOUT: '2.5' }).drainTimeoutMs).toBe(2500);
  });
});

describe('agent model settings', () => {
  it('parses FLEET_MODEL_MAP and names a bad entry', () => {
    expect(loadConfig({ FLEET_MODEL_MAP: '{"claude": {"a": "b"}, "*": {"c": "d"}}' }).models.map).toEqual({
      claude: { a: 'b' },
      '*': { c: 'd' },
    });
    expect(loadConfig({}).models.map).toEqual({});
    expect(() => loadConfig({ FLEET_MODEL_MAP: 'claude:a=b' })).toThrow(/FLEET_MODEL_MAP: must be JSON/);
    expect(() => loadConfig({ FLEET_MODEL_MAP: '{"gemini": {"a": "b"}}' })).toThrow(/FLEET_MODEL_MAP: "gemini" is not an agent/);
    expect(() => loadConfig({ FLEET_MODEL_MAP: '{"codex": {"a": "--help me"}}' })).toThrow(
      /FLEET_MODEL_MAP: "codex"."a": the target must be a model name/,
    );
  });

  it("takes droid's custom model as three settings together, naming what is missing", () => {
    const droid = {
      FLEET_DROID_MODEL_PROVIDER: 'anthropic',
      FLEET_DROID_MODEL_BASE_URL: 'https://gw.example/',
      FLEET_DROID_MODEL_API_KEY: 'k',
    };
    expect(loadConfig(droid).models.droid).toEqual({
      provider: 'anthropic',
      baseUrl: 'https://gw.example',
      apiKey: 'k',
      maxOutputTokens: 16384,
    });
    expect(loadConfig({}).models.droid).toBeUndefined();
    expect(() => loadConfig({ ...droid, FLEET_DROID_MODEL_API_KEY: '' })).toThrow(
      /FLEET_DROID_MODEL_API_KEY: .*missing: FLEET_DROID_MODEL_API_KEY/,
    );
    expect(() => loadConfig({ ...droid, FLEET_DROID_MODEL_PROVIDER: 'gemini' })).toThrow(/FLEET_DROID_MODEL_PROVIDER/);
    expect(() => loadConfig({ FLEET_OPENAI_BASE_URL: 'not a url' })).toThrow(/FLEET_OPENAI_BASE_URL/);
  });
});

describe('host concurrency default', () => {
  it('is (memory - 2 GiB) / worker memory, at least 1', () => {
    const gib = 1024 ** 3;
    expect(defaultHostConcurrency(4 * gib, 24 * gib)).toBe(5);
    expect(defaultHostConcurrency(4 * gib, 3 * gib)).toBe(1);
  });
});

describe('parseMemory', () => {
  it.each([
    ['4g', 4 * 1024 ** 3],
    ['512m', 512 * 1024 ** 2],
    ['1.5G', 1.5 * 1024 ** 3],
    ['1024', 1024],
  ])('%s', (text, bytes) => expect(parseMemory(text)).toBe(bytes));
});

describe('--help', () => {
  it('describes every setting the schema reads, and no other', () => {
    expect(Object.keys(SETTING_DESCRIPTIONS).sort()).toEqual([...SETTINGS].sort());
  });
});

describe('README', () => {
  it('names every setting the schema reads', async () => {
    const { readFileSync } = await import('node:fs');
    const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
    expect(SETTINGS.filter((s) => !readme.includes(s))).toEqual([]);
  });
});
