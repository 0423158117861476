/**
 * FLEET_REPO_ALLOW: which repositories this fleet works on. Without it, a host's token would act on
 * any repository a sender names. Entries are `owner/name` with `*` for any run of name characters;
 * GitHub names are case-insensitive, and so is the match.
 */
const ENTRY = /^[A-Za-z0-9*-]{1,39}\/[A-Za-z0-9._*-]{1,100}$/;

/** Why a FLEET_REPO_ALLOW value is unusable, or null. */
export function repoAllowProblem(value: string): string | null {
  const bad = value
    .split(',')
    .map((e) => e.trim())
    .filter((e) => !ENTRY.test(e));
  return bad.length
    ? `entries must be "owner/name" with "*" as a wildcard, separated by commas; not ${bad
        .slice(0, 3)
        .map((e) => JSON.stringify(e))
        .join(', ')}`
    : null;
}

export function parseRepoAllow(value: string): string[] {
  return value
    .split(',')
    .map((e) => e.trim())
    .filter(Boolean);
}

const patternCache = new Map<string, RegExp>();
function toRegExp(entry: string): RegExp {
  let re = patternCache.get(entry);
  if (!re) {
    // Only [A-Za-z0-9._*-] reach here: '.' is the one character to escape, and '*' never crosses the '/'.
    re = new RegExp(`^${entry.replace(/\./g, '\\.').replace(/\*/g, '[A-Za-z0-9._-]*')}$`, 'i');
    patternCache.set(entry, re);
  }
  return re;
}

/** Whether `repo` may be worked on; an absent list allows every repository. */
export function repoAllowed(repo: string, allow: readonly string[] | undefined): boolean {
  return allow === undefined || allow.some((entry) => toRegExp(entry).test(repo));
}

/** The sentence an operator and a sender read when a repository is refused. */
export function repoRefusal(repo: string): string {
  return `repository "${repo}" is not in this fleet's FLEET_REPO_ALLOW`;
}
