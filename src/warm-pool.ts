import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  chmodSync,
  closeSync,
  constants,
  mkdtempSync,
  openSync,
  readdirSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join, posix } from 'node:path';
import { promisify } from 'node:util';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { FleetConfig } from './config.ts';
import { buildPoolSpec, INPUT_DIR } from './container-spec.ts';
import {
  LABELS,
  type ContainerRuntime,
  type ContainerSpec,
  type InputFile,
  type OutputLine,
  type WorkerContainer,
} from './container-runtime.ts';
import type { MirrorLease } from './git-mirror.ts';
import type { FleetKeys } from './keys.ts';
import { MAX_LINE_BYTES } from './run-worker.ts';
import { warmPoolSize } from './warm-repos.ts';

/**
 * The warm pool (issue 11): started worker containers, inner dockerd up and slot volume mounted, waiting for a
 * job. An idle one holds nothing of any request (src/container-spec.ts buildPoolSpec); a job claims one, its
 * files, token and keys are written into the container's own claim directory at start (fleet-worker's pool
 * mode), and it serves that one job only.
 *
 * Kinds: `size` generic containers, which serve a job of any repository, and per FLEET_WARM_REPOS entry `count`
 * containers that come with that repository cloned from the host's git mirror (mounted read-only, as a cold job's)
 * and serve only its jobs: such a claim fetches what is new instead of cloning (issue 11's 150 ms goal).
 *
 * Refill: a claimed container is replaced once its worker has reached its agent (or ended), not at the claim: a
 * container start (an inner dockerd) on the same cores would slow the very start the pool exists to make fast.
 *
 * Counting: idle pool containers are not jobs, so the BullMQ concurrency (the cap) never counts them; a
 * claimed one is the job's container, renamed to the job's container name. Docker therefore shows at most
 * cap + pool containers of this host: at most `cap` serving jobs, at most the pool's size (generic and
 * repositories' together) idle.
 */

/** The line fleet-worker prints in pool mode once its inner dockerd answers (worker-image/fleet-worker). */
export const POOL_READY_LINE = 'fleet-worker: pool ready';
/**
 * Each pool container's claim directory, `<tmpdir>/fleet-pool-claim-<instance>-XXXXXX`, bound read-write at
 * /fleet/input: empty while idle; at claim the job's input files, then the env file (root-only), then the `go`
 * marker, renamed into place last, are written there (fleet-worker reads and removes the last two at once).
 * Plain file writes: Docker's archive API into a running container takes about 170 ms on a small host.
 */
const CLAIM_DIR_PREFIX = 'fleet-pool-claim-';
const CLAIM_ENV_FILE = '.claim-env';
const CLAIM_GO_FILE = '.claim-go';
/** A FIFO the worker reads while it waits: a byte written after `go` ends its wait at once (no poll interval). */
const CLAIM_WAKE_FIFO = '.claim-wake';
/** How long a new pool container may take to report ready (the inner dockerd under sysbox can take 10 s). */
const READY_TIMEOUT_MS = 120_000;
const MAX_BACKOFF_MS = 60_000;
/**
 * FLEET_EGRESS=proxy: each pool container's egress directory, `<tmpdir>/fleet-pool-egress-<instance>-XXXXXX`
 * (the system temp dir, as a job's own: a unix socket path must stay under 108 bytes).
 */
const EGRESS_DIR_PREFIX = 'fleet-pool-egress-';
/** A directory this much older than its container may exist (made just before `create`) is a leftover. */
const STALE_DIR_MS = 60_000;
/** The host directories a pool container has of its own, by the prefix their names start with. */
const POOL_DIRS = [
  { kind: 'claim', prefix: CLAIM_DIR_PREFIX },
  { kind: 'egress', prefix: EGRESS_DIR_PREFIX },
] as const;

/** `<tmpdir>/<prefix><instance>-XXXXXX`, mode 0755 (its files keep their own modes). */
function makePoolDir(prefix: string, instance: string): string {
  const dir = mkdtempSync(join(tmpdir(), `${prefix}${instance}-`));
  chmodSync(dir, 0o755);
  return dir;
}

