/**
 * An in-memory code host behind the {@link Forge} interface, and a scripted {@link Reviewer}. The fake
 * keeps GitHub's rules the processors rely on (a merge guarded by the reviewed SHA, a conflicting PR
 * refused, no APPROVE of one's own PR) as state a test sets, and records every call with its token.
 */
import { ForgeValidationError, HeadChangedError, NotFoundError, NotMergeableError } from '../../../src/errors.ts';
import type {
  CheckAnnotation,
  CommitCheck,
  Forge,
  MergeInput,
  MergeResult,
  OpenedPullRequest,
  OpenPullRequestInput,
  PostReviewInput,
  PostReviewResult,
  PullRequest,
  Reviewer,
  ReviewInput,
  Verdict,
} from '../../../src/forge.ts';
import type { GitHubForges } from '../../../src/github/index.ts';

export type ForgeMethod = keyof Forge;

export interface ForgeCall {
  /** The token of the forge that was called: who acted. */
  token: string;
  method: ForgeMethod;
  args: unknown[];
}

export interface FakePull {
  repo: string;
  number: number;
  title: string;
  body: string;
  head: string;
  base: string;
  headSha: string;
  /** The token that opened it: GitHub refuses that account's APPROVE and REQUEST_CHANGES. */
  authorToken: string;
  state: 'open' | 'closed';
  merged: boolean;
  mergeCommitSha: string | null;
  /** GitHub cannot merge it (a conflict with its base). */
  conflicting: boolean;
  /** Branch protection wants an approving review it does not have. */
  reviewRequired?: boolean;
  /** The base moved and strict protection wants the branch up to date first. */
  behind?: boolean;
  diff: string;
}

let shaCounter = 0;
/** A fresh 40-hex-digit SHA, distinct from every other one this process made. */
export const newSha = () => (++shaCounter).toString(16).padStart(40, 'a');

export class FakeGitHub {
  readonly calls: ForgeCall[] = [];
  readonly defaultBranch = 'main';
  private readonly branches = new Map<string, string>();
  private readonly pulls = new Map<string, FakePull>();
  private readonly failures: { method: ForgeMethod; error: Error }[] = [];
  /** repo → the checks its base branch protection requires (a repository without is unprotected). */
  readonly protection = new Map<string, string[]>();
  /** sha → its checks by name. */
  private readonly checks = new Map<string, Map<string, CommitCheck>>();
  /** sha → parents, for the merge commits update-branch makes. */
  private readonly parents = new Map<string, string[]>();
  /** check run id → its annotations and Actions job log. */
  readonly checkDetails = new Map<number, { annotations: CheckAnnotation[]; log: string | null }>();
  private nextNumber = 1;

  /** The processors' view: a forge per token, all on this one GitHub. */
  readonly forges: GitHubForges = {
    app: undefined,
    forToken: (token: string) => this.forgeFor(token),
    get clientCount() {
      return 0;
    },
    evictIdle: async () => 0,
    recoveries: 0,
    limiterStats: async () => [],
    close: async () => {},
  };

  /** Moves a branch to `sha` (a worker's push); an open PR from it follows. */
  pushBranch(repo: string, branch: string, sha = newSha()): string {
    this.branches.set(`${repo}:${branch}`, sha);
    for (const pull of this.pulls.values()) if (pull.repo === repo && pull.head === branch && pull.state === 'open') pull.headSha = sha;
    return sha;
  }

  /** A PR as if a worker had opened it with `authorToken`. */
  addPull(repo: string, fields: Partial<FakePull> & { head: string; authorToken: string }): FakePull {
    const headSha = fields.headSha ?? this.branches.get(`${repo}:${fields.head}`) ?? this.pushBranch(repo, fields.head);
    const pull: FakePull = {
      repo,
      number: this.nextNumber++,
      title: 'A change',
      body: '',
      base: this.defaultBranch,
      state: 'open',
      merged: false,
      mergeCommitSha: null,
      conflicting: false,
      diff: 'diff --git a/a.txt b/a.txt\n+hello\n',
      ...fields,
      headSha,
    };
    this.branches.set(`${repo}:${pull.head}`, headSha);
    this.pulls.set(`${repo}#${pull.number}`, pull);
    return pull;
  }

