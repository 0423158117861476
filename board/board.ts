import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { ExpressAdapter } from '@bull-board/express';
import type { Queue } from 'bullmq';
import { Router, type RequestHandler } from 'express';
import type { Logger } from 'pino';
import { redactor } from '../src/redact.ts';
import { boardAuth, type BoardAccounts, type BoardRole } from './auth.ts';

/** Where the board lives on the fleet's http server. */
export const BOARD_PATH = '/admin/queues';

const SEALED = '[sealed]';
const HIDDEN = '[hidden]';
/** Field names whose values are never shown, whatever queue or nesting they appear in. */
const SECRET_FIELD = /(token|password|secret|api_?key|authorization)$/i;

/**
 * A copy of job data fit for the board: `sealedToken` is encrypted already, but even ciphertext
 * has no business on a dashboard, and a field that looks like a credential is hidden too.
 */
export function hideSecrets(value: unknown, depth = 0): unknown {
  if (depth > 8 || value === null || typeof value !== 'object') {
    return typeof value === 'string' ? redactor.redact(value) : value;
  }
  if (Array.isArray(value)) return value.map((item) => hideSecrets(item, depth + 1));
  return Object.fromEntries(
    Object.entries(value as Record<string, unknown>).map(([key, field]) => {
      if (key === 'sealedToken') return [key, field === null ? null : SEALED];
      if (SECRET_FIELD.test(key) && field !== null && field !== undefined) return [key, HIDDEN];
      return [key, hideSecrets(field, depth + 1)];
    }),
  );
}

/** The BullMQ adapter plus a last net: log lines pass the redactor on their way to the browser. */
class RedactingAdapter extends BullMQAdapter {
  override async getJobLogs(id: string): Promise<string[]> {
    return (await super.getJobLogs(id)).map((line) => redactor.redact(line));
  }
}

function boardApp(queues: Queue[], readOnly: boolean): RequestHandler {
  const serverAdapter = new ExpressAdapter();
  serverAdapter.setBasePath(BOARD_PATH);
  const adapters = queues.map((queue) => {
    const adapter = new RedactingAdapter(queue, { readOnlyMode: readOnly, allowRetries: !readOnly });
    adapter.setFormatter('data', (data) => hideSecrets(data));
    adapter.setFormatter('returnValue', (value) => hideSecrets(value));
    return adapter;
  });
  createBullBoard({
    queues: adapters,
    serverAdapter,
    options: { uiConfig: { boardTitle: readOnly ? 'fleet (read-only)' : 'fleet', jobDetails: { defaultTab: 'Logs' } } },
  });
  return serverAdapter.getRouter() as RequestHandler;
}

/**
 * Bull Board for the given queues behind basic auth. Bull Board's read-only mode is a property
 * of its queue adapters, so there are two boards over the same queues, one per role, and each
 * request goes to the one its credentials choose. Writes by the read-only account never reach
 * Bull Board at all: `boardAuth` refuses them by method first.
 */
export function createBoardRouter(options: {
  queues: Queue[];
  accounts: BoardAccounts;
  /** The address the server listens on; an open board (no accounts) must stay on loopback. */
  listenHost: string;
  logger: Logger;
}): Router {
  const { accounts, listenHost, logger } = options;
  if (!accounts.admin) {
    if (!/^(127\.\d+\.\d+\.\d+|::1|localhost)$/.test(listenHost)) {
      throw new Error(
        `the board has no credentials but FLEET_BOARD_HOST is ${listenHost}: set FLEET_BOARD_USER and FLEET_BOARD_PASSWORD, or listen on 127.0.0.1`,
      );
    }
    logger.warn(
      { url_path: BOARD_PATH, host: listenHost },
      '!!! THE BOARD HAS NO CREDENTIALS: anyone on this machine can retry and delete jobs. It listens on 127.0.0.1 only. Set FLEET_BOARD_USER and FLEET_BOARD_PASSWORD to protect it and serve it on the network !!!',
    );
  } else {
    logger.info({ url_path: BOARD_PATH, readonly_account: Boolean(accounts.readonly) }, 'board protected by basic auth');
  }
  const apps: Record<BoardRole, RequestHandler> = {
    admin: boardApp(options.queues, false),
    // Built even without a read-only account: cheap, and the role check below stays total.
    readonly: boardApp(options.queues, true),
  };
  const router = Router();
  router.use(boardAuth(accounts));
  router.use((req, res, next) => apps[res.locals.boardRole as BoardRole](req, res, next));
  return router;
}
