import { spawnSync } from 'node:child_process';
import { describe } from 'vitest';
import { ensureTestImage } from './test-image.ts';

/**
 * Docker-backed tests run when a daemon answers. With FLEET_REQUIRE_DOCKER=1 (CI) a missing
 * daemon fails the run instead of skipping; otherwise the skip is announced, never silent.
 */
export const dockerAvailable =
  spawnSync('docker', ['info', '--format', '{{.ServerVersion}}'], { stdio: 'ignore', timeout: 10_000 }).status === 0;

if (!dockerAvailable) {
  if (process.env.FLEET_REQUIRE_DOCKER === '1') {
    throw new Error('FLEET_REQUIRE_DOCKER=1 but no Docker daemon answers: start dockerd (see .ci/run)');
  }
  console.warn(
    '\n*** NOTICE: no Docker daemon answers; Docker-backed tests are SKIPPED (set FLEET_REQUIRE_DOCKER=1 to require them) ***\n',
  );
}

export const describeDocker = dockerAvailable ? describe : describe.skip;

let image: string | undefined;
/** The busybox test worker image (built once per content hash). */
export function testImage(): string {
  image ??= ensureTestImage();
  return image;
}

/** Containers carrying a label, running or not: what a test left behind or what runs now. */
export function containersWithLabel(label: string, onlyRunning = false): string[] {
  const args = ['ps', '-q', '--no-trunc', '--filter', `label=${label}`];
  if (!onlyRunning) args.splice(1, 0, '-a');
  const out = spawnSync('docker', args, { encoding: 'utf8' });
  return out.stdout.split('\n').filter(Boolean);
}

export function removeContainersWithLabel(label: string): void {
  const ids = containersWithLabel(label);
  if (ids.length) spawnSync('docker', ['rm', '-f', ...ids], { stdio: 'ignore' });
}
