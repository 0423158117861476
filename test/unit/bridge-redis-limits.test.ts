import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { limitFitsBurst, parsePubsubLimit, PUBSUB_BUFFER_SETTING } from '../../src/bridge-redis-limits.ts';
import { FLEET_REDIS_ARGS } from '../../src/embedded-redis.ts';

describe('the pubsub output-buffer limit', () => {
  it('reads the pubsub class out of CONFIG GET client-output-buffer-limit', () => {
    expect(parsePubsubLimit('normal 0 0 0 slave 268435456 67108864 60 pubsub 33554432 8388608 60')).toEqual({
      hardBytes: 33554432,
      softBytes: 8388608,
      softSeconds: 60,
    });
    expect(parsePubsubLimit('normal 0 0 0')).toBeUndefined();
    expect(parsePubsubLimit('pubsub x 0 0')).toBeUndefined();
  });

  it("takes Redis's default as too low and fleet's setting, or no limit, as enough", () => {
    expect(limitFitsBurst({ hardBytes: 32 * 2 ** 20, softBytes: 8 * 2 ** 20, softSeconds: 60 })).toBe(false);
    expect(limitFitsBurst(parsePubsubLimit(PUBSUB_BUFFER_SETTING.replace('512mb', String(512 * 2 ** 20)))!)).toBe(true);
    expect(limitFitsBurst({ hardBytes: 0, softBytes: 0, softSeconds: 0 })).toBe(true);
    // A soft limit that closes the connection at once is a limit too.
    expect(limitFitsBurst({ hardBytes: 0, softBytes: 2 ** 20, softSeconds: 0 })).toBe(false);
  });

  it('is what the embedded Redis and the compose file set', () => {
    expect(FLEET_REDIS_ARGS.join(' ')).toContain(`--client-output-buffer-limit ${PUBSUB_BUFFER_SETTING}`);
    const compose = readFileSync(join(import.meta.dirname, '../../deploy/docker-compose.yml'), 'utf8');
    expect(compose).toMatch(new RegExp(`- --client-output-buffer-limit\\n\\s+- ${PUBSUB_BUFFER_SETTING}\\n`));
  });
});