  /** Reports one check of `sha` (a check run unless told), replacing the earlier report of that name. */
  setCheck(sha: string, name: string, state: CommitCheck['state'], extra: Partial<CommitCheck> = {}): void {
    const conclusion = state === 'pending' ? null : state;
    const all = this.checks.get(sha) ?? new Map<string, CommitCheck>();
    all.set(name, { name, state, conclusion, url: `https://github.test/checks/${name}`, summary: null, source: 'check_run', ...extra });
    this.checks.set(sha, all);
  }

  pull(repo: string, number: number): FakePull {
    const pull = this.pulls.get(`${repo}#${number}`);
    if (!pull) throw new NotFoundError(`no pull request ${repo}#${number}`);
    return pull;
  }

  /** The next call of `method` (by any token) throws `error` instead of answering. */
  failNext(method: ForgeMethod, error: Error): void {
    this.failures.push({ method, error });
  }

  callsOf(method: ForgeMethod): ForgeCall[] {
    return this.calls.filter((c) => c.method === method);
  }

  private forgeFor(token: string): Forge {
    if (!token) throw new Error('GitHub token is empty');
    const call = <T>(method: ForgeMethod, args: unknown[], answer: () => T): Promise<T> => {
      this.calls.push({ token, method, args });
      const failure = this.failures.findIndex((f) => f.method === method);
      if (failure >= 0) return Promise.reject(this.failures.splice(failure, 1)[0]!.error);
      try {
        return Promise.resolve(answer());
      } catch (error) {
        return Promise.reject(error);
      }
    };
    return {
      getDefaultBranch: (repo) => call('getDefaultBranch', [repo], () => this.defaultBranch),
      openPullRequest: (input) => call('openPullRequest', [input], () => this.open(input, token)),
      getPullRequest: (repo, number) => call('getPullRequest', [repo, number], () => view(this.pull(repo, number))),
      getPullRequestDiff: (repo, number) => call('getPullRequestDiff', [repo, number], () => this.pull(repo, number).diff),
      postReview: (input) => call('postReview', [input], () => this.review(input, token)),
      postComment: (repo, number, body) =>
        call('postComment', [repo, number, body], () => {
          this.pull(repo, number);
          return { id: this.calls.length, url: `https://github.test/${repo}/pull/${number}#c` };
        }),
      mergePullRequest: (input) => call('mergePullRequest', [input], () => this.merge(input)),
      getRequiredChecks: (repo, branch) => call('getRequiredChecks', [repo, branch], () => this.protection.get(repo) ?? null),
      getCommitChecks: (repo, sha) => call('getCommitChecks', [repo, sha], () => [...(this.checks.get(sha)?.values() ?? [])]),
      getCheckRunAnnotations: (repo, id) => call('getCheckRunAnnotations', [repo, id], () => this.checkDetails.get(id)?.annotations ?? []),
      getActionsJobLog: (repo, id) => call('getActionsJobLog', [repo, id], () => this.checkDetails.get(id)?.log ?? null),
      getCommitParents: (repo, sha) => call('getCommitParents', [repo, sha], () => this.parents.get(sha) ?? []),
      updatePullRequestBranch: (repo, number, expected) =>
        call('updatePullRequestBranch', [repo, number, expected], () => this.updateBranch(repo, number, expected)),
      // The webhook role's reads; the processors never call them.
      getAuthenticatedLogin: () => call('getAuthenticatedLogin', [], () => `login-of-${token.slice(-6)}`),
      getReviewComments: (repo, number, reviewId) => call('getReviewComments', [repo, number, reviewId], () => []),
      getCollaboratorPermission: (repo, login) =>
        call('getCollaboratorPermission', [repo, login], () => ({ permission: 'write' as const, roleName: 'write' })),
    };
  }

  private open(input: OpenPullRequestInput, token: string): OpenedPullRequest {
    const existing = [...this.pulls.values()].find(
      (p) => p.repo === input.repo && p.head === input.head && p.base === input.base && p.state === 'open',
    );
    if (existing) return { ...view(existing), existing: true };
    const headSha = this.branches.get(`${input.repo}:${input.head}`);
    if (!headSha) throw new ForgeValidationError(`Validation Failed: head branch ${input.head} does not exist`, 422);
    return {
      ...view(
        this.addPull(input.repo, { head: input.head, base: input.base, title: input.title, body: input.body, headSha, authorToken: token }),
      ),
      existing: false,
    };
  }

