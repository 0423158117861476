import { mkdtempSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { createSecretBox, loadSecretBox } from '../../src/secrets.ts';

describe('secret box', () => {
  it('round-trips a token and never stores it in the clear', () => {
    const box = createSecretBox('a passphrase that is long enough to use');
    const sealed = box.seal('ghp_secret_value_123456');
    expect(sealed).not.toContain('ghp_secret_value_123456');
    expect(box.open(sealed)).toBe('ghp_secret_value_123456');
    expect(box.seal('same')).not.toBe(box.seal('same'));
  });

  it('says the keys differ when another key sealed the token', () => {
    const sealed = createSecretBox('x'.repeat(32)).seal('token');
    expect(() => createSecretBox('y'.repeat(32)).open(sealed)).toThrow(/keys differ/);
  });

  it('refuses a tampered ciphertext', () => {
    const box = createSecretBox('z'.repeat(40));
    const parts = box.seal('token').split(':');
    parts[4] = Buffer.from('forged').toString('base64');
    expect(() => box.open(parts.join(':'))).toThrow(/altered or the keys differ/);
  });

  it('generates one key per data dir, mode 0600, shared by every process using it', () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'fleet-secret-'));
    const a = loadSecretBox({ secretKey: undefined, dataDir });
    const b = loadSecretBox({ secretKey: undefined, dataDir });
    expect(a.keyId).toBe(b.keyId);
    expect(b.open(a.seal('shared'))).toBe('shared');
    expect(statSync(join(dataDir, 'secret.key')).mode & 0o777).toBe(0o600);
  });
});
