/** The {@link Forge} on GitHub's REST API, through the metered Octokit of one token. */
import {
  ForgeAuthError,
  ForgeError,
  ForgeUnavailableError,
  ForgeValidationError,
  HeadChangedError,
  NotFoundError,
  NotMergeableError,
  RateLimitedError,
} from '../errors.ts';
import type {
  CheckAnnotation,
  CommitCheck,
  Forge,
  LineComment,
  MergeInput,
  MergeResult,
  OpenPullRequestInput,
  OpenedPullRequest,
  PostReviewInput,
  PostReviewResult,
  PullRequest,
  RepoName,
  RepoPermission,
} from '../forge.ts';
import type { MeteredOctokitClient } from './client.ts';

const REPO_NAME = /^([A-Za-z0-9-]+)\/([A-Za-z0-9._-]+)$/;

function splitRepo(repo: RepoName): { owner: string; repo: string } {
  const match = REPO_NAME.exec(repo);
  if (!match) throw new ForgeValidationError(`repo must be "owner/name", got "${repo}"`);
  return { owner: match[1]!, repo: match[2]! };
}

interface HttpErrorLike {
  status?: number;
  message: string;
  response?: { headers?: Record<string, unknown>; data?: unknown };
}

const SELF_REVIEW = /can ?not (approve|request changes on) your own pull request/i;
const LINE_NOT_IN_DIFF = /(must be part of the diff|could not be resolved|line could not be resolved|is not part of the diff)/i;

function describe(error: unknown): HttpErrorLike {
  if (typeof error === 'object' && error !== null && 'message' in error) return error as HttpErrorLike;
  return { message: String(error) };
}

/** Maps an Octokit (or limiter) failure to a typed {@link ForgeError}; `what` names the call for the message. */
export function toForgeError(error: unknown, what: string): ForgeError {
  if (error instanceof ForgeError) return error;
  const e = describe(error);
  const status = typeof e.status === 'number' ? e.status : undefined;
  const message = `${what}: ${e.message}`;
  if (status === undefined) return new ForgeUnavailableError(message, undefined, error);
  if (status === 401) return new ForgeAuthError(message, status, error);
  if (status === 403) {
    const headers = e.response?.headers ?? {};
    // Older GitHub Enterprise words secondary limits as "abuse detection"; a retry-after gives them away.
    if (/rate limit|abuse/i.test(e.message) || headers['x-ratelimit-remaining'] === '0' || headers['retry-after'] !== undefined) {
      return new RateLimitedError(message, status, error);
    }
    return new ForgeAuthError(message, status, error);
  }
  if (status === 429) return new RateLimitedError(message, status, error);
  if (status === 404) return new NotFoundError(message, status, error);
  if (status === 422) return new ForgeValidationError(message, status, error);
  if (status >= 500) return new ForgeUnavailableError(message, status, error);
  return new ForgeError(message, { retryable: false, status, cause: error });
}

interface RawPull {
  number: number;
  html_url: string;
  state: string;
  merged?: boolean | null;
  mergeable?: boolean | null;
  mergeable_state?: string;
  merge_commit_sha?: string | null;
  title: string;
  /** `repo` is null when the fork the pull request came from was deleted. */
  head: { sha: string; ref: string; repo?: { full_name: string } | null };
  base: { ref: string };
  user?: { login: string } | null;
}

function toPullRequest(repo: RepoName, raw: RawPull): PullRequest {
  return {
    repo,
    number: raw.number,
    url: raw.html_url,
    state: raw.state === 'closed' ? 'closed' : 'open',
    merged: raw.merged === true,
    mergeable: raw.mergeable ?? null,
    mergeableState: raw.mergeable_state ?? 'unknown',
    headSha: raw.head.sha,
    headRef: raw.head.ref,
    headRepo: raw.head.repo?.full_name ?? '',
    baseRef: raw.base.ref,
    title: raw.title,
    author: raw.user?.login ?? '',
    mergeCommitSha: raw.merged === true ? (raw.merge_commit_sha ?? null) : null,
  };
}

