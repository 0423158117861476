import { createHmac, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';

const FIXTURES = resolve(import.meta.dirname, '../fixtures/webhooks');

/** The payloads of test/fixtures/webhooks, modelled on GitHub's documented examples. */
export type FixtureName =
  | 'issues.labeled'
  | 'issue_comment.created'
  | 'issue_comment.created.pull_request'
  | 'pull_request_review.submitted'
  | 'star.created';

// biome-ignore lint/suspicious/noExplicitAny: a payload is edited by path in tests
type Json = any;

/** A fresh copy of a fixture with the repository, the sender and the thread set for this test. */
export function payload(
  name: FixtureName,
  at: { repo: string; sender: string; number?: number; title?: string; body?: string | null; comment?: string },
): Json {
  const p: Json = JSON.parse(readFileSync(resolve(FIXTURES, `${name}.json`), 'utf8'));
  const [owner, repoName] = at.repo.split('/');
  Object.assign(p.repository, { full_name: at.repo, name: repoName, html_url: `https://github.com/${at.repo}` });
  p.repository.owner.login = owner;
  p.sender = { ...p.sender, login: at.sender };
  const thread = p.issue ?? p.pull_request;
  if (thread && at.number !== undefined) thread.number = at.number;
  if (thread && at.title !== undefined) thread.title = at.title;
  if (thread && at.body !== undefined) thread.body = at.body;
  if (p.comment) {
    p.comment.user = { ...p.comment.user, login: at.sender };
    if (at.comment !== undefined) p.comment.body = at.comment;
  }
  if (p.review) {
    p.review.user = { ...p.review.user, login: at.sender };
    if (at.comment !== undefined) p.review.body = at.comment;
  }
  if (p.pull_request?.head) p.pull_request.head.repo.full_name = at.repo;
  return p;
}

/** `sha256=` HMAC of the exact body bytes, as GitHub computes X-Hub-Signature-256. */
export function signature(secret: string, body: string): string {
  return `sha256=${createHmac('sha256', secret).update(body).digest('hex')}`;
}

/** POSTs a delivery as GitHub does: JSON body, event and delivery headers, signed unless told otherwise. */
export async function deliver(
  url: string,
  event: string,
  body: Json,
  options: { secret: string; delivery?: string; signature?: string },
): Promise<{ status: number; json: Json; delivery: string }> {
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  const delivery = options.delivery ?? randomUUID();
  const response = await fetch(url, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      'user-agent': 'GitHub-Hookshot/044aadd',
      'x-github-event': event,
      'x-github-delivery': delivery,
      'x-github-hook-id': '292430182',
      'x-hub-signature-256': options.signature ?? signature(options.secret, text),
    },
    body: text,
  });
  const raw = await response.text();
  let json: Json;
  try {
    json = JSON.parse(raw);
  } catch {
    json = raw;
  }
  return { status: response.status, json, delivery };
}
