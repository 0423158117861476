import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import express, { type Router } from 'express';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { withTimeout } from './timeout.ts';

/** A readiness check: resolves when the dependency is usable, throws saying why not (the reason is logged, never served). */
export type ReadinessCheck = { name: string; check: () => Promise<void> };

export interface HttpServer {
  port: number;
  host: string;
  close(): Promise<void>;
}

const CHECK_TIMEOUT_MS = 2_000;

/**
 * Every fleet process serves /healthz, /readyz and /metrics; the board role mounts its router
 * here too. Port 0 picks a free port, which the returned object (and the log) tells.
 */
export async function startHttpServer(options: {
  port: number;
  host: string;
  registry: Registry;
  checks: ReadinessCheck[];
  logger: Logger;
  /** Mounted before the health routes; owns its own authentication. */
  routers?: { path: string; router: Router }[];
}): Promise<HttpServer> {
  const app = express();
  app.disable('x-powered-by');
  app.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });
  app.get('/readyz', async (_req, res) => {
    const results = await Promise.all(
      options.checks.map(async ({ name, check }) => {
        try {
          await withTimeout(check(), CHECK_TIMEOUT_MS, name);
          return { name, ok: true as const };
        } catch (error) {
          // The reason stays in the log: /readyz answers anyone, and error texts name hosts, paths and versions.
          options.logger.warn({ check: name, err: error }, 'readiness check failed');
          return { name, ok: false as const };
        }
      }),
    );
    const ready = results.every((r) => r.ok);
    res.status(ready ? 200 : 503).json({ status: ready ? 'ready' : 'not ready', checks: results });
  });
  app.get('/metrics', async (_req, res) => {
    res.set('Content-Type', options.registry.contentType);
    res.send(await options.registry.metrics());
  });
  for (const { path, router } of options.routers ?? []) app.use(path, router);

  const server: Server = await new Promise((resolve, reject) => {
    const s = app.listen(options.port, options.host, (error?: Error) => (error ? reject(error) : resolve(s)));
    s.once('error', (error: NodeJS.ErrnoException) =>
      reject(
        error.code === 'EADDRINUSE'
          ? new Error(`port ${options.port} on ${options.host} is in use: set FLEET_BOARD_PORT to another port (0 picks a free one)`)
          : error,
      ),
    );
  });
  const port = (server.address() as AddressInfo).port;
  options.logger.info(
    {
      url: `http://${options.host}:${port}`,
      endpoints: ['/healthz', '/readyz', '/metrics', ...(options.routers ?? []).map((r) => r.path)],
    },
    'http server listening',
  );
  return {
    port,
    host: options.host,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((error) => (error ? reject(error) : resolve()));
        server.closeAllConnections();
      }),
  };
}
