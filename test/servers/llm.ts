/**
 * An OpenAI-compatible `/v1/chat/completions` test server on 127.0.0.1 with scripted answers, recording every
 * request. When the script runs out it approves.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';

export type ScriptedAnswer =
  | { kind: 'approve'; feedback?: string }
  | { kind: 'reject'; feedback: string; comments?: { path: string; line?: number; body: string }[] }
  | { kind: 'malformed'; text?: string }
  | { kind: 'status'; status: number; retryAfterS?: number };

export interface RecordedRequest {
  at: number;
  authorization: string | undefined;
  body: { model: string; messages: { role: string; content: string }[]; [key: string]: unknown };
}

export class LlmTestServer {
  readonly requests: RecordedRequest[] = [];
  url = '';
  private readonly script: ScriptedAnswer[] = [];
  private readonly server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (req.method !== 'POST' || req.url !== '/v1/chat/completions') {
        res.writeHead(404, { 'content-type': 'application/json' }).end(JSON.stringify({ error: { message: 'not found' } }));
        return;
      }
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as RecordedRequest['body'];
      this.requests.push({ at: Date.now(), authorization: req.headers.authorization, body });
      const answer = this.script.shift() ?? { kind: 'approve' };
      if (answer.kind === 'status') {
        const headers: Record<string, string> = { 'content-type': 'application/json' };
        if (answer.retryAfterS !== undefined) headers['retry-after'] = String(answer.retryAfterS);
        res.writeHead(answer.status, headers).end(JSON.stringify({ error: { message: 'Rate limit reached', type: 'rate_limit_error' } }));
        return;
      }
      const content =
        answer.kind === 'approve'
          ? JSON.stringify({ approved: true, feedback: answer.feedback ?? 'Looks good.', comments: [] })
          : answer.kind === 'reject'
            ? JSON.stringify({ approved: false, feedback: answer.feedback, comments: answer.comments ?? [] })
            : (answer.text ?? 'Sure! The change looks fine to me, I would approve it.');
      res.writeHead(200, { 'content-type': 'application/json' }).end(
        JSON.stringify({
          id: `chatcmpl-${this.requests.length}`,
          object: 'chat.completion',
          created: Math.floor(Date.now() / 1000),
          model: body.model,
          choices: [{ index: 0, message: { role: 'assistant', content }, finish_reason: 'stop' }],
          usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 },
        }),
      );
    });
  });

  /** Queues answers for the next requests, in order. */
  answer(...answers: ScriptedAnswer[]): void {
    this.script.push(...answers);
  }

  async listen(): Promise<this> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/v1`;
    return this;
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

export async function startLlmTestServer(): Promise<LlmTestServer> {
  return new LlmTestServer().listen();
}
