import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';
import { linkSync, mkdirSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { SecretMismatchError } from './errors.ts';

/**
 * Tokens travel through Redis inside job data, so they are sealed with AES-256-GCM under a key
 * every fleet process shares. The sealed form names the key's id, so a host holding another key
 * can say exactly that, instead of a bare "bad decrypt".
 */
export interface SecretBox {
  /** A short, non-secret fingerprint of the key. */
  readonly keyId: string;
  seal(plaintext: string): string;
  open(sealed: string): string;
}

const VERSION = 'v1';

export function createSecretBox(secret: string): SecretBox {
  // Any string of 32+ characters works: a passphrase and a 64-hex-digit key alike go through SHA-256.
  const key = createHash('sha256').update(secret, 'utf8').digest();
  const keyId = createHash('sha256').update(key).digest('hex').slice(0, 12);
  return {
    keyId,
    seal(plaintext) {
      const iv = randomBytes(12);
      const cipher = createCipheriv('aes-256-gcm', key, iv);
      cipher.setAAD(Buffer.from(keyId));
      const body = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
      return [VERSION, keyId, iv.toString('base64'), cipher.getAuthTag().toString('base64'), body.toString('base64')].join(':');
    },
    open(sealed) {
      const [version, sealedKeyId, iv, tag, body] = sealed.split(':');
      if (version !== VERSION || !sealedKeyId || !iv || !tag || body === undefined) {
        throw new SecretMismatchError('the sealed token is malformed; it was not written by this version of fleet');
      }
      if (sealedKeyId !== keyId) {
        throw new SecretMismatchError(
          `cannot decrypt the job's github_token: it was sealed with key ${sealedKeyId}, this host has key ${keyId}. ` +
            'The keys differ: give every fleet process the same FLEET_SECRET_KEY (or the same FLEET_DATA_DIR).',
        );
      }
      try {
        const decipher = createDecipheriv('aes-256-gcm', key, Buffer.from(iv, 'base64'));
        decipher.setAAD(Buffer.from(keyId));
        decipher.setAuthTag(Buffer.from(tag, 'base64'));
        return Buffer.concat([decipher.update(Buffer.from(body, 'base64')), decipher.final()]).toString('utf8');
      } catch {
        throw new SecretMismatchError("cannot decrypt the job's github_token: the ciphertext was altered or the keys differ");
      }
    },
  };
}

/**
 * The key: FLEET_SECRET_KEY when set; otherwise one generated once and kept in the data dir
 * (mode 0600), shared by every process using that dir. Linking it into place atomically means two
 * processes starting together agree on one key.
 */
export function loadSecretBox(options: { secretKey: string | undefined; dataDir: string }): SecretBox {
  if (options.secretKey) return createSecretBox(options.secretKey);
  mkdirSync(options.dataDir, { recursive: true, mode: 0o700 });
  const file = join(options.dataDir, 'secret.key');
  // Written whole to a private temp file, then linked into place: link() fails if the key exists,
  // so a process never reads a half-written key from another one starting at the same moment.
  const temp = `${file}.${process.pid}.${randomBytes(4).toString('hex')}`;
  writeFileSync(temp, `${randomBytes(32).toString('hex')}\n`, { mode: 0o600 });
  try {
    linkSync(temp, file);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
  } finally {
    unlinkSync(temp);
  }
  const secret = readFileSync(file, 'utf8').trim();
  if (secret.length < 32) throw new Error(`${file} holds no usable key (under 32 characters): delete it or set FLEET_SECRET_KEY`);
  return createSecretBox(secret);
}
