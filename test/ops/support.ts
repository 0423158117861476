import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { loadConfig, type Role } from '../../src/config.ts';
import type { ContainerRuntime } from '../../src/container-runtime.ts';
import { startFleet, type RunningFleet } from '../../src/fleet.ts';
import { createLogger } from '../../src/logger.ts';

export const randomPrefix = () => `t${randomBytes(5).toString('hex')}`;

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
    execFile(command, commandArgs, { env: { PATH: process.env.PATH!, HOME: process.env.HOME ?? '/tmp', ...env }, timeout: 60_000 }, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === 'number' ? error.code : -1) : 0;
      resolvePromise({ code, signal: error?.signal ?? null, stdout, stderr });
    });
  });
}

export const ADMIN = { user: 'admin', password: 'admin-password-0123456789' };
export const READER = { user: 'viewer', password: 'viewer-password-0123456789' };

export function basic(account: { user: string; password: string }): string {
  return `Basic ${Buffer.from(`${account.user}:${account.password}`).toString('base64')}`;
}

export interface TestFleet {
  fleet: RunningFleet;
  base: string;
  prefix: string;
  env: Record<string, string>;
  stop(): Promise<void>;
}

/** A fleet on a random port and prefix against the test Redis; env overrides the defaults. */
export async function startTestFleet(options: { redisUrl: string; roles: Role[]; env?: Record<string, string>; runtime?: ContainerRuntime; prefix?: string }): Promise<TestFleet> {
  const prefix = options.prefix ?? randomPrefix();
  const dataDir = mkdtempSync(join(tmpdir(), 'fleet-ops-test-'));
  const env: Record<string, string> = {
    REDIS_URL: options.redisUrl,
    FLEET_PREFIX: prefix,
    FLEET_DATA_DIR: dataDir,
    FLEET_BOARD_PORT: '0',
    FLEET_BOARD_HOST: '127.0.0.1',
    FLEET_HOST_ID: `host-${prefix}`,
    FLEET_SECRET_KEY: 'a test secret key that is long enough to use',
    FLEET_LOG_LEVEL: 'silent',
    ...options.env,
  };
  const config = loadConfig(env);
  const fleet = await startFleet({ config, roles: options.roles, logger: createLogger({ level: config.logLevel }), runtime: options.runtime });
  return {
    fleet,
    base: `http://127.0.0.1:${fleet.httpPort}`,
    prefix,
    env,
    async stop() {
      await fleet.stop();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** A runtime for tests of the host registry and drain: Docker answers, the image is there, no job ever runs. */
export function idleRuntime(): ContainerRuntime {
  return {
    create: () => Promise.reject(new Error('idleRuntime runs no container')),
    list: async () => [],
    removeById: async () => {},
    ping: async () => {},
    hasImage: async () => true,
    volumeSize: async () => null,
    removeVolume: async () => {},
  };
}
