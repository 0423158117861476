/**
 * A GitHub REST API test server on 127.0.0.1: keeps repositories and pull requests in memory, answers with
 * GitHub's status codes, JSON shapes and rate-limit headers, and enforces a primary limit per token and the
 * secondary limits (one mutation at a time, spacing between mutations, content-creating requests per window),
 * counting every violation so tests can assert there were none.
 */
import { createHash, randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { type AppAnswer, GitHubAppAuthority } from './github-app.ts';

const DOCS = 'https://docs.github.com/rest';
const SECONDARY_MESSAGE =
  'You have exceeded a secondary rate limit. Please wait a few minutes before you try again. If you reach out to GitHub Support for help, please include the request ID.';

export interface GitHubTestServerOptions {
  /** token → login. Without it every token is accepted as `user-<hash of token>`. */
  users?: Record<string, string>;
  /** Primary limit per token and window. @defaultValue 5000 per hour */
  primary?: { limit: number; windowMs: number };
  /** Secondary limits per token; defaults are GitHub's (1 s spacing, 80 content-creating a minute). */
  secondary?: Partial<SecondaryLimits>;
  /** Time a mutation stays in flight before its answer (makes overlap visible). @defaultValue 0 */
  mutationLatencyMs?: number;
}

export interface SecondaryLimits {
  mutationSpacingMs: number;
  contentLimit: number;
  contentWindowMs: number;
  retryAfterS: number;
  /** GitHub answers secondary limits with 403 or 429. */
  status: 403 | 429;
}

export interface Violations {
  primary: number;
  concurrent: number;
  spacing: number;
  contentRate: number;
}

export interface LoggedRequest {
  at: number;
  method: string;
  path: string;
  login: string;
  status: number;
  mutation: boolean;
  content: boolean;
  injected: boolean;
}

/** A scripted answer for the next request that matches. */
export interface Injection {
  kind: 'secondary' | 'primary' | 'server_error';
  status?: number;
  retryAfterS?: number;
  /** For `primary`: seconds until the reset. */
  resetInS?: number;
  match?: (method: string, path: string) => boolean;
}

interface Repo {
  fullName: string;
  owner: string;
  defaultBranch: string;
  branches: Map<string, string>;
  nextNumber: number;
  pulls: Map<number, Pull>;
  /** branch → its protection (required checks, up to date, approving reviews). */
  protection: Map<string, Protection>;
  /** sha → its check runs, newest last. */
  checkRuns: Map<string, CheckRun[]>;
  /** sha → its commit statuses, newest last. */
  statuses: Map<string, { id: number; context: string; state: string; description: string | null; target_url: string | null }[]>;
  /** sha → parents, for the merge commits update-branch makes. */
  parents: Map<string, string[]>;
  /** Issues; they share their numbers with the pull requests, as on GitHub. */
  issues: Map<number, Issue>;
  /** login → role on the repository (a login not here reads the public repository: `read`). */
  roles: Map<string, RepoRole>;
}

/** A collaborator's role; GitHub's legacy `permission` maps maintain to write and triage to read. */
export type RepoRole = 'admin' | 'maintain' | 'write' | 'triage' | 'read' | 'none';

interface Issue {
  number: number;
  title: string;
  body: string;
  author: string;
  comments: { id: number; login: string; body: string }[];
}

/** Branch protection as fleet meets it. */
export interface Protection {
  /** Names of the required status checks (check run names or status contexts). */
  contexts: string[];
  /** "Require branches to be up to date before merging". */
  strict: boolean;
  /** Approving reviews required. */
  requiredReviews: number;
  /** False: the token may not read the protection (it needs admin rights): 403, yet GitHub still enforces it. */
  readable: boolean;
}

export interface CheckRun {
  id: number;
  name: string;
  headSha: string;
  status: 'queued' | 'in_progress' | 'completed';
  conclusion: string | null;
  title: string | null;
  summary: string | null;
  annotations: { path: string; start_line: number; end_line: number; annotation_level: string; message: string; title?: string }[];
  /** The Actions job's log (the check run of an Actions job has the job's id). */
  log: string | null;
}

interface Pull {
  number: number;
  title: string;
  body: string;
  author: string;
  head: string;
  base: string;
  headSha: string;
  /** The base head the branch was last brought up to date with (behind when the base moved since). */
  baseSeen: string;
  state: 'open' | 'closed';
  merged: boolean;
  mergeCommitSha: string | null;
  conflicting: boolean;
  diff: string | null;
  reviews: { id: number; login: string; state: string; body: string; commitId: string; comments: unknown[] }[];
  comments: { id: number; login: string; body: string }[];
  createdAt: string;
}

interface TokenState {
  windowReset: number;
  used: number;
  inFlightMutations: number;
  lastMutationAt: number;
  contentTimes: number[];
}

class HttpAnswer {
  constructor(
    readonly status: number,
    readonly body: unknown,
    readonly headers: Record<string, string> = {},
  ) {}
}

function sha(): string {
  return randomBytes(20).toString('hex');
}

function defaultDiff(path: string): string {
  return [
    `diff --git a/${path} b/${path}`,
    'index 0000000..1111111 100644',
    `--- a/${path}`,
    `+++ b/${path}`,
    '@@ -1,2 +1,3 @@',
    ' line one',
    '+line added',
    ' line two',
    '',
  ].join('\n');
}

/** New-file line numbers each path's hunks cover: GitHub only accepts review comments on those. */
export function diffLines(diff: string): Map<string, Set<number>> {
  const files = new Map<string, Set<number>>();
  let current: Set<number> | undefined;
  let line = 0;
  for (const text of diff.split('\n')) {
    const file = /^\+\+\+ b\/(.+)$/.exec(text);
    if (file) {
      current = new Set();
      files.set(file[1]!, current);
      continue;
    }
    const hunk = /^@@ -\d+(?:,\d+)? \+(\d+)(?:,\d+)? @@/.exec(text);
    if (hunk) {
      line = Number(hunk[1]);
      continue;
    }
    if (!current || text.startsWith('---') || text.startsWith('diff ') || text.startsWith('index ')) continue;
    if (text.startsWith('+') || text.startsWith(' ')) current.add(line++);
  }
  return files;
}

export class GitHubTestServer extends EventEmitter {
  readonly violations: Violations = { primary: 0, concurrent: 0, spacing: 0, contentRate: 0 };
  readonly requests: LoggedRequest[] = [];
  url = '';
  private readonly repos = new Map<string, Repo>();
  private readonly tokens = new Map<string, TokenState>();
  private readonly injections: Injection[] = [];
  private readonly server = createServer((req, res) => void this.handle(req, res));
  private readonly primary: { limit: number; windowMs: number };
  readonly secondary: SecondaryLimits;
  private nextId = 1000;
  /** GitHub Apps, their installations and the installation tokens issued (github-app.ts). */
  readonly apps = new GitHubAppAuthority();

  constructor(private readonly opts: GitHubTestServerOptions = {}) {
    super();
    this.primary = opts.primary ?? { limit: 5000, windowMs: 3_600_000 };
    this.secondary = {
      mutationSpacingMs: 1000,
      contentLimit: 80,
      contentWindowMs: 60_000,
      retryAfterS: 60,
      status: 403,
      ...opts.secondary,
    };
  }

  async listen(): Promise<this> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this;
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  totalViolations(): number {
    const v = this.violations;
    return v.primary + v.concurrent + v.spacing + v.contentRate;
  }

  // ---- test controls ------------------------------------------------------------------------------------

  addRepo(fullName: string, opts: { defaultBranch?: string } = {}): void {
    const defaultBranch = opts.defaultBranch ?? 'main';
    this.repos.set(fullName.toLowerCase(), {
      fullName,
      owner: fullName.split('/')[0]!,
      defaultBranch,
      branches: new Map([[defaultBranch, sha()]]),
      nextNumber: 1,
      pulls: new Map(),
      protection: new Map(),
      checkRuns: new Map(),
      statuses: new Map(),
      parents: new Map(),
      issues: new Map(),
      roles: new Map(),
    });
  }

  /** Opens an issue as `author` would; returns its number (shared with pull requests). */
  addIssue(fullName: string, issue: { title: string; body?: string; author?: string }): number {
    const repo = this.repo(fullName);
    const number = repo.nextNumber++;
    repo.issues.set(number, { number, title: issue.title, body: issue.body ?? '', author: issue.author ?? 'octocat', comments: [] });
    return number;
  }

  /** Gives `login` a role on the repository (what the collaborator-permission API then reports). */
  setRole(fullName: string, login: string, role: RepoRole): void {
    this.repo(fullName).roles.set(login.toLowerCase(), role);
  }

  /** The comments on an issue or a pull request's conversation, oldest first. */
  commentsOn(fullName: string, number: number): { id: number; login: string; body: string }[] {
    const repo = this.repo(fullName);
    const thread = repo.issues.get(number) ?? repo.pulls.get(number);
    if (!thread) throw new Error(`test server has no issue or pull request ${fullName}#${number}`);
    return structuredClone(thread.comments);
  }

  /** Protects a branch: required checks, up to date before merging, approving reviews. */
  protectBranch(fullName: string, branch: string, protection: Partial<Protection>): void {
    this.repo(fullName).protection.set(branch, { contexts: [], strict: false, requiredReviews: 0, readable: true, ...protection });
  }

  /** A check run on `sha` (queued unless told), as a CI app or an Actions job creates it; returns its id. */
  addCheckRun(fullName: string, sha: string, run: Partial<Omit<CheckRun, 'id' | 'headSha'>> & { name: string }): number {
    const repo = this.repo(fullName);
    const checkRun: CheckRun = {
      id: this.nextId++,
      headSha: sha,
      status: 'queued',
      conclusion: null,
      title: null,
      summary: null,
      annotations: [],
      log: null,
      ...run,
    };
    repo.checkRuns.set(sha, [...(repo.checkRuns.get(sha) ?? []), checkRun]);
    return checkRun.id;
  }

  /** Ends a check run with `conclusion` (and what its output says). */
  completeCheckRun(
    fullName: string,
    id: number,
    conclusion: string,
    output: Partial<Pick<CheckRun, 'title' | 'summary' | 'annotations' | 'log'>> = {},
  ): void {
    const run = [...this.repo(fullName).checkRuns.values()].flat().find((r) => r.id === id);
    if (!run) throw new Error(`test server has no check run ${id}`);
    Object.assign(run, { status: 'completed', conclusion, ...output });
  }

  /** A commit status (the older API) on `sha`. */
  setStatus(fullName: string, sha: string, context: string, state: 'pending' | 'success' | 'failure' | 'error'): void {
    const repo = this.repo(fullName);
    const status = {
      id: this.nextId++,
      context,
      state,
      description: `${context} is ${state}`,
      target_url: `https://ci.test/${context}/${sha}`,
    };
    repo.statuses.set(sha, [...(repo.statuses.get(sha) ?? []), status]);
  }

  /** Pushes a commit to a branch (creating it); an open pull request from it gets the new head. */
  pushBranch(fullName: string, branch: string, headSha = sha()): string {
    const repo = this.repo(fullName);
    repo.branches.set(branch, headSha);
    for (const pull of repo.pulls.values()) if (pull.head === branch && pull.state === 'open') pull.headSha = headSha;
    this.emit('push', { repo: repo.fullName, branch, sha: headSha });
    return headSha;
  }

  setConflicting(fullName: string, number: number, conflicting = true): void {
    this.pull(fullName, number).conflicting = conflicting;
  }

  setDiff(fullName: string, number: number, diff: string): void {
    this.pull(fullName, number).diff = diff;
  }

  /** A copy of a pull request's state, with its reviews and comments. */
  pullState(fullName: string, number: number): Readonly<Pull> {
    return structuredClone(this.pull(fullName, number));
  }

  inject(injection: Injection): void {
    this.injections.push(injection);
  }

  /** Resolves when `count` requests matching `predicate` have been answered (counting those already seen). */
  waitForRequests(count: number, predicate: (r: LoggedRequest) => boolean = () => true): Promise<void> {
    return new Promise((resolve) => {
      const check = () => {
        if (this.requests.filter(predicate).length >= count) {
          this.off('request', check);
          resolve();
        }
      };
      this.on('request', check);
      check();
    });
  }

  private repo(fullName: string): Repo {
    const repo = this.repos.get(fullName.toLowerCase());
    if (!repo) throw new Error(`test server has no repository ${fullName}`);
    return repo;
  }

  private pull(fullName: string, number: number): Pull {
    const pull = this.repo(fullName).pulls.get(number);
    if (!pull) throw new Error(`test server has no pull request ${fullName}#${number}`);
    return pull;
  }

  // ---- HTTP ---------------------------------------------------------------------------------------------

  private login(token: string): string | undefined {
    if (this.apps.isInstallationToken(token)) return this.apps.botLogin(token);
    if (this.opts.users) return this.opts.users[token];
    return `user-${createHash('sha256').update(token).digest('hex').slice(0, 8)}`;
  }

  private tokenState(login: string, now: number): TokenState {
    let state = this.tokens.get(login);
    if (!state) {
      state = { windowReset: 0, used: 0, inFlightMutations: 0, lastMutationAt: -Infinity, contentTimes: [] };
      this.tokens.set(login, state);
    }
    if (now >= state.windowReset) {
      state.windowReset = Math.ceil((now + this.primary.windowMs) / 1000) * 1000;
      state.used = 0;
    }
    return state;
  }

  private rateHeaders(state: TokenState): Record<string, string> {
    return {
      'x-ratelimit-limit': String(this.primary.limit),
      'x-ratelimit-remaining': String(Math.max(0, this.primary.limit - state.used)),
      'x-ratelimit-reset': String(state.windowReset / 1000),
      'x-ratelimit-used': String(state.used),
      'x-ratelimit-resource': 'core',
    };
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const now = Date.now();
    const method = req.method ?? 'GET';
    const requestUrl = new URL(req.url ?? '/', 'http://x');
    const path = requestUrl.pathname;
    if (path.startsWith('/_logs/')) return this.serveLog(path, res);
    const mutation = method !== 'GET' && method !== 'HEAD';
    const content = mutation && isContentCreating(method, path);
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const raw = Buffer.concat(chunks).toString('utf8');
    const auth = req.headers.authorization ?? '';
    const token = auth.replace(/^(token|bearer)\s+/i, '');
    const login = token ? this.login(token) : undefined;
    const entry: LoggedRequest = { at: now, method, path, login: login ?? '', status: 0, mutation, content, injected: false };
    let headers: Record<string, string> = { 'x-github-request-id': randomBytes(6).toString('hex') };
    let state: TokenState | undefined;
    let answer: HttpAnswer;
    try {
      // App JWTs and installation tokens first: their rules are the App's (github-app.ts).
      if (token && this.apps.isJwt(token)) {
        const body = raw ? (JSON.parse(raw) as Record<string, unknown>) : {};
        throw fromApp(this.apps.appRequest(method, path, body, token, now, (name) => this.repos.has(name.toLowerCase())));
      }
      if (token && this.apps.isInstallationToken(token)) {
        const refused = this.apps.installationRequest(method, path, token, now);
        if (refused) throw fromApp(refused);
      }
      if (!login) throw new HttpAnswer(401, { message: 'Bad credentials', documentation_url: DOCS, status: '401' });
      state = this.tokenState(login, now);
      const injected = this.takeInjection(method, path);
      if (injected) {
        entry.injected = true;
        throw this.injectedAnswer(injected, state, now);
      }
      if (state.used >= this.primary.limit) {
        this.violations.primary++;
        throw new HttpAnswer(403, {
          message: `API rate limit exceeded for user ID 1. If you reach out to GitHub Support for help, please include the request ID.`,
          documentation_url: `${DOCS}/overview/rate-limits-for-the-rest-api`,
          status: '403',
        });
      }
      state.used++;
      if (mutation) this.checkSecondary(state, now, content);
      if (mutation) state.inFlightMutations++;
      try {
        if (mutation && this.opts.mutationLatencyMs) await new Promise((r) => setTimeout(r, this.opts.mutationLatencyMs));
        answer = this.route(method, path, requestUrl.searchParams, raw, login, req.headers.accept ?? '');
      } finally {
        if (mutation) state.inFlightMutations--;
      }
    } catch (error) {
      if (!(error instanceof HttpAnswer)) throw error;
      answer = error;
    }
    if (state) headers = { ...headers, ...this.rateHeaders(state) };
    headers = { ...headers, ...answer.headers };
    entry.status = answer.status;
    const isText = typeof answer.body === 'string';
    const payload = isText ? (answer.body as string) : JSON.stringify(answer.body);
    res.writeHead(answer.status, {
      'content-type': isText ? 'application/vnd.github.diff; charset=utf-8' : 'application/json; charset=utf-8',
      ...headers,
    });
    res.end(answer.status === 204 ? undefined : payload);
    this.requests.push(entry);
    this.emit('request', entry);
  }

  /** The download URL a job-log request redirects to: plain text, outside the API (no token, not counted). */
  private serveLog(path: string, res: ServerResponse): void {
    const m = /^\/_logs\/([^/]+\/[^/]+)\/(\d+)$/.exec(path);
    const run = m
      ? [...(this.repos.get(m[1]!.toLowerCase())?.checkRuns.values() ?? [])].flat().find((r) => r.id === Number(m[2]))
      : undefined;
    if (!run?.log) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8' }).end(run.log);
  }

  private checkSecondary(state: TokenState, now: number, content: boolean): void {
    let violated = false;
    if (state.inFlightMutations > 0) {
      this.violations.concurrent++;
      violated = true;
    }
    if (now - state.lastMutationAt < this.secondary.mutationSpacingMs) {
      this.violations.spacing++;
      violated = true;
    }
    state.lastMutationAt = now;
    if (content) {
      state.contentTimes = state.contentTimes.filter((t) => t > now - this.secondary.contentWindowMs);
      state.contentTimes.push(now);
      if (state.contentTimes.length > this.secondary.contentLimit) {
        this.violations.contentRate++;
        violated = true;
      }
    }
    if (violated)
      throw new HttpAnswer(
        this.secondary.status,
        {
          message: SECONDARY_MESSAGE,
          documentation_url: `${DOCS}/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits`,
          status: String(this.secondary.status),
        },
        { 'retry-after': String(this.secondary.retryAfterS) },
      );
  }

  private takeInjection(method: string, path: string): Injection | undefined {
    const index = this.injections.findIndex((i) => !i.match || i.match(method, path));
    return index < 0 ? undefined : this.injections.splice(index, 1)[0];
  }

  private injectedAnswer(injection: Injection, state: TokenState, now: number): HttpAnswer {
    if (injection.kind === 'server_error') return new HttpAnswer(injection.status ?? 502, { message: 'Server Error' });
    if (injection.kind === 'secondary') {
      const status = injection.status ?? this.secondary.status;
      return new HttpAnswer(
        status,
        { message: SECONDARY_MESSAGE, documentation_url: DOCS, status: String(status) },
        { 'retry-after': String(injection.retryAfterS ?? this.secondary.retryAfterS) },
      );
    }
    const reset = Math.ceil((now + (injection.resetInS ?? 1) * 1000) / 1000);
    return new HttpAnswer(
      injection.status ?? 403,
      { message: 'API rate limit exceeded for user ID 1.', documentation_url: DOCS, status: String(injection.status ?? 403) },
      {
        ...this.rateHeaders(state),
        'x-ratelimit-remaining': '0',
        'x-ratelimit-reset': String(reset),
      },
    );
  }

  private route(method: string, path: string, query: URLSearchParams, raw: string, login: string, accept: string): HttpAnswer {
    const body = raw ? (JSON.parse(raw) as Record<string, unknown>) : {};
    const notFound = new HttpAnswer(404, { message: 'Not Found', documentation_url: DOCS, status: '404' });
    if (method === 'GET' && path === '/user') return new HttpAnswer(200, userJson(login));
    const m = /^\/repos\/([^/]+)\/([^/]+)(\/.*)?$/.exec(path);
    if (!m) return notFound;
    const repo = this.repos.get(`${m[1]}/${m[2]}`.toLowerCase());
    if (!repo) return notFound;
    const rest = m[3] ?? '';
    const ci = this.ciRoute(repo, method, rest, body);
    if (ci) return ci;
    const permission = /^\/collaborators\/([^/]+)\/permission$/.exec(rest);
    if (method === 'GET' && permission) return this.permission(repo, decodeURIComponent(permission[1]!));
    const pullMatch = /^\/(pulls|issues)\/(\d+)(\/.*)?$/.exec(rest);
    const pull = pullMatch ? repo.pulls.get(Number(pullMatch[2])) : undefined;
    const sub = pullMatch?.[3] ?? '';
    const route = `${method} ${pullMatch ? `/${pullMatch[1]}/:n${sub}` : rest}`;
    const issue = pullMatch?.[1] === 'issues' ? repo.issues.get(Number(pullMatch[2])) : undefined;
    if (issue) return this.issueRoute(repo, issue, `${method} ${sub}`, body, login);
    if (pullMatch && !pull) return notFound;
    const reviewComments = /^GET \/pulls\/:n\/reviews\/(\d+)\/comments$/.exec(route);
    if (reviewComments) {
      const review = pull!.reviews.find((r) => r.id === Number(reviewComments[1]));
      if (!review) return notFound;
      return new HttpAnswer(
        200,
        (review.comments as { path: string; line?: number; body: string }[]).map((c, i) => ({
          id: review.id * 100 + i,
          pull_request_review_id: review.id,
          path: c.path,
          line: c.line ?? null,
          original_line: c.line ?? null,
          side: 'RIGHT',
          body: c.body,
          user: userJson(review.login),
          commit_id: review.commitId,
          html_url: `https://github.test/${repo.fullName}/pull/${pull!.number}#discussion_r${review.id * 100 + i}`,
        })),
      );
    }
    switch (route) {
      case 'GET ':
        return new HttpAnswer(200, {
          id: 1,
          name: repo.fullName.split('/')[1],
          full_name: repo.fullName,
          owner: { login: repo.owner },
          private: false,
          html_url: `https://github.test/${repo.fullName}`,
          default_branch: repo.defaultBranch,
        });
      case 'GET /pulls': {
        const head = query.get('head')?.replace(/^[^:]+:/, '');
        const base = query.get('base');
        const state = query.get('state') ?? 'open';
        const found = [...repo.pulls.values()].filter(
          (p) => (state === 'all' || p.state === state) && (!head || p.head === head) && (!base || p.base === base),
        );
        return new HttpAnswer(
          200,
          found.map((p) => this.pullJson(repo, p)),
        );
      }
      case 'POST /pulls':
        return this.createPull(repo, body, login);
      case 'GET /pulls/:n':
        if (/application\/vnd\.github(\.v3)?\.diff/.test(accept))
          return new HttpAnswer(200, pull!.diff ?? defaultDiff(`${pull!.head}.txt`));
        return new HttpAnswer(200, this.pullJson(repo, pull!));
      case 'POST /pulls/:n/reviews':
        return this.createReview(repo, pull!, body, login);
      case 'GET /pulls/:n/reviews':
        return new HttpAnswer(
          200,
          pull!.reviews.map((r) => ({ id: r.id, user: { login: r.login }, body: r.body, state: r.state, commit_id: r.commitId })),
        );
      case 'POST /issues/:n/comments': {
        if (typeof body.body !== 'string' || !body.body) return validation('Comment', 'body', 'missing_field');
        const comment = { id: this.nextId++, login, body: body.body };
        pull!.comments.push(comment);
        this.emit('comment', { repo: repo.fullName, number: pull!.number, ...comment });
        return new HttpAnswer(201, {
          id: comment.id,
          html_url: `https://github.test/${repo.fullName}/pull/${pull!.number}#issuecomment-${comment.id}`,
          body: comment.body,
          user: { login },
        });
      }
      case 'GET /issues/:n/comments':
        return new HttpAnswer(
          200,
          pull!.comments.map((c) => ({ id: c.id, body: c.body, user: { login: c.login } })),
        );
      case 'PUT /pulls/:n/merge':
        return this.merge(repo, pull!, body);
      case 'PUT /pulls/:n/update-branch':
        return this.updateBranch(repo, pull!, body);
      default:
        return notFound;
    }
  }

  /** GitHub's collaborator-permission answer: the legacy level, the role, and the user. */
  private permission(repo: Repo, login: string): HttpAnswer {
    const role = repo.roles.get(login.toLowerCase()) ?? 'read';
    const legacy = role === 'maintain' ? 'write' : role === 'triage' ? 'read' : role;
    return new HttpAnswer(200, { permission: legacy, role_name: role, user: userJson(login) });
  }

  /** An issue's comments (a pull request's conversation is served by the pull request routes). */
  private issueRoute(repo: Repo, issue: Issue, route: string, body: Record<string, unknown>, login: string): HttpAnswer {
    if (route === 'POST /comments') {
      if (typeof body.body !== 'string' || !body.body) return validation('IssueComment', 'body', 'missing_field');
      const comment = { id: this.nextId++, login, body: body.body };
      issue.comments.push(comment);
      this.emit('comment', { repo: repo.fullName, number: issue.number, ...comment });
      return new HttpAnswer(201, {
        id: comment.id,
        html_url: `https://github.test/${repo.fullName}/issues/${issue.number}#issuecomment-${comment.id}`,
        body: comment.body,
        user: userJson(login),
      });
    }
    if (route === 'GET /comments')
      return new HttpAnswer(
        200,
        issue.comments.map((c) => ({ id: c.id, body: c.body, user: userJson(c.login) })),
      );
    if (route === 'GET ')
      return new HttpAnswer(200, {
        number: issue.number,
        title: issue.title,
        body: issue.body,
        state: 'open',
        user: userJson(issue.author),
        html_url: `https://github.test/${repo.fullName}/issues/${issue.number}`,
      });
    return new HttpAnswer(404, { message: 'Not Found', documentation_url: DOCS, status: '404' });
  }

  private createPull(repo: Repo, body: Record<string, unknown>, login: string): HttpAnswer {
    const head = String(body.head ?? '').replace(/^[^:]+:/, '');
    const base = String(body.base ?? '');
    if (!body.title) return validation('PullRequest', 'title', 'missing_field');
    if (!repo.branches.has(base)) return validation('PullRequest', 'base', 'invalid');
    const headSha = repo.branches.get(head);
    if (!headSha) return validation('PullRequest', 'head', 'invalid');
    if ([...repo.pulls.values()].some((p) => p.state === 'open' && p.head === head && p.base === base)) {
      return new HttpAnswer(422, {
        message: 'Validation Failed',
        errors: [{ resource: 'PullRequest', code: 'custom', message: `A pull request already exists for ${repo.owner}:${head}.` }],
        documentation_url: DOCS,
        status: '422',
      });
    }
    const pull: Pull = {
      number: repo.nextNumber++,
      title: String(body.title),
      body: String(body.body ?? ''),
      author: login,
      head,
      base,
      headSha,
      baseSeen: repo.branches.get(base)!,
      state: 'open',
      merged: false,
      mergeCommitSha: null,
      conflicting: false,
      diff: null,
      reviews: [],
      comments: [],
      createdAt: new Date().toISOString(),
    };
    repo.pulls.set(pull.number, pull);
    return new HttpAnswer(201, this.pullJson(repo, pull));
  }

  private createReview(repo: Repo, pull: Pull, body: Record<string, unknown>, login: string): HttpAnswer {
    const event = String(body.event ?? 'PENDING');
    const ownRefusal =
      event === 'APPROVE'
        ? 'Can not approve your own pull request'
        : event === 'REQUEST_CHANGES'
          ? 'Can not request changes on your own pull request'
          : undefined;
    if (ownRefusal && login === pull.author) {
      return new HttpAnswer(422, {
        message: 'Unprocessable Entity',
        errors: [ownRefusal],
        documentation_url: `${DOCS}/pulls/reviews#create-a-review-for-a-pull-request`,
        status: '422',
      });
    }
    if ((event === 'REQUEST_CHANGES' || event === 'COMMENT') && !body.body) {
      return new HttpAnswer(422, {
        message: 'Unprocessable Entity',
        errors: [`Review body is required for ${event}`],
        documentation_url: DOCS,
        status: '422',
      });
    }
    const comments = Array.isArray(body.comments) ? (body.comments as { path: string; line: number }[]) : [];
    const lines = diffLines(pull.diff ?? defaultDiff(`${pull.head}.txt`));
    for (const c of comments) {
      if (!lines.get(c.path)?.has(c.line)) {
        return new HttpAnswer(422, {
          message: 'Unprocessable Entity',
          errors: ['Pull request review thread line must be part of the diff'],
          documentation_url: DOCS,
          status: '422',
        });
      }
    }
    const state = event === 'APPROVE' ? 'APPROVED' : event === 'REQUEST_CHANGES' ? 'CHANGES_REQUESTED' : 'COMMENTED';
    const review = {
      id: this.nextId++,
      login,
      state,
      body: String(body.body ?? ''),
      commitId: String(body.commit_id ?? pull.headSha),
      comments,
    };
    pull.reviews.push(review);
    return new HttpAnswer(200, {
      id: review.id,
      user: { login },
      body: review.body,
      state,
      commit_id: review.commitId,
      html_url: `https://github.test/${repo.fullName}/pull/${pull.number}#pullrequestreview-${review.id}`,
      submitted_at: new Date().toISOString(),
    });
  }

  private merge(repo: Repo, pull: Pull, body: Record<string, unknown>): HttpAnswer {
    const notMergeable = new HttpAnswer(405, {
      message: 'Pull Request is not mergeable',
      documentation_url: `${DOCS}/pulls/pulls#merge-a-pull-request`,
      status: '405',
    });
    if (pull.state !== 'open') return notMergeable;
    if (typeof body.sha === 'string' && body.sha !== pull.headSha) {
      return new HttpAnswer(409, {
        message: 'Head branch was modified. Review and try the merge again.',
        documentation_url: `${DOCS}/pulls/pulls#merge-a-pull-request`,
        status: '409',
      });
    }
    if (pull.conflicting) return notMergeable;
    const blocked = this.mergeBlock(repo, pull);
    if (blocked)
      return new HttpAnswer(405, { message: blocked, documentation_url: `${DOCS}/pulls/pulls#merge-a-pull-request`, status: '405' });
    const commit = sha();
    repo.branches.set(pull.base, commit);
    Object.assign(pull, { state: 'closed', merged: true, mergeCommitSha: commit });
    return new HttpAnswer(200, { sha: commit, merged: true, message: 'Pull Request successfully merged' });
  }

  private pullJson(repo: Repo, p: Pull): Record<string, unknown> {
    const api = `${this.url}/repos/${repo.fullName}/pulls/${p.number}`;
    const mergeable = p.state === 'open' ? !p.conflicting : null;
    return {
      url: api,
      id: p.number + 100_000,
      html_url: `https://github.test/${repo.fullName}/pull/${p.number}`,
      diff_url: `https://github.test/${repo.fullName}/pull/${p.number}.diff`,
      number: p.number,
      state: p.state,
      locked: false,
      title: p.title,
      body: p.body,
      user: { login: p.author, type: 'User' },
      created_at: p.createdAt,
      updated_at: p.createdAt,
      closed_at: p.state === 'closed' ? new Date().toISOString() : null,
      merged_at: p.merged ? new Date().toISOString() : null,
      merge_commit_sha: p.mergeCommitSha,
      head: { label: `${repo.owner}:${p.head}`, ref: p.head, sha: p.headSha, repo: { full_name: repo.fullName } },
      base: { label: `${repo.owner}:${p.base}`, ref: p.base, sha: repo.branches.get(p.base), repo: { full_name: repo.fullName } },
      draft: false,
      merged: p.merged,
      mergeable,
      mergeable_state: this.mergeableState(repo, p),
    };
  }

  private mergeableState(repo: Repo, p: Pull): string {
    if (p.state !== 'open') return 'unknown';
    if (p.conflicting) return 'dirty';
    const protection = repo.protection.get(p.base);
    if (protection?.strict && this.isBehind(repo, p)) return 'behind';
    if (this.mergeBlock(repo, p)) return 'blocked';
    const all = this.checkStates(repo, p.headSha);
    return [...all.values()].every((state) => state === 'success') ? 'clean' : 'unstable';
  }

  private isBehind(repo: Repo, p: Pull): boolean {
    return repo.branches.get(p.base) !== p.baseSeen;
  }

  /** GitHub's 405 message when branch protection refuses the merge; undefined when it allows it. */
  private mergeBlock(repo: Repo, p: Pull): string | undefined {
    const protection = repo.protection.get(p.base);
    if (!protection) return undefined;
    const states = this.checkStates(repo, p.headSha);
    for (const name of protection.contexts) {
      const state = states.get(name);
      if (state === undefined) return `Required status check "${name}" is expected.`;
      if (state === 'pending') return `Required status check "${name}" is in progress.`;
      if (state !== 'success') return `Required status check "${name}" is failing.`;
    }
    const approvals = p.reviews.filter((r) => r.state === 'APPROVED' && r.login !== p.author).length;
    if (approvals < protection.requiredReviews) {
      return `At least ${protection.requiredReviews} approving review${protection.requiredReviews > 1 ? 's are' : ' is'} required by reviewers with write access.`;
    }
    if (protection.strict && this.isBehind(repo, p)) return 'Head branch is not up to date with the base branch.';
    return undefined;
  }

  /** name → pending | success | failure of a commit's checks (a check run over a status of the same name). */
  private checkStates(repo: Repo, commit: string): Map<string, 'pending' | 'success' | 'failure'> {
    const states = new Map<string, 'pending' | 'success' | 'failure'>();
    for (const s of repo.statuses.get(commit) ?? [])
      states.set(s.context, s.state === 'success' ? 'success' : s.state === 'pending' ? 'pending' : 'failure');
    for (const r of repo.checkRuns.get(commit) ?? []) {
      const green = ['success', 'neutral', 'skipped'].includes(r.conclusion ?? '');
      states.set(r.name, r.status !== 'completed' ? 'pending' : green ? 'success' : 'failure');
    }
    return states;
  }

  private updateBranch(repo: Repo, pull: Pull, body: Record<string, unknown>): HttpAnswer {
    if (typeof body.expected_head_sha === 'string' && body.expected_head_sha !== pull.headSha) {
      return new HttpAnswer(422, {
        message: 'expected head sha didn’t match current head ref.',
        documentation_url: `${DOCS}/pulls/pulls#update-a-pull-request-branch`,
        status: '422',
      });
    }
    if (pull.conflicting) {
      return new HttpAnswer(422, { message: 'merge conflict between base and head', documentation_url: DOCS, status: '422' });
    }
    const base = repo.branches.get(pull.base)!;
    const merge = sha();
    repo.parents.set(merge, [pull.headSha, base]);
    pull.baseSeen = base;
    this.pushBranch(repo.fullName, pull.head, merge);
    return new HttpAnswer(202, {
      message: 'Updating pull request branch.',
      url: `https://github.test/${repo.fullName}/pull/${pull.number}`,
    });
  }

  /** Branch protection, checks, statuses, commits and Actions job logs. */
  private ciRoute(repo: Repo, method: string, rest: string, _body: Record<string, unknown>): HttpAnswer | undefined {
    if (method !== 'GET') return undefined;
    const protectionPath = /^\/branches\/([^/]+)\/protection\/required_status_checks$/.exec(rest);
    if (protectionPath) {
      const protection = repo.protection.get(decodeURIComponent(protectionPath[1]!));
      if (protection && !protection.readable)
        return new HttpAnswer(403, { message: 'Must have admin rights to Repository.', documentation_url: DOCS, status: '403' });
      if (!protection) return new HttpAnswer(404, { message: 'Branch not protected', documentation_url: DOCS, status: '404' });
      if (protection.contexts.length === 0)
        return new HttpAnswer(404, { message: 'Required status checks not enabled', documentation_url: DOCS, status: '404' });
      return new HttpAnswer(200, {
        url: `${this.url}/repos/${repo.fullName}/branches/${protectionPath[1]}/protection/required_status_checks`,
        strict: protection.strict,
        contexts: protection.contexts,
        checks: protection.contexts.map((context) => ({ context, app_id: null })),
      });
    }
    const checkRuns = /^\/commits\/([^/]+)\/check-runs$/.exec(rest);
    if (checkRuns) {
      const runs = [...(repo.checkRuns.get(checkRuns[1]!) ?? [])].reverse();
      return new HttpAnswer(200, { total_count: runs.length, check_runs: runs.map((r) => this.checkRunJson(repo, r)) });
    }
    const combined = /^\/commits\/([^/]+)\/status$/.exec(rest);
    if (combined) {
      const statuses = [...(repo.statuses.get(combined[1]!) ?? [])].reverse();
      const latest = new Map<string, string>();
      for (const s of [...statuses].reverse()) latest.set(s.context, s.state);
      const states = [...latest.values()];
      const state = states.some((s) => s === 'failure' || s === 'error')
        ? 'failure'
        : states.every((s) => s === 'success')
          ? 'success'
          : 'pending';
      return new HttpAnswer(200, { state, sha: combined[1], total_count: statuses.length, statuses });
    }
    const commit = /^\/commits\/([^/]+)$/.exec(rest);
    if (commit) {
      const parents = repo.parents.get(commit[1]!) ?? [];
      return new HttpAnswer(200, {
        sha: commit[1],
        parents: parents.map((p) => ({ sha: p, url: `${this.url}/repos/${repo.fullName}/commits/${p}` })),
        files: [],
      });
    }
    const annotations = /^\/check-runs\/(\d+)\/annotations$/.exec(rest);
    if (annotations) {
      const run = [...repo.checkRuns.values()].flat().find((r) => r.id === Number(annotations[1]));
      if (!run) return new HttpAnswer(404, { message: 'Not Found', documentation_url: DOCS, status: '404' });
      return new HttpAnswer(
        200,
        run.annotations.map((a) => ({ ...a, blob_href: `https://github.test/${repo.fullName}/blob/${run.headSha}/${a.path}` })),
      );
    }
    const jobLog = /^\/actions\/jobs\/(\d+)\/logs$/.exec(rest);
    if (jobLog) {
      const run = [...repo.checkRuns.values()].flat().find((r) => r.id === Number(jobLog[1]));
      if (!run?.log) return new HttpAnswer(404, { message: 'Not Found', documentation_url: DOCS, status: '404' });
      // GitHub redirects to a short-lived download URL; this server serves the text there itself.
      return new HttpAnswer(302, '', { location: `${this.url}/_logs/${repo.fullName}/${run.id}` });
    }
    return undefined;
  }

  private checkRunJson(repo: Repo, r: CheckRun): Record<string, unknown> {
    return {
      id: r.id,
      head_sha: r.headSha,
      name: r.name,
      status: r.status,
      conclusion: r.conclusion,
      html_url: `https://github.test/${repo.fullName}/runs/${r.id}`,
      details_url: `https://github.test/${repo.fullName}/actions/runs/1/job/${r.id}`,
      started_at: new Date().toISOString(),
      completed_at: r.status === 'completed' ? new Date().toISOString() : null,
      output: {
        title: r.title,
        summary: r.summary,
        text: null,
        annotations_count: r.annotations.length,
        annotations_url: `${this.url}/repos/${repo.fullName}/check-runs/${r.id}/annotations`,
      },
      app: { slug: r.log === null ? 'ci-app' : 'github-actions' },
    };
  }
}

/** A user as GitHub's API shows one (a stable id derived from the login). */
function userJson(login: string): Record<string, unknown> {
  const id = Number.parseInt(createHash('sha256').update(login).digest('hex').slice(0, 8), 16);
  return { login, id, type: 'User', html_url: `https://github.test/${login}`, site_admin: false };
}
const fromApp = (answer: AppAnswer) => new HttpAnswer(answer.status, answer.body);

function validation(resource: string, field: string, code: string): HttpAnswer {
  return new HttpAnswer(422, { message: 'Validation Failed', errors: [{ resource, field, code }], documentation_url: DOCS, status: '422' });
}

/** GitHub's "content-creating" requests among the ones this server knows. */
function isContentCreating(method: string, path: string): boolean {
  return (
    (method === 'POST' && /^\/repos\/[^/]+\/[^/]+\/(pulls|pulls\/\d+\/reviews|issues\/\d+\/comments)$/.test(path)) ||
    (method === 'PUT' && /^\/repos\/[^/]+\/[^/]+\/pulls\/\d+\/(merge|update-branch)$/.test(path))
  );
}

export async function startGitHubTestServer(opts: GitHubTestServerOptions = {}): Promise<GitHubTestServer> {
  return new GitHubTestServer(opts).listen();
}
