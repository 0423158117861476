/**
 * Splits a byte stream into lines while holding at most `maxBytes` of any one line: container output is
 * untrusted, and a line splitter that buffers a whole line (readline) lets a worker that prints gigabytes
 * without a newline exhaust the memory of the process that reads it, and every job on the host with it.
 *
 * Line ends are those of readline with `crlfDelay: Infinity`: `\n`, `\r\n` (also across chunks) and a lone
 * `\r`. Bytes past the cap are counted and dropped until the line ends; a cut never splits a UTF-8 character.
 */
import type { OutputLine } from './container-runtime.ts';

const LF = 0x0a;
const CR = 0x0d;

/** The start of the last character of `bytes[0, end)` when that character is incomplete; else `end`. */
function completeCharsEnd(bytes: Uint8Array, end: number): number {
  let lead = end - 1;
  // At most three continuation bytes (10xxxxxx) precede the lead byte of a character.
  while (lead >= 0 && lead > end - 4 && (bytes[lead]! & 0xc0) === 0x80) lead--;
  if (lead < 0) return end;
  const byte = bytes[lead]!;
  const length = byte >= 0xf0 ? 4 : byte >= 0xe0 ? 3 : byte >= 0xc0 ? 2 : 1;
  return lead + length > end ? lead : end;
}

export class LineSplitter {
  private readonly line: Buffer;
  private held = 0;
  private dropped = 0;
  /** The previous chunk ended in `\r`: a `\n` starting the next one belongs to that line end. */
  private afterCR = false;

  constructor(private readonly maxBytes: number) {
    if (!Number.isInteger(maxBytes) || maxBytes < 4) throw new Error(`line cap must be a whole number of bytes >= 4, got ${maxBytes}`);
    // One fixed buffer: copying into it keeps no reference to the (larger) chunks it came from.
    this.line = Buffer.allocUnsafe(maxBytes);
  }

  /** The lines that `chunk` completes, in order. */
  push(chunk: Uint8Array): OutputLine[] {
    const lines: OutputLine[] = [];
    let at = 0;
    if (this.afterCR && chunk.length > 0) {
      this.afterCR = false;
      if (chunk[0] === LF) at = 1;
    }
    // Each search runs once per chunk and line end, never rescanning: indexOf restarts only past its last hit.
    let nextLF = chunk.indexOf(LF, at);
    let nextCR = chunk.indexOf(CR, at);
    while (at < chunk.length) {
      if (nextLF !== -1 && nextLF < at) nextLF = chunk.indexOf(LF, at);
      if (nextCR !== -1 && nextCR < at) nextCR = chunk.indexOf(CR, at);
      const end = nextLF === -1 ? nextCR : nextCR === -1 ? nextLF : Math.min(nextLF, nextCR);
      if (end === -1) {
        this.append(chunk, at, chunk.length);
        break;
      }
      this.append(chunk, at, end);
      lines.push(this.take());
      at = end + 1;
      if (chunk[end] === CR) {
        if (at === chunk.length) this.afterCR = true;
        else if (chunk[at] === LF) at++;
      }
    }
    return lines;
  }

  /** The last line, if the stream ended without a line end after it. */
  end(): OutputLine[] {
    this.afterCR = false;
    return this.held > 0 || this.dropped > 0 ? [this.take()] : [];
  }

  private append(chunk: Uint8Array, from: number, to: number): void {
    const room = this.maxBytes - this.held;
    const kept = Math.min(room, to - from);
    if (kept > 0) {
      this.line.set(chunk.subarray(from, from + kept), this.held);
      this.held += kept;
    }
    this.dropped += to - from - kept;
  }

  private take(): OutputLine {
    const end = this.dropped > 0 ? completeCharsEnd(this.line, this.held) : this.held;
    const line: OutputLine = {
      text: this.line.toString('utf8', 0, end),
      droppedBytes: this.dropped > 0 ? this.dropped + this.held - end : 0,
    };
    this.held = 0;
    this.dropped = 0;
    return line;
  }
}

/** Lines of a byte stream, each holding at most `maxBytes` (see {@link LineSplitter}). */
export async function* splitLines(chunks: AsyncIterable<Uint8Array>, maxBytes: number): AsyncGenerator<OutputLine> {
  const splitter = new LineSplitter(maxBytes);
  for await (const chunk of chunks) yield* splitter.push(chunk);
  yield* splitter.end();
}
