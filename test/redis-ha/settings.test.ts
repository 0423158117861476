import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config.ts';
import { connectionSpec, describeTarget, redisTargetFromEnv, targetSecrets } from '../../src/redis-connection.ts';

const load = (env: Record<string, string>) => loadConfig({ FLEET_SECRET_KEY: 'x'.repeat(32), ...env });

describe('Redis topology settings', () => {
  it('reads a Sentinel target with its passwords and TLS CA', () => {
    const ca = join(mkdtempSync(join(tmpdir(), 'fleet-ca-')), 'ca.pem');
    writeFileSync(ca, '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n');
    const config = load({
      REDIS_SENTINELS: 's1:26379, [::1]:26380',
      REDIS_SENTINEL_NAME: 'fleet',
      REDIS_SENTINEL_PASSWORD: 'sentinel-secret',
      REDIS_PASSWORD: 'redis-secret',
      REDIS_TLS: '1',
      REDIS_TLS_CA_FILE: ca,
    });
    expect(config.redis).toMatchObject({
      kind: 'sentinel',
      name: 'fleet',
      sentinels: [
        { host: 's1', port: 26379 },
        { host: '::1', port: 26380 },
      ],
      password: 'redis-secret',
      sentinelPassword: 'sentinel-secret',
      tls: { ca: expect.stringContaining('BEGIN CERTIFICATE') },
    });
    expect(config.redisUrl).toBeUndefined();
    expect(describeTarget(config.redis!)).not.toContain('secret');
    expect(targetSecrets(config.redis!).sort()).toEqual(['redis-secret', 'sentinel-secret']);
    const spec = connectionSpec(config.redis!, 'queue', 'n');
    expect(spec.options).toMatchObject({
      maxRetriesPerRequest: null,
      name: 'fleet',
      enableTLSForSentinelMode: true,
      password: 'redis-secret',
    });
  });

  it('gives BullMQ maxRetriesPerRequest null and the CLI a fast failure, on a Cluster too', () => {
    const target = redisTargetFromEnv({ REDIS_CLUSTER_NODES: 'a:7000,b:7001', REDIS_PASSWORD: 'p' })!;
    const queue = connectionSpec(target, 'queue', 'q');
    expect(queue).toMatchObject({
      kind: 'cluster',
      options: { maxRetriesPerRequest: null, redisOptions: { password: 'p', connectionName: 'q' } },
    });
    expect(connectionSpec(target, 'cli', 'c').options).toMatchObject({ maxRetriesPerRequest: 1, lazyConnect: true });
  });

  it.each([
    [{ REDIS_URL: 'redis://a:6379', REDIS_SENTINELS: 'a:26379', REDIS_SENTINEL_NAME: 'f' }, /REDIS_SENTINELS: set only one of/],
    [{ REDIS_SENTINELS: 'a:26379' }, /REDIS_SENTINEL_NAME: REDIS_SENTINELS needs/],
    [{ REDIS_SENTINEL_NAME: 'f' }, /REDIS_SENTINEL_NAME: needs REDIS_SENTINELS/],
    [{ REDIS_SENTINELS: 'a', REDIS_SENTINEL_NAME: 'f' }, /REDIS_SENTINELS: "a" is not host:port/],
    [{ REDIS_CLUSTER_NODES: 'a:7000', FLEET_PREFIX: 'fleet' }, /FLEET_PREFIX: "fleet" has no Redis Cluster hash tag/],
    [{ REDIS_URL: 'redis://a:6379', REDIS_TLS_CA_FILE: '/ca.pem' }, /REDIS_TLS_CA_FILE: needs a rediss:\/\/ REDIS_URL/],
    [{ REDIS_URL: 'redis://a:6379', REDIS_TLS: '1' }, /REDIS_TLS: with REDIS_URL, use a rediss:\/\/ URL/],
    [{ REDIS_URL: 'redis://:one@a:6379', REDIS_PASSWORD: 'two' }, /REDIS_PASSWORD: differs from the password in REDIS_URL/],
    [{ REDIS_PASSWORD: 'p' }, /REDIS_PASSWORD: needs REDIS_URL, REDIS_SENTINELS or REDIS_CLUSTER_NODES/],
    [
      { REDIS_CLUSTER_NODES: 'a:7000', FLEET_PREFIX: '{f}', REDIS_TLS: '1', REDIS_TLS_CA_FILE: '/no/such/ca.pem' },
      /REDIS_TLS_CA_FILE: cannot read/,
    ],
  ])('stops start-up on %j, naming the variable', (env, message) => {
    expect(() => load(env as Record<string, string>)).toThrow(ConfigError);
    expect(() => load(env as Record<string, string>)).toThrow(message);
  });
});
