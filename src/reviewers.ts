import type { Logger } from 'pino';
import type { FleetConfig } from './config.ts';
import type { Reviewer } from './forge.ts';
import { createLlmReviewer } from './reviewer/llm.ts';

/**
 * The reviewer the review role uses. `agent` reviews run as worker containers (a spawn child of
 * the review job), so there is no in-process reviewer then.
 */
export function createReviewer(config: FleetConfig, logger: Logger): Reviewer | undefined {
  if (config.reviewer.kind === 'agent') return undefined;
  const { llm } = config.reviewer;
  if (!llm.apiKey) logger.warn('FLEET_LLM_API_KEY is not set: the llm reviewer calls its endpoint without a key');
  return createLlmReviewer({
    baseUrl: llm.baseUrl,
    apiKey: llm.apiKey ?? '',
    model: llm.model,
    maxDiffChars: llm.maxDiffChars,
    maxChunks: llm.maxChunks,
    logger: logger.child({ component: 'reviewer' }),
  });
}
