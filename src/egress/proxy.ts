/**
 * The egress proxy of one worker container: HTTP CONNECT and plain-HTTP proxying on a unix socket that only
 * that container has mounted. Every destination is checked against the job's policy; a refusal is answered
 * 403 and reported through `onBlocked`. Requests to the forge go through the credential broker
 * (broker.ts): on an https forge the proxy terminates TLS with the fleet CA's certificate for the forge host,
 * on an http forge (tests) it reads the plain request, and either way adds the job's Authorization itself.
 */
import { chmodSync, rmSync } from 'node:fs';
import { type IncomingHttpHeaders, type IncomingMessage, type ServerResponse, createServer, request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { connect, type Socket } from 'node:net';
import { TLSSocket } from 'node:tls';
import type { Duplex } from 'node:stream';
import type { EgressBlock } from '../protocol.ts';
import { allows, type EgressPolicy } from './allowlist.ts';
import { brokerDecision, type Forge } from './broker.ts';
import type { FleetCa } from './ca.ts';

export type BlockedAttempt = Omit<EgressBlock, 'count'>;

export interface EgressProxyOptions {
  socketPath: string;
  policy: EgressPolicy;
  forge: Forge;
  /** The job's repository (`owner/name`): the only one the broker lends the token for. */
  repo: string;
  /** The forge token; the container never sees it. */
  token: string;
  /** The per-job secret root's git in the container sends instead of the token. */
  brokerKey: string;
  /** Needed when the forge is https: the proxy terminates TLS for the forge host with it. */
  ca?: FleetCa;
  /** CAs the proxy trusts for the forge upstream (tests with a self-signed forge); default: Node's. */
  upstreamCa?: string;
  onBlocked(attempt: BlockedAttempt): void;
}

export interface EgressProxy {
  close(): Promise<void>;
}

/** Headers that describe one hop, never passed on (RFC 9110 §7.6.1), and the proxy's own. */
const HOP_HEADERS = [
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authorization',
  'proxy-authenticate',
  'te',
  'trailer',
  'upgrade',
];

function passHeaders(headers: IncomingHttpHeaders): IncomingHttpHeaders {
  const out = { ...headers };
  for (const h of HOP_HEADERS) delete out[h];
  return out;
}

const READ_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

/** Splits `host:port` (a CONNECT target; IPv6 in brackets). */
function hostPort(target: string, defaultPort: number): { host: string; port: number } | null {
  const match = /^(\[[^\]]+\]|[^:]+)(?::(\d{1,5}))?$/.exec(target);
  if (!match) return null;
  return { host: match[1]!.replace(/^\[|\]$/g, '').toLowerCase(), port: match[2] ? Number(match[2]) : defaultPort };
}

