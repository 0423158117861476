/**
 * What the three vendor test servers (anthropic.ts, openai-responses.ts, openai-chat.ts) share: an HTTP
 * server on 127.0.0.1 that records every request, checks the API key and model a CLI sends, and answers
 * the agent's main-loop requests from a script of turns. A turn is one model response: text, tool calls,
 * or a failure (an HTTP error in the vendor's shape, or a stream cut in the middle).
 *
 * Tests may share one server: `answerFor(marker, …)` scripts the requests whose body holds the marker (put
 * it in the task, which every main request of that agent carries), so agents can run side by side.
 *
 * Requests that are not the agent's main loop (a title, a quota probe, token counting) are answered by
 * the vendor module without spending a turn; `isMainRequest` tells them apart (the request offers tools).
 * When the script is spent, a main request gets a plain text answer that ends the agent's loop, so a test
 * whose script was too short fails on its assertions, never by hanging.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/** One part of a scripted response. `tool` is the tool's name as the CLI offers it (`Write`, `exec_command`). */
export type Step = { kind: 'text'; text: string } | { kind: 'tool'; tool: string; input: Record<string, unknown> };

export type Turn =
  | { kind: 'reply'; steps: Step[] }
  /** The vendor's error answer with this HTTP status (429 rate limit, 500 server error...). */
  | { kind: 'http_error'; status: number; message: string }
  /** The stream starts with these steps, then the connection is destroyed before the response ends. */
  | { kind: 'cut'; steps: Step[] }
  /** The stream opens (200, event-stream headers) and then nothing comes: a model that hangs. */
  | { kind: 'stall' };

export const text = (t: string): Step => ({ kind: 'text', text: t });
export const tool = (name: string, input: Record<string, unknown>): Step => ({ kind: 'tool', tool: name, input });
export const reply = (...steps: Step[]): Turn => ({ kind: 'reply', steps });

export interface Recorded {
  at: number;
  method: string;
  path: string;
  headers: IncomingMessage['headers'];
  body: Record<string, unknown> | undefined;
  /** It carried the agent's tools: a turn of the script answered it (or the end-of-script text). */
  main: boolean;
  /** The scripted marker its body held ('' for none). */
  marker: string;
}

/** A tool result the CLI sent back for a call of ours: proof that its own tool ran. */
export interface ToolResult {
  callId: string;
  output: string;
  marker: string;
}

export interface ModelServerOptions {
  /** The key fleet gave the CLI; any other is refused with the vendor's 401 and counted as a violation. */
  apiKey: string;
  /** The model the request asked for (after fleet's model map); any other is counted as a violation. */
  model: string;
  /** Models a CLI may use for side requests besides `model` (none by default). */
  sideModels?: string[];
}

export abstract class ModelTestServer {
  readonly requests: Recorded[] = [];
  /** Everything the CLI sent that a real vendor would refuse or that the test did not expect. */
  readonly violations: string[] = [];
  readonly toolResults: ToolResult[] = [];
  url = '';
  private readonly scripts = new Map<string, Turn[]>();
  private firstMain: ((at: number) => void)[] = [];
  /** The marker of the request being handled (tool results recorded meanwhile carry it). */
  private currentMarker = '';
  private readonly server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      let body: Record<string, unknown> | undefined;
      try {
        body = chunks.length ? (JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>) : undefined;
      } catch {
        this.violations.push(`${req.method} ${req.url}: body is not JSON`);
      }
      const path = (req.url ?? '/').split('?')[0]!;
      const main = body !== undefined && this.isMainRequest(path, body);
      const serialized = body === undefined ? '' : JSON.stringify(body);
      const marker = [...this.scripts.keys()].find((m) => m !== '' && serialized.includes(m)) ?? '';
      this.currentMarker = marker;
      this.requests.push({ at: Date.now(), method: req.method ?? '', path, headers: req.headers, body, main, marker });
      if (main) for (const resolve of this.firstMain.splice(0)) resolve(Date.now());
      try {
        this.handle(req, res, path, body, main);
      } catch (error) {
        this.violations.push(`${req.method} ${path}: ${(error as Error).message}`);
        if (!res.headersSent) res.writeHead(500, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ error: { message: (error as Error).message } }));
      }
    });
  });

  constructor(readonly options: ModelServerOptions) {}

  /** Queues turns for the next main-loop requests that hold no scripted marker, in order. */
  answer(...turns: Turn[]): void {
    this.answerFor('', ...turns);
  }

  /** Queues turns for the next main-loop requests whose body holds `marker` (e.g. a request id in the task). */
  answerFor(marker: string, ...turns: Turn[]): void {
    this.scripts.set(marker, [...(this.scripts.get(marker) ?? []), ...turns]);
  }

  mainRequests(marker?: string): Recorded[] {
    return this.requests.filter((r) => r.main && (marker === undefined || r.marker === marker));
  }

  toolResultsFor(marker: string): ToolResult[] {
    return this.toolResults.filter((r) => r.marker === marker);
  }

  /** Resolves with the time of the next main-loop request. */
  nextMainRequest(): Promise<number> {
    return new Promise((resolve) => this.firstMain.push(resolve));
  }

  protected nextTurn(): Turn | undefined {
    return this.scripts.get(this.currentMarker)?.shift();
  }

  /** Records a violation when the key is not the one fleet gave; returns whether it was. */
  protected checkKey(given: string | undefined, path: string): boolean {
    if (given === this.options.apiKey) return true;
    this.violations.push(`${path}: API key ${given === undefined ? 'missing' : 'wrong'}`);
    return false;
  }

  protected checkModel(model: unknown, path: string): void {
    if (model === this.options.model || (this.options.sideModels ?? []).includes(model as string)) return;
    this.violations.push(`${path}: model ${JSON.stringify(model)}, expected ${JSON.stringify(this.options.model)}`);
  }

  protected recordToolResult(callId: string, output: string): void {
    if (!this.toolResults.some((r) => r.callId === callId)) this.toolResults.push({ callId, output, marker: this.currentMarker });
  }

  protected abstract isMainRequest(path: string, body: Record<string, unknown>): boolean;
  protected abstract handle(
    req: IncomingMessage,
    res: ServerResponse,
    path: string,
    body: Record<string, unknown> | undefined,
    main: boolean,
  ): void;

  async listen(): Promise<this> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this;
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

/** Server-sent events: `event:` + `data:` blocks, written as they are made, as the vendors stream them. */
export class SseWriter {
  constructor(private readonly res: ServerResponse) {
    res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', connection: 'keep-alive' });
  }

  event(name: string | undefined, data: unknown): void {
    const payload = typeof data === 'string' ? data : JSON.stringify(data);
    this.res.write(`${name === undefined ? '' : `event: ${name}\n`}data: ${payload}\n\n`);
  }

  end(): void {
    this.res.end();
  }

  /** The connection dies mid-stream: no terminating event, no clean end of the chunked body. */
  cut(): void {
    this.res.socket?.destroy();
  }
}

export const sendJson = (res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) =>
  res.writeHead(status, { 'content-type': 'application/json', ...headers }).end(JSON.stringify(body));

/** A tool result's content as text, whatever block shape the vendor uses. */
export function contentText(content: unknown): string {
  if (typeof content === 'string') return content;
  if (Array.isArray(content))
    return content
      .map((c) => contentText((c as { text?: unknown; content?: unknown }).text ?? (c as { content?: unknown }).content ?? ''))
      .join('');
  return content === undefined || content === null ? '' : JSON.stringify(content);
}
