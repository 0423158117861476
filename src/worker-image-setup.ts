import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Logger } from 'pino';
import type { ContainerRuntime } from './container-runtime.ts';

/** The image build.sh makes (as :latest and :<hash>); only this one can `fleet start` build by itself. */
export const BUILT_IMAGE = 'coding-worker:latest';
const BUILD_SCRIPT = join(dirname(fileURLToPath(import.meta.url)), '..', 'worker-image', 'build.sh');

/** The build.sh arguments for this machine: a debootstrap base where one can be made here (root, debootstrap). */
export function buildArgs(env: NodeJS.ProcessEnv = process.env): string[] {
  const args: string[] = [];
  const debootstrap = process.getuid?.() === 0 && spawnSync('debootstrap', ['--version'], { stdio: 'ignore' }).status === 0;
  if (env.FLEET_WORKER_BASE) args.push('--base', env.FLEET_WORKER_BASE);
  else if (debootstrap) args.push('--base-from-debootstrap');
  if (env.FLEET_CA_BUNDLE) args.push('--ca-bundle', env.FLEET_CA_BUNDLE);
  return args;
}

/** The command an operator runs, as text to paste (relative to the current directory when it is shorter). */
export function buildCommand(args: string[]): string {
  const script = relative(process.cwd(), BUILD_SCRIPT);
  return [script.startsWith('..') ? BUILD_SCRIPT : script, ...args].join(' ');
}

/**
 * First start of a spawn host: when the worker image is missing, build it with its progress on the terminal
 * (build.sh writes it to stderr, inherited here), or throw an error that says which command to run and why
 * fleet could not. A missing image otherwise fails every job with spawn_error.
 */
export async function ensureWorkerImage(options: {
  runtime: Pick<ContainerRuntime, 'hasImage'>;
  image: string;
  logger: Logger;
  env?: NodeJS.ProcessEnv;
}): Promise<void> {
  const { runtime, image, logger } = options;
  if (await runtime.hasImage(image)) return;
  const args = buildArgs(options.env);
  const command = buildCommand(args);
  if (image !== BUILT_IMAGE) {
    throw new Error(
      `the worker image ${image} (FLEET_WORKER_IMAGE) is not on this host, and fleet builds only ${BUILT_IMAGE}: ` +
        `pull or load ${image}, or unset FLEET_WORKER_IMAGE and run ${command}`,
    );
  }
  if (!existsSync(BUILD_SCRIPT)) {
    throw new Error(
      `the worker image ${image} is not on this host and this install has no worker-image/build.sh: build it from a fleet checkout`,
    );
  }
  logger.warn({ image, command }, 'the worker image is not on this host: building it now (a first build takes minutes; progress follows)');
  const code = await new Promise<number>((resolve, reject) => {
    // stdout carries only the tag; the progress is on stderr, which goes to the terminal as it comes.
    const child = spawn(BUILD_SCRIPT, args, { stdio: ['ignore', 'ignore', 'inherit'] });
    child.on('error', reject);
    child.on('close', (exit) => resolve(exit ?? 1));
  });
  if (code !== 0 || !(await runtime.hasImage(image))) {
    throw new Error(
      `the worker image ${image} is not on this host and building it failed (build.sh exited ${code}; its output is above): ` +
        `fix what it says and run ${command}, then start again` +
        (args.includes('--base-from-debootstrap') || args.includes('--base')
          ? ''
          : ' (without root and debootstrap the base is ubuntu:24.04, which needs a registry; as root with debootstrap, --base-from-debootstrap makes one locally)'),
    );
  }
  logger.info({ image }, 'worker image built');
}
