/**
 * The OpenAI Responses API on 127.0.0.1 (`POST /v1/responses`, streamed), for Codex. The key comes as a
 * bearer token. A streamed answer is the API's event sequence: response.created, response.in_progress, per
 * output item response.output_item.added, its deltas (response.output_text.delta,
 * response.function_call_arguments.delta), response.output_item.done, then response.completed with the
 * output and usage. Function calls come back as `function_call_output` input items.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { contentText, ModelTestServer, sendJson, SseWriter, type ModelServerOptions, type Step } from './model-server.ts';

const ERROR_CODES: Record<number, { type: string; code: string | null }> = {
  400: { type: 'invalid_request_error', code: null },
  401: { type: 'invalid_request_error', code: 'invalid_api_key' },
  404: { type: 'invalid_request_error', code: null },
  429: { type: 'requests', code: 'rate_limit_exceeded' },
  500: { type: 'server_error', code: null },
};

type Item = Record<string, unknown> & { type: string; id: string };

export class ResponsesTestServer extends ModelTestServer {
  private ids = 0;

  protected isMainRequest(path: string, body: Record<string, unknown>): boolean {
    return path === '/v1/responses' && Array.isArray(body.tools) && body.tools.length > 0;
  }

  protected handle(
    req: IncomingMessage,
    res: ServerResponse,
    path: string,
    body: Record<string, unknown> | undefined,
    main: boolean,
  ): void {
    if (!this.checkKey(req.headers.authorization?.replace(/^Bearer /, ''), path)) {
      this.error(res, 401, 'Incorrect API key provided.');
      return;
    }
    if (req.method === 'GET' && path === '/v1/models') {
      sendJson(res, 200, { object: 'list', data: [{ id: this.options.model, object: 'model', created: 0, owned_by: 'test' }] });
      return;
    }
    if (req.method !== 'POST' || path !== '/v1/responses' || !body) {
      this.error(res, 404, `Invalid URL (${req.method} ${path})`);
      return;
    }
    this.checkModel(body.model, path);
    this.collectToolResults(body);
    const turn = main ? this.nextTurn() : undefined;
    if (turn?.kind === 'http_error') {
      this.error(res, turn.status, turn.message);
      return;
    }
    if (turn?.kind === 'stall') {
      new SseWriter(res);
      return;
    }
    const steps = turn ? turn.steps : [{ kind: 'text' as const, text: main ? 'Done.' : 'OK' }];
    if (main) this.checkTools(body, steps);
    const items = steps.map((s) => this.item(s));
    const response = (status: string, output: Item[]) => ({
      id: `resp_test${this.ids}`,
      object: 'response',
      created_at: Math.floor(Date.now() / 1000),
      status,
      model: body.model,
      output,
      usage:
        status === 'completed'
          ? {
              input_tokens: 100,
              input_tokens_details: { cached_tokens: 0 },
              output_tokens: 20,
              output_tokens_details: { reasoning_tokens: 0 },
              total_tokens: 120,
            }
          : null,
    });
    const sse = new SseWriter(res);
    let seq = 0;
    const send = (type: string, data: Record<string, unknown>) => sse.event(type, { type, sequence_number: seq++, ...data });
    send('response.created', { response: response('in_progress', []) });
    send('response.in_progress', { response: response('in_progress', []) });
    items.forEach((item, output_index) => {
      if (item.type === 'message') {
        const text = (item.content as { text: string }[])[0]!.text;
        send('response.output_item.added', { output_index, item: { ...item, status: 'in_progress', content: [] } });
        send('response.content_part.added', {
          item_id: item.id,
          output_index,
          content_index: 0,
          part: { type: 'output_text', text: '', annotations: [] },
        });
        const half = Math.ceil(text.length / 2);
        for (const delta of [text.slice(0, half), text.slice(half)]) {
          if (delta) send('response.output_text.delta', { item_id: item.id, output_index, content_index: 0, delta });
        }
        send('response.output_text.done', { item_id: item.id, output_index, content_index: 0, text });
        send('response.content_part.done', {
          item_id: item.id,
          output_index,
          content_index: 0,
          part: { type: 'output_text', text, annotations: [] },
        });
      } else {
        send('response.output_item.added', { output_index, item: { ...item, status: 'in_progress', arguments: '' } });
        send('response.function_call_arguments.delta', { item_id: item.id, output_index, delta: item.arguments });
        send('response.function_call_arguments.done', { item_id: item.id, output_index, arguments: item.arguments });
      }
      if (turn?.kind === 'cut' && output_index === items.length - 1) return;
      send('response.output_item.done', { output_index, item });
    });
    if (turn?.kind === 'cut') {
      sse.cut();
      return;
    }
    send('response.completed', { response: response('completed', items) });
    sse.end();
  }

  private item(step: Step): Item {
    const id = ++this.ids;
    if (step.kind === 'text') {
      return {
        type: 'message',
        id: `msg_test${id}`,
        role: 'assistant',
        status: 'completed',
        content: [{ type: 'output_text', text: step.text, annotations: [] }],
      };
    }
    return {
      type: 'function_call',
      id: `fc_test${id}`,
      call_id: `call_test${id}`,
      name: step.tool,
      arguments: JSON.stringify(step.input),
      status: 'completed',
    };
  }

  private checkTools(body: Record<string, unknown>, steps: Step[]): void {
    const offered = ((body.tools as { name?: string; type?: string }[]) ?? []).map((t) => t.name ?? t.type);
    for (const step of steps) {
      if (step.kind === 'tool' && !offered.includes(step.tool))
        this.violations.push(`script calls tool ${step.tool}; the CLI offered ${offered.join(', ')}`);
    }
  }

  private collectToolResults(body: Record<string, unknown>): void {
    for (const item of (body.input as Record<string, unknown>[] | undefined) ?? []) {
      if (item.type === 'function_call_output') this.recordToolResult(item.call_id as string, contentText(item.output));
    }
  }

  /** The API's error body: `{"error":{"message","type","param","code"}}`. */
  private error(res: ServerResponse, status: number, message: string): void {
    const { type, code } = ERROR_CODES[status] ?? { type: 'server_error', code: null };
    sendJson(res, status, { error: { message, type, param: null, code } }, { 'x-request-id': `req_test${++this.ids}` });
  }
}

export async function startResponsesTestServer(options: ModelServerOptions): Promise<ResponsesTestServer> {
  return new ResponsesTestServer(options).listen();
}
