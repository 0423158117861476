import { spawn } from 'node:child_process';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface GitHttpServer {
  /** http://127.0.0.1:PORT: each repository under the root is `${url}/owner/name.git`. */
  url: string;
  /** Requests refused for a missing or wrong token. */
  refused: number;
  /** Requests that carried the right token. */
  authorized: number;
  stop(): Promise<void>;
}

/**
 * A loopback smart-HTTP git server: `git http-backend` (CGI) behind node:http, serving every repository
 * under `root`, with push enabled. With `token`, every request must carry it as GitHub takes it (basic
 * auth, any user name), else 401.
 */
export async function startGitHttp(root: string, options: { token?: string } = {}): Promise<GitHttpServer> {
  const expected = options.token ? `Basic ${Buffer.from(`x-access-token:${options.token}`).toString('base64')}` : undefined;
  const state = { refused: 0, authorized: 0 };
  const server = createServer((req, res) => {
    if (expected) {
      if (req.headers.authorization !== expected) {
        state.refused++;
        res.writeHead(401, { 'WWW-Authenticate': 'Basic realm="git"' }).end();
        req.resume();
        return;
      }
      state.authorized++;
    }
    backend(root, req, res);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    get refused() {
      return state.refused;
    },
    get authorized() {
      return state.authorized;
    },
    stop: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

function backend(root: string, req: IncomingMessage, res: ServerResponse): void {
  const url = new URL(req.url ?? '/', 'http://localhost');
  const child = spawn('git', ['http-backend'], {
    env: {
      PATH: process.env.PATH,
      GIT_PROJECT_ROOT: root,
      GIT_HTTP_EXPORT_ALL: '1',
      // Push without a REMOTE_USER (the token check above is the gate).
      GIT_CONFIG_COUNT: '1',
      GIT_CONFIG_KEY_0: 'http.receivepack',
      GIT_CONFIG_VALUE_0: 'true',
      REQUEST_METHOD: req.method ?? 'GET',
      PATH_INFO: decodeURIComponent(url.pathname),
      QUERY_STRING: url.search.slice(1),
      CONTENT_TYPE: req.headers['content-type'] ?? '',
      HTTP_CONTENT_ENCODING: req.headers['content-encoding'] ?? '',
      GIT_PROTOCOL: (req.headers['git-protocol'] as string | undefined) ?? '',
      REMOTE_ADDR: '127.0.0.1',
    },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  req.pipe(child.stdin);
  child.stdin.on('error', () => {});
  let head = Buffer.alloc(0);
  let headersDone = false;
  child.stdout.on('data', (chunk: Buffer) => {
    if (headersDone) {
      res.write(chunk);
      return;
    }
    head = Buffer.concat([head, chunk]);
    const end = head.indexOf('\r\n\r\n');
    if (end < 0) return;
    headersDone = true;
    let status = 200;
    for (const line of head.subarray(0, end).toString('latin1').split('\r\n')) {
      const colon = line.indexOf(':');
      const name = line.slice(0, colon).trim();
      const value = line.slice(colon + 1).trim();
      if (name.toLowerCase() === 'status') status = Number.parseInt(value, 10);
      else res.setHeader(name, value);
    }
    res.writeHead(status);
    res.write(head.subarray(end + 4));
  });
  child.stdout.on('end', () => {
    if (!headersDone) res.writeHead(502);
    res.end();
  });
}
