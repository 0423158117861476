import type { LimiterLogger } from '../../src/github/limiter.ts';
import type { GitHubLimits } from '../../src/github/index.ts';
import type { SecondaryLimits } from '../servers/github.ts';

export interface LogEntry {
  level: string;
  msg: string;
  fields: unknown;
}

/** A pino-shaped logger that keeps what it is given, so tests can read the log. */
export function memoryLogger(): LimiterLogger & { entries: LogEntry[] } {
  const entries: LogEntry[] = [];
  const at = (level: string) => (fields: unknown, msg?: string) => {
    entries.push({ level, msg: typeof fields === 'string' ? fields : (msg ?? ''), fields });
  };
  return { entries, debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') } as unknown as LimiterLogger & {
    entries: LogEntry[];
  };
}

/** Secondary limits scaled down for tests: same rules, 40 ms instead of 1 s. */
export const FAST_SECONDARY: Partial<SecondaryLimits> = { mutationSpacingMs: 40, contentLimit: 30, contentWindowMs: 1_000, retryAfterS: 1 };

/** The client side of FAST_SECONDARY. */
export const FAST_LIMITS: Partial<GitHubLimits> = {
  mutationSpacingMs: 40,
  contentPerWindow: 30,
  contentWindowMs: 1_000,
  spacingMarginMs: 10,
  resetGraceMs: 50,
};
