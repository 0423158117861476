import { describe, expect, it } from 'vitest';
import { createLogger } from '../../src/logger.ts';
import { buildArgs, ensureWorkerImage } from '../../src/worker-image-setup.ts';

const logger = createLogger({ level: 'silent' });

describe('first start: the worker image', () => {
  it('does nothing when the image is there', async () => {
    await expect(ensureWorkerImage({ runtime: { hasImage: async () => true }, image: 'anything:1', logger })).resolves.toBeUndefined();
  });

  it('a missing image fleet cannot build (another FLEET_WORKER_IMAGE) says which image and which command', async () => {
    const error = await ensureWorkerImage({ runtime: { hasImage: async () => false }, image: 'registry.example/worker:7', logger }).catch(
      (e: unknown) => e as Error,
    );
    expect(error).toBeInstanceOf(Error);
    expect((error as Error).message).toMatch(/registry\.example\/worker:7 \(FLEET_WORKER_IMAGE\) is not on this host/);
    expect((error as Error).message).toMatch(/worker-image\/build\.sh/);
  });

  it('passes the base and CA bundle the operator set on to build.sh', () => {
    expect(buildArgs({ FLEET_WORKER_BASE: 'debian:12', FLEET_CA_BUNDLE: '/ca.pem' })).toEqual([
      '--base',
      'debian:12',
      '--ca-bundle',
      '/ca.pem',
    ]);
  });
});
