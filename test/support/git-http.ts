import { spawn } from 'node:child_process';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer as createTlsServer } from 'node:https';
import type { AddressInfo } from 'node:net';

export interface GitHttpServer {
  /** http://127.0.0.1:PORT: each repository under the root is `${url}/owner/name.git`. */
  url: string;
  port: number;
  /** Every request: method, path, and whether it carried the right Authorization. */
  requests: { method: string; path: string; authorized: boolean }[];
  /** Requests refused for a missing or wrong token. */
  readonly refused: number;
  /** Requests that carried the right token. */
  readonly authorized: number;
  stop(): Promise<void>;
}

/**
 * git's own smart-HTTP server (`git http-backend`, run as CGI per request) behind a loopback HTTP server
 * that answers 401 with a Basic challenge unless the request carries `Basic x-access-token:<token>`, as
 * GitHub does for a private repository; with no token, every request is served. Pushes are enabled
 * (REMOTE_USER is set for authorized requests).
 */
export async function startGitHttpServer(
  root: string,
  token: string | undefined,
  options: { tls?: { key: string; cert: string }; onPushed?: (repoPath: string) => Promise<void> } = {},
): Promise<GitHttpServer> {
  const { tls } = options;
  const want = token === undefined ? undefined : `Basic ${Buffer.from(`x-access-token:${token}`).toString('base64')}`;
  const requests: GitHttpServer['requests'] = [];
  const handle = (req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? '/', 'http://x');
    const authorized = want === undefined || req.headers.authorization === want;
    requests.push({ method: req.method ?? '', path: url.pathname, authorized });
    if (!authorized) {
      res.writeHead(401, { 'www-authenticate': 'Basic realm="test forge"' });
      return res.end('authentication required\n');
    }
    const cgi = spawn('git', ['http-backend'], {
      env: {
        PATH: process.env.PATH,
        GIT_PROJECT_ROOT: root,
        GIT_HTTP_EXPORT_ALL: '1',
        REMOTE_USER: 'x-access-token',
        REQUEST_METHOD: req.method ?? 'GET',
        PATH_INFO: decodeURIComponent(url.pathname),
        QUERY_STRING: url.search.slice(1),
        CONTENT_TYPE: req.headers['content-type'] ?? '',
        ...(req.headers['content-encoding'] ? { HTTP_CONTENT_ENCODING: req.headers['content-encoding'] } : {}),
        ...(req.headers['git-protocol'] ? { GIT_PROTOCOL: String(req.headers['git-protocol']) } : {}),
      },
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    req.pipe(cgi.stdin);
    // The CGI answer: headers up to a blank line, then the body, streamed.
    let head = Buffer.alloc(0);
    let headersDone = false;
    cgi.stdout.on('data', (chunk: Buffer) => {
      if (headersDone) return void res.write(chunk);
      head = Buffer.concat([head, chunk]);
      const end = head.indexOf('\r\n\r\n');
      if (end < 0) return;
      headersDone = true;
      let status = 200;
      const headers: Record<string, string> = {};
      for (const line of head.subarray(0, end).toString('latin1').split('\r\n')) {
        const colon = line.indexOf(':');
        const name = line.slice(0, colon).trim().toLowerCase();
        const value = line.slice(colon + 1).trim();
        if (name === 'status') status = Number.parseInt(value, 10);
        else headers[name] = value;
      }
      res.writeHead(status, headers);
      res.write(head.subarray(end + 4));
    });
    cgi.on('close', () => {
      // Told before the pusher hears back, so whatever it does next sees the pushed branch.
      const pushed = req.method === 'POST' && url.pathname.endsWith('/git-receive-pack') && options.onPushed;
      if (!pushed) return void res.end();
      options.onPushed!(url.pathname.replace(/\/git-receive-pack$/, '')).then(
        () => res.end(),
        (error) => res.destroy(error as Error),
      );
    });
  };
  const server = tls ? createTlsServer(tls, handle) : createServer(handle);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `${tls ? 'https' : 'http'}://127.0.0.1:${port}`,
    port,
    requests,
    get refused() {
      return requests.filter((r) => !r.authorized).length;
    },
    get authorized() {
      return requests.filter((r) => r.authorized).length;
    },
    stop: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
