/**
 * GitHub App authentication as the GitHub test server (github.ts) speaks it, on GitHub's wire format:
 * - App JWTs (RS256, `iss` = the App ID, `iat`/`exp` at most 10 minutes apart) checked with the App's public key;
 * - `POST /app/installations/{id}/access_tokens`, scoped to the asked repositories and permissions, refusing
 *   more than the installation was granted (422);
 * - `GET /repos/{owner}/{repo}/installation`;
 * - installation tokens (`ghs_…`): refused once revoked or expired (401), refused on another repository (404 on
 *   reads, 403 "Resource not accessible by integration" on writes) or without the permission a write needs (403);
 * - `DELETE /installation/token` revokes the token it is sent with (204).
 */
import { randomBytes, verify, type KeyObject } from 'node:crypto';

const DOCS = 'https://docs.github.com/rest';

export interface TestApp {
  appId: string;
  slug: string;
  /** The public half of the App's key (GitHub keeps only this). */
  publicKey: KeyObject;
}

export interface TestInstallation {
  id: number;
  appId: string;
  /** The owner the App is installed on. */
  account: string;
  /** Repository names (without owner) it was given, or every repository of the owner. */
  repositories: string[] | 'all';
  /** What the owner granted the App. */
  permissions: Record<string, 'read' | 'write'>;
}

export interface IssuedToken {
  token: string;
  installationId: number;
  /** Lower-case "owner/name" it may act on. */
  repositories: string[];
  permissions: Record<string, string>;
  expiresAt: number;
  revokedAt: number | null;
  /** Requests made with it, and those refused (by reason), for tests to assert on. */
  uses: number;
  refused: { revoked: number; otherRepository: number; permission: number };
}

export class AppAnswer {
  constructor(
    readonly status: number,
    readonly body: unknown,
  ) {}
}

const fail = (status: number, message: string) => new AppAnswer(status, { message, documentation_url: DOCS, status: String(status) });

