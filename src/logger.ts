import { pino, type Logger } from 'pino';
import { PinoPretty } from 'pino-pretty';
import { redactor } from './redact.ts';

export type { Logger };

/** How log lines look: `auto` is pretty on a terminal and JSON otherwise (files, pipes, log collectors). */
export const LOG_FORMATS = ['auto', 'json', 'pretty'] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];

/** `FLEET_LOG_FORMAT` as createLogger reads it when no format is passed; loadConfig refuses a bad value first. */
export function parseLogFormat(value: string | undefined): LogFormat {
  if (value === undefined || value.trim() === '') return 'auto';
  if ((LOG_FORMATS as readonly string[]).includes(value)) return value as LogFormat;
  throw new Error(`FLEET_LOG_FORMAT must be one of ${LOG_FORMATS.join(', ')}, got "${value}"`);
}

/** Whether lines go out pretty: asked for, or `auto` on a terminal. */
export function prettyLogs(format: LogFormat, destination: NodeJS.WritableStream): boolean {
  if (format !== 'auto') return format === 'pretty';
  return (destination as NodeJS.WriteStream).isTTY === true;
}

/**
 * Log lines on stdout: JSON, or pretty and coloured on a terminal (`FLEET_LOG_FORMAT`). Every line is
 * serialised to JSON first and passes through the process redactor before anything writes it, so a
 * secret in any field, message or error text is masked in both formats, whatever logged it.
 */
export function createLogger(
  options: { level?: string; name?: string; destination?: NodeJS.WritableStream; format?: LogFormat } = {},
): Logger {
  const destination = options.destination ?? process.stdout;
  // Read here, not only in loadConfig: the CLI creates its logger from the level alone.
  const format = options.format ?? parseLogFormat(process.env.FLEET_LOG_FORMAT);
  const pretty = prettyLogs(format, destination);
  const stream = pretty
    ? // Synchronous, in this thread: the redacted JSON line goes in, the pretty line comes out in order with the rest.
      PinoPretty({
        destination,
        sync: true,
        colorize: (destination as NodeJS.WriteStream).isTTY === true,
        translateTime: 'SYS:HH:MM:ss.l',
        ignore: 'pid,hostname',
      })
    : destination;
  return pino(
    {
      level: options.level ?? 'info',
      name: options.name ?? 'fleet',
      redact: { paths: ['github_token', '*.github_token', 'token', '*.token', 'headers.authorization'], censor: '[REDACTED]' },
      hooks: { streamWrite: (line) => redactor.redact(line) },
    },
    stream as pino.DestinationStream,
  );
}