function removePoolDirs(dirs: { claimDir: string; egressDir?: string }): void {
  for (const dir of [dirs.claimDir, dirs.egressDir]) if (dir) rmSync(dir, { recursive: true, force: true });
}

export interface WarmPoolStats {
  /** Idle containers the pool keeps. */
  size: number;
  idle: number;
  starting: number;
  /** Jobs that got a warm container, and jobs that found none (and started cold). */
  claims: number;
  misses: number;
  /** Claims of a container with the job's repository already cloned (FLEET_WARM_REPOS), among `claims`. */
  repoClaims: number;
}

export interface WarmPoolOptions {
  runtime: ContainerRuntime;
  redis: Redis;
  keys: FleetKeys;
  config: Pick<FleetConfig, 'hostId' | 'prefix' | 'worker' | 'lockDurationMs'> & {
    warmPool: FleetConfig['warmPool'];
    egress: Pick<FleetConfig['egress'], 'mode'>;
  };
  /**
   * FLEET_WARM_REPOS: the host's mirror of a repository as it is (no fetch: the pool has no token), leased while a
   * container mounts it; null while the host has none (its first job makes it). And the repository's clone URL.
   */
  mirrors?: { lease(repo: string): Promise<MirrorLease | null>; url(repo: string): string };
  logger: Logger;
  /** A slot volume for the inner /var/lib/docker (FLEET_DIND_CACHE), held while the container lives. */
  dindVolume?: () => Promise<{ volume: string; release(): void }>;
  /** @defaultValue Date.now */
  now?: () => number;
}

/** A pool container handed to one job: `claim` gives it the job's spec and files (sent at its start). */
export interface WarmClaim {
  claim(spec: ContainerSpec, files: InputFile[]): WorkerContainer;
  /**
   * The pool keeps containers of the job's repository (FLEET_WARM_REPOS): the host's mirror of it should be brought up
   * to date (or made) with the job's token before the replacement, which is cloned from it (agentStarted's `before`).
   */
  refreshesMirror: boolean;
  /**
   * The worker reached its agent: the pool may start the replacement now (it does at the latest when the
   * container is removed). `before` runs first, still off the job's critical path (a mirror refresh).
   */
  agentStarted(before?: () => Promise<unknown>): void;
  /**
   * FLEET_EGRESS=proxy: the container's egress directory (bound read-only at EGRESS_MOUNT, empty while idle),
   * where the job's egress session must listen (openEgressSession's `dir`). The pool removes it with the container.
   */
  egressDir?: string;
  /** Removes it when the job never claimed it (it failed before its launch); a no-op after `claim`. */
  returnUnused(): Promise<void>;
}

interface Entry {
  container: WorkerContainer;
  lines: AsyncIterator<OutputLine>;
  state: 'idle' | 'taken' | 'gone';
  /** The repository cloned in it (as configured), or '' (generic). */
  kind: string;
  release?: () => void;
  /** The lease on the repository's mirror it mounts. */
  mirror?: MirrorLease;
  claimDir: string;
  egressDir?: string;
  recycle?: NodeJS.Timeout;
  /** Set at claim: starts its replacement (once). */
  refill?: () => void;
}

/** Whether a pool instance still runs (its key expires a lock duration after its last beat). */
export async function warmPoolAlive(redis: Redis, keys: FleetKeys, instance: string): Promise<boolean> {
  return (await redis.exists(keys.warmPool(instance))) === 1;
}

export class WarmPool {
  /** Labels this process's pool containers; a restarted host has a new one and removes the old ones. */
  readonly instance = randomBytes(6).toString('hex');
  private readonly idle: Entry[] = [];
  /** Containers being started, by kind. */
  private readonly starting = new Map<Promise<void>, string>();
  private readonly creating = new Set<WorkerContainer>();
  /** Claimed containers whose replacement waits for their agent's start, by kind. */
  private readonly awaitingRefill = new Map<string, number>();
  /**
   * How many containers of each kind the pool keeps: '' generic, else a repository's name as configured. Matched
   * exactly: the host's mirror, and the URL the container cloned, are of that spelling.
   */
  private readonly targets: Map<string, number>;
  private claims = 0;
  private repoClaims = 0;
  private misses = 0;
  private failures = 0;
  private seq = 0;
  private stopped = false;
  private retry: NodeJS.Timeout | undefined;
  private beat: NodeJS.Timeout | undefined;
  private readonly log: Logger;
  private readonly idleWaiters = new Set<() => void>();

