import type { Logger } from 'pino';
import type { FleetConfig } from './config.ts';
import type { Reviewer } from './forge.ts';

/**
 * The reviewer the review role uses. `agent` reviews run as worker containers (a spawn child of
 * the review job), so there is no in-process reviewer then.
 */
export function createReviewer(config: FleetConfig, logger: Logger): Reviewer | undefined {
  if (config.reviewer.kind === 'agent') return undefined;
  void logger;
  throw new Error('the llm reviewer is not wired yet');
}
