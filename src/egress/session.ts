/**
 * One job's egress under FLEET_EGRESS=proxy: its own proxy on its own unix socket (so the proxy knows which
 * job, repository and token a connection belongs to), the mount and environment the worker container
 * needs to use it, and the record of what was blocked. Opened before the container is created, closed
 * after it is removed.
 */
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { chmod, mkdtemp } from 'node:fs/promises';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FleetConfig } from '../config.ts';
import type { InputFile } from '../container-runtime.ts';
import type { EgressBlock, EgressReport } from '../protocol.ts';
import { redactor } from '../redact.ts';
import { resolveEgressPolicy, ruleOfUrl, type EgressMethods, type EgressRule } from './allowlist.ts';
import { forgeOf } from './broker.ts';
import { createFleetCa, type FleetCa } from './ca.ts';
import { startEgressProxy, type BlockedAttempt } from './proxy.ts';

/** Where the socket's directory is mounted in the worker, and the port its forwarder serves on loopback. */
export const EGRESS_MOUNT = '/run/fleet-egress';
export const EGRESS_SOCKET = `${EGRESS_MOUNT}/proxy.sock`;
export const FORWARDER_PORT = 3128;
/** Copied in as root-only input files; fleet-worker moves the key out of /fleet/input before anything else runs. */
export const BROKER_KEY_FILE = '/fleet/input/broker-key';
export const FORGE_CA_FILE = '/fleet/input/forge-ca.pem';

/** Blocked destinations a result lists; past this many, further ones are only counted. */
const MAX_LISTED_BLOCKS = 100;

export interface EgressSession {
  /** host directory -> container path */
  binds: Record<string, string>;
  env: Record<string, string>;
  files: InputFile[];
  report(): EgressReport;
  close(): Promise<void>;
}

export interface EgressHooks {
  /** Called on every blocked attempt; `first` is true for the first of its destination and reason. */
  onBlocked(attempt: BlockedAttempt, first: boolean): void;
}

let processCa: FleetCa | undefined;
/** One CA per fleet process, made when the first job needs it. */
function fleetCa(): FleetCa {
  processCa ??= createFleetCa();
  return processCa;
}

/** The hosts the host's own settings send workers to (model endpoints): reachable whatever the lists say. */
export function configuredEndpoints(models: FleetConfig['models']): EgressRule[] {
  return [models.anthropicBaseUrl, models.openaiBaseUrl, models.droid?.baseUrl].filter((u): u is string => !!u).map(ruleOfUrl);
}

export type EgressSessionInput = {
  repo: string;
  token: string;
  request?: { allow?: string[]; methods?: EgressMethods };
  config: Pick<FleetConfig, 'egress' | 'gitBaseUrl' | 'models'>;
  hooks: EgressHooks;
  /** Tests with a self-signed https forge. */
  upstreamCa?: string;
  /**
   * Listen in this directory instead of a new one: a warm pool container's (src/warm-pool.ts), bound at
   * EGRESS_MOUNT since before its job, so the socket appears in the running container. The directory stays
   * the caller's: close() removes the socket only.
   */
  dir?: string;
};

/** Opens the session and waits for its proxy to listen. */
export async function openEgressSession(input: EgressSessionInput): Promise<EgressSession> {
  const session = prepareEgressSession(input);
  await session.listening;
  return session;
}

// Under the system temp dir, not the data dir: a unix socket path must stay under 108 bytes.
const EGRESS_DIR_PREFIX = join(tmpdir(), 'fleet-egress-');
/**
 * One empty session directory made ahead: making it takes syscalls (0.18 ms p50 on the test machine) that a job
 * would otherwise wait on before its container is created (issue 11 item 4). Taken by the next session, which
 * makes the next one in the background; a process that exits removes it.
 */
let spareDir: string | undefined;
let makingSpare = false;

function makeEgressDirNow(): string {
  const dir = mkdtempSync(EGRESS_DIR_PREFIX);
  chmodSync(dir, 0o755);
  return dir;
}

function takeEgressDir(): string {
  const dir = spareDir ?? makeEgressDirNow();
  spareDir = undefined;
  if (!makingSpare) {
    makingSpare = true;
    // Even asking for it costs (a promise, a request to libuv's pool): that too waits for the caller's turn to end.
    nextTurn()
      .then(() => mkdtemp(EGRESS_DIR_PREFIX))
      .then(async (made) => {
        await chmod(made, 0o755);
        spareDir = made;
      })
      // No spare: the next session makes its directory itself, as the first one did.
      .catch(() => {})
      .finally(() => {
        makingSpare = false;
      });
  }
  return dir;
}