/** Review body with the line comments that GitHub could not attach to the diff. */
export function foldComments(body: string, comments: LineComment[]): string {
  if (comments.length === 0) return body;
  const lines = comments.map((c) => `- \`${c.path}${c.line === undefined ? '' : `:${c.line}`}\`: ${c.body}`);
  return `${body}\n\n**Comments on the diff**\n${lines.join('\n')}`;
}

export class GitHubForge implements Forge {
  constructor(private readonly octokit: MeteredOctokitClient) {}

  async getDefaultBranch(repo: RepoName): Promise<string> {
    try {
      const { data } = await this.octokit.rest.repos.get(splitRepo(repo));
      return data.default_branch;
    } catch (error) {
      throw toForgeError(error, `get repository ${repo}`);
    }
  }

  async openPullRequest(input: OpenPullRequestInput): Promise<OpenedPullRequest> {
    const where = splitRepo(input.repo);
    try {
      const { data } = await this.octokit.rest.pulls.create({
        ...where,
        head: input.head,
        base: input.base,
        title: input.title,
        body: input.body,
      });
      return { ...toPullRequest(input.repo, data as RawPull), existing: false };
    } catch (error) {
      const e = describe(error);
      // A retried job finds the pull request it opened before; GitHub says "A pull request already exists".
      if (e.status === 422 && /already exists/i.test(e.message)) {
        const existing = await this.findOpen(input).catch(() => undefined);
        if (existing) return { ...existing, existing: true };
      }
      throw toForgeError(error, `open pull request ${input.repo} ${input.head} -> ${input.base}`);
    }
  }

  private async findOpen(input: OpenPullRequestInput): Promise<PullRequest | undefined> {
    const where = splitRepo(input.repo);
    const { data } = await this.octokit.rest.pulls.list({
      ...where,
      head: `${where.owner}:${input.head}`,
      base: input.base,
      state: 'open',
    });
    const found = (data as RawPull[]).find((p) => p.head.ref === input.head);
    return found ? this.getPullRequest(input.repo, found.number) : undefined;
  }

  async getPullRequest(repo: RepoName, number: number): Promise<PullRequest> {
    try {
      const { data } = await this.octokit.rest.pulls.get({ ...splitRepo(repo), pull_number: number });
      return toPullRequest(repo, data as RawPull);
    } catch (error) {
      throw toForgeError(error, `get pull request ${repo}#${number}`);
    }
  }

  async getPullRequestDiff(repo: RepoName, number: number): Promise<string> {
    try {
      const { data } = await this.octokit.rest.pulls.get({ ...splitRepo(repo), pull_number: number, mediaType: { format: 'diff' } });
      if (typeof data !== 'string')
        throw new ForgeError(`diff of ${repo}#${number} came back as ${typeof data}, not text`, { retryable: false });
      return data;
    } catch (error) {
      throw toForgeError(error, `get diff of ${repo}#${number}`);
    }
  }

  async postReview(input: PostReviewInput): Promise<PostReviewResult> {
    const where = { ...splitRepo(input.repo), pull_number: input.number, commit_id: input.commitId, event: input.event };
    const comments = input.comments ?? [];
    const onLines = comments.filter((c) => c.line !== undefined);
    const offLines = comments.filter((c) => c.line === undefined);
    const attempt = (body: string, lineComments: LineComment[]) =>
      this.octokit.rest.pulls.createReview({
        ...where,
        body,
        ...(lineComments.length > 0
          ? { comments: lineComments.map((c) => ({ path: c.path, line: c.line!, side: 'RIGHT', body: c.body })) }
          : {}),
      });
    try {
      try {
        const { data } = await attempt(foldComments(input.body, offLines), onLines);
        return { posted: true, id: data.id, url: data.html_url, event: input.event, commentsFoldedIntoBody: false };
      } catch (error) {
        const e = describe(error);
        // A line the reviewer named may lie outside the diff; the review still matters more than the anchor.
        if (e.status !== 422 || onLines.length === 0 || !LINE_NOT_IN_DIFF.test(e.message)) throw error;
        const { data } = await attempt(foldComments(input.body, comments), []);
        return { posted: true, id: data.id, url: data.html_url, event: input.event, commentsFoldedIntoBody: true };
      }
    } catch (error) {
      const e = describe(error);
      if (e.status === 422 && SELF_REVIEW.test(e.message)) return { posted: false, reason: 'own_pull_request', message: e.message };
      throw toForgeError(error, `post ${input.event} review on ${input.repo}#${input.number}`);
    }
  }

