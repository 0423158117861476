/**
 * The credential broker (pure parts): which forge requests are git traffic for which repository, and the
 * Authorization a request to the job's own repository gets. The worker holds only a per-job broker key,
 * sent by root's git as its password; the proxy swaps it for the real token on the way out, so the token
 * never enters the container, and a key stolen from it works only through this job's proxy, for this one
 * repository, while the job runs.
 */
import { timingSafeEqual } from 'node:crypto';

export interface Forge {
  /** `http:` or `https:` */
  protocol: string;
  host: string;
  port: number;
  /** The base URL's path without its trailing slash ('' for https://github.com). */
  basePath: string;
}

export function forgeOf(gitBaseUrl: string): Forge {
  const u = new URL(gitBaseUrl);
  return {
    protocol: u.protocol,
    host: u.hostname.toLowerCase(),
    port: Number(u.port || (u.protocol === 'https:' ? 443 : 80)),
    basePath: u.pathname.replace(/\/+$/, ''),
  };
}

/** Git smart-HTTP (and dumb-HTTP and LFS) paths under a repository: `owner/name(.git)/...`. */
const GIT_PATH = /^\/([^/]+)\/([^/]+?)(?:\.git)?\/(?:info\/refs|git-upload-pack|git-receive-pack|HEAD|objects\/.*|info\/lfs(?:\/.*)?)$/;

/** The `owner/name` a forge request is git traffic for, or null for any other path. */
export function gitRepoOfPath(forge: Forge, rawPath: string): string | null {
  const path = rawPath.split('?')[0]!;
  if (forge.basePath && !path.startsWith(`${forge.basePath}/`)) return null;
  const match = GIT_PATH.exec(decodeURIComponent(path.slice(forge.basePath.length)));
  return match ? `${match[1]}/${match[2]}` : null;
}

/** What the broker does with one forge request. */
export type BrokerDecision = { kind: 'forward'; authorization: string | null } | { kind: 'challenge' } | { kind: 'refuse'; repo: string };

/**
 * Git traffic for the job's repository is forwarded with the real token when the worker proved the broker
 * key (Basic auth, any user name), and answered with a Basic challenge otherwise (git then asks its
 * credential helper). Git traffic for any other repository is refused. Other forge paths go on with no
 * Authorization at all: the worker's own header never reaches the forge.
 */
export function brokerDecision(input: {
  forge: Forge;
  path: string;
  authorization: string | undefined;
  repo: string;
  brokerKey: string;
  token: string;
}): BrokerDecision {
  const repo = gitRepoOfPath(input.forge, input.path);
  if (repo === null) return { kind: 'forward', authorization: null };
  if (repo.toLowerCase() !== input.repo.toLowerCase()) return { kind: 'refuse', repo };
  if (!keyMatches(input.authorization, input.brokerKey)) return { kind: 'challenge' };
  return { kind: 'forward', authorization: `Basic ${Buffer.from(`x-access-token:${input.token}`).toString('base64')}` };
}

function keyMatches(authorization: string | undefined, key: string): boolean {
  const match = /^Basic\s+([A-Za-z0-9+/=]+)$/i.exec(authorization ?? '');
  if (!match) return false;
  const decoded = Buffer.from(match[1]!, 'base64').toString('utf8');
  const password = Buffer.from(decoded.slice(decoded.indexOf(':') + 1));
  const want = Buffer.from(key);
  return password.length === want.length && timingSafeEqual(password, want);
}
