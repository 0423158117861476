import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { SpawnResult } from '../../src/protocol.ts';
import { describeDocker, testImage } from '../support/docker.ts';
import { completedLine, eventLine, legacyRequest, startTestFleet, testEnv } from '../support/fleet.ts';
import { startRedis, type TestRedis } from '../support/redis.ts';

const run = promisify(execFile);
// Debian's python3 carries python3-redis; a pyenv python3 earlier on PATH may not.
const PYTHON = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';
const SCRIPT = join(import.meta.dirname, 'orchestrator_node.py');

describeDocker('the Python orchestrator, unchanged, against the fleet', () => {
  let server: TestRedis;
  let fleet: Awaited<ReturnType<typeof startTestFleet>>;

  beforeAll(async () => {
    server = await startRedis();
    fleet = await startTestFleet(testEnv(server.url, testImage()), ['bridge', 'spawn']);
  });
  afterAll(async () => {
    await fleet?.stop();
    await server?.stop();
  });

  async function orchestrate(requests: Record<string, unknown>[]): Promise<SpawnResult[]> {
    const { stdout } = await run(PYTHON, [SCRIPT, '--port', String(server.port), '--requests', JSON.stringify(requests)], {
      timeout: 120_000,
    });
    return stdout
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line) as SpawnResult);
  }

  it('gets results its SpawnResult dataclass accepts: success, failure and invalid request', async () => {
    const ok = legacyRequest({
      task_content: [
        eventLine({ event_type: 'started', repo: 'acme/widgets', task_summary: 'py' }),
        completedLine('from python', 'cafe01'),
      ].join('\n'),
      agents_content: '# AGENTS\nbe nice',
    });
    const failing = legacyRequest({ task_content: 'echo broken >&2\nexit 9' });
    const invalid = legacyRequest({ timeout_seconds: -1 });
    const [r1, r2, r3] = await orchestrate([ok, failing, invalid]);
    expect(r1).toMatchObject({ request_id: ok.request_id, success: true, commit_sha: 'cafe01', summary: 'from python', exit_code: 0 });
    expect(r2).toMatchObject({ request_id: failing.request_id, success: false, exit_code: 9, error_type: 'crash' });
    expect(r2!.logs_tail).toContain('broken');
    expect(r3).toMatchObject({ request_id: invalid.request_id, success: false, error_type: 'invalid_request' });
    expect(r3!.error_message).toContain('timeout_seconds');
  });
});