  async postComment(repo: RepoName, number: number, body: string): Promise<{ id: number; url: string }> {
    try {
      const { data } = await this.octokit.rest.issues.createComment({ ...splitRepo(repo), issue_number: number, body });
      return { id: data.id, url: data.html_url };
    } catch (error) {
      throw toForgeError(error, `comment on ${repo}#${number}`);
    }
  }

  async mergePullRequest(input: MergeInput): Promise<MergeResult> {
    const what = `squash-merge ${input.repo}#${input.number} at ${input.sha}`;
    try {
      const { data } = await this.octokit.rest.pulls.merge({
        ...splitRepo(input.repo),
        pull_number: input.number,
        sha: input.sha,
        merge_method: 'squash',
        ...(input.commitTitle === undefined ? {} : { commit_title: input.commitTitle }),
        ...(input.commitMessage === undefined ? {} : { commit_message: input.commitMessage }),
      });
      return { sha: data.sha, alreadyMerged: false };
    } catch (error) {
      const e = describe(error);
      if (e.status === 409) throw new HeadChangedError(`${what}: ${e.message}`, 409, error);
      if (e.status === 405) {
        // A retried job may find its own merge done: that is success, not a conflict.
        const current = await this.getPullRequest(input.repo, input.number).catch(() => undefined);
        if (current?.merged && current.headSha === input.sha && current.mergeCommitSha)
          return { sha: current.mergeCommitSha, alreadyMerged: true };
        throw new NotMergeableError(`${what}: ${e.message}`, 405, error);
      }
      throw toForgeError(error, what);
    }
  }

  async getRequiredChecks(repo: RepoName, branch: string): Promise<string[] | null> {
    try {
      const { data } = await this.octokit.rest.repos.getStatusChecksProtection({ ...splitRepo(repo), branch });
      const names = new Set<string>([...(data.contexts ?? []), ...(data.checks ?? []).map((c) => c.context)]);
      return names.size > 0 ? [...names] : null;
    } catch (error) {
      // 404: "Branch not protected" or "Required status checks not enabled"; 403: no admin right to read it.
      const status = describe(error).status;
      if (status === 404 || status === 403) return null;
      throw toForgeError(error, `read the required checks of ${repo} ${branch}`);
    }
  }

  async getCommitChecks(repo: RepoName, sha: string): Promise<CommitCheck[]> {
    const where = { ...splitRepo(repo), ref: sha };
    try {
      const [runs, combined] = await Promise.all([
        this.octokit.rest.checks.listForRef({ ...where, per_page: 100 }),
        this.octokit.rest.repos.getCombinedStatusForRef({ ...where, per_page: 100 }),
      ]);
      const byName = new Map<string, CommitCheck>();
      // Statuses first: a check run of the same name (the newer API) wins. Both lists come newest first.
      for (const s of [...combined.data.statuses].reverse()) {
        byName.set(s.context, {
          name: s.context,
          state: s.state === 'success' ? 'success' : s.state === 'pending' ? 'pending' : 'failure',
          conclusion: s.state,
          url: s.target_url ?? null,
          summary: s.description ?? null,
          source: 'status',
        });
      }
      for (const r of [...runs.data.check_runs].reverse()) {
        const done = r.status === 'completed';
        // neutral and skipped do not block a merge on GitHub either.
        const green = ['success', 'neutral', 'skipped'].includes(r.conclusion ?? '');
        byName.set(r.name, {
          name: r.name,
          state: !done ? 'pending' : green ? 'success' : 'failure',
          conclusion: r.conclusion ?? null,
          url: r.html_url ?? null,
          summary: r.output?.summary ?? r.output?.title ?? null,
          source: 'check_run',
          checkRunId: r.id,
          actionsJob: r.app?.slug === 'github-actions',
        });
      }
      return [...byName.values()];
    } catch (error) {
      throw toForgeError(error, `read the checks of ${repo}@${sha}`);
    }
  }

