/**
 * `npm run bench`: fleet's performance figures, each beside a baseline measured in the same run.
 * Not a test: it asserts nothing, it prints tables. BENCH_ONLY=dispatch,limiter,bursts,agents,egress,git-mirror,topologies,memory,teardown,warm picks parts.
 */
import { FLEET_REDIS_ARGS } from '../src/embedded-redis.ts';
import { dockerAvailable } from '../test/support/docker.ts';
import { benchAgentStart, benchWarmStart } from './agent-start.ts';
import { startRedis } from '../test/support/redis.ts';
import { benchBursts } from './bridge-burst.ts';
import { benchDispatch } from './dispatch.ts';
import { benchEgress } from './egress.ts';
import { benchGitMirror } from './git-mirror.ts';
import { benchGithubLimiter } from './github-limiter.ts';
import { benchRedisMemory } from './redis-memory.ts';
import { benchRedisTopologies } from './redis-topologies.ts';
import { benchResultTeardown } from './result-teardown.ts';

const only = new Set(
  (process.env.BENCH_ONLY ?? 'dispatch,limiter,bursts,agents,egress,git-mirror,topologies,memory,teardown,warm').split(','),
);

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
if (only.has('egress')) {
  const rows = await benchEgress();
  table(
    'Egress proxy: git clone of a random-blob repository from a loopback smart-HTTP forge, direct vs through the proxy and broker',
    rows,
  );
  const [direct, proxied] = rows;
  console.log(`ratio direct/proxy time: ${(direct!.median_s / proxied!.median_s).toFixed(2)} (goal ≥ 0.8)`);
}

if (only.has('git-mirror')) {
  const { rows, repoBytes } = await benchGitMirror();
  table(
    `Clone of a ${(repoBytes / 1024 ** 2).toFixed(0)} MB repository through a loopback smart-HTTP server: cold vs from the host's git mirror (goal: ≥ 10× faster)`,
    rows,
  );
}

if (only.has('topologies')) {
  table(
    'Dispatch overhead by Redis topology (publish → container create; single redis-server is the baseline; all on loopback)',
    await benchRedisTopologies(),
  );
}
if (only.has('memory')) {
  table(
    'Redis memory per 1000 queued legacy requests (INFO memory used_memory, before and after; bridge only, so they stay queued)',
    await benchRedisMemory(),
  );
}

if (only.has('teardown')) {
  if (dockerAvailable) {
    table(
      'Result before teardown: sequential trivial requests, DinD off (busybox test worker, cap 1); the removal time is the baseline',
      await benchResultTeardown(),
    );
  } else {
    console.log('\nResult before teardown: SKIPPED (no Docker daemon)');
  }
}

if (only.has('warm')) {
  if (dockerAvailable) {
    const rows = await benchWarmStart();
    table(
      'Warm pool: publish → agent start (the run stage) and → result, sequential legacy requests, real worker image, custom agent; cold rows are the baseline',
      rows,
    );
    for (const row of rows.filter((r) => r.path.startsWith('warm') && r.path.includes('DinD on'))) {
      console.log(
        `${row.path}: ${row.agent_start_p50_ms} ms p50 to agent start (goal: 150 ms or less), ` +
          `${row.result_p50_ms} ms p50 to the result of a trivial task (goal: 600 ms or less)`,
      );
    }
  } else {
    console.log('\nWarm pool: SKIPPED (no Docker daemon)');
  }
}
process.exit(0);