  constructor(private readonly options: WarmPoolOptions) {
    this.log = options.logger.child({ component: 'warm-pool', pool: this.instance });
    const { size, repos } = options.config.warmPool;
    if (repos.length > 0 && !options.mirrors) throw new Error("FLEET_WARM_REPOS needs the host's git mirror cache");
    this.targets = new Map([['', size], ...repos.map(({ repo, count }) => [repo, count] as const)]);
    this.size = warmPoolSize(options.config.warmPool);
  }

  /** Idle containers the pool keeps, generic and repositories' together. */
  readonly size: number;

  /** Registers the instance (first beat must succeed), removes pools of dead instances, and starts filling. */
  async start(): Promise<void> {
    const ttl = Math.max(1_000, this.options.config.lockDurationMs);
    await this.heartbeat(ttl);
    this.beat = setInterval(
      () =>
        void this.heartbeat(ttl)
          .then(() => this.reapDeadInstances())
          .catch((error) => this.log.error({ err: error }, 'warm pool heartbeat or reap failed')),
      Math.max(200, Math.floor(ttl / 3)),
    );
    this.beat.unref();
    await this.reapDeadInstances();
    this.fill();
    this.log.info({ size: this.size }, 'warm pool filling');
  }

  stats(): WarmPoolStats {
    return {
      size: this.size,
      idle: this.idle.length,
      starting: this.starting.size,
      claims: this.claims,
      misses: this.misses,
      repoClaims: this.repoClaims,
    };
  }

  /** Resolves once `count` containers are idle (tests, the benchmark: a warm start needs a full pool). */
  whenIdle(count = this.size): Promise<void> {
    if (this.idle.length >= count) return Promise.resolve();
    return new Promise((resolve) => {
      const check = () => {
        if (this.idle.length < count) return;
        this.idleWaiters.delete(check);
        resolve();
      };
      this.idleWaiters.add(check);
    });
  }

  /**
   * An idle container for one job of `repo`: one with that repository cloned, else a generic one; or undefined (a
   * miss: the job starts a container of its own). A container of another repository never serves it.
   */
  take(repo?: string): WarmClaim | undefined {
    let at = repo === undefined ? -1 : this.idle.findIndex((e) => e.kind === repo);
    if (at < 0) at = this.idle.findIndex((e) => e.kind === '');
    if (at < 0) {
      this.misses++;
      this.fill();
      return undefined;
    }
    const [entry] = this.idle.splice(at, 1) as [Entry];
    entry.state = 'taken';
    clearTimeout(entry.recycle);
    this.claims++;
    if (entry.kind) this.repoClaims++;
    this.awaitingRefill.set(entry.kind, (this.awaitingRefill.get(entry.kind) ?? 0) + 1);
    entry.refill = () => {
      entry.refill = undefined;
      this.awaitingRefill.set(entry.kind, this.awaitingRefill.get(entry.kind)! - 1);
      this.fill();
    };
    let claimed = false;
    return {
      egressDir: entry.egressDir,
      // Its replacement may be of the job's repository (which a generic claim of it must not starve of a mirror).
      refreshesMirror: repo !== undefined && this.targets.has(repo),
      claim: (spec, files) => {
        claimed = true;
        return new ClaimedContainer(entry, spec, files, this.options.runtime);
      },
      agentStarted: (before) => {
        if (!entry.refill) return;
        // entry.refill runs once: here, or at the container's removal if that comes first. A removal during `before`
        // refilled without what `before` makes (a repository's first mirror): the pool looks again once it is there.
        void (before?.() ?? Promise.resolve())
          .catch((error) => this.log.warn({ err: error }, 'the step before a refill failed; refilling all the same'))
          .finally(() => (entry.refill ? entry.refill() : this.fill()));
      },
      returnUnused: async () => {
        if (!claimed) await this.discard(entry);
      },
    };
  }

  /**
   * Starts what the pool lacks now. A job that found no container calls it once its own agent runs: a repository's
   * container needs the mirror that job made, and a start before then would compete with the job's own.
   */
  topUp(): void {
    this.fill();
  }

