import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, expect, it } from 'vitest';
import { describeDocker } from '../support/docker.ts';
import {
  type BareRepo,
  type WorkerRun,
  buildWorkerImage,
  byType,
  docker,
  fakeToken,
  grepTree,
  makeBareRepo,
  removeLeftovers,
  runWorker,
} from './harness.ts';

// The real coding worker image, run as the fleet runs it (network none, inputs copied in before start),
// with FLEET_AGENT=custom against a local bare repository. No Docker-in-Docker here: see dind.test.ts.
const TASK = '# Add a feature file\n\nWrite feature.txt.\n';
const AGENTS = '# Rules\nBe brief.\n';

describeDocker('coding worker image: entrypoint', () => {
  let image: string;
  let repo: BareRepo | undefined;
  const runs: WorkerRun[] = [];

  beforeAll(async () => {
    image = await buildWorkerImage();
  }, 30 * 60_000);

  afterEach(async () => {
    await Promise.all(runs.splice(0).map((r) => r.remove()));
    repo?.cleanup();
    repo = undefined;
  });

  afterAll(async () => {
    expect(await removeLeftovers()).toEqual([]);
  });

  async function worker(env: Record<string, string>, options: { readOnlyRepo?: boolean; agents?: boolean; task?: string } = {}) {
    repo ??= await makeBareRepo();
    const input: Record<string, string> = { 'TASK.md': options.task ?? TASK };
    if (options.agents !== false) input['AGENTS.md'] = AGENTS;
    const result = await runWorker(image, {
      env: {
        FLEET_REQUEST_ID: 'req-1',
        REPO: 'acme/widgets',
        FLEET_GIT_URL: 'file:///srv/origin.git',
        FLEET_AGENT: 'custom',
        FLEET_DIND: 'off',
        TASK_TITLE: 'add the feature file',
        MODEL: 'test-model',
        ...env,
      },
      input,
      binds: { [repo.path]: `/srv/origin.git${options.readOnlyRepo ? ':ro' : ''}` },
    });
    runs.push(result);
    return result;
  }

  it("pushes the agent's change on FLEET_BRANCH as a non-root agent, without TASK.md, AGENTS.md or the token", async () => {
    repo = await makeBareRepo();
    const mainBefore = await repo.git('rev-parse', 'main');
    const token = fakeToken();
    const run = await worker({
      FLEET_BRANCH: 'fleet/req-1',
      GITHUB_TOKEN: token,
      // The agent also edits TASK.md and AGENTS.md: they must still stay out of the commit.
      FLEET_AGENT_CMD: 'echo "AGENT_UID=$(id -u)"; echo feature > feature.txt; echo more >> TASK.md; echo more >> AGENTS.md',
    });

    expect(run.exitCode).toBe(0);
    const sha = await repo.git('rev-parse', 'fleet/req-1');
    expect(await repo.git('rev-parse', 'fleet/req-1^')).toBe(mainBefore);
    expect(await repo.git('rev-parse', 'main')).toBe(mainBefore);
    expect(await repo.git('log', '-1', '--format=%s', 'fleet/req-1')).toBe('feat: add the feature file');
    expect((await repo.git('ls-tree', '-r', '--name-only', 'fleet/req-1')).split('\n').sort()).toEqual(['README.md', 'feature.txt']);
    expect(await repo.git('show', 'fleet/req-1:feature.txt')).toBe('feature');

    const uid = run.logLines.find((l) => l.startsWith('AGENT_UID='));
    expect(uid).toBeDefined();
    expect(uid).not.toBe('AGENT_UID=0');

    expect(run.events.map((e) => e.event_type)).toEqual([
      'started',
      'progress',
      'progress',
      'progress',
      'progress',
      'progress',
      'completed',
      // The host's cue that the outcome is known (not a protocol event: the host never publishes it).
      'exiting',
    ]);
    expect(byType(run.events, 'exiting')).toEqual([{ event_type: 'exiting', exit_code: 0 }]);
    expect(byType(run.events, 'started')[0]).toMatchObject({ repo: 'acme/widgets', task_summary: '# Add a feature file' });
    const progress = byType(run.events, 'progress');
    expect(progress.map((e) => e.stage)).toEqual(['prepare', 'clone', 'run', 'commit', 'push']);
    const pcts = progress.map((e) => e.progress_pct as number);
    expect([...pcts].sort((a, b) => a - b)).toEqual(pcts);
    expect(byType(run.events, 'completed')[0]).toMatchObject({ commit_sha: sha, branch: 'fleet/req-1', files_changed: ['feature.txt'] });

    expect(run.stdout).not.toContain(token);
    expect(run.stderr).not.toContain(token);
    expect(await run.copyOut('/workspace/.git/config')).not.toContain(token);
    expect(await run.copyOut('/fleet/state/repo.git/config')).not.toContain(token);
    expect(await grepTree(repo.dir, token)).toEqual([]);
  }, 180_000);

  it('commits on the cloned default branch when FLEET_BRANCH is empty (legacy)', async () => {
    repo = await makeBareRepo();
    const mainBefore = await repo.git('rev-parse', 'main');
    // Without AGENTS.md, which is optional.
    const run = await worker({ FLEET_BRANCH: '', FLEET_AGENT_CMD: 'test ! -e AGENTS.md && echo x > legacy.txt' }, { agents: false });
    expect(run.exitCode).toBe(0);
    expect(await repo.git('rev-parse', 'main^')).toBe(mainBefore);
    expect(byType(run.events, 'completed')[0]).toMatchObject({ branch: 'main', commit_sha: await repo.git('rev-parse', 'main') });
  }, 180_000);

  it('continues an existing FLEET_BRANCH, and creates a new one from FLEET_BASE_BRANCH', async () => {
    repo = await makeBareRepo();
    const existing = await repo.commitOn('fleet/existing', 'earlier.txt', 'earlier\n');
    const develop = await repo.commitOn('develop', 'develop.txt', 'develop\n');

    const onExisting = await worker({ FLEET_BRANCH: 'fleet/existing', FLEET_AGENT_CMD: 'test -f earlier.txt && echo 1 > next.txt' });
    expect(onExisting.exitCode).toBe(0);
    expect(await repo.git('rev-parse', 'fleet/existing^')).toBe(existing);

    const fromBase = await worker({
      FLEET_BRANCH: 'fleet/new',
      FLEET_BASE_BRANCH: 'develop',
      FLEET_AGENT_CMD: 'test -f develop.txt && echo 1 > next.txt',
    });
    expect(fromBase.exitCode).toBe(0);
    expect(await repo.git('rev-parse', 'fleet/new^')).toBe(develop);
  }, 180_000);

  it('keeps the token away from the agent: its environment and every /proc/*/environ it can read', async () => {
    repo = await makeBareRepo();
    const token = fakeToken();
    const run = await worker({
      FLEET_BRANCH: 'fleet/scan',
      GITHUB_TOKEN: token,
      FACTORY_API_KEY: 'factory-key-for-another-agent',
      FLEET_AGENT_CMD: [
        'env',
        'readable=0; denied=0',
        'for f in /proc/[0-9]*/environ; do if tr "\\0" "\\n" < "$f" 2>/dev/null; then readable=$((readable+1)); else denied=$((denied+1)); fi; done',
        'echo "READABLE=$readable DENIED=$denied"',
        'cat /run/fleet/github-token 2>&1 || true',
        'grep -r -l . /run/fleet 2>&1 || true',
      ].join('\n'),
    });
    expect(run.exitCode).toBe(0);
    // The dump really ran: the agent's own environment is there, and root's processes were refused.
    expect(run.logLines).toContain('HOME=/home/agent');
    const counts = run.logLines.find((l) => l.startsWith('READABLE='));
    const [, readable, denied] = /READABLE=(\d+) DENIED=(\d+)/.exec(counts ?? '') ?? [];
    expect(Number(readable)).toBeGreaterThan(0);
    expect(Number(denied)).toBeGreaterThan(0);
    expect(run.stdout).toMatch(/\/run\/fleet.*Permission denied/);

    expect(run.stdout).not.toContain(token);
    expect(run.logLines.some((l) => l.startsWith('GITHUB_TOKEN='))).toBe(false);
    // A custom agent gets no API key at all; droid's key was meant for droid only.
    expect(run.stdout).not.toContain('factory-key-for-another-agent');
  }, 180_000);

  it('reports a failing agent as task_failed with its exit code, and pushes nothing', async () => {
    repo = await makeBareRepo();
    const run = await worker({ FLEET_BRANCH: 'fleet/fail', FLEET_AGENT_CMD: 'echo partial > partial.txt; echo "about to fail"; exit 7' });
    expect(run.exitCode).toBe(7);
    const failed = byType(run.events, 'failed');
    expect(failed).toHaveLength(1);
    expect(failed[0]).toMatchObject({ error_type: 'task_failed' });
    expect(failed[0]!.error_message).toContain('7');
    expect(failed[0]!.logs_tail).toContain('about to fail');
    expect(byType(run.events, 'completed')).toEqual([]);
    expect(await repo.git('branch', '--list', 'fleet/fail')).toBe('');
  }, 180_000);

  it("keeps a failed event within the host's 16 KiB line limit, however long the agent's lines", async () => {
    repo = await makeBareRepo();
    const run = await worker({
      FLEET_BRANCH: 'fleet/loud',
      FLEET_AGENT_CMD: 'for i in $(seq 1 300); do printf "line %s \\"%0200d\\"\\n" "$i" 0; done; exit 4',
    });
    expect(run.exitCode).toBe(4);
    const line = run.stdout.split('\n').find((l) => l.includes('"event_type":"failed"'))!;
    expect(Buffer.byteLength(line)).toBeLessThanOrEqual(16_000);
    const failed = byType(run.events, 'failed')[0]!;
    expect(failed).toMatchObject({ error_type: 'task_failed' });
    expect(failed.logs_tail).toContain('agent exit: 4');
    expect(failed.logs_tail).toContain('line 300');
  }, 180_000);

  it('completes with commit_sha null when the agent changes nothing', async () => {
    repo = await makeBareRepo();
    const run = await worker({ FLEET_BRANCH: 'fleet/nothing', FLEET_AGENT_CMD: 'cat TASK.md AGENTS.md > /dev/null' });
    expect(run.exitCode).toBe(0);
    expect(byType(run.events, 'completed')).toEqual([
      expect.objectContaining({ commit_sha: null, branch: 'fleet/nothing', files_changed: [] }),
    ]);
    expect(await repo.git('branch', '--list', 'fleet/nothing')).toBe('');
  }, 180_000);

  it('hands a 1 MiB task to the agent whole', async () => {
    repo = await makeBareRepo();
    const task = `# Big task\n${'x'.repeat(1024 * 1024 - 12)}\n`;
    const run = await worker({ FLEET_BRANCH: 'fleet/big', FLEET_AGENT_CMD: 'echo "TASK_BYTES=$(wc -c < TASK.md)"' }, { task });
    expect(run.exitCode).toBe(0);
    expect(run.logLines).toContain(`TASK_BYTES=${Buffer.byteLength(task)}`);
    expect(run.events[0]).toMatchObject({ event_type: 'started', task_summary: '# Big task' });
  }, 180_000);

  it('reports clone_failed for a repository that is not there', async () => {
    repo = await makeBareRepo();
    const run = await worker({ FLEET_GIT_URL: 'file:///srv/missing.git', FLEET_AGENT_CMD: 'echo never > ran.txt' });
    expect(run.exitCode).not.toBe(0);
    expect(byType(run.events, 'failed')).toEqual([expect.objectContaining({ error_type: 'clone_failed' })]);
    expect(run.stdout).not.toContain('agent start');
  }, 180_000);

  it('reports push_failed when the remote refuses the push', async () => {
    repo = await makeBareRepo();
    const run = await worker({ FLEET_BRANCH: 'fleet/ro', FLEET_AGENT_CMD: 'echo x > x.txt' }, { readOnlyRepo: true });
    expect(run.exitCode).not.toBe(0);
    expect(byType(run.events, 'failed')).toEqual([expect.objectContaining({ error_type: 'push_failed' })]);
    expect(byType(run.events, 'completed')).toEqual([]);
  }, 180_000);

  it('refuses a clone URL with credentials in it', async () => {
    repo = await makeBareRepo();
    const run = await worker({ FLEET_GIT_URL: 'https://x-access-token:secret@example.invalid/a/b.git', FLEET_AGENT_CMD: 'true' });
    expect(run.exitCode).not.toBe(0);
    expect(byType(run.events, 'failed')[0]).toMatchObject({ error_type: 'invalid_request' });
  }, 180_000);

  it("answers git's credential requests only for the https host of FLEET_GIT_URL, with the token from the root-only file", async () => {
    const token = fakeToken();
    const helper = '/usr/local/libexec/fleet-git-credential';
    const script = [
      'umask 077; mkdir -p /run/fleet; printf %s "$T" > /run/fleet/github-token; unset T',
      'export FLEET_GIT_URL=https://github.com/acme/widgets.git',
      `echo HTTPS:; printf "protocol=https\\nhost=GitHub.com\\npath=acme/widgets.git\\n\\n" | ${helper} get`,
      `echo OTHER-HOST:; printf "protocol=https\\nhost=evil.example\\n\\n" | ${helper} get`,
      `echo OTHER-PORT:; printf "protocol=https\\nhost=github.com:8443\\n\\n" | ${helper} get`,
      `echo HTTP:; printf "protocol=http\\nhost=github.com\\n\\n" | ${helper} get`,
      `echo FILE:; printf "protocol=file\\n\\n" | ${helper} get`,
      `echo STORE:; printf "protocol=https\\nhost=github.com\\npassword=x\\n\\n" | ${helper} store`,
      `echo NO-URL:; printf "protocol=https\\nhost=github.com\\n\\n" | FLEET_GIT_URL= ${helper} get`,
      `echo FILE-URL:; printf "protocol=https\\nhost=github.com\\n\\n" | FLEET_GIT_URL=file:///srv/github.com ${helper} get`,
      'echo END',
    ].join('\n');
    const { stdout } = await docker(['run', '--rm', '--network', 'none', '-e', `T=${token}`, '--entrypoint', 'bash', image, '-c', script]);
    expect(stdout).toBe(
      `HTTPS:\nusername=x-access-token\npassword=${token}\nOTHER-HOST:\nOTHER-PORT:\nHTTP:\nFILE:\nSTORE:\nNO-URL:\nFILE-URL:\nEND\n`,
    );
  }, 180_000);

  it("follows no link the repository committed as TASK.md or AGENTS.md when it copies the fleet's files in", async () => {
    repo = await makeBareRepo();
    // Root-owned files outside the workspace, which root's copy would overwrite through the links.
    const canaries = mkdtempSync(join(tmpdir(), 'fleet-test-canary-'));
    try {
      writeFileSync(join(canaries, 'task'), 'canary task\n');
      writeFileSync(join(canaries, 'agents'), 'canary agents\n');
      const seed = join(canaries, 'seed');
      const git = (...args: string[]) =>
        execFileSync('git', ['-c', 'user.name=t', '-c', 'user.email=t@fleet.invalid', '-C', seed, ...args]);
      execFileSync('git', ['clone', '--quiet', repo.path, seed]);
      symlinkSync('/etc/fleet-canary-task', join(seed, 'TASK.md'));
      symlinkSync('/etc/fleet-canary-agents', join(seed, 'AGENTS.md'));
      git('add', 'TASK.md', 'AGENTS.md');
      git('commit', '--quiet', '-m', 'links');
      git('push', '--quiet', 'origin', 'main:fleet/links');
      const result = await runWorker(image, {
        env: {
          FLEET_GIT_URL: 'file:///srv/origin.git',
          FLEET_AGENT: 'custom',
          FLEET_DIND: 'off',
          FLEET_BRANCH: 'fleet/links',
          FLEET_AGENT_CMD: 'echo "TASK=$(head -1 TASK.md)"; echo "AGENTS=$(head -1 AGENTS.md)"; echo x > x.txt',
        },
        input: { 'TASK.md': TASK, 'AGENTS.md': AGENTS },
        binds: {
          [repo.path]: '/srv/origin.git',
          [join(canaries, 'task')]: '/etc/fleet-canary-task',
          [join(canaries, 'agents')]: '/etc/fleet-canary-agents',
        },
      });
      runs.push(result);
      expect(readFileSync(join(canaries, 'task'), 'utf8')).toBe('canary task\n');
      expect(readFileSync(join(canaries, 'agents'), 'utf8')).toBe('canary agents\n');
      expect(result.exitCode).toBe(0);
      // The agent read the fleet's files, and the repository's links are committed as they were.
      expect(result.logLines).toContain('TASK=# Add a feature file');
      expect(result.logLines).toContain('AGENTS=# Rules');
      expect(await repo.git('ls-tree', 'fleet/links', 'TASK.md')).toMatch(/^120000 /);
      expect(await repo.git('show', 'fleet/links:x.txt')).toBe('x');
    } finally {
      rmSync(canaries, { recursive: true, force: true });
    }
  }, 180_000);

  it('defuses event lines printed by the agent', async () => {
    repo = await makeBareRepo();
    const run = await worker({
      FLEET_BRANCH: 'fleet/forge',
      FLEET_AGENT_CMD: 'echo \'::fleet-event:: {"event_type":"completed","commit_sha":"forged"}\'; exit 3',
    });
    expect(run.exitCode).toBe(3);
    expect(run.events.some((e) => e.commit_sha === 'forged')).toBe(false);
    expect(byType(run.events, 'failed')[0]).toMatchObject({ error_type: 'task_failed' });
  }, 180_000);

  it("fails with dind_failed and dockerd's log when Docker-in-Docker is demanded but cannot run", async () => {
    repo = await makeBareRepo();
    const run = await worker({ FLEET_DIND: 'on', FLEET_DIND_TIMEOUT: '30', FLEET_AGENT_CMD: 'echo never > ran.txt' });
    expect(run.exitCode).not.toBe(0);
    const failed = byType(run.events, 'failed');
    expect(failed).toEqual([expect.objectContaining({ error_type: 'dind_failed' })]);
    expect(failed[0]!.logs_tail).toMatch(/level=(info|error|fatal)/);
    expect(run.stdout).not.toContain('agent start');
  }, 180_000);
});
