import { createHash, timingSafeEqual } from 'node:crypto';
import type { NextFunction, Request, Response } from 'express';

/** One basic-auth account of the board. */
export interface BoardAccount {
  user: string;
  password: string;
}

/** What an authenticated request may do: `admin` everything, `readonly` look only. */
export type BoardRole = 'admin' | 'readonly';

export interface BoardAccounts {
  /** Undefined: the board is open, which `createBoardRouter` allows on loopback only. */
  admin: BoardAccount | undefined;
  readonly: BoardAccount | undefined;
}

const REALM = 'fleet board';

/**
 * Compares two secrets in time that depends on neither. Hashing first gives both sides the same
 * length, so `timingSafeEqual` never throws and the length of the real value does not leak.
 */
export function safeEqual(given: string, expected: string): boolean {
  const a = createHash('sha256').update(given, 'utf8').digest();
  const b = createHash('sha256').update(expected, 'utf8').digest();
  return timingSafeEqual(a, b);
}

/** Parses an `Authorization: Basic ...` header; undefined when it is absent or malformed. */
export function parseBasicAuth(header: string | undefined): BoardAccount | undefined {
  const match = header ? /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(header) : null;
  if (!match) return undefined;
  const decoded = Buffer.from(match[1]!, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 0) return undefined;
  return { user: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}

/** The role the credentials grant, checking every account fully so timing tells nothing. */
export function authenticate(given: BoardAccount | undefined, accounts: BoardAccounts): BoardRole | undefined {
  if (!given) return undefined;
  const matches = (account: BoardAccount | undefined) => {
    // Both comparisons always run (no short-circuit), against a dummy when the account is not set.
    const user = safeEqual(given.user, account?.user ?? '\0no-account');
    const password = safeEqual(given.password, account?.password ?? '\0no-account');
    return Boolean(account) && user && password;
  };
  const admin = matches(accounts.admin);
  const readonly = matches(accounts.readonly);
  if (admin) return 'admin';
  if (readonly) return 'readonly';
  return undefined;
}

/** Methods that never change anything on the board; every other method is a write. */
const READ_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

export function isWrite(method: string): boolean {
  return !READ_METHODS.has(method.toUpperCase());
}

const LOOPBACK_HOSTS = /^(localhost|127\.\d+\.\d+\.\d+|\[::1\])(:\d+)?$/i;

/**
 * Authenticates every board request and sets `res.locals.boardRole`. Writes are refused to the
 * read-only account here, by method, whatever the UI shows; and refused to every account when a
 * browser says the request comes from another site (basic auth credentials ride along
 * automatically, so a foreign page could otherwise make a logged-in browser retry or delete jobs).
 */
export function boardAuth(accounts: BoardAccounts) {
  return (req: Request, res: Response, next: NextFunction) => {
    let role: BoardRole | undefined;
    if (!accounts.admin) {
      // Open board, loopback only: refuse a Host header that is not loopback (DNS rebinding).
      if (!LOOPBACK_HOSTS.test(req.headers.host ?? '')) {
        res.status(403).type('text/plain').send('the board has no credentials and only answers on localhost\n');
        return;
      }
      role = 'admin';
    } else {
      role = authenticate(parseBasicAuth(req.headers.authorization), accounts);
      if (!role) {
        res.set('WWW-Authenticate', `Basic realm="${REALM}", charset="UTF-8"`);
        res.status(401).type('text/plain').send('authentication required\n');
        return;
      }
    }
    if (isWrite(req.method)) {
      if (role === 'readonly') {
        res.status(403).json({ error: 'read-only account: this action changes jobs or queues and is not allowed' });
        return;
      }
      if (req.headers['sec-fetch-site'] === 'cross-site') {
        res.status(403).json({ error: 'cross-site request refused' });
        return;
      }
    }
    res.locals.boardRole = role;
    next();
  };
}