process.once('exit', () => {
  if (spareDir) rmSync(spareDir, { recursive: true, force: true });
});

/**
 * The session's mount, env and files at once, and its proxy starting: the container can be created meanwhile
 * (its socket directory exists already), and must not start before `listening` resolves. Should the proxy fail
 * to start, `listening` rejects and everything is cleaned up; close() stays safe to call.
 */
export function prepareEgressSession(input: EgressSessionInput): EgressSession & { listening: Promise<void> } {
  const { config } = input;
  const policy = resolveEgressPolicy({
    hostAllow: config.egress.allow,
    requestAllowable: config.egress.requestAllow,
    extraHosts: configuredEndpoints(config.models),
    hostMethods: config.egress.methods,
    request: input.request,
  });
  const forge = forgeOf(config.gitBaseUrl);
  const ca = forge.protocol === 'https:' ? fleetCa() : undefined;
  const brokerKey = randomBytes(32).toString('hex');
  // Not the token, but a credential of this job's repository while it runs: masked wherever output goes.
  const forgetKey = redactor.add(brokerKey);
  const ownDir = input.dir === undefined;
  const dir = input.dir ?? takeEgressDir();
  const socketPath = join(dir, 'proxy.sock');
  const removeSocket = () => rmSync(ownDir ? dir : socketPath, { recursive: true, force: true });
  const blocks = new Map<string, EgressBlock>();
  let unlisted = 0;
  // Started after the caller's synchronous run, in which it asks Docker for the container (setImmediate): the
  // server's set-up (about 0.2 ms on the test machine) no longer delays that call (issue 11 item 4), and
  // `listening` is awaited before the container starts anyway.
  const proxy = nextTurn().then(() =>
    startEgressProxy({
      socketPath,
      policy,
      forge,
      repo: input.repo,
      token: input.token,
      brokerKey,
      ca,
      upstreamCa: input.upstreamCa,
      onBlocked(attempt) {
        const key = `${attempt.method} ${attempt.host}:${attempt.port} ${attempt.reason}`;
        const seen = blocks.get(key);
        if (seen) seen.count++;
        else if (blocks.size < MAX_LISTED_BLOCKS) blocks.set(key, { ...attempt, count: 1 });
        else unlisted++;
        input.hooks.onBlocked(attempt, !seen);
      },
    }),
  );
  const listening = proxy.then(
    () => {},
    (error) => {
      forgetKey();
      removeSocket();
      throw error;
    },
  );
  // Whoever creates the container awaits it; an unawaited failure is not a crash of the host.
  listening.catch(() => {});

  const proxyUrl = `http://127.0.0.1:${FORWARDER_PORT}`;
  const env: Record<string, string> = {
    FLEET_EGRESS: 'proxy',
    FLEET_EGRESS_SOCKET: EGRESS_SOCKET,
    FLEET_EGRESS_PORT: String(FORWARDER_PORT),
    HTTP_PROXY: proxyUrl,
    HTTPS_PROXY: proxyUrl,
    http_proxy: proxyUrl,
    https_proxy: proxyUrl,
    NO_PROXY: 'localhost,127.0.0.1,::1',
    no_proxy: 'localhost,127.0.0.1,::1',
  };
  const files: InputFile[] = [{ path: BROKER_KEY_FILE, content: brokerKey, mode: 0o600 }];
  if (ca) {
    env.FLEET_FORGE_CA = FORGE_CA_FILE;
    files.push({ path: FORGE_CA_FILE, content: ca.certPem, mode: 0o644 });
  }
  return {
    listening,
    binds: { [dir]: EGRESS_MOUNT },
    env,
    files,
    report: () => ({
      mode: 'proxy',
      methods: policy.methods,
      refused_entries: policy.refused,
      blocked: [...blocks.values()].map((b) => ({ ...b })),
      ...(unlisted ? { unlisted_blocks: unlisted } : {}),
    }),
    async close() {
      const started = await proxy.catch(() => undefined);
      if (!started) return; // cleaned up when it failed
      await started.close();
      forgetKey();
      removeSocket();
    },
  };
}

/** One line for a log, an event or a PR body. */
export function describeBlock(attempt: BlockedAttempt): string {
  const where = attempt.host ? `${attempt.host}:${attempt.port}` : '(no destination)';
  const why = {
    not_allowed: 'not in the allowlist',
    method: 'method not allowed (GET and HEAD only)',
    other_repository: "another repository than the job's",
    bad_request: 'not a proxy request',
  }[attempt.reason];
  return `${attempt.method} ${where}: ${why}`;
}
