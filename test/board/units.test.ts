import { describe, expect, it } from 'vitest';
import { authenticate, isWrite, parseBasicAuth, safeEqual } from '../../board/auth.ts';
import { hideSecrets } from '../../board/board.ts';

describe('hideSecrets', () => {
  it('replaces the sealed token and credential-looking fields, keeps the rest', () => {
    const data = {
      request: { request_id: 'r1', repo: 'o/r', task_content: 'do it', github_token: 'x'.repeat(40), nested: [{ api_key: 'k' }] },
      sealedToken: 'v1.abcdef',
      source: 'pubsub',
      acceptedAt: 1,
    };
    expect(hideSecrets(data)).toEqual({
      request: { request_id: 'r1', repo: 'o/r', task_content: 'do it', github_token: '[hidden]', nested: [{ api_key: '[hidden]' }] },
      sealedToken: '[sealed]',
      source: 'pubsub',
      acceptedAt: 1,
    });
    expect(hideSecrets({ sealedToken: null })).toEqual({ sealedToken: null });
  });

  it('redacts token shapes inside ordinary strings', () => {
    const token = `ghp_${'a'.repeat(36)}`;
    expect(JSON.stringify(hideSecrets({ request: { task_content: `use ${token} please` } }))).not.toContain(token);
  });
});

describe('basic auth', () => {
  const accounts = { admin: { user: 'admin', password: 'pw-admin' }, readonly: { user: 'ro', password: 'pw-ro' } };

  it('parses the header, including passwords with colons', () => {
    const header = `Basic ${Buffer.from('admin:a:b:c').toString('base64')}`;
    expect(parseBasicAuth(header)).toEqual({ user: 'admin', password: 'a:b:c' });
    expect(parseBasicAuth('Bearer xyz')).toBeUndefined();
    expect(parseBasicAuth(`Basic ${Buffer.from('nocolon').toString('base64')}`)).toBeUndefined();
    expect(parseBasicAuth(undefined)).toBeUndefined();
  });

  it('grants the role of the matching account only', () => {
    expect(authenticate({ user: 'admin', password: 'pw-admin' }, accounts)).toBe('admin');
    expect(authenticate({ user: 'ro', password: 'pw-ro' }, accounts)).toBe('readonly');
    expect(authenticate({ user: 'ro', password: 'pw-admin' }, accounts)).toBeUndefined();
    expect(authenticate({ user: 'admin', password: 'pw-ro' }, accounts)).toBeUndefined();
    expect(authenticate({ user: '', password: '' }, { admin: accounts.admin, readonly: undefined })).toBeUndefined();
    expect(authenticate(undefined, accounts)).toBeUndefined();
  });

  it('compares secrets of any length', () => {
    expect(safeEqual('same', 'same')).toBe(true);
    expect(safeEqual('short', 'a much longer value')).toBe(false);
    expect(safeEqual('', '')).toBe(true);
  });

  it('treats every method but GET, HEAD and OPTIONS as a write', () => {
    expect(['GET', 'HEAD', 'OPTIONS', 'get'].map(isWrite)).toEqual([false, false, false, false]);
    expect(['PUT', 'POST', 'PATCH', 'DELETE', 'PROPFIND'].map(isWrite)).toEqual([true, true, true, true, true]);
  });
});
