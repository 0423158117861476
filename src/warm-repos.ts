/**
 * FLEET_WARM_REPOS: repositories whose pool workers wait with a clone already made from the host's git mirror
 * (src/warm-pool.ts). Entries are `owner/name` or `owner/name:count`, separated by commas; a count says how many
 * such workers the host keeps (default 1). A job's repository must be named exactly so to take one (the host's mirror
 * and the clone's URL are of that spelling); two entries that differ only in case are refused.
 */
export interface WarmRepo {
  /** As written in the setting. */
  repo: string;
  count: number;
}

const ENTRY = /^([A-Za-z0-9-]{1,39}\/[A-Za-z0-9._-]{1,100})(?::([0-9]{1,2}))?$/;
const MAX_COUNT = 64;

/** Why a FLEET_WARM_REPOS value is unusable, or null. */
export function warmReposProblem(value: string): string | null {
  const entries = value.split(',').map((e) => e.trim());
  const bad = entries.filter((e) => {
    const m = ENTRY.exec(e);
    return !m || (m[2] !== undefined && (Number(m[2]) < 1 || Number(m[2]) > MAX_COUNT));
  });
  if (bad.length)
    return `entries must be "owner/name" or "owner/name:count" (count 1 to ${MAX_COUNT}), separated by commas; not ${bad
      .slice(0, 3)
      .map((e) => JSON.stringify(e))
      .join(', ')}`;
  const names = entries.map((e) => e.split(':')[0]!.toLowerCase());
  const twice = names.find((n, i) => names.indexOf(n) !== i);
  return twice ? `${twice} is named twice (give one entry a count instead)` : null;
}

export function parseWarmRepos(value: string): WarmRepo[] {
  return value.split(',').map((e) => {
    const m = ENTRY.exec(e.trim())!;
    return { repo: m[1]!, count: m[2] === undefined ? 1 : Number(m[2]) };
  });
}

/** Idle containers a host's pool keeps: FLEET_WARM_POOL generic ones and the FLEET_WARM_REPOS counts. */
export function warmPoolSize(pool: { size: number; repos: readonly WarmRepo[] }): number {
  return pool.size + pool.repos.reduce((sum, r) => sum + r.count, 0);
}
