import { spawn } from 'node:child_process';

/** A held lock; `release()` is idempotent. */
export interface HeldFileLock {
  release(): Promise<void>;
}

/**
 * An exclusive flock(2) on `path`, shared by every process on this host (several fleet processes may use
 * one data dir). Node has no flock, so a `flock(1)` child takes it and holds it while its stdin is open:
 * when this process dies, the pipe closes and the kernel drops the lock, so a crash never leaves it held.
 * `waitMs: 0` tries once and resolves null when another holder has it.
 */
export async function lockFile(path: string, waitMs: number): Promise<HeldFileLock | null> {
  const wait = waitMs <= 0 ? ['-n'] : ['-w', String(Math.ceil(waitMs / 1000))];
  // flock exits 1 when -n or -w gives up; the inner shell prints a line once it holds the lock.
  const child = spawn('flock', [...wait, '-E', '75', path, 'sh', '-c', 'echo locked; exec cat >/dev/null'], {
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const exited = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));
  const held = await new Promise<boolean>((resolve, reject) => {
    child.once('error', (error) => reject(new Error(`cannot run flock(1) for ${path}: ${error.message}`)));
    child.stdout.once('data', () => resolve(true));
    void exited.then((code) => {
      if (code === 75) resolve(false);
      else reject(new Error(`flock on ${path} failed (exit ${code}): ${stderr.trim()}`));
    });
  });
  if (!held) return null;
  let released: Promise<void> | undefined;
  return {
    release() {
      released ??= (async () => {
        child.stdin.end();
        await exited;
      })();
      return released;
    },
  };
}

/** Runs one task at a time per key within this process, in arrival order. */
export class KeyedQueue {
  private readonly tails = new Map<string, Promise<unknown>>();

  run<T>(key: string, task: () => Promise<T>): Promise<T> {
    const before = this.tails.get(key) ?? Promise.resolve();
    const result = before.then(task, task);
    const tail = result.catch(() => undefined);
    this.tails.set(key, tail);
    void tail.then(() => {
      if (this.tails.get(key) === tail) this.tails.delete(key);
    });
    return result;
  }
}
