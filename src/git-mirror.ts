import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, rm, stat, unlink, utimes, writeFile, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { Logger } from 'pino';
import { KeyedQueue, lockFile } from './file-lock.ts';

const run = promisify(execFile);

/** Where a worker sees the host's mirror (read-only) and the env that tells fleet-worker so. */
export const MIRROR_MOUNT = '/fleet/git-mirror';
export const MIRROR_ENV = 'FLEET_GIT_MIRROR';

/** How one mirror update ended, for the log and `fleet_git_mirror_updates_total`. */
export type MirrorOutcome = 'created' | 'updated' | 'failed';

export interface GitMirrorOptions {
  /** One bare repository per remote under here, with its lock file, lease folder and last-use stamp. */
  dir: string;
  /** Bytes all mirrors may take together; the least recently used go first past it. */
  maxBytes: number;
  logger: Logger;
  /** The longest one update (a first clone of a large repository included) may take. @defaultValue 15 min */
  timeoutMs?: number;
  /** Told how each update ended and how long it took. */
  onUpdate?: (outcome: MirrorOutcome, ms: number) => void;
}

/** A mirror a worker may read until `release()`; pruning leaves it alone until then. */
export interface MirrorLease {
  /** The bare repository on the host, to be mounted read-only. */
  path: string;
  release(): Promise<void>;
}

const FETCH_REFSPECS = ['+refs/heads/*:refs/heads/*', '+refs/tags/*:refs/tags/*'];

/**
 * A readable, collision-free name for a remote: its last two path parts, then a hash of the whole URL
 * (the same owner/name on two forges are two mirrors).
 */
export function mirrorKey(url: string): string {
  const tail = url
    .replace(/\.git\/?$/, '')
    .split('/')
    .slice(-2)
    .join('_')
    .replace(/[^A-Za-z0-9._-]/g, '-')
    .slice(0, 80);
  return `${tail}-${createHash('sha256').update(url).digest('hex').slice(0, 12)}`;
}

/**
 * The credential of an update, as env only: git reads GIT_CONFIG_* as `-c` settings, so the token reaches
 * neither the mirror's config, nor argv, nor the URL. The header is scoped to the remote's origin, so a
 * redirect to another host gets nothing. Workers never get this env, and the mirror they mount holds no
 * trace of it. A non-HTTP remote (git://, file://) gets no credential.
 */
