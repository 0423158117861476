/**
 * `npm run bench`: fleet's performance figures, each beside a baseline measured in the same run.
 * Not a test: it asserts nothing, it prints tables. BENCH_ONLY=dispatch,limiter,bursts,agents,warm picks parts.
 */
import { FLEET_REDIS_ARGS } from '../src/embedded-redis.ts';
import { dockerAvailable } from '../test/support/docker.ts';
import { benchAgentStart, benchWarmStart } from './agent-start.ts';
import { startRedis } from '../test/support/redis.ts';
import { benchBursts } from './bridge-burst.ts';
import { benchDispatch } from './dispatch.ts';
import { benchGithubLimiter } from './github-limiter.ts';

const only = new Set((process.env.BENCH_ONLY ?? 'dispatch,limiter,bursts,agents,warm').split(','));

function table(title: string, rows: object[]) {
  console.log(`\n${title}`);
  console.table(rows);
}

if (only.has('dispatch')) {
  const rows = await benchDispatch();
  table('Dispatch latency (real Redis; Docker excluded: create() is recorded, not run)', rows);
  const [rawIdle, fleetIdle] = rows;
  console.log(
    `idle p50: fleet ${fleetIdle!.p50_ms} ms vs raw BullMQ ${rawIdle!.p50_ms} ms (target: within 2 ms); ` +
      `idle p99: ${fleetIdle!.p99_ms} ms (target: under 25 ms); burst lost ${rows[3]!.lost}, duplicated ${rows[3]!.duplicated} (target: 0, 0)`,
  );
}

if (only.has('limiter')) {
  const { rows } = await benchGithubLimiter();
  table("GitHub limiter against the test server's secondary limits", rows);
}
if (only.has('bursts')) {
  const rows = await benchBursts({ startRedis: (args) => startRedis({ args }), fleetArgs: FLEET_REDIS_ARGS });
  table(
    'Pub/sub bursts published at once (bridge alone: received = handled, queued = spawn jobs; omem = Redis-side buffer of the subscriber; rss above the level before the burst)',
    rows,
  );
}
if (only.has('agents')) {
  if (dockerAvailable) {
    table(
      'Agent cold start: container start to the first model request at a loopback test server (custom = curl, the baseline)',
      await benchAgentStart(),
    );
  } else {
    console.log('\nAgent cold start: SKIPPED (no Docker daemon)');
  }
}
if (only.has('warm')) {
  if (dockerAvailable) {
    const rows = await benchWarmStart();
    table(
      'Warm pool: publish → agent start (the run stage) and → result, sequential legacy requests, real worker image, custom agent; cold rows are the baseline',
      rows,
    );
    const warmDind = rows.find((r) => r.path.startsWith('warm, DinD on'));
    console.log(`warm with DinD: ${warmDind?.agent_start_p50_ms} ms p50 to agent start (goal: 150 ms or less)`);
  } else {
    console.log('\nWarm pool: SKIPPED (no Docker daemon)');
  }
}
process.exit(0);