  /** SIGTERM: no more refills, idle and starting containers removed. Claimed ones are their jobs'. */
  async stopIdle(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.retry);
    const idle = this.idle.splice(0);
    await Promise.all([...idle.map((entry) => this.discard(entry)), ...[...this.creating].map((c) => c.remove())]);
    await Promise.allSettled([...this.starting.keys()]);
  }

  /** After the last job: the instance key goes, so nothing of this pool counts as alive any more. */
  async close(): Promise<void> {
    await this.stopIdle();
    clearInterval(this.beat);
    await this.options.redis.del(this.options.keys.warmPool(this.instance));
  }

  private async heartbeat(ttlMs: number) {
    await this.options.redis.set(this.options.keys.warmPool(this.instance), '1', 'PX', ttlMs);
  }

  /** Pool containers of this host whose instance no longer beats: a crashed or killed earlier process's. */
  private async reapDeadInstances(): Promise<void> {
    const { config, runtime, redis, keys } = this.options;
    const found = await runtime.list({ [LABELS.host]: config.hostId, [LABELS.prefix]: config.prefix });
    for (const container of found) {
      const instance = container.labels[LABELS.pool];
      if (!instance || instance === this.instance || (await warmPoolAlive(redis, keys, instance))) continue;
      await runtime.removeById(container.id);
      this.log.warn({ container: container.id.slice(0, 12), instance }, 'removed a pool container of a dead pool instance');
    }
    await this.reapDirs();
  }

  /**
   * Claim and egress directories a crashed or killed pool left (its containers are gone: removed above, or by
   * `fleet reap`). The temp dir is the machine's, shared with fleets of other Redis servers and prefixes, so a
   * directory goes only when no container of its instance exists anywhere, its instance does not beat here, and
   * it is older than the moment between its making and its container's create.
   */
  private async reapDirs(): Promise<void> {
    const { runtime, redis, keys } = this.options;
    const now = (this.options.now ?? Date.now)();
    for (const name of readdirSync(tmpdir())) {
      const pool = POOL_DIRS.find((d) => name.startsWith(d.prefix));
      if (!pool) continue;
      const instance = name.slice(pool.prefix.length).split('-')[0]!;
      if (instance === this.instance) continue;
      const path = join(tmpdir(), name);
      const stat = statSync(path, { throwIfNoEntry: false });
      if (!stat || now - stat.mtimeMs < STALE_DIR_MS) continue;
      if (await warmPoolAlive(redis, keys, instance)) continue;
      if ((await runtime.list({ [LABELS.pool]: instance })).length > 0) continue;
      rmSync(path, { recursive: true, force: true });
      this.log.warn({ dir: path, instance }, `removed the ${pool.kind} directory of a dead pool instance`);
    }
  }

  private fill() {
    if (this.stopped || this.retry !== undefined) return;
    for (const [kind, target] of this.targets) {
      let have = this.awaitingRefill.get(kind) ?? 0;
      for (const entry of this.idle) if (entry.kind === kind) have++;
      for (const starting of this.starting.values()) if (starting === kind) have++;
      for (; have < target; have++) {
        const started = this.startOne(kind).finally(() => this.starting.delete(started));
        this.starting.set(started, kind);
      }
    }
  }

  private async startOne(kind: string): Promise<void> {
    const { config, runtime } = this.options;
    const name = `${config.prefix.replace(/[^A-Za-z0-9_.-]/g, '')}-warm-${config.hostId}-${this.instance}-${++this.seq}`.replace(
      /^[^A-Za-z0-9]+/,
      'w',
    );
    let mirror: MirrorLease | undefined;
    let slot: { volume: string; release(): void } | undefined;
    let claimDir: string | undefined;
    let egressDir: string | undefined;
    let container: WorkerContainer | undefined;
    try {
      // A repository's container mounts its mirror, leased until the container is gone. No mirror yet: this kind
      // waits for the repository's first job, which makes one (its claim or miss fills the pool again).
      let repo: { name: string; url: string; mirror: string } | undefined;
      if (kind !== '') {
        mirror = (await this.options.mirrors!.lease(kind)) ?? undefined;
        if (!mirror) {
          this.log.info({ repo: kind }, 'no git mirror of this repository on the host yet; its pool worker waits for its first job');
          return;
        }
        repo = { name: kind, url: this.options.mirrors!.url(kind), mirror: mirror.path };
      }
      slot = await this.options.dindVolume?.();
      // Its /fleet/input: empty until a claim is written there. As the image's, readable by all; the claim's env
      // file in it is root-only, and emptied before the agent starts.
      claimDir = makePoolDir(CLAIM_DIR_PREFIX, this.instance);
      // Node has no mkfifo; without the FIFO the worker polls for `go` (a few milliseconds later).
      await promisify(execFile)('mkfifo', ['-m', '0600', join(claimDir, CLAIM_WAKE_FIFO)]).catch((error) =>
        this.log.warn({ err: error }, 'no wake FIFO for a pool container: it polls for its claim'),
      );
      // FLEET_EGRESS=proxy: an empty directory of its own, bound where the job's proxy socket will appear; no
      // socket and no key while idle (the job's session listens in it at claim, the key comes with the claim).
      egressDir = config.egress.mode === 'proxy' ? makePoolDir(EGRESS_DIR_PREFIX, this.instance) : undefined;
      container = await runtime.create(
        buildPoolSpec({ name, instance: this.instance, dindVolume: slot?.volume, egressDir, claimDir, repo, config }),
        [],
      );
      this.creating.add(container);
      if (this.stopped) throw new Error('the pool stopped');
      await container.start();
      const lines = container.lines(MAX_LINE_BYTES)[Symbol.asyncIterator]();
      await readyLine(lines, READY_TIMEOUT_MS);
      this.creating.delete(container);
      const entry: Entry = { container, lines, state: 'idle', kind, release: slot?.release, mirror, claimDir, egressDir };
      if (this.stopped) return await this.discard(entry);
      this.idle.push(entry);
      this.failures = 0;
      if (this.idle.length === this.size) this.log.info({ idle: this.idle.length }, 'warm pool full');
      for (const check of [...this.idleWaiters]) check();
      // Recycled after FLEET_WARM_MAX_IDLE, so a long-idle worker (its image, its dockerd) does not go stale.
      entry.recycle = setTimeout(() => void this.retire(entry, 'recycled after FLEET_WARM_MAX_IDLE'), config.warmPool.maxIdleMs);
      entry.recycle.unref();
      const lost = () => void this.retire(entry, 'an idle pool container exited');
      container.wait().then(lost, lost);
    } catch (error) {
      if (container) this.creating.delete(container);
      await container?.remove().catch((removeError) => this.log.error({ err: removeError }, 'could not remove a failed pool container'));
      slot?.release();
      await mirror?.release();
      if (claimDir) removePoolDirs({ claimDir, egressDir });
      if (this.stopped) return;
      // A pool that cannot start containers (no image, an image without pool mode) must not spin.
      const backoff = Math.min(MAX_BACKOFF_MS, 1_000 * 2 ** this.failures++);
      this.log.error({ err: error, retry_in_ms: backoff }, 'could not start a warm pool container');
      this.retry = setTimeout(() => {
        this.retry = undefined;
        this.fill();
      }, backoff);
      this.retry.unref();
    }
  }

  private async retire(entry: Entry, why: string) {
    if (entry.state !== 'idle') return;
    this.idle.splice(this.idle.indexOf(entry), 1);
    this.log.info({ container: entry.container.id.slice(0, 12) }, why);
    await this.discard(entry).catch((error) => this.log.error({ err: error }, 'could not remove a pool container'));
    this.fill();
  }

  private async discard(entry: Entry) {
    entry.state = 'gone';
    clearTimeout(entry.recycle);
    await removeEntry(entry);
  }
}

