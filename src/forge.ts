/**
 * The code host and the reviewer as the review and merge processors see them. Processors depend on these
 * interfaces only; `src/github/` is the GitHub implementation and `src/reviewer/` holds the reviewers.
 *
 * Errors cross process boundaries (BullMQ serialises a failed job's error by `name` and `message`), so every
 * error here sets `name` and is recognised with {@link isErrorNamed}, never with `instanceof` alone.
 */

/** A repository as `owner/name` (PROTOCOL §2 `repo`). */
export type RepoName = string;

/** Input of {@link Forge.openPullRequest}. */
export interface OpenPullRequestInput {
  repo: RepoName;
  /** Branch that holds the changes, e.g. `fleet/{request_id}/{scope}`; same repository. */
  head: string;
  /** Branch to merge into; usually {@link Forge.getDefaultBranch}. */
  base: string;
  title: string;
  body: string;
}

/** A pull request as GitHub reports it at the time of the call. */
export interface PullRequest {
  repo: RepoName;
  number: number;
  /** Web address, for humans and for results. */
  url: string;
  state: 'open' | 'closed';
  merged: boolean;
  /**
   * Whether GitHub can merge it cleanly: `null` while GitHub is still computing it (it does so lazily after a
   * push or a base change; ask again a little later).
   */
  mergeable: boolean | null;
  /** GitHub's `mergeable_state` (`clean`, `dirty`, `blocked`, `unknown`, ...). */
  mergeableState: string;
  headSha: string;
  headRef: string;
  /** `owner/name` the head branch lives in (another one for a fork's pull request; empty when it was deleted). */
  headRepo: string;
  baseRef: string;
  title: string;
  /** Login of the account that opened it (whose token cannot approve it). */
  author: string;
  /** The squash commit on the base branch, once merged. */
  mergeCommitSha: string | null;
}

/** An opened pull request; `existing` is true when an open one for the same head and base was found instead. */
export interface OpenedPullRequest extends PullRequest {
  existing: boolean;
}

export type ReviewEvent = 'APPROVE' | 'REQUEST_CHANGES' | 'COMMENT';

/** A comment on one file of the diff; without `line` it becomes part of the review body. */
export interface LineComment {
  path: string;
  /** Line number in the new version of the file; must be part of the diff. */
  line?: number;
  body: string;
}

/** Input of {@link Forge.postReview}. */
export interface PostReviewInput {
  repo: RepoName;
  number: number;
  event: ReviewEvent;
  body: string;
  /** The head SHA that was reviewed; GitHub pins the review to it. */
  commitId: string;
  comments?: LineComment[];
}

/**
 * Result of {@link Forge.postReview}. A refusal that the caller is expected to handle is a result, not an
 * error: GitHub refuses APPROVE and REQUEST_CHANGES by the pull request's own author (HTTP 422); the caller
 * then uses a reviewer token or falls back to a COMMENT review and records that.
 */
export type PostReviewResult =
  | {
      posted: true;
      id: number;
      url: string;
      event: ReviewEvent;
      /** Line comments GitHub refused (not part of the diff) were folded into the body instead. */
      commentsFoldedIntoBody: boolean;
    }
  | { posted: false; reason: 'own_pull_request'; message: string };

/** Input of {@link Forge.mergePullRequest}. */
export interface MergeInput {
  repo: RepoName;
  number: number;
  /** Head SHA that was reviewed: GitHub refuses the merge when the head has moved since (409). */
  sha: string;
  commitTitle?: string;
  commitMessage?: string;
}

export interface MergeResult {
  /** The squash commit on the base branch. */
  sha: string;
  /** True when the pull request had already been merged at `sha` (a retried job): nothing was done. */
  alreadyMerged: boolean;
}

/** One check of a commit: a check run (GitHub Actions and apps) or a commit status (the older API). */
export interface CommitCheck {
  /** A check run's name, or a status's `context`. */
  name: string;
  /** `pending` while queued or running (or a status `pending`); `success`; `failure` for every red end. */
  state: 'pending' | 'success' | 'failure';
  /** GitHub's own word: a check run's `conclusion` (`success`, `failure`, `timed_out`, ...) or a status's `state`. */
  conclusion: string | null;
  /** Where a human reads it (`html_url` / `target_url`); null when GitHub gives none. */
  url: string | null;
  /** A check run's summary, or a status's description. */
  summary: string | null;
  source: 'check_run' | 'status';
  /** The check run's id (for its annotations and job log); absent for a status. */
  checkRunId?: number;
  /** A GitHub Actions job: its check run id is the job's id, and its log can be read. */
  actionsJob?: boolean;
}

/** A check run's annotation: a line a failing check points at. */
export interface CheckAnnotation {
  path: string;
  line: number;
  level: string;
  message: string;
  title: string | null;
}