  async getCheckRunAnnotations(repo: RepoName, checkRunId: number): Promise<CheckAnnotation[]> {
    try {
      const { data } = await this.octokit.rest.checks.listAnnotations({ ...splitRepo(repo), check_run_id: checkRunId, per_page: 50 });
      return data.map((a) => ({
        path: a.path,
        line: a.start_line,
        level: a.annotation_level ?? 'failure',
        message: a.message ?? '',
        title: a.title ?? null,
      }));
    } catch (error) {
      throw toForgeError(error, `read the annotations of check run ${checkRunId} in ${repo}`);
    }
  }

  async getActionsJobLog(repo: RepoName, jobId: number): Promise<string | null> {
    try {
      // GitHub answers with a redirect to a short-lived download URL; Octokit follows it.
      const { data } = await this.octokit.rest.actions.downloadJobLogsForWorkflowRun({ ...splitRepo(repo), job_id: jobId });
      if (typeof data === 'string') return data;
      if (data instanceof ArrayBuffer) return Buffer.from(data).toString('utf8');
      return String(data);
    } catch (error) {
      // Logs expire (410) or were never kept (404): the fix task says so instead.
      const status = describe(error).status;
      if (status === 404 || status === 410) return null;
      throw toForgeError(error, `read the log of Actions job ${jobId} in ${repo}`);
    }
  }

  async getCommitParents(repo: RepoName, sha: string): Promise<string[]> {
    try {
      const { data } = await this.octokit.rest.repos.getCommit({ ...splitRepo(repo), ref: sha, per_page: 1 });
      return data.parents.map((p) => p.sha);
    } catch (error) {
      throw toForgeError(error, `read commit ${repo}@${sha}`);
    }
  }

  async updatePullRequestBranch(repo: RepoName, number: number, expectedHeadSha: string): Promise<void> {
    try {
      await this.octokit.rest.pulls.updateBranch({ ...splitRepo(repo), pull_number: number, expected_head_sha: expectedHeadSha });
    } catch (error) {
      const e = describe(error);
      if (e.status === 422 && /expected head sha/i.test(e.message))
        throw new HeadChangedError(`update branch of ${repo}#${number}: ${e.message}`, 422, error);
      throw toForgeError(error, `update branch of ${repo}#${number}`);
    }
  }

  async getAuthenticatedLogin(): Promise<string> {
    try {
      const { data } = await this.octokit.rest.users.getAuthenticated();
      return data.login;
    } catch (error) {
      throw toForgeError(error, 'read the token’s own account');
    }
  }

  async getReviewComments(repo: RepoName, number: number, reviewId: number): Promise<LineComment[]> {
    try {
      const { data } = await this.octokit.rest.pulls.listCommentsForReview({
        ...splitRepo(repo),
        pull_number: number,
        review_id: reviewId,
        per_page: 100,
      });
      return data.map((c) => {
        // `line` is null on an outdated comment; `original_line` still says where it was.
        const raw = c as { line?: number | null; original_line?: number | null };
        const line = raw.line ?? raw.original_line ?? undefined;
        return { path: c.path, body: c.body, ...(line ? { line } : {}) };
      });
    } catch (error) {
      throw toForgeError(error, `read the comments of review ${reviewId} on ${repo}#${number}`);
    }
  }

  async getCollaboratorPermission(repo: RepoName, login: string): Promise<RepoPermission> {
    try {
      const { data } = await this.octokit.rest.repos.getCollaboratorPermissionLevel({ ...splitRepo(repo), username: login });
      const permission = (['admin', 'write', 'read'] as const).find((p) => p === data.permission) ?? 'none';
      return { permission, roleName: data.role_name ?? permission };
    } catch (error) {
      // GitHub answers 404 for a login it does not know: such a user has no permission at all.
      if (describe(error).status === 404) return { permission: 'none', roleName: 'none' };
      throw toForgeError(error, `read ${login}'s permission on ${repo}`);
    }
  }
}
