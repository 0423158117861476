import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { GitHubTestServer } from '../servers/github.ts';

/**
 * Stands in for `git push` from a test worker: the busybox worker (network host) POSTs
 * `{repo, branch, sha, resolves_conflict?}` here and the GitHub test server moves the branch,
 * as GitHub would after a real push. A push that resolves a conflict clears the PR's conflict.
 */
export async function startPushReceiver(github: GitHubTestServer): Promise<{
  url: string;
  pushes: { repo: string; branch: string; sha: string }[];
  /** The TASK.md of every fix worker, in the order they ran. */
  fixTasks: string[];
  close(): Promise<void>;
}> {
  const pushes: { repo: string; branch: string; sha: string }[] = [];
  const fixTasks: string[] = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (req.url === '/task') {
        fixTasks.push(Buffer.concat(chunks).toString());
        res.writeHead(204).end();
        return;
      }
      try {
        const body = JSON.parse(Buffer.concat(chunks).toString()) as {
          repo: string;
          branch: string;
          sha: string;
          resolves_conflict?: boolean;
        };
        github.pushBranch(body.repo, body.branch, body.sha);
        if (body.resolves_conflict) {
          const pr = openPullOf(github, body.repo, body.branch);
          if (pr !== undefined) github.setConflicting(body.repo, pr, false);
        }
        pushes.push({ repo: body.repo, branch: body.branch, sha: body.sha });
        res.writeHead(204).end();
      } catch (error) {
        res.writeHead(400).end(String(error));
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    pushes,
    fixTasks,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** The number of the open pull request from `branch`, looked up the way a test can: one by one. */
export function openPullOf(github: GitHubTestServer, repo: string, branch: string): number | undefined {
  for (let number = 1; number < 1000; number++) {
    let pull: ReturnType<GitHubTestServer['pullState']>;
    try {
      pull = github.pullState(repo, number);
    } catch {
      return undefined;
    }
    if (pull.head === branch && pull.state === 'open') return number;
  }
  return undefined;
}

/**
 * A scope's task as the test worker runs it: a fenced sh block that "pushes" a fresh commit
 * to its branch and reports it, whatever its purpose (task, fix, rebase).
 */
export function pushingTask(options: { pushUrl: string; file: string; summary: string }): string {
  return [
    `Change ${options.file}.`,
    '',
    '```sh',
    // As an agent reviewer (FLEET_REVIEWER=agent) the same script answers with a verdict instead: the
    // summary is the verdict object alone, as worker-image/fleet-worker reports it.
    'if [ "$FLEET_PURPOSE" = review ]; then',
    `  echo '::fleet-event:: {"event_type":"completed","commit_sha":null,"branch":null,"files_changed":[],"summary":"{\\"approved\\": true, \\"feedback\\": \\"agent approves\\", \\"comments\\": []}"}'`,
    '  exit 0',
    'fi',
    // A fix worker hands its TASK.md to the test, which checks what fleet told it.
    `if [ "$FLEET_PURPOSE" = fix ]; then wget -q -O /dev/null --post-data "$(cat /fleet/input/TASK.md)" ${options.pushUrl}/task || exit 5; fi`,
    'SHA=$(cat /proc/sys/kernel/random/uuid /proc/sys/kernel/random/uuid | sha256sum | cut -c1-40)',
    'RESOLVES=false; [ "$FLEET_PURPOSE" = rebase ] && RESOLVES=true',
    `BODY="{\\"repo\\":\\"$REPO\\",\\"branch\\":\\"$FLEET_BRANCH\\",\\"sha\\":\\"$SHA\\",\\"resolves_conflict\\":$RESOLVES}"`,
    `wget -q -O /dev/null --header 'content-type: application/json' --post-data "$BODY" ${options.pushUrl}/push || exit 5`,
    `echo "::fleet-event:: {\\"event_type\\":\\"completed\\",\\"commit_sha\\":\\"$SHA\\",\\"branch\\":\\"$FLEET_BRANCH\\",\\"files_changed\\":[\\"${options.file}\\"],\\"summary\\":\\"${options.summary} ($FLEET_PURPOSE)\\"}"`,
    '```',
  ].join('\n');
}
