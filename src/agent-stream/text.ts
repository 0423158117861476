/** Small helpers that turn untrusted stream values into short, single-line, printable text. */

type Json = Record<string, unknown>;

/** The object a stream line holds, or null: not JSON, not an object, or without a string `type`. */
export function streamObject(line: string): Json | null {
  const text = line.trimStart();
  if (!text.startsWith('{')) return null;
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return null;
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return null;
  return typeof (value as Json).type === 'string' ? (value as Json) : null;
}

export const isObject = (value: unknown): value is Json => typeof value === 'object' && value !== null && !Array.isArray(value);
export const str = (value: unknown): string | undefined => (typeof value === 'string' ? value : undefined);
/** A finite, non-negative count; anything else counts as 0 (a stream cannot make a total go down or NaN). */
export const count = (value: unknown): number => (typeof value === 'number' && Number.isFinite(value) && value > 0 ? value : 0);

// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what oneLine removes
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]+/g;

/** One line, control characters as spaces, at most `max` characters (with an ellipsis when cut). */
export function oneLine(text: string, max = 200): string {
  const flat = text.replace(CONTROL, ' ').replace(/\s+/g, ' ').trim();
  return flat.length > max ? `${flat.slice(0, max - 1)}…` : flat;
}

/** The first non-empty line of a text, shortened. */
export function firstLine(text: string, max = 160): string {
  const line = text.split(/\r?\n/).find((l) => l.trim() !== '') ?? '';
  return oneLine(line, max);
}

/** The text of a tool result: a string, or the text blocks of a content list. */
export function resultText(content: unknown): string {
  if (typeof content === 'string') return content;
  if (Array.isArray(content)) {
    return content
      .map((block) => (isObject(block) && typeof block.text === 'string' ? block.text : ''))
      .filter(Boolean)
      .join('\n');
  }
  return '';
}

/** The workspace prefix means nothing to a reader of the board: paths show relative to it. */
export function shortPath(path: string): string {
  return oneLine(path.replace(/^\/workspace\//, ''), 120);
}
