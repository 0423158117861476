import { execFile } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { startGitDaemon } from '../support/git-daemon.ts';

const run = promisify(execFile);

export interface GitServer {
  /** git://127.0.0.1:PORT, for FLEET_GIT_BASE_URL. */
  url: string;
  /** git in the bare repository of `repo` as the daemon serves it. */
  git(repo: string, ...args: string[]): Promise<string>;
  stop(): Promise<void>;
}

/**
 * A loopback `git daemon` serving bare repositories (push enabled), each seeded with README.md on main.
 * With `onPushUrl`, a post-receive hook POSTs `{repo, branch, sha}` there for every pushed branch before
 * the push returns, as GitHub learns of a push (test/flow/support.ts's push receiver moves the GitHub test
 * server's branch, so a pull request can be opened from it).
 */
export async function startGitServer(repos: string[], options: { onPushUrl?: string } = {}): Promise<GitServer> {
  const dir = mkdtempSync(join(tmpdir(), 'fleet-agents-git-'));
  const bareOf = (repo: string) => join(dir, 'repos', `${repo}.git`);
  const git = async (cwd: string, ...args: string[]) =>
    (
      await run('git', ['-c', 'user.name=fleet-test', '-c', 'user.email=test@fleet.invalid', '-C', cwd, ...args], {
        maxBuffer: 64 * 1024 * 1024,
      })
    ).stdout.trim();
  for (const repo of repos) {
    const bare = bareOf(repo);
    const seed = join(dir, 'seed', repo);
    mkdirSync(join(dir, 'repos', repo.split('/')[0]!), { recursive: true });
    await run('git', ['init', '--quiet', '--bare', '--initial-branch=main', bare]);
    await run('git', ['init', '--quiet', '--initial-branch=main', seed]);
    writeFileSync(join(seed, 'README.md'), '# widgets\n');
    await git(seed, 'add', 'README.md');
    await git(seed, 'commit', '--quiet', '-m', 'initial');
    await git(seed, 'push', '--quiet', bare, 'main');
    if (options.onPushUrl) {
      const hook = join(bare, 'hooks', 'post-receive');
      writeFileSync(
        hook,
        [
          '#!/bin/sh',
          'while read -r old new ref; do',
          '  case "$ref" in refs/heads/*) ;; *) continue ;; esac',
          `  curl -fsS -o /dev/null -H 'content-type: application/json' -d "{\\"repo\\":\\"${repo}\\",\\"branch\\":\\"\${ref#refs/heads/}\\",\\"sha\\":\\"$new\\"}" ${options.onPushUrl}/push || exit 1`,
          'done',
          '',
        ].join('\n'),
      );
      chmodSync(hook, 0o755);
    }
  }

  const daemon = await startGitDaemon(join(dir, 'repos'), repos[0]!);
  const { url } = daemon;
  return {
    url,
    git: (repo, ...args) => git(bareOf(repo), ...args),
    async stop() {
      await daemon.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