/** What the request needs from its token: the repository it touches and the permission it uses, if any. */
function needs(method: string, rest: string): { permission: string; level: 'read' | 'write' } {
  const write = method !== 'GET' && method !== 'HEAD';
  const level = write ? 'write' : 'read';
  if (/^\/pulls\/\d+\/merge$/.test(rest) || /^\/git\//.test(rest) || /^\/contents\//.test(rest)) return { permission: 'contents', level };
  if (/^\/(pulls|issues)(\/|$)/.test(rest)) return { permission: 'pull_requests', level };
  return { permission: 'metadata', level: 'read' };
}

export class GitHubAppAuthority {
  private readonly apps = new Map<string, TestApp>();
  private readonly installations = new Map<number, TestInstallation>();
  readonly issued = new Map<string, IssuedToken>();
  /** JWTs refused, by reason (bad signature, wrong issuer, expired …). */
  readonly refusedJwts: string[] = [];
  private nextInstallation = 7000;
  tokenLifetimeMs = 3_600_000;

  registerApp(app: TestApp): void {
    this.apps.set(app.appId, app);
  }

  install(installation: Omit<TestInstallation, 'id'> & { id?: number }): TestInstallation {
    const full = { ...installation, id: installation.id ?? this.nextInstallation++ };
    this.installations.set(full.id, full);
    return full;
  }

  isJwt(bearer: string): boolean {
    return /^eyJ[\w-]*\.[\w-]+\.[\w-]+$/.test(bearer);
  }

  isInstallationToken(token: string): boolean {
    return this.issued.has(token);
  }

  botLogin(token: string): string {
    const issued = this.issued.get(token)!;
    const installation = this.installations.get(issued.installationId)!;
    return `${this.apps.get(installation.appId)?.slug ?? 'app'}[bot]`;
  }

  /** The App a JWT proves, or a 401 saying why not (GitHub's messages). */
  private appOf(jwt: string, now: number): TestApp | AppAnswer {
    const refuse = (reason: string, message: string) => {
      this.refusedJwts.push(reason);
      return fail(401, message);
    };
    const [headerPart, payloadPart, signaturePart] = jwt.split('.') as [string, string, string];
    let header: { alg?: string };
    let payload: { iss?: string | number; iat?: number; exp?: number };
    try {
      header = JSON.parse(Buffer.from(headerPart, 'base64url').toString('utf8'));
      payload = JSON.parse(Buffer.from(payloadPart, 'base64url').toString('utf8'));
    } catch {
      return refuse('undecodable', 'A JSON web token could not be decoded');
    }
    if (header.alg !== 'RS256') return refuse('algorithm', 'A JSON web token could not be decoded');
    const app = this.apps.get(String(payload.iss));
    if (!app) return refuse('issuer', "'Issuer' claim ('iss') must be an Integer");
    const signed = verify(
      'RSA-SHA256',
      Buffer.from(`${headerPart}.${payloadPart}`),
      app.publicKey,
      Buffer.from(signaturePart, 'base64url'),
    );
    if (!signed) return refuse('signature', 'A JSON web token could not be decoded');
    const seconds = now / 1000;
    if (typeof payload.exp !== 'number' || payload.exp <= seconds)
      return refuse(
        'expired',
        "'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires",
      );
    if (typeof payload.iat !== 'number' || payload.iat > seconds + 60)
      return refuse('issued-in-future', "'Issued at' claim ('iat') must be an Integer representing the time that the assertion was issued");
    if (payload.exp - payload.iat > 600) return refuse('too-long', "'Expiration time' claim ('exp') is too far in the future");
    return app;
  }

  /** Answers a request authenticated with a JWT (App endpoints only). */
  appRequest(
    method: string,
    path: string,
    body: Record<string, unknown>,
    jwt: string,
    now: number,
    repoExists: (fullName: string) => boolean,
  ): AppAnswer {
    const app = this.appOf(jwt, now);
    if (app instanceof AppAnswer) return app;
    const installationOfRepo = /^\/repos\/([^/]+)\/([^/]+)\/installation$/.exec(path);
    if (method === 'GET' && installationOfRepo) {
      const [owner, name] = [installationOfRepo[1]!, installationOfRepo[2]!];
      const found = [...this.installations.values()].find(
        (i) =>
          i.appId === app.appId &&
          i.account.toLowerCase() === owner.toLowerCase() &&
          (i.repositories === 'all' || i.repositories.some((r) => r.toLowerCase() === name.toLowerCase())),
      );
      if (!found || !repoExists(`${owner}/${name}`)) return fail(404, 'Not Found');
      return new AppAnswer(200, this.installationJson(found, app));
    }
    const tokens = /^\/app\/installations\/(\d+)\/access_tokens$/.exec(path);
    if (method === 'POST' && tokens) {
      const installation = this.installations.get(Number(tokens[1]));
      if (!installation || installation.appId !== app.appId) return fail(404, 'Not Found');
      return this.mint(installation, body, now);
    }
    if (method === 'GET' && path === '/app') return new AppAnswer(200, { id: Number(app.appId), slug: app.slug, name: app.slug });
    return fail(403, 'A JSON web token cannot be used to access this resource; use an installation token');
  }

  private mint(installation: TestInstallation, body: Record<string, unknown>, now: number): AppAnswer {
    const owner = installation.account;
    const granted = installation.repositories;
    const asked = body.repositories;
    if (asked !== undefined && (!Array.isArray(asked) || asked.some((r) => typeof r !== 'string')))
      return fail(422, "Invalid request.\n\nFor 'properties/repositories', it is not an array of strings.");
    const names = (asked as string[] | undefined) ?? (granted === 'all' ? [] : granted);
    if (granted !== 'all' && names.some((n) => !granted.some((g) => g.toLowerCase() === n.toLowerCase())))
      return fail(422, 'There is at least one repository that does not exist or is not accessible to the parent installation.');
    const askedPermissions = (body.permissions as Record<string, string> | undefined) ?? installation.permissions;
    for (const [permission, level] of Object.entries(askedPermissions)) {
      const has = installation.permissions[permission];
      if (!has || (level === 'write' && has !== 'write'))
        return fail(422, 'The permissions requested are not granted to this installation.');
    }
    const token = `ghs_${randomBytes(27).toString('base64url').replace(/[-_]/g, 'x').slice(0, 36)}`;
    const permissions = { ...askedPermissions, metadata: 'read' };
    const issued: IssuedToken = {
      token,
      installationId: installation.id,
      repositories: names.map((n) => `${owner}/${n}`.toLowerCase()),
      permissions,
      expiresAt: now + this.tokenLifetimeMs,
      revokedAt: null,
      uses: 0,
      refused: { revoked: 0, otherRepository: 0, permission: 0 },
    };
    this.issued.set(token, issued);
    return new AppAnswer(201, {
      token,
      expires_at: new Date(issued.expiresAt).toISOString().replace(/\.\d{3}Z$/, 'Z'),
      permissions,
      repository_selection: names.length ? 'selected' : 'all',
      ...(names.length
        ? {
            repositories: names.map((name, i) => ({
              id: 500 + i,
              name,
              full_name: `${owner}/${name}`,
              private: true,
              owner: { login: owner },
            })),
          }
        : {}),
    });
  }

  /**
   * Checks an installation token's use; undefined when it may go on to the route. Answers `DELETE
   * /installation/token` itself.
   */
  installationRequest(method: string, path: string, token: string, now: number): AppAnswer | undefined {
    const issued = this.issued.get(token)!;
    issued.uses++;
    if (issued.revokedAt !== null || issued.expiresAt <= now) {
      issued.refused.revoked++;
      return fail(401, 'Bad credentials');
    }
    if (method === 'DELETE' && path === '/installation/token') {
      issued.revokedAt = now;
      return new AppAnswer(204, '');
    }
    const m = /^\/repos\/([^/]+)\/([^/]+)(\/.*)?$/.exec(path);
    if (!m) return fail(403, 'Resource not accessible by integration');
    const write = method !== 'GET' && method !== 'HEAD';
    if (!issued.repositories.includes(`${m[1]}/${m[2]}`.toLowerCase())) {
      issued.refused.otherRepository++;
      return write ? fail(403, 'Resource not accessible by integration') : fail(404, 'Not Found');
    }
    const need = needs(method, m[3] ?? '');
    const has = issued.permissions[need.permission];
    if (!has || (need.level === 'write' && has !== 'write')) {
      issued.refused.permission++;
      return fail(403, 'Resource not accessible by integration');
    }
    return undefined;
  }

  private installationJson(installation: TestInstallation, app: TestApp) {
    return {
      id: installation.id,
      account: { login: installation.account, type: 'Organization' },
      app_id: Number(app.appId),
      app_slug: app.slug,
      target_type: 'Organization',
      permissions: installation.permissions,
      repository_selection: installation.repositories === 'all' ? 'all' : 'selected',
      access_tokens_url: `/app/installations/${installation.id}/access_tokens`,
    };
  }
}
