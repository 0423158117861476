import { SETTINGS } from '../config.ts';

/** One line per setting; a test checks this covers the schema exactly, so --help cannot drift. */
export const SETTING_DESCRIPTIONS: Record<string, string> = {
  REDIS_URL: 'Redis to use (redis://host:port); unset: run an embedded redis-server',
  FLEET_PREFIX: 'BullMQ key prefix (default fleet; {fleet} for Redis Cluster)',
  FLEET_DATA_DIR: 'embedded Redis data and the generated secret key (default ./.fleet)',
  FLEET_REDIS_PORT: 'port of the embedded redis-server, loopback only (default 6379)',
  FLEET_HOST_ID: 'this host\'s name in labels, logs and the registry (default: hostname)',
  FLEET_HOST_CONCURRENCY: 'worker containers this host runs at once (default: (memory - 2 GiB) / FLEET_WORKER_MEMORY, at least 1)',
  FLEET_GLOBAL_CONCURRENCY: 'containers the whole fleet runs at once; 0 removes the limit (default: leave as set)',
  FLEET_WORKER_IMAGE: 'worker image (default coding-worker:latest)',
  FLEET_RUNTIME: 'Docker runtime of workers (default sysbox-runc; runc where there is no sysbox)',
  FLEET_WORKER_MEMORY: 'memory limit per worker (default 4g)',
  FLEET_WORKER_CPUS: 'CPU limit per worker, e.g. 2 (default: none)',
  FLEET_WORKER_PIDS: 'process limit per worker (default 4096)',
  FLEET_DOCKER_NETWORK: 'Docker network of workers (default: Docker\'s default)',
  FLEET_DOCKER_HOST: 'Docker daemon (unix:///path or tcp://host:port; default: DOCKER_HOST or the local socket)',
  FLEET_DIND: 'Docker-in-Docker: runtime (from sysbox, default), off, or caps (TEST MACHINES ONLY: extra capabilities, unconfined)',
  FLEET_DIND_CACHE: 'on: each slot keeps a named volume at the inner /var/lib/docker, so images stay for the next job (default off)',
  FLEET_DIND_CACHE_MAX: 'a slot\'s cache volume is emptied when it grows past this (default 20g)',
  FLEET_GIT_BASE_URL: 'where repositories are cloned from (default https://github.com)',
  FLEET_DRAIN_TIMEOUT: 'seconds running workers get on SIGTERM before their jobs go back to the queue (default 300)',
  FLEET_LOCK_DURATION: 'seconds a job lock lasts without renewal; a dead host\'s job is retried after about this (default 30)',
  FLEET_STALLED_INTERVAL: 'seconds between checks for jobs of dead hosts (default 30)',
  FLEET_SPAWN_ATTEMPTS: 'tries of a spawn job when Docker fails transiently (default 3)',
  FLEET_SECRET_KEY: 'key (32+ characters) sealing tokens in Redis; the same on every host (default: generated in FLEET_DATA_DIR)',
  FLEET_GITHUB_TOKEN: 'token used when a request carries none',
  FACTORY_API_KEY: 'API key given to droid workers',
  ANTHROPIC_API_KEY: 'API key given to claude workers',
  OPENAI_API_KEY: 'API key given to codex workers',
  FLEET_BOARD_PORT: 'port of /metrics, /healthz, /readyz and the board (default 3000; 0 picks a free port)',
  FLEET_BOARD_HOST: 'address to listen on (default 127.0.0.1 without board credentials, else 0.0.0.0)',
  FLEET_BOARD_USER: 'board admin user (basic auth)',
  FLEET_BOARD_PASSWORD: 'board admin password',
  FLEET_BOARD_READONLY_USER: 'board read-only user',
  FLEET_BOARD_READONLY_PASSWORD: 'board read-only password',
  FLEET_LOG_LEVEL: 'fatal, error, warn, info (default), debug, trace or silent',
  FLEET_JOB_LOG_LINES: 'job log entries kept per job for the board (default 2000)',
};

const width = Math.max(...SETTINGS.map((s) => s.length));
export const SETTINGS_HELP = SETTINGS.map((s) => `  ${s.padEnd(width)}  ${SETTING_DESCRIPTIONS[s] ?? ''}`).join('\n');
