/**
 * POST /webhooks/github: GitHub's deliveries. Order matters: the body is read within a size bound (413), its
 * X-Hub-Signature-256 is checked against the raw bytes before anything reads it (401), the delivery id is
 * claimed in Redis so a redelivery is ignored, and only then is it handled. Failures of the handler release
 * the claim and answer 500, so a redelivery from GitHub's log can try again.
 */
import { Webhooks } from '@octokit/webhooks';
import express, { type NextFunction, type Request, type Response, type Router } from 'express';
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { FleetKeys } from '../keys.ts';
import type { WebhookHandler } from './handler.ts';
import { PayloadError } from './intents.ts';
import { DELIVERY_ID_PATTERN } from './requests.ts';

/** Where the router is mounted on the HTTP server, and its one route under it. */
export const WEBHOOK_MOUNT = '/webhooks';
export const WEBHOOK_ROUTE = '/github';

/**
 * Largest body accepted. GitHub caps payloads at 25 MB, but what fleet reads (an issue of at most 65536
 * characters, a comment, a review) fits in far less; a larger body is answered 413 before it is buffered.
 */
export const MAX_WEBHOOK_BYTES = 1024 * 1024;

/** GitHub may redeliver a delivery of the past 3 days; its id is remembered a day longer. */
export const DELIVERY_TTL_SECONDS = 4 * 24 * 60 * 60;

export interface WebhookRouterDeps {
  secret: string;
  redis: Redis;
  keys: FleetKeys;
  handle: WebhookHandler;
  logger: Logger;
  /** @defaultValue MAX_WEBHOOK_BYTES */
  maxBytes?: number;
}

function header(req: Request, name: string): string | undefined {
  const value = req.headers[name];
  return Array.isArray(value) ? value[0] : value;
}

/** The JSON payload of a delivery: sent as application/json, or as the `payload` field of a form. */
function payloadOf(raw: string, contentType: string | undefined): unknown {
  const json = /application\/x-www-form-urlencoded/i.test(contentType ?? '') ? new URLSearchParams(raw).get('payload') : raw;
  if (json === null) throw new PayloadError('the form has no "payload" field');
  try {
    return JSON.parse(json);
  } catch {
    throw new PayloadError('the payload is not JSON');
  }
}

export function createWebhookRouter(deps: WebhookRouterDeps): Router {
  const webhooks = new Webhooks({ secret: deps.secret });
  const log = deps.logger;
  const router = express.Router();

  router.post(
    WEBHOOK_ROUTE,
    express.raw({ type: () => true, limit: deps.maxBytes ?? MAX_WEBHOOK_BYTES }),
    async (req: Request, res: Response, next: NextFunction) => {
      const event = header(req, 'x-github-event');
      const delivery = header(req, 'x-github-delivery');
      const signature = header(req, 'x-hub-signature-256');
      const raw = Buffer.isBuffer(req.body) ? req.body.toString('utf8') : '';
      const who = { delivery, event, remote: req.socket.remoteAddress };
      if (!signature || !(await webhooks.verify(raw, signature).catch(() => false))) {
        log.warn({ ...who, signature: signature ? 'mismatch' : 'missing' }, 'webhook delivery refused: bad X-Hub-Signature-256');
        res.status(401).json({ error: 'bad signature: X-Hub-Signature-256 does not match the body and FLEET_WEBHOOK_SECRET' });
        return;
      }
      if (!event || !delivery || !DELIVERY_ID_PATTERN.test(delivery)) {
        res.status(400).json({ error: 'X-GitHub-Event and X-GitHub-Delivery (a GUID) are required' });
        return;
      }
      const claim = deps.keys.webhookDelivery(delivery);
      if ((await deps.redis.set(claim, event, 'EX', DELIVERY_TTL_SECONDS, 'NX')) !== 'OK') {
        log.info(who, 'webhook delivery seen before: ignored');
        res.status(200).json({ outcome: 'duplicate_delivery' });
        return;
      }
      try {
        if (event === 'ping') {
          log.info(who, 'webhook ping');
          res.status(200).json({ outcome: 'pong' });
          return;
        }
        const outcome = await deps.handle({ id: delivery, event, payload: payloadOf(raw, req.headers['content-type']) });
        log.info({ ...who, ...outcome }, 'webhook delivery handled');
        res.status(outcome.outcome === 'ignored' ? 200 : 202).json(outcome);
      } catch (error) {
        // Not handled: a redelivery may try again.
        await deps.redis.del(claim).catch(() => {});
        if (error instanceof PayloadError) {
          log.warn({ ...who, reason: error.message }, 'webhook delivery refused: unreadable payload');
          res.status(400).json({ error: error.message });
          return;
        }
        next(error);
      }
    },
  );

  // Errors of the body reader (413 too large, 400 aborted) and of the handler: a JSON answer, a log line.
  router.use((error: Error & { status?: number; type?: string }, req: Request, res: Response, _next: NextFunction) => {
    const status = typeof error.status === 'number' && error.status >= 400 && error.status < 500 ? error.status : 500;
    const who = { delivery: header(req, 'x-github-delivery'), event: header(req, 'x-github-event') };
    if (status === 413) {
      log.warn({ ...who, limit: deps.maxBytes ?? MAX_WEBHOOK_BYTES }, 'webhook delivery refused: body too large');
      res.status(413).json({ error: `the body is larger than ${deps.maxBytes ?? MAX_WEBHOOK_BYTES} bytes` });
      return;
    }
    log.error({ ...who, err: error }, 'webhook delivery failed');
    res.status(status).json({ error: status === 500 ? 'the delivery could not be handled; redeliver it later' : error.message });
  });
  return router;
}
