import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { promisify } from 'node:util';
import { freePort } from './redis.ts';

const run = promisify(execFile);

export interface GitDaemon {
  /** git://127.0.0.1:PORT: each repository under the base path is `${url}/owner/name.git`. */
  url: string;
  stop(): Promise<void>;
}

/**
 * A loopback `git daemon` serving every repository under `basePath`, with push enabled. It resolves
 * once `probeRepo` answers `git ls-remote`, so callers clone and push without racing its start.
 */
export async function startGitDaemon(basePath: string, probeRepo: string): Promise<GitDaemon> {
  const port = await freePort();
  const daemon: ChildProcess = spawn(
    'git',
    [
      'daemon',
      `--base-path=${basePath}`,
      '--export-all',
      '--enable=receive-pack',
      '--listen=127.0.0.1',
      `--port=${port}`,
      '--reuseaddr',
      '--informative-errors',
      basePath,
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  daemon.stderr!.on('data', (d) => (stderr += d));
  const url = `git://127.0.0.1:${port}`;
  const deadline = Date.now() + 10_000;
  // git daemon prints nothing when it is ready: ask it, briefly, until it answers.
  for (;;) {
    try {
      await run('git', ['ls-remote', `${url}/${probeRepo}.git`], { timeout: 5_000 });
      break;
    } catch (error) {
      if (daemon.exitCode !== null || Date.now() > deadline) throw new Error(`git daemon did not answer: ${stderr || String(error)}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  return {
    url,
    async stop() {
      if (daemon.exitCode !== null) return;
      await new Promise<void>((resolve) => {
        daemon.once('exit', () => resolve());
        daemon.kill('SIGTERM');
      });
    },
  };
}