/**
 * Removes the container, then frees what it held: its slot volume, its mirror lease and its directories (once
 * each); a claimed one's replacement starts then at the latest.
 */
async function removeEntry(entry: Entry, options?: { graceMs?: number }): Promise<void> {
  try {
    await entry.container.remove(options);
  } finally {
    entry.release?.();
    entry.release = undefined;
    entry.refill?.();
    // A container Docker could not remove still mounts it, but a lease outliving it would keep it for good.
    await entry.mirror?.release();
  }
  // Only once the container is gone (a failed removal leaves it to the dead-instance sweep at the next start).
  removePoolDirs(entry);
}

/** Reads the container's output until the pool's ready line; throws when it ends first or takes too long. */
async function readyLine(lines: AsyncIterator<OutputLine>, timeoutMs: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`no "${POOL_READY_LINE}" within ${timeoutMs} ms (does the image know FLEET_POOL?)`)),
      timeoutMs,
    );
  });
  const seen: string[] = [];
  try {
    for (;;) {
      const pending = lines.next();
      // Left pending when the timeout wins; the container's removal then ends it with an error nobody awaits.
      pending.catch(() => {});
      const next = await Promise.race([pending, timeout]);
      if (next.done) throw new Error(`the pool container exited before it was ready:\n${seen.slice(-20).join('\n')}`);
      if (next.value.text === POOL_READY_LINE) return;
      seen.push(next.value.text);
    }
  } finally {
    clearTimeout(timer);
  }
}

