/**
 * Content-creating GitHub calls per minute sustained through the metered client, against the test server's
 * secondary limits, and the number of limit violations.
 *
 * Two scenarios run side by side, each with its own token (so its own budget):
 *  - GitHub's rules: at least 1 s between mutations and at most 80 content-creating requests a minute; together
 *    they allow 60 a minute (CLARIFICATIONS: target ≥ 90 %, i.e. ≥ 54 a minute, with zero violations);
 *  - the 80-a-minute rule alone (server and client spacing off), to show the client reaches that cap too.
 * Production limits on the client (no scaling) except that the second scenario turns the spacing off.
 *
 * `npx tsx bench/github-limiter.ts` prints the table; BENCH_LIMITER_SECONDS sets the run length (default 75).
 */
import { pathToFileURL } from 'node:url';
import { startRedis } from '../test/support/redis.ts';
import { startGitHubTestServer, type SecondaryLimits } from '../test/servers/github.ts';
import { createGitHubForges, type GitHubLimits } from '../src/github/index.ts';

export interface BenchGithubLimiterOptions {
  /** Length of the measured run. @defaultValue BENCH_LIMITER_SECONDS or 75 */
  seconds?: number;
  /** Calls kept waiting in the client at any time, so the limiter is never idle. @defaultValue 4 */
  concurrency?: number;
}

interface Scenario {
  name: string;
  token: string;
  allowedPerMinute: number;
  server: Partial<SecondaryLimits>;
  client: Partial<GitHubLimits>;
}

const SCENARIOS: Scenario[] = [
  { name: '1 s spacing + 80/min (GitHub)', token: 'ghp_bench_github_rules', allowedPerMinute: 60, server: {}, client: {} },
  {
    name: '80/min only (spacing off)',
    token: 'ghp_bench_content_cap',
    allowedPerMinute: 80,
    server: { mutationSpacingMs: 0 },
    client: { mutationSpacingMs: 0 },
  },
];

const quiet = () => {};
const logger = { debug: quiet, info: quiet, warn: quiet, error: (fields: unknown, msg?: string) => console.error(msg, fields) };

export async function benchGithubLimiter(opts: BenchGithubLimiterOptions = {}): Promise<{ rows: Record<string, string | number>[] }> {
  const seconds = opts.seconds ?? Number(process.env.BENCH_LIMITER_SECONDS ?? 75);
  const concurrency = opts.concurrency ?? 4;
  if (!(seconds > 0)) throw new Error(`BENCH_LIMITER_SECONDS must be a positive number, got ${process.env.BENCH_LIMITER_SECONDS}`);
  const redis = await startRedis();
  try {
    const rows = await Promise.all(SCENARIOS.map((scenario, i) => runScenario(scenario, redis.url, `bench${i}`, seconds, concurrency)));
    return { rows };
  } finally {
    await redis.stop();
  }
}

async function runScenario(
  scenario: Scenario,
  redisUrl: string,
  prefix: string,
  seconds: number,
  concurrency: number,
): Promise<Record<string, string | number>> {
  // Each scenario gets its own server: its secondary rules differ.
  const server = await startGitHubTestServer({ secondary: { retryAfterS: 60, status: 403, ...scenario.server } });
  const forges = createGitHubForges({ apiUrl: server.url, redis: redisUrl, prefix, logger: logger as never, limits: scenario.client });
  try {
    const repo = 'bench/limiter';
    server.addRepo(repo);
    server.pushBranch(repo, 'feature');
    const forge = forges.forToken(scenario.token);
    const pr = await forge.openPullRequest({ repo, head: 'feature', base: 'main', title: 'bench', body: '' });
    const started = Date.now();
    const deadline = started + seconds * 1000;
    let completed = 0;
    let failed = 0;
    const loop = async () => {
      while (Date.now() < deadline) {
        try {
          await forge.postComment(repo, pr.number, `comment ${completed}`);
          completed++;
        } catch {
          failed++;
        }
      }
    };
    await Promise.all(Array.from({ length: concurrency }, loop));
    const elapsedMs = Date.now() - started;
    const arrivals = server.requests.filter((r) => r.content && r.path.endsWith('/comments') && r.status === 201).map((r) => r.at);
    // Steady-state rate between the first and the last accepted call, as GitHub would see it.
    const span = arrivals.length > 1 ? arrivals.at(-1)! - arrivals[0]! : 0;
    const perMinute = span > 0 ? ((arrivals.length - 1) / span) * 60_000 : 0;
    const violations = server.totalViolations();
    return {
      scenario: scenario.name,
      seconds: Math.round(elapsedMs / 100) / 10,
      calls: completed,
      failed,
      per_minute: Math.round(perMinute * 10) / 10,
      allowed_per_minute: scenario.allowedPerMinute,
      share_of_allowed: `${Math.round((perMinute / scenario.allowedPerMinute) * 1000) / 10} %`,
      violations,
      target: perMinute >= scenario.allowedPerMinute * 0.9 && violations === 0 ? 'met (≥ 90 %, 0 violations)' : 'MISSED',
    };
  } finally {
    await forges.close();
    await server.close();
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const { rows } = await benchGithubLimiter();
  console.log("GitHub limiter against the test server's secondary limits");
  console.table(rows);
  process.exit(0);
}
