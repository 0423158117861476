import { execFile } from 'node:child_process';
import { resolve } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { parseLogFormat, prettyLogs } from '../../src/logger.ts';

const ROOT = resolve(import.meta.dirname, '../..');
const SECRET = `sk-live-${'S3cretLogValue'.repeat(2)}`;

/** Runs the logging script in a child process whose stdout is a pipe (never a terminal). */
async function logLines(format: string | undefined): Promise<string[]> {
  const env: Record<string, string> = { ...(process.env as Record<string, string>), NO_COLOR: '1' };
  delete env.FLEET_LOG_FORMAT;
  if (format !== undefined) env.FLEET_LOG_FORMAT = format;
  const { stdout } = await promisify(execFile)(process.execPath, ['bin/run-ts.js', 'test/fixtures/logger/log-lines.ts', SECRET], {
    cwd: ROOT,
    env,
  });
  return stdout.split('\n').filter((line) => line.trim() !== '');
}

const isJson = (line: string) => {
  try {
    return typeof JSON.parse(line) === 'object';
  } catch {
    return false;
  }
};

describe('log format (FLEET_LOG_FORMAT)', () => {
  it('pretty: human lines, not JSON, with the level and message, and no secret', async () => {
    const lines = await logLines('pretty');
    expect(lines.length).toBeGreaterThanOrEqual(3);
    expect(lines.some(isJson)).toBe(false);
    const text = lines.join('\n');
    expect(text).toMatch(/INFO.*first line/);
    expect(text).toMatch(/WARN.*token in the message \[REDACTED\]/);
    expect(text).toMatch(/ERROR.*an error/);
    expect(text).toContain('request_id: "log-1"');
    expect(text).not.toContain(SECRET);
  });

  it('json: one JSON object per line, redacted', async () => {
    const lines = await logLines('json');
    expect(lines).toHaveLength(3);
    expect(lines.every(isJson)).toBe(true);
    expect(JSON.parse(lines[0]!)).toMatchObject({ msg: 'first line', request_id: 'log-1', detail: 'key=[REDACTED]' });
    expect(lines.join('\n')).not.toContain(SECRET);
  });

  it('auto (unset): JSON when stdout is not a terminal', async () => {
    const lines = await logLines(undefined);
    expect(lines.length).toBe(3);
    expect(lines.every(isJson)).toBe(true);
  });

  it('auto is pretty on a terminal only; a bad value is refused by name', () => {
    expect(prettyLogs('auto', Object.assign(process.stdout, {}) as NodeJS.WritableStream)).toBe(process.stdout.isTTY === true);
    expect(prettyLogs('auto', { isTTY: true } as unknown as NodeJS.WritableStream)).toBe(true);
    expect(prettyLogs('json', { isTTY: true } as unknown as NodeJS.WritableStream)).toBe(false);
    expect(prettyLogs('pretty', { isTTY: false } as unknown as NodeJS.WritableStream)).toBe(true);
    expect(() => parseLogFormat('fancy')).toThrow(/FLEET_LOG_FORMAT must be one of auto, json, pretty, got "fancy"/);
  });
});
