import { execFile } from 'node:child_process';
import { resolve } from 'node:path';
import type { ContainerRuntime } from '../../src/container-runtime.ts';
import type { RunningFleet } from '../../src/fleet.ts';
import { testEnv } from '../support/fleet.ts';

export const FLEET_BIN = resolve(import.meta.dirname, '../../bin/fleet.js');

export interface FleetRun {
  /** The exit status; -1 when there is none (killed by a signal, or the command could not start). */
  code: number;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

const shellQuote = (word: string) => `'${word.replaceAll("'", `'\\''`)}'`;

/**
 * `node bin/fleet.js ...` with only the environment given (nothing inherited but PATH and HOME), killed after 60 s.
 * viaScript runs it under `script`, which gives it a terminal as an operator's shell would.
 */
export function runFleet(args: string[], env: Record<string, string> = {}, options: { viaScript?: boolean } = {}): Promise<FleetRun> {
  const [command, commandArgs] = options.viaScript
    ? ['script', ['-qec', [process.execPath, FLEET_BIN, ...args].map(shellQuote).join(' '), '/dev/null']]
    : [process.execPath, [FLEET_BIN, ...args]];
  return new Promise((resolvePromise) => {
    execFile(
      command,
      commandArgs,
      { env: { PATH: process.env.PATH!, HOME: process.env.HOME ?? '/tmp', ...env }, timeout: 60_000 },
      (error, stdout, stderr) => {
        const code = error ? (typeof error.code === 'number' ? error.code : -1) : 0;
        resolvePromise({ code, signal: error?.signal ?? null, stdout, stderr });
      },
    );
  });
}

export const ADMIN = { user: 'admin', password: 'admin-password-0123456789' };
export const READER = { user: 'viewer', password: 'viewer-password-0123456789' };

export function basic(account: { user: string; password: string }): string {
  return `Basic ${Buffer.from(`${account.user}:${account.password}`).toString('base64')}`;
}

/** Where a fleet's HTTP server (healthz, readyz, metrics, board) answers. */
export const baseUrl = (fleet: RunningFleet) => `http://127.0.0.1:${fleet.httpPort}`;

/** Settings testEnv sets for the worker tests that the ops tests leave at the fleet's defaults. */
const WORKER_TEST_SETTINGS = [
  'FLEET_RUNTIME',
  'FLEET_DOCKER_NETWORK',
  'FLEET_WORKER_MEMORY',
  'FLEET_HOST_CONCURRENCY',
  'FLEET_LOCK_DURATION',
  'FLEET_STALLED_INTERVAL',
  'FLEET_DRAIN_TIMEOUT',
];

/** testEnv for the ops tests: no worker image, the fleet's own timing and concurrency, host `host-<prefix>`, HTTP on loopback. */
export function opsEnv(redisUrl: string, overrides: Record<string, string> = {}): Record<string, string> {
  const env = testEnv(redisUrl);
  for (const key of WORKER_TEST_SETTINGS) delete env[key];
  const prefix = overrides.FLEET_PREFIX ?? env.FLEET_PREFIX!;
  return { ...env, FLEET_PREFIX: prefix, FLEET_HOST_ID: `host-${prefix}`, FLEET_BOARD_HOST: '127.0.0.1', ...overrides };
}

/** A runtime for tests of the host registry and drain: Docker answers, the image is there, no job ever runs. */
export function idleRuntime(): ContainerRuntime {
  return {
    create: () => Promise.reject(new Error('idleRuntime runs no container')),
    list: async () => [],
    removeById: async () => {},
    ping: async () => {},
    hasImage: async () => true,
    probeCreate: async () => {},
    volumeSize: async () => null,
    removeVolume: async () => {},
  };
}