  private review(input: PostReviewInput, token: string): PostReviewResult {
    const pull = this.pull(input.repo, input.number);
    if (input.event !== 'COMMENT' && token === pull.authorToken) {
      return {
        posted: false,
        reason: 'own_pull_request',
        message: `Can not ${input.event === 'APPROVE' ? 'approve' : 'request changes on'} your own pull request`,
      };
    }
    return {
      posted: true,
      id: this.calls.length,
      url: `https://github.test/${input.repo}/pull/${input.number}#r`,
      event: input.event,
      commentsFoldedIntoBody: false,
    };
  }

  /** GitHub's update-branch: a merge commit of the head and the base becomes the new head. */
  private updateBranch(repo: string, number: number, expected: string): void {
    const pull = this.pull(repo, number);
    if (pull.headSha !== expected) throw new HeadChangedError('expected head sha didn’t match current head ref.', 422);
    const merge = newSha();
    this.parents.set(merge, [pull.headSha, this.branches.get(`${repo}:${pull.base}`) ?? newSha()]);
    this.pushBranch(repo, pull.head, merge);
    pull.behind = false;
  }

  private merge(input: MergeInput): MergeResult {
    const pull = this.pull(input.repo, input.number);
    if (pull.merged && pull.mergeCommitSha) return { sha: pull.mergeCommitSha, alreadyMerged: true };
    if (pull.headSha !== input.sha) throw new HeadChangedError(`Head branch was modified. Review and try the merge again.`);
    if (pull.conflicting || pull.state !== 'open') throw new NotMergeableError('Pull Request is not mergeable');
    // GitHub's 405 messages for a protected base.
    for (const name of this.protection.get(pull.repo) ?? []) {
      const check = this.checks.get(pull.headSha)?.get(name);
      if (check?.state !== 'success') throw new NotMergeableError(`Required status check "${name}" is ${check ? 'failing' : 'expected'}.`);
    }
    if (pull.reviewRequired) throw new NotMergeableError('At least 1 approving review is required by reviewers with write access.');
    if (pull.behind) throw new NotMergeableError('Head branch is not up to date with the base branch.');
    pull.merged = true;
    pull.state = 'closed';
    pull.mergeCommitSha = newSha();
    this.branches.set(`${pull.repo}:${pull.base}`, pull.mergeCommitSha);
    return { sha: pull.mergeCommitSha, alreadyMerged: false };
  }
}

function view(p: FakePull): PullRequest {
  return {
    repo: p.repo,
    number: p.number,
    url: `https://github.test/${p.repo}/pull/${p.number}`,
    state: p.state,
    merged: p.merged,
    mergeable: !p.conflicting,
    mergeableState: p.conflicting ? 'dirty' : p.behind ? 'behind' : p.reviewRequired ? 'blocked' : 'clean',
    headSha: p.headSha,
    headRef: p.head,
    headRepo: p.repo,
    baseRef: p.base,
    title: p.title,
    author: `user-${p.authorToken.slice(-6)}`,
    mergeCommitSha: p.mergeCommitSha,
  };
}

/** A scripted verdict: the coverage defaults to the whole diff the reviewer was given. */
export type ScriptedVerdict = (Partial<Verdict> & { approved: boolean }) | Error;

/** Answers reviews from a script, in order, and records what it was asked. */
export class FakeReviewer implements Reviewer {
  readonly inputs: ReviewInput[] = [];
  private readonly script: ScriptedVerdict[];

  constructor(...script: ScriptedVerdict[]) {
    this.script = script;
  }

  async review(input: ReviewInput): Promise<Verdict> {
    this.inputs.push(input);
    const next = this.script.shift();
    if (!next) throw new Error(`FakeReviewer: no verdict scripted for review ${this.inputs.length}`);
    if (next instanceof Error) throw next;
    const bytes = Buffer.byteLength(input.diff, 'utf8');
    return { feedback: '', comments: [], coverage: { reviewedBytes: bytes, totalBytes: bytes, truncated: false }, ...next };
  }
}
