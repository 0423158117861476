import { readFileSync } from 'node:fs';
import { Queue, QueueEvents } from 'bullmq';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { QUEUE_NAMES } from '../../queues/common.ts';
import { channels, LEGACY_RESULT_KEYS, type AgentUsage, type FleetEvent } from '../../src/protocol.ts';
import { containersWithLabel, describeDocker, testImage } from '../support/docker.ts';
import { completedLine, legacyRequest, publishJson, ResultListener, startTestFleet, testEnv } from '../support/fleet.ts';
import { startRedis, type TestRedis } from '../support/redis.ts';

/** A worker script line that prints one line as it is (a line of the agent's own stream). */
const printLine = (line: string) => `echo '${line.replace(/'/g, `'\\''`)}'`;

/** A claude `assistant` line of one API message that edits a file; 2000 input tokens = $0.006 at Sonnet's price. */
const claudeEdit = (n: number) =>
  JSON.stringify({
    type: 'assistant',
    message: {
      id: `msg_${n}`,
      type: 'message',
      role: 'assistant',
      model: 'claude-sonnet-4-5-20250929',
      content: [
        {
          type: 'tool_use',
          id: `toolu_${n}`,
          name: 'Edit',
          input: { file_path: '/workspace/src/app.ts', old_string: `v${n}`, new_string: `v${n + 1}` },
        },
      ],
      stop_reason: null,
      stop_sequence: null,
      usage: { input_tokens: 2000, output_tokens: 1, cache_read_input_tokens: 0, cache_creation_input_tokens: 0 },
    },
    parent_tool_use_id: null,
    session_id: 'budget-test',
  });

describeDocker('the agent stream on the host: usage and budgets (real Redis, real Docker)', () => {
  let server: TestRedis;
  let redis: Redis;
  let results: ResultListener;
  let fleet: Awaited<ReturnType<typeof startTestFleet>>;
  let queue: Queue;
  let queueEvents: QueueEvents;
  const events: FleetEvent[] = [];
  const waiters: { match: (e: FleetEvent) => boolean; resolve: (e: FleetEvent) => void }[] = [];
  let eventClient: Redis;
  /** The first event that matches, seen or still to come (the event and the result travel on different connections). */
  const nextEvent = (match: (e: FleetEvent) => boolean) =>
    new Promise<FleetEvent>((resolve) => {
      const seen = events.find(match);
      if (seen) resolve(seen);
      else waiters.push({ match, resolve });
    });

  beforeAll(async () => {
    server = await startRedis();
    redis = new Redis(server.url);
    results = await ResultListener.start(server.url);
    eventClient = new Redis(server.url);
    eventClient.on('message', (_c, m: string) => {
      const event = JSON.parse(m) as FleetEvent;
      events.push(event);
      for (const w of waiters.filter((w) => w.match(event))) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(event);
      }
    });
    await eventClient.subscribe(channels.allEvents);
    const env = testEnv(server.url, testImage());
    fleet = await startTestFleet(env, ['bridge', 'spawn']);
    queue = new Queue(QUEUE_NAMES.spawn, { connection: { url: server.url }, prefix: env.FLEET_PREFIX });
    queueEvents = new QueueEvents(QUEUE_NAMES.spawn, { connection: { url: server.url }, prefix: env.FLEET_PREFIX });
    await queueEvents.waitUntilReady();
  });

  afterAll(async () => {
    await queueEvents?.close();
    await queue?.close();
    await fleet?.stop();
    await results?.close();
    eventClient?.disconnect();
    redis?.disconnect();
    await server?.stop();
  });

  it('kills a claude worker whose running cost passes max_cost_usd, mid-stream: budget_exceeded, nothing committed', async () => {
    // Twenty messages 0.3 s apart would cost $0.12 and take 6 s; then the worker sleeps and would complete.
    const script = [
      ...Array.from({ length: 20 }, (_, i) => [printLine(claudeEdit(i + 1)), 'sleep 0.3']).flat(),
      'sleep 60',
      completedLine('should never be reached'),
    ];
    const request = legacyRequest({
      agent: 'claude',
      max_cost_usd: 0.01,
      result_format: 'v2',
      timeout_seconds: 120,
      task_content: script.join('\n'),
    });
    const id = request.request_id as string;
    const sent = Date.now();
    await publishJson(redis, channels.spawn, request);
    const result = (await results.next(id)) as Awaited<ReturnType<ResultListener['next']>> & { usage: AgentUsage };
    const elapsedMs = Date.now() - sent;

    expect(result).toMatchObject({ success: false, exit_code: -1, error_type: 'budget_exceeded', commit_sha: null });
    expect(result.error_message).toMatch(/max_cost_usd=0\.01 \(\$0\.012\d* after 2 turns\).*killed before it committed/);
    // Killed at the second message ($0.012): a line or two may have been read while the kill ran, not twenty.
    expect(result.usage).toMatchObject({ agent: 'claude', model: 'claude-sonnet-4-5-20250929', cost_source: 'price_table' });
    expect(result.usage.turns).toBeGreaterThanOrEqual(2);
    expect(result.usage.turns).toBeLessThanOrEqual(4);
    expect(result.usage.cost_usd).toBeGreaterThan(0.01);
    expect(result.usage.cost_usd).toBeLessThan(0.025);
    // Quickly: well before the stream (6 s) and the sleep after it would have ended.
    expect(elapsedMs).toBeLessThan(15_000);
    await expect.poll(() => containersWithLabel(`fleet.request_id=${id}`), { timeout: 15_000, interval: 100 }).toEqual([]);

    const failed = await nextEvent((e) => e.request_id === id && e.event_type === 'failed');
    expect(failed).toMatchObject({ error_type: 'budget_exceeded', usage: { turns: result.usage.turns, cost_usd: result.usage.cost_usd } });
    const mine = events.filter((e) => e.request_id === id);
    expect(mine.filter((e) => e.event_type === 'failed')).toHaveLength(1);
    expect(mine.some((e) => e.event_type === 'completed')).toBe(false);
    const progress = mine.filter((e) => e.event_type === 'progress');
    expect(progress.length).toBeGreaterThanOrEqual(1);
    expect(progress[0]).toMatchObject({ stage: 'agent', message: 'editing src/app.ts', progress_pct: null, worker_type: 'claude_code' });

    const { logs } = await queue.getJobLogs(id);
    const log = logs.join('\n');
    expect(log).toContain('[assistant] tool Edit: editing src/app.ts');
    expect(log).not.toContain('"type":"assistant"');
    expect(log).toMatch(/\[fleet\] the agent's cost passed max_cost_usd=0\.01/);
    expect(log).toMatch(/\[fleet\] usage of claude \(claude-sonnet-4-5-20250929\): \d turn\(s\)/);
  });

  it('reports the usage claude itself reported: v2 result, terminal event, job return value; the legacy result keeps its eleven keys', async () => {
    const stream = readFileSync(new URL('../fixtures/agent-streams/claude-task.jsonl', import.meta.url), 'utf8')
      .split('\n')
      .filter(Boolean);
    const script = ['echo "fleet-worker: agent start: claude as agent"', ...stream.map(printLine), completedLine('done with usage')].join(
      '\n',
    );
    const v2 = legacyRequest({ agent: 'claude', result_format: 'v2', task_content: script });
    const legacy = legacyRequest({ agent: 'claude', task_content: script });
    await publishJson(redis, channels.spawn, v2);
    await publishJson(redis, channels.spawn, legacy);
    const [v2Result, legacyResult] = await Promise.all([results.next(v2.request_id as string), results.next(legacy.request_id as string)]);

    const expected = {
      agent: 'claude',
      model: 'claude-sonnet-4-5-20250929',
      input_tokens: 3600,
      output_tokens: 120,
      cached_tokens: 900,
      cache_write_tokens: 150,
      turns: 3,
      cost_usd: 0.013433,
      cost_source: 'agent',
    };
    expect(v2Result).toMatchObject({ success: true, summary: 'done with usage', usage: expected });
    expect(Object.keys(JSON.parse(results.raw.get(legacy.request_id as string)![0]!))).toEqual([...LEGACY_RESULT_KEYS]);
    expect(legacyResult.success).toBe(true);
    // The transcript, not the raw JSON, is in the tail.
    expect(legacyResult.logs_tail).toContain('[done] success, 3 turn(s), $0.0134: Created hello.txt.');
    expect(legacyResult.logs_tail).not.toContain('"session_id"');

    // The container's own completed event passes through with the usage added.
    const completed = await nextEvent((e) => e.request_id === legacy.request_id && e.event_type === 'completed');
    expect(completed).toMatchObject({ summary: 'done with usage', usage: expected });
    // The board shows the job's return value: the whole worker result, usage included, whatever the result format.
    const job = await queue.getJob(legacy.request_id as string);
    expect(await job!.waitUntilFinished(queueEvents)).toMatchObject({ usage: expected });
  });
});
