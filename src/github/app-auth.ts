/**
 * Per-job GitHub App installation tokens (issue 12). A job gets a token for its one repository with
 * `contents: write` and `pull_requests: write` only, minted when the job starts and revoked when it ends, so
 * what a job could leak is worth at most that repository, for at most the job's length (GitHub lets an
 * unrevoked one live an hour). A review or merge step of such a request gets one the same way, for each run
 * of the step (src/flow/step-github.ts), with the permissions of {@link STEP_TOKEN_PERMISSIONS}.
 *
 * Every call goes through the metered client (src/github/client.ts): the App's JWT calls under the App's
 * limiters, the revocation under the installation token's own.
 */
import type { MeteredOctokitClient } from './client.ts';

/** What a token may do, as GitHub names the App permissions. */
export type TokenPermissions = Readonly<Record<string, 'read' | 'write'>>;

/** What a job's token may do: push its branch and open its pull request, nothing else. */
export const JOB_TOKEN_PERMISSIONS = { contents: 'write', pull_requests: 'write' } as const satisfies TokenPermissions;

/**
 * What the token of a flow step may do. A review reads the pull request and its diff and posts a review and a
 * comment. A merge also reads the head's parents, checks and statuses (GitHub answers 403 without `checks` and
 * `statuses` read on a private repository), updates the branch and merges. Branch protection needs
 * `administration` read, which fleet does not ask for: unreadable protection falls back to FLEET_CI_REQUIRED.
 */
export const STEP_TOKEN_PERMISSIONS = {
  review: { pull_requests: 'write' },
  merge: { contents: 'write', pull_requests: 'write', checks: 'read', statuses: 'read' },
  /** The bridge's check of the pull request a `follow_up` names (src/intake.ts). */
  followUp: { pull_requests: 'read' },
} as const satisfies Record<string, TokenPermissions>;

export interface InstallationLease {
  /** The installation token; lives in this process's memory only, and in the redactor while the job runs. */
  readonly token: string;
  readonly installationId: number;
  readonly expiresAt: string;
  /** Revokes the token (DELETE /installation/token). Resolves once GitHub confirmed it. */
  revoke(): Promise<void>;
}

export interface GitHubApp {
  readonly appId: string;
  /** Mints a token for `repo` ("owner/name") alone, with `permissions` ({@link JOB_TOKEN_PERMISSIONS} unless told). */
  mint(repo: string, permissions?: TokenPermissions): Promise<InstallationLease>;
}

export interface GitHubAppDeps {
  appId: string;
  /** The installation to mint in; undefined: looked up per repository (and remembered per owner/name). */
  installationId: number | undefined;
  /** The App's metered client (JWT auth). */
  appClient: MeteredOctokitClient;
  /** Revokes an installation token with its own metered client, then drops that client. */
  revokeToken(token: string): Promise<void>;
}

/** Thrown when the App cannot act on a repository: not installed there, or GitHub scoped the token otherwise. */
export class GitHubAppError extends Error {
  override name = 'GitHubAppError';
}

export function createGitHubApp(deps: GitHubAppDeps): GitHubApp {
  // A repository's installation does not move while the App stays installed; a failed look-up is not kept.
  const installations = new Map<string, Promise<number>>();
  const installationOf = (repo: string): Promise<number> => {
    if (deps.installationId !== undefined) return Promise.resolve(deps.installationId);
    const key = repo.toLowerCase();
    let found = installations.get(key);
    if (!found) {
      const [owner, name] = repo.split('/') as [string, string];
      found = deps.appClient.request('GET /repos/{owner}/{repo}/installation', { owner, repo: name }).then(
        (response) => response.data.id,
        (error: { status?: number; message?: string }) => {
          installations.delete(key);
          if (error.status === 404) throw new GitHubAppError(`the GitHub App ${deps.appId} is not installed on ${repo}`);
          throw error;
        },
      );
      installations.set(key, found);
    }
    return found;
  };

  return {
    appId: deps.appId,
    async mint(repo, permissions = JOB_TOKEN_PERMISSIONS) {
      const installationId = await installationOf(repo);
      const name = repo.split('/')[1]!;
      const auth = (await deps.appClient.auth({
        type: 'installation',
        installationId,
        repositoryNames: [name],
        permissions,
        // Never a cached token: each job's is revoked at its end.
        refresh: true,
      })) as { token: string; expiresAt: string; repositoryNames?: string[]; permissions?: Record<string, string> };
      // GitHub scopes the token as asked or refuses; a token for more than asked is not used (and is revoked).
      const scopedTo = auth.repositoryNames ?? [];
      const extra = Object.entries(auth.permissions ?? {}).filter(
        ([permission, level]) => permissions[permission] !== level && permission !== 'metadata',
      );
      if (scopedTo.length !== 1 || scopedTo[0]!.toLowerCase() !== name.toLowerCase() || extra.length > 0) {
        await deps.revokeToken(auth.token);
        throw new GitHubAppError(
          `GitHub scoped the installation token for ${repo} to ${JSON.stringify(scopedTo)} with ${JSON.stringify(auth.permissions)}, not to ${repo} alone with ${JSON.stringify(permissions)}`,
        );
      }
      return {
        token: auth.token,
        installationId,
        expiresAt: auth.expiresAt,
        revoke: () => deps.revokeToken(auth.token),
      };
    },
  };
}

/**
 * Whether a job acts with an App installation token: with FLEET_GITHUB_AUTH=app always, with `auto` when its
 * request brought no github_token (legacy requests carry one and keep it, PROTOCOL.md). Never without an App.
 */
export function jobUsesApp(opts: { requestHasToken: boolean; auth: 'auto' | 'app'; app: GitHubApp | undefined }): boolean {
  if (!opts.app) return false;
  return opts.auth === 'app' || !opts.requestHasToken;
}