/** NAME=VALUE records, NUL-separated: what fleet-worker's pool mode reads (a value may hold a newline). */
export function claimEnv(env: Record<string, string>): string {
  return Object.entries(env)
    .map(([name, value]) => `${name}=${value}\0`)
    .join('');
}

/**
 * A pool container serving one job. Its start hands the job over: the input files, then the env (with the token
 * and key; root-only), then `go`, written into its claim directory; and it takes the job's container name, so
 * `docker ps`, the cap count and the job's logs name it as any other. Its output was attached when the pool
 * started it.
 */
class ClaimedContainer implements WorkerContainer {
  constructor(
    private readonly entry: Entry,
    private readonly spec: ContainerSpec,
    private readonly files: InputFile[],
    private readonly runtime: ContainerRuntime,
  ) {}

  get id() {
    return this.entry.container.id;
  }

  async start() {
    // The worker goes on the moment `go` appears; the rename runs meanwhile and is awaited before the run counts.
    const renamed = this.runtime.rename!(this.id, this.spec.name);
    try {
      writeClaim(this.entry.claimDir, this.files, claimEnv(this.spec.env));
    } finally {
      await renamed;
    }
  }

  async *lines(): AsyncIterable<OutputLine> {
    for (;;) {
      const next = await this.entry.lines.next();
      if (next.done) return;
      yield next.value;
    }
  }

  wait() {
    return this.entry.container.wait();
  }

  exitState() {
    return this.entry.container.exitState();
  }

  kill() {
    return this.entry.container.kill();
  }

  async remove(options?: { graceMs?: number }) {
    this.entry.state = 'gone';
    await removeEntry(this.entry, options);
  }
}

/**
 * Writes a claim into a pool container's claim directory (its /fleet/input): the files, the env (root-only), and
 * last `go`, renamed into place so that the worker, which waits for it, finds everything else complete.
 */
export function writeClaim(dir: string, files: InputFile[], env: string): void {
  for (const file of files) {
    const name = posix.relative(INPUT_DIR, file.path);
    if (name.startsWith('..') || name.includes('/') || name.startsWith('.claim'))
      throw new Error(`a claim's files go straight into ${INPUT_DIR}; ${file.path} does not`);
    writeFileSync(join(dir, name), file.content, { mode: file.mode ?? 0o644 });
  }
  writeFileSync(join(dir, CLAIM_ENV_FILE), env, { mode: 0o600 });
  writeFileSync(join(dir, `${CLAIM_GO_FILE}.new`), '', { mode: 0o600 });
  renameSync(join(dir, `${CLAIM_GO_FILE}.new`), join(dir, CLAIM_GO_FILE));
  wake(join(dir, CLAIM_WAKE_FIFO));
}

/** One byte into the worker's wake FIFO, never blocking; no FIFO, or no reader on it yet, leaves it to its poll. */
function wake(fifo: string): void {
  let fd: number | undefined;
  try {
    fd = openSync(fifo, constants.O_WRONLY | constants.O_NONBLOCK);
    writeSync(fd, '\n');
  } catch {
    // ENOENT, ENXIO (no reader), EAGAIN: the worker still finds `go` at its next look.
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}