export function credentialEnv(url: string, token: string | undefined): Record<string, string> {
  const env: Record<string, string> = {
    GIT_TERMINAL_PROMPT: '0',
    GIT_CONFIG_NOSYSTEM: '1',
    GIT_CONFIG_COUNT: '2',
    // No helper of the host's user may answer or store anything for this fetch.
    GIT_CONFIG_KEY_0: 'credential.helper',
    GIT_CONFIG_VALUE_0: '',
    GIT_CONFIG_KEY_1: 'gc.auto',
    GIT_CONFIG_VALUE_1: '0',
  };
  if (!token || !/^https?:\/\//i.test(url)) return env;
  const origin = new URL(url).origin;
  env.GIT_CONFIG_COUNT = '3';
  env.GIT_CONFIG_KEY_2 = `http.${origin}/.extraHeader`;
  env.GIT_CONFIG_VALUE_2 = `Authorization: Basic ${Buffer.from(`x-access-token:${token}`).toString('base64')}`;
  return env;
}

/**
 * The host's git mirror cache (issue 11 item 3): one bare mirror per repository, updated just before a
 * worker clones, under a per-repository lock (in this process and, with flock, across the fleet processes
 * sharing the folder). Workers mount it read-only and clone it locally (`--shared`): it was fetched for their
 * job a moment before, so nothing crosses the network a second time; fleet-worker then copies the mirror's
 * objects in (its own dissociation, off the critical path), so nothing in its clone depends on the mirror
 * afterwards, and pushes to the remote itself.
 *
 * A mirror is never garbage-collected in place (gc.auto=0): a fetch only adds packs, so a worker reading it
 * while another job updates it never loses an object. Space comes back by pruning whole mirrors, least
 * recently used first, and only mirrors no live worker holds a lease on.
 */
export class GitMirrorCache {
  private readonly queue = new KeyedQueue();
  private readonly timeoutMs: number;
  private pruning: Promise<void> | undefined;

  constructor(private readonly options: GitMirrorOptions) {
    this.timeoutMs = options.timeoutMs ?? 15 * 60_000;
  }

  pathFor(url: string): string {
    return join(this.options.dir, `${mirrorKey(url)}.git`);
  }

  /**
   * Brings the mirror of `url` up to date with `token` and leases it. Resolves null, never throws, when
   * the update fails: the job then clones without a mirror. The lease is taken before the lock, so a
   * prune (which holds the same lock) cannot remove the mirror between its update and its mount.
   */
  async prepare(url: string, token: string | undefined): Promise<MirrorLease | null> {
    const key = mirrorKey(url);
    const path = this.pathFor(url);
    const started = Date.now();
    let release: (() => Promise<void>) | undefined;
    let outcome: MirrorOutcome;
    try {
      release = await this.lease(key);
      outcome = await this.underLock(key, () => this.update(key, url, token));
    } catch (error) {
      await release?.();
      this.options.onUpdate?.('failed', Date.now() - started);
      this.options.logger.warn({ err: error, mirror: key }, 'git mirror update failed; the worker clones without it');
      return null;
    }
    const ms = Date.now() - started;
    this.options.onUpdate?.(outcome, ms);
    this.options.logger.debug({ mirror: key, outcome, ms }, 'git mirror ready');
    this.schedulePrune();
    return { path, release };
  }

  /**
   * Leases the mirror of `url` as it is, without a fetch (the warm pool has no token); null when the host has
   * none a worker could clone (not made yet, or its HEAD names no branch it has). The lease comes first and the
   * check is made under the mirror's lock: a prune holds that lock from its look at the leases to the end of its
   * removal, so it either sees this lease or has finished removing before the check.
   */
  async leaseExisting(url: string): Promise<MirrorLease | null> {
    const key = mirrorKey(url);
    const path = this.pathFor(url);
    // Asked first too: while the host has no mirror, each of the pool's looks costs a read, not a lease file.
    if (!(await headResolves(path))) return null;
    const release = await this.lease(key);
    // Waits out an update of this mirror too (seconds, usually): the pool container then gets its new refs.
    const resolves = await this.underLock(key, () => headResolves(path)).catch(async (error: unknown) => {
      await release();
      throw error;
    });
    if (!resolves) {
      await release();
      return null;
    }
    await this.touch(url);
    return { path, release };
  }

  /** Runs `task` holding the mirror's lock: one at a time in this process (in order), and across processes (flock). */
  private underLock<T>(key: string, task: () => Promise<T>): Promise<T> {
    return this.queue.run(key, async () => {
      await mkdir(this.options.dir, { recursive: true, mode: 0o755 });
      const lock = await lockFile(join(this.options.dir, `${key}.lock`), this.timeoutMs);
      if (!lock) throw new Error(`another fleet process held the lock of ${key} longer than ${this.timeoutMs} ms`);
      try {
        return await task();
      } finally {
        await lock.release();
      }
    });
  }

  /** Under the mirror's lock (underLock). */
  private async update(key: string, url: string, token: string | undefined): Promise<MirrorOutcome> {
    const path = join(this.options.dir, `${key}.git`);
    const exists = await stat(join(path, 'objects')).then(
      () => true,
      () => false,
    );
    // Held lock: no other process is creating this one, so a `.new` left by a crash can go.
    const target = exists ? path : `${path}.new`;
    if (!exists) {
      await rm(target, { recursive: true, force: true });
      await this.git('init', ['init', '--quiet', '--bare', target], {});
      await this.git('config', ['-C', target, 'config', 'gc.auto', '0'], {});
      // Fetched objects stay in packs (never exploded into loose files), which workers copy whole.
      await this.git('config', ['-C', target, 'config', 'fetch.unpackLimit', '1'], {});
    }
    try {
      await this.git(
        'fetch',
        // No maintenance run after it: gc.auto is 0 anyway, so it would be a process started for nothing.
        ['-C', target, 'fetch', '--quiet', '--prune', '--no-write-fetch-head', '--no-auto-maintenance', '--', url, ...FETCH_REFSPECS],
        credentialEnv(url, token),
      );
      await this.ensureHead(target, url, token);
    } catch (error) {
      if (!exists) await rm(target, { recursive: true, force: true });
      throw error;
    }
    // A new mirror appears whole or not at all: a crash mid-clone leaves only the `.new` folder.
    if (!exists) await rename(target, path);
    await writeFile(join(this.options.dir, `${key}.used`), '');
    return exists ? 'updated' : 'created';
  }

  /**
   * Points the mirror's HEAD at the remote's default branch: workers clone the mirror locally, and check out what
   * HEAD names. The remote is asked only when HEAD names no branch the mirror has (a new mirror, or a default branch
   * renamed or deleted); an empty remote has none yet, and workers then clone without the mirror.
   */
  private async ensureHead(path: string, url: string, token: string | undefined): Promise<void> {
    if (await headResolves(path)) return;
    if (url.startsWith('-')) throw new Error(`not a remote: ${url}`);
    const { stdout } = await run('git', ['ls-remote', '--symref', url, 'HEAD'], {
      env: { ...process.env, ...credentialEnv(url, token) },
      timeout: this.timeoutMs,
    });
    const head = /^ref: (refs\/heads\/\S+)\tHEAD$/m.exec(stdout)?.[1];
    if (head) await this.git('symbolic-ref', ['-C', path, 'symbolic-ref', 'HEAD', head], {});
  }

  private async git(what: string, args: string[], env: Record<string, string>): Promise<void> {
    try {
      await run('git', args, { env: { ...process.env, ...env }, timeout: this.timeoutMs, maxBuffer: 4 * 1024 * 1024 });
    } catch (error) {
      const e = error as Error & { stderr?: string };
      throw new Error(`git ${what} failed: ${(e.stderr || e.message).trim().slice(-2000)}`);
    }
  }

  /** A lease file named by this process's pid: a dead process's leases are recognised and ignored. */
  private async lease(key: string): Promise<() => Promise<void>> {
    const folder = join(this.options.dir, `${key}.leases`);
    await mkdir(folder, { recursive: true, mode: 0o755 });
    const file = join(folder, `${process.pid}-${randomBytes(6).toString('hex')}`);
    await writeFile(file, '');
    let done: Promise<void> | undefined;
    return () => {
      done ??= unlink(file).catch(() => undefined);
      return done;
    };
  }

  private schedulePrune(): void {
    if (this.pruning) return;
    this.pruning = this.prune()
      .then(() => undefined)
      .catch((error) => this.options.logger.warn({ err: error }, 'git mirror prune failed'))
      .finally(() => {
        this.pruning = undefined;
      });
  }

  /** Settles when a background prune is done (stop, tests). */
  async settled(): Promise<void> {
    await this.pruning;
  }

  /**
   * Removes mirrors, least recently used first, until all of them fit `maxBytes`. A mirror that is locked
   * (being updated) or leased by a live worker stays. Returns the keys removed.
   */
  async prune(): Promise<string[]> {
    const mirrors = await this.list();
    let total = mirrors.reduce((sum, m) => sum + m.bytes, 0);
    const removed: string[] = [];
    for (const mirror of mirrors.sort((a, b) => a.usedMs - b.usedMs)) {
      if (total <= this.options.maxBytes) break;
      const lock = await lockFile(join(this.options.dir, `${mirror.key}.lock`), 0);
      if (!lock) continue;
      try {
        if (await this.leased(mirror.key)) continue;
        await rm(join(this.options.dir, `${mirror.key}.git`), { recursive: true, force: true });
        await rm(join(this.options.dir, `${mirror.key}.used`), { force: true });
        total -= mirror.bytes;
        removed.push(mirror.key);
      } finally {
        await lock.release();
      }
    }
    if (removed.length > 0)
      this.options.logger.info(
        { removed, bytes_left: total, max_bytes: this.options.maxBytes },
        'git mirrors pruned (least recently used)',
      );
    return removed;
  }

  private async list(): Promise<{ key: string; bytes: number; usedMs: number }[]> {
    const names = await readdir(this.options.dir).catch(() => [] as string[]);
    const mirrors = [];
    for (const name of names) {
      if (!name.endsWith('.git')) continue;
      const key = name.slice(0, -'.git'.length);
      const used = await stat(join(this.options.dir, `${key}.used`)).catch(() => stat(join(this.options.dir, name)));
      mirrors.push({ key, bytes: await treeBytes(join(this.options.dir, name)), usedMs: used.mtimeMs });
    }
    return mirrors;
  }

  private async leased(key: string): Promise<boolean> {
    const folder = join(this.options.dir, `${key}.leases`);
    for (const name of await readdir(folder).catch(() => [] as string[])) {
      const pid = Number(name.split('-')[0]);
      if (pid === process.pid || alive(pid)) return true;
      await rm(join(folder, name), { force: true });
    }
    return false;
  }

  /** Marks a mirror as just used (tests set an order; a job's update does it itself). */
  async touch(url: string, when = new Date()): Promise<void> {
    const file = join(this.options.dir, `${mirrorKey(url)}.used`);
    await writeFile(file, '', { flag: 'a' });
    await utimes(file, when, when);
  }
}

function alive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Bytes of the files under a folder (what `du --apparent-size` counts), without following links. */
async function treeBytes(dir: string): Promise<number> {
  let total = 0;
  for (const entry of await readdir(dir, { withFileTypes: true, recursive: true }).catch(() => [])) {
    if (!entry.isFile()) continue;
    total += (await stat(join(entry.parentPath, entry.name)).catch(() => ({ size: 0 }))).size;
  }
  return total;
}

/** Whether a bare repository's HEAD names a branch it has, read from its files (no git process per update). */
async function headResolves(path: string): Promise<boolean> {
  const head = (await readFile(join(path, 'HEAD'), 'utf8').catch(() => '')).trim();
  const ref = /^ref: (refs\/heads\/\S+)$/.exec(head)?.[1];
  if (!ref) return false;
  if (
    await stat(join(path, ref)).then(
      () => true,
      () => false,
    )
  )
    return true;
  const packed = await readFile(join(path, 'packed-refs'), 'utf8').catch(() => '');
  return packed.split('\n').some((line) => line.endsWith(` ${ref}`));
}
