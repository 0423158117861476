/**
 * Secrets must never reach Redis, logs, events, results or the dashboard. Two nets catch them:
 * the exact values this process knows (host token, agent keys, each job's token while it runs),
 * and the shapes of GitHub credentials, for tokens nobody told us about (an agent echoing one).
 */
const TOKEN_SHAPES = [
  /\b(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{20,255}\b/g,
  /\bgithub_pat_[A-Za-z0-9_]{20,255}\b/g,
  // credentials inside a URL: https://user:secret@host
  /(?<=:\/\/[^\s/:@]*:)[^\s/@]+(?=@)/g,
  /(?<="github_token"\s*:\s*")[^"]*(?=")/g,
  // A GitHub App's JWT (valid 10 minutes) and its private key (issue 12).
  /\beyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{20,}/g,
  /-----BEGIN (?:RSA )?PRIVATE KEY-----[\s\S]*?-----END (?:RSA )?PRIVATE KEY-----/g,
];

export const REDACTED = '[REDACTED]';

export class Redactor {
  private readonly secrets = new Map<string, number>();

  /** Registers a value to hide; returns a function that forgets it (refcounted: two jobs may share a token). */
  add(secret: string | undefined | null): () => void {
    // Short values would redact ordinary words; real tokens and keys are long.
    if (!secret || secret.length < 8) return () => {};
    this.secrets.set(secret, (this.secrets.get(secret) ?? 0) + 1);
    let done = false;
    return () => {
      if (done) return;
      done = true;
      const count = (this.secrets.get(secret) ?? 1) - 1;
      if (count <= 0) this.secrets.delete(secret);
      else this.secrets.set(secret, count);
    };
  }

  redact(text: string): string {
    let out = text;
    for (const secret of this.secrets.keys()) {
      if (out.includes(secret)) out = out.split(secret).join(REDACTED);
    }
    for (const shape of TOKEN_SHAPES) out = out.replace(shape, REDACTED);
    return out;
  }
}

/** One redactor per process: the logger and every publisher share what it knows. */
export const redactor = new Redactor();
