/**
 * Text a worker chose (event messages, summaries, logs tails) made safe for a terminal. An agent's output is
 * untrusted: printed raw, its escape sequences can retitle the window, rewrite what the operator sees, set the
 * clipboard (OSC 52) or answer back through the terminal's input. Newline and tab stay; every other C0 and C1
 * control character goes, and with it the escape sequences they introduce.
 */

/** Longest string control sequence (OSC, DCS, ...) removed whole; a longer one loses its introducer only. */
const MAX_STRING_SEQUENCE = 4096;

const ESCAPE_SEQUENCE = new RegExp(
  [
    // OSC, DCS, SOS, PM, APC (7-bit ESC ] P X ^ _, or their C1 forms) up to BEL or ST (ESC \ or U+009C).
    `(?:\\u001b[\\]PX^_]|[\\u0090\\u0098\\u009d\\u009e\\u009f])[^]{0,${MAX_STRING_SEQUENCE}}?(?:\\u0007|\\u001b\\\\|\\u009c)`,
    // CSI (ESC [ or U+009B): parameter bytes, intermediate bytes, one final byte.
    '(?:\\u001b\\[|\\u009b)[\\u0030-\\u003f]*[\\u0020-\\u002f]*[\\u0040-\\u007e]',
    // Every other escape sequence: ESC, intermediate bytes, one final byte.
    '\\u001b[\\u0020-\\u002f]*[\\u0030-\\u007e]',
  ].join('|'),
  'g',
);

/** C0 but newline and tab, DEL, C1: what is left after the sequences (a lone ESC, CR, BEL, NUL, ...). */
const CONTROL = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/g;

/** `text` without terminal escape sequences and control characters other than newline and tab. */
export function terminalSafe(text: string): string {
  return text.replace(ESCAPE_SEQUENCE, '').replace(CONTROL, '');
}

/** A JSON value with {@link terminalSafe} applied to every string in it, keys included. */
export function terminalSafeDeep(value: unknown): unknown {
  if (typeof value === 'string') return terminalSafe(value);
  if (Array.isArray(value)) return value.map(terminalSafeDeep);
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([key, inner]) => [terminalSafe(key), terminalSafeDeep(inner)]));
  }
  return value;
}
