import { Redis } from 'ioredis';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { RunningFleet } from '../../src/fleet.ts';
import { channels } from '../../src/protocol.ts';
import { describeDocker, testImage } from '../support/docker.ts';
import { completedLine, eventLine, legacyRequest, ResultListener, startTestFleet, testEnv, uid } from '../support/fleet.ts';
import { startRedis, type TestRedis } from '../support/redis.ts';

describeDocker('/metrics after real jobs', () => {
  let redis: TestRedis;
  let client: Redis;
  let listener: ResultListener;
  let fleet: RunningFleet;
  let env: Record<string, string>;
  let base: string;

  beforeAll(async () => {
    redis = await startRedis();
    env = testEnv(redis.url, testImage());
    fleet = await startTestFleet(env, ['bridge', 'spawn']);
    base = `http://127.0.0.1:${fleet.httpPort}`;
    client = new Redis(redis.url);
    listener = await ResultListener.start(redis.url);
  });
  afterAll(async () => {
    await listener?.close();
    await client?.quit();
    await fleet?.stop();
    await redis?.stop();
  });

  const scrape = async () => {
    const response = await fetch(`${base}/metrics`);
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toContain('text/plain');
    return response.text();
  };
  const value = (text: string, series: string) => {
    const line = text.split('\n').find((l) => l.startsWith(`${series} `));
    return line === undefined ? undefined : Number(line.slice(series.length + 1));
  };

  it('counts queues, hosts, durations, start latency, accepted and rejected requests', async () => {
    const ok = legacyRequest({
      task_content: [
        eventLine({ event_type: 'started', repo: 'acme/widgets', task_summary: 'metrics' }),
        'echo working',
        eventLine({ event_type: 'progress', stage: 'edit', message: 'half way', progress_pct: 50 }),
        completedLine('metrics done'),
      ].join('\n'),
    });
    const failing = legacyRequest({ task_content: 'echo about to fail; exit 3' });
    await client.publish(channels.spawn, JSON.stringify(ok));
    await client.publish(channels.spawn, JSON.stringify(failing));
    const invalidId = uid('bad');
    await client.publish(channels.spawn, JSON.stringify({ request_id: invalidId, repo: 'no slash here' }));
    expect((await listener.next(ok.request_id as string)).success).toBe(true);
    expect((await listener.next(failing.request_id as string)).error_type).toBe('crash');
    expect((await listener.next(invalidId)).error_type).toBe('invalid_request');

    fleet.metrics.onBudget({ remaining: 4321, limit: 5000, resetAt: new Date(1_900_000_000_000), resource: 'core' });

    const host = env.FLEET_HOST_ID!;
    // The heartbeat may still report the job running for one period; wait for the next one.
    await expect
      .poll(async () => value(await scrape(), `fleet_host_running_containers{host="${host}"}`), { timeout: 20_000, interval: 250 })
      .toBe(0);
    const text = await scrape();

    expect(value(text, 'fleet_queue_jobs{queue="spawn",state="completed"}')).toBe(1);
    expect(value(text, 'fleet_queue_jobs{queue="spawn",state="failed"}')).toBe(1);
    expect(value(text, 'fleet_queue_jobs{queue="spawn",state="waiting"}')).toBe(0);
    expect(value(text, 'fleet_queue_jobs{queue="review",state="waiting"}')).toBe(0);
    expect(value(text, 'fleet_queue_jobs{queue="merge",state="active"}')).toBe(0);

    expect(value(text, `fleet_host_capacity{host="${host}"}`)).toBe(2);
    expect(value(text, `fleet_host_up{host="${host}"}`)).toBe(1);
    expect(value(text, `fleet_host_drained{host="${host}"}`)).toBe(0);
    expect(value(text, `fleet_host_last_seen_timestamp_seconds{host="${host}"}`)).toBeGreaterThan(Date.now() / 1000 - 60);

    expect(value(text, 'fleet_job_duration_seconds_count{outcome="success"}')).toBe(1);
    expect(value(text, 'fleet_job_duration_seconds_count{outcome="crash"}')).toBe(1);
    expect(value(text, 'fleet_job_duration_seconds_sum{outcome="success"}')).toBeGreaterThan(0);
    expect(value(text, 'fleet_container_start_latency_seconds_count')).toBe(1);
    expect(value(text, 'fleet_container_start_latency_seconds_bucket{le="+Inf"}')).toBe(1);

    expect(value(text, 'fleet_accepted_requests_total{outcome="enqueued"}')).toBe(2);
    expect(value(text, 'fleet_rejected_messages_total')).toBe(1);

    expect(value(text, 'fleet_github_budget_remaining{resource="core"}')).toBe(4321);
    expect(value(text, 'fleet_github_budget_limit{resource="core"}')).toBe(5000);
    expect(value(text, 'fleet_github_budget_reset_timestamp_seconds{resource="core"}')).toBe(1_900_000_000);

    expect(value(text, 'fleet_bridge_subscribed')).toBe(1);
    expect(value(text, 'fleet_bridge_resubscribes_total')).toBe(0);
    expect(value(text, 'fleet_bridge_disconnects_total')).toBe(0);
    expect(value(text, 'fleet_bridge_dropped_messages_total')).toBe(0);
    expect(value(text, 'fleet_bridge_inbox_messages')).toBe(0);
    expect(value(text, 'fleet_intake_stream_entries')).toBe(0);

    expect(text).toMatch(/^fleet_process_process_resident_memory_bytes \d+/m);
    expect(text).not.toContain('fleet_metrics_collect_errors_total{');
  });

  it('is ready: Redis, Docker, no host fault, a runtime Docker knows, and the worker image answer', async () => {
    const response = await fetch(`${base}/readyz`);
    expect(response.status).toBe(200);
    expect(((await response.json()) as { checks: { name: string; ok: boolean }[] }).checks).toEqual([
      { name: 'redis', ok: true },
      { name: 'docker', ok: true },
      { name: 'host faults', ok: true },
      { name: 'runtime runc', ok: true },
      { name: 'worker image', ok: true },
      { name: 'bridge', ok: true },
    ]);
  });
});
