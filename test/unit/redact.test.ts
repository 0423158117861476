import { describe, expect, it } from 'vitest';
import { REDACTED, Redactor } from '../../src/redact.ts';
import { createLogger } from '../../src/logger.ts';
import { redactor } from '../../src/redact.ts';
import { Writable } from 'node:stream';

describe('Redactor', () => {
  it('masks registered values until they are released', () => {
    const r = new Redactor();
    const release = r.add('my-very-secret-value');
    expect(r.redact('x my-very-secret-value y')).toBe(`x ${REDACTED} y`);
    release();
    expect(r.redact('my-very-secret-value')).toBe('my-very-secret-value');
  });

  it('keeps a value masked while another holder still needs it', () => {
    const r = new Redactor();
    const first = r.add('shared-secret-123');
    r.add('shared-secret-123');
    first();
    expect(r.redact('shared-secret-123')).toBe(REDACTED);
  });

  it.each([
    ['classic token', `ghp_${'a'.repeat(36)}`],
    ['fine-grained token', `github_pat_${'b'.repeat(40)}`],
    ['app token', `ghs_${'c'.repeat(36)}`],
  ])('masks a %s nobody registered', (_n, token) => {
    expect(new Redactor().redact(`push with ${token} now`)).toBe(`push with ${REDACTED} now`);
  });

  it('masks credentials in URLs and github_token JSON fields', () => {
    const r = new Redactor();
    expect(r.redact('https://x-access-token:abc123@github.com/a/b')).toBe(`https://x-access-token:${REDACTED}@github.com/a/b`);
    expect(r.redact('{"github_token":"plain"}')).toBe(`{"github_token":"${REDACTED}"}`);
  });
});

describe('logger', () => {
  it('never writes a registered secret, whatever field holds it', () => {
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk, _enc, done) {
        lines.push(chunk.toString());
        done();
      },
    });
    const release = redactor.add('sekrit-token-value-42');
    const logger = createLogger({ destination: sink });
    logger.info({ nested: { value: 'sekrit-token-value-42' }, github_token: 'anything' }, 'message with sekrit-token-value-42');
    logger.error(new Error('failed with sekrit-token-value-42'));
    release();
    expect(lines.join('')).not.toContain('sekrit-token-value-42');
    expect(lines.join('')).not.toContain('anything');
    expect(lines).toHaveLength(2);
  });
});
