import { describe, expect, it } from 'vitest';
import type { ContainerRuntime } from '../../src/container-runtime.ts';
import { DindSlots } from '../../src/dind-cache.ts';
import { createLogger } from '../../src/logger.ts';

/** Only the volume calls matter here; the sizes are what a test says they are. */
function volumes(sizes: Map<string, number>, removed: string[]): ContainerRuntime {
  return {
    create: () => Promise.reject(new Error('not used')),
    list: async () => [],
    removeById: async () => {},
    ping: async () => {},
    hasImage: async () => true,
    probeCreate: async () => {},
    volumeSize: async (name) => sizes.get(name) ?? null,
    removeVolume: async (name) => {
      removed.push(name);
      sizes.delete(name);
    },
  };
}

describe('DindSlots', () => {
  it('lends each slot to one job at a time; the next job waits for the slot to come back', async () => {
    const slots = new DindSlots({
      hostId: 'h',
      prefix: 'fleet',
      slots: 1,
      maxBytes: 100,
      runtime: volumes(new Map(), []),
      logger: createLogger({ level: 'silent' }),
    });
    const first = await slots.acquire();
    let second: { volume: string } | undefined;
    const waiting = slots.acquire().then((s) => (second = s));
    await Promise.resolve();
    expect(second).toBeUndefined();
    first.release();
    await waiting;
    expect(second!.volume).toBe(first.volume);
    expect(first.volume).toBe('fleet-dind-h-0');
  });

  it('empties a volume that grew past the limit before lending it again', async () => {
    const removed: string[] = [];
    const sizes = new Map([['fleet-dind-h-0', 500]]);
    const slots = new DindSlots({
      hostId: 'h',
      prefix: 'fleet',
      slots: 2,
      maxBytes: 100,
      runtime: volumes(sizes, removed),
      logger: createLogger({ level: 'silent' }),
    });
    const [a, b] = [await slots.acquire(), await slots.acquire()];
    sizes.set(b.volume, 50);
    a.release();
    b.release();
    await slots.settled();
    expect(removed).toEqual(['fleet-dind-h-0']);
  });
});