export async function startEgressProxy(options: EgressProxyOptions): Promise<EgressProxy> {
  const { policy, forge } = options;
  const sockets = new Set<Duplex>();
  const track = (s: Duplex) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => s.destroy());
  };
  const isForge = (host: string, port: number) => host === forge.host && port === forge.port;
  const readOnly = (host: string, port: number) => policy.methods === 'read' && !allows(policy.methodExempt, host, port);

  const refuse = (res: ServerResponse, attempt: BlockedAttempt, text: string) => {
    options.onBlocked(attempt);
    res.writeHead(403, { 'content-type': 'text/plain', 'x-fleet-egress': attempt.reason });
    res.end(`fleet egress: ${text}\n`);
  };

  /** A request for the forge (plain, or inside the terminated TLS of a CONNECT to it). */
  const toForge = (req: IncomingMessage, res: ServerResponse, path: string) => {
    const decision = brokerDecision({
      forge,
      path,
      authorization: req.headers.authorization,
      repo: options.repo,
      brokerKey: options.brokerKey,
      token: options.token,
    });
    const method = req.method ?? 'GET';
    if (decision.kind === 'refuse') {
      return refuse(
        res,
        { method, host: forge.host, port: forge.port, reason: 'other_repository' },
        `${decision.repo} is not this job's repository`,
      );
    }
    if (decision.kind === 'challenge') {
      res.writeHead(401, { 'www-authenticate': 'Basic realm="fleet broker"', 'content-type': 'text/plain' });
      return res.end('fleet broker: credentials needed\n');
    }
    // The job's own git traffic is the fleet's clone and push: it is not held to the read-only methods.
    const ownGit = decision.authorization !== null;
    if (!ownGit && policy.methods === 'read' && !READ_METHODS.has(method)) {
      return refuse(res, { method, host: forge.host, port: forge.port, reason: 'method' }, `${method} is not allowed (GET and HEAD only)`);
    }
    const headers = passHeaders(req.headers);
    delete headers.authorization;
    if (decision.authorization) headers.authorization = decision.authorization;
    forward(req, res, { protocol: forge.protocol, host: forge.host, port: forge.port, path, headers });
  };

  const forward = (
    req: IncomingMessage,
    res: ServerResponse,
    target: { protocol: string; host: string; port: number; path: string; headers: IncomingHttpHeaders },
  ) => {
    const send = target.protocol === 'https:' ? httpsRequest : httpRequest;
    const upstream = send({
      host: target.host,
      port: target.port,
      method: req.method,
      path: target.path,
      headers: target.headers,
      servername: target.protocol === 'https:' ? target.host : undefined,
      ca: target.protocol === 'https:' ? options.upstreamCa : undefined,
    });
    upstream.on('response', (up) => {
      res.writeHead(up.statusCode ?? 502, passHeaders(up.headers));
      up.pipe(res);
    });
    upstream.on('error', (error) => {
      if (!res.headersSent) res.writeHead(502, { 'content-type': 'text/plain' });
      res.end(`fleet egress: upstream ${target.host}:${target.port} failed: ${error.message}\n`);
    });
    req.pipe(upstream);
  };

  /** A plain-HTTP proxy request: its URL is absolute. */
  const onRequest = (req: IncomingMessage, res: ServerResponse) => {
    const method = req.method ?? 'GET';
    let url: URL;
    try {
      url = new URL(req.url ?? '');
      if (url.protocol !== 'http:') throw new Error('not http');
    } catch {
      return refuse(res, { method, host: '', port: 0, reason: 'bad_request' }, 'a proxy request needs an absolute http:// URL');
    }
    const host = url.hostname.replace(/^\[|\]$/g, '').toLowerCase();
    const port = Number(url.port || 80);
    const path = `${url.pathname}${url.search}`;
    if (forge.protocol === 'http:' && isForge(host, port)) return toForge(req, res, path);
    if (!allows(policy.rules, host, port))
      return refuse(res, { method, host, port, reason: 'not_allowed' }, `${host}:${port} is not allowed`);
    if (readOnly(host, port) && !READ_METHODS.has(method)) {
      return refuse(res, { method, host, port, reason: 'method' }, `${method} is not allowed (GET and HEAD only)`);
    }
    const headers = passHeaders(req.headers);
    forward(req, res, { protocol: 'http:', host, port, path, headers });
  };

  // The forge's terminated TLS connections land here; their requests have relative paths.
  const forgeServer = createServer((req, res) => toForge(req, res, req.url ?? '/'));

  const onConnect = (req: IncomingMessage, client: Socket, head: Buffer) => {
    track(client);
    const target = hostPort(req.url ?? '', 443);
    const deny = (attempt: BlockedAttempt, text: string) => {
      options.onBlocked(attempt);
      client.end(
        `HTTP/1.1 403 Forbidden\r\ncontent-type: text/plain\r\nx-fleet-egress: ${attempt.reason}\r\nconnection: close\r\n\r\nfleet egress: ${text}\n`,
      );
    };
    if (!target) return deny({ method: 'CONNECT', host: '', port: 0, reason: 'bad_request' }, 'CONNECT needs host:port');
    const { host, port } = target;
    if (forge.protocol === 'https:' && isForge(host, port)) {
      if (!options.ca) throw new Error('an https forge needs the fleet CA');
      const leaf = options.ca.leafFor(host);
      client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      if (head.length) client.unshift(head);
      const tls = new TLSSocket(client, { isServer: true, key: leaf.keyPem, cert: leaf.certPem });
      track(tls);
      forgeServer.emit('connection', tls);
      return;
    }
    if (!allows(policy.rules, host, port))
      return deny({ method: 'CONNECT', host, port, reason: 'not_allowed' }, `${host}:${port} is not allowed`);
    // A tunnel hides its methods: under `read` only plain-HTTP requests, whose method the proxy sees, go out.
    if (readOnly(host, port)) {
      return deny({ method: 'CONNECT', host, port, reason: 'method' }, 'tunnels are not allowed (methods: read, GET and HEAD only)');
    }
    const upstream = connect(port, host);
    track(upstream);
    upstream.once('connect', () => {
      client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      if (head.length) upstream.write(head);
      upstream.pipe(client);
      client.pipe(upstream);
    });
    upstream.once('error', (error) => {
      if (!client.destroyed) client.end(`HTTP/1.1 502 Bad Gateway\r\ncontent-type: text/plain\r\n\r\nfleet egress: ${error.message}\n`);
    });
  };

  const server = createServer(onRequest);
  server.on('connect', onConnect);
  server.on('connection', track);
  rmSync(options.socketPath, { force: true });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.socketPath, () => resolve());
  });
  // Root in a user-namespaced container (sysbox) is not the host's root: the socket is open to any uid; the
  // directory it sits in is mounted into this one container only.
  chmodSync(options.socketPath, 0o666);

  return {
    async close() {
      for (const s of sockets) s.destroy();
      forgeServer.close();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      rmSync(options.socketPath, { force: true });
    },
  };
}
