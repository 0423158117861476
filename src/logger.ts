import { pino, type Logger } from 'pino';
import { redactor } from './redact.ts';

export type { Logger };

/**
 * JSON logs on stdout. Every serialised line passes through the process redactor before it is
 * written, so a secret in any field, message or error text is masked, whatever logged it.
 */
export function createLogger(options: { level?: string; name?: string; destination?: NodeJS.WritableStream } = {}): Logger {
  return pino(
    {
      level: options.level ?? 'info',
      name: options.name ?? 'fleet',
      redact: { paths: ['github_token', '*.github_token', 'token', '*.token', 'headers.authorization'], censor: '[REDACTED]' },
      hooks: { streamWrite: (line) => redactor.redact(line) },
    },
    (options.destination ?? process.stdout) as pino.DestinationStream,
  );
}