/**
 * A user's permission on a repository as GitHub's collaborator-permission API reports it: `permission` is the
 * legacy level (`maintain` reads as `write`, `triage` as `read`), `roleName` the role itself.
 */
export interface RepoPermission {
  permission: 'admin' | 'write' | 'read' | 'none';
  roleName: string;
}

/** What the processors need from a code host. Every method throws a {@link ForgeError} on failure. */
export interface Forge {
  /** The repository's default branch (`main`, `master`, ...). Throws {@link NotFoundError} for an unknown repository. */
  getDefaultBranch(repo: RepoName): Promise<string>;
  /**
   * Opens a pull request from `head` into `base`. Idempotent: when an open pull request for the same head and
   * base exists (a retried job), that one is returned with `existing: true`.
   */
  openPullRequest(input: OpenPullRequestInput): Promise<OpenedPullRequest>;
  /** Current state of a pull request; `mergeable` may be `null` while GitHub computes it. */
  getPullRequest(repo: RepoName, number: number): Promise<PullRequest>;
  /** The pull request's unified diff against its base, as text. */
  getPullRequestDiff(repo: RepoName, number: number): Promise<string>;
  /**
   * Posts a review pinned to `commitId`. Returns `{posted: false, reason: 'own_pull_request'}` when GitHub
   * refuses APPROVE/REQUEST_CHANGES because the token belongs to the pull request's author.
   */
  postReview(input: PostReviewInput): Promise<PostReviewResult>;
  /** Posts a comment on the pull request's conversation (an issue comment). */
  postComment(repo: RepoName, number: number, body: string): Promise<{ id: number; url: string }>;
  /**
   * Squash-merges with `sha` as the head guard. Throws {@link HeadChangedError} when the head moved since the
   * review and {@link NotMergeableError} when GitHub cannot merge it (conflict, closed, checks).
   */
  mergePullRequest(input: MergeInput): Promise<MergeResult>;
  /**
   * The checks a merge into `branch` must pass as its branch protection names them, or null when the branch has
   * no required checks or the token may not read its protection (reading protection needs admin rights).
   */
  getRequiredChecks(repo: RepoName, branch: string): Promise<string[] | null>;
  /** Every check run and commit status of `sha`; a name reported twice keeps its newest report. */
  getCommitChecks(repo: RepoName, sha: string): Promise<CommitCheck[]>;
  /** The annotations of one check run (GitHub keeps at most 50 per run update). */
  getCheckRunAnnotations(repo: RepoName, checkRunId: number): Promise<CheckAnnotation[]>;
  /** The log of one GitHub Actions job as text, or null when GitHub has none (expired, not an Actions job). */
  getActionsJobLog(repo: RepoName, jobId: number): Promise<string | null>;
  /** The parent SHAs of one commit. */
  getCommitParents(repo: RepoName, sha: string): Promise<string[]>;
  /**
   * Merges the base into the pull request's branch (GitHub's update-branch), guarded by `expectedHeadSha`:
   * GitHub refuses (422) when the head moved. The new head appears a moment later (GitHub answers 202).
   */
  updatePullRequestBranch(repo: RepoName, number: number, expectedHeadSha: string): Promise<void>;
  /** The login of the token's own account (the webhook role tells fleet's own comments and reviews apart). */
  getAuthenticatedLogin(): Promise<string>;
  /** The line comments of one review of a pull request (at most 100, oldest first). */
  getReviewComments(repo: RepoName, number: number, reviewId: number): Promise<LineComment[]>;
  /** `login`'s permission on `repo`; a login GitHub does not know reads as `none`. */
  getCollaboratorPermission(repo: RepoName, login: string): Promise<RepoPermission>;
}

/** A verdict's coverage of the diff: a reviewer may have to trim a diff that does not fit its model. */
export interface ReviewCoverage {
  /** UTF-8 bytes of the diff the reviewer actually read. */
  reviewedBytes: number;
  totalBytes: number;
  /** True when part of the diff was not reviewed. */
  truncated: boolean;
}

/** A reviewer's decision on one diff. */
export interface Verdict {
  approved: boolean;
  /** Summary for the review body; on rejection, the instructions a fix worker gets. */
  feedback: string;
  comments: LineComment[];
  coverage: ReviewCoverage;
}

/** What a reviewer is given. */
export interface ReviewInput {
  repo: RepoName;
  number: number;
  title: string;
  /** Pull request body. */
  body?: string;
  /** The task the worker was given, so the reviewer can judge whether the diff does it. */
  task?: string;
  headSha: string;
  diff: string;
}

/** Reads a diff and returns a verdict; throws {@link ReviewError} when it cannot produce one. */
export interface Reviewer {
  review(input: ReviewInput): Promise<Verdict>;
}
