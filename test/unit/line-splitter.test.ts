import { describe, expect, it } from 'vitest';
import type { OutputLine } from '../../src/container-runtime.ts';
import { demuxDockerStream } from '../../src/docker-output.ts';
import { LineSplitter, splitLines } from '../../src/line-splitter.ts';

/** Feeds the chunks one by one and returns every line, the last one included. */
function split(chunks: (string | Buffer)[], maxBytes = 16): OutputLine[] {
  const splitter = new LineSplitter(maxBytes);
  const lines = chunks.flatMap((chunk) => splitter.push(typeof chunk === 'string' ? Buffer.from(chunk) : chunk));
  return [...lines, ...splitter.end()];
}

const texts = (lines: OutputLine[]) => lines.map((l) => l.text);
const whole = (text: string): OutputLine => ({ text, droppedBytes: 0 });

/** Every way of cutting `bytes` into two chunks. */
function everySplit(bytes: Buffer): Buffer[][] {
  return Array.from({ length: bytes.length + 1 }, (_, i) => [bytes.subarray(0, i), bytes.subarray(i)]);
}

describe('LineSplitter', () => {
  it('splits on \\n, \\r\\n and a lone \\r, keeps empty lines, and emits a last line without a line end', () => {
    expect(split(['a\nb\r\nc\rd\n\nlast'])).toEqual(['a', 'b', 'c', 'd', '', 'last'].map(whole));
  });

  it('reads \\r\\n split across two chunks as one line end', () => {
    expect(texts(split(['one\r', '\ntwo\r', '', '\nthree\r', 'four']))).toEqual(['one', 'two', 'three', 'four']);
  });

  it('gives the same lines wherever the chunks are cut, multibyte UTF-8 included', () => {
    const text = 'ä€😀 x\r\nzweite Zeile ü\n😀😀\rend';
    const expected = split([text], 64);
    expect(texts(expected)).toEqual(['ä€😀 x', 'zweite Zeile ü', '😀😀', 'end']);
    for (const chunks of everySplit(Buffer.from(text))) expect(split(chunks, 64)).toEqual(expected);
    // One byte at a time: every character arrives in pieces.
    expect(
      split(
        [...Buffer.from(text)].map((b) => Buffer.from([b])),
        64,
      ),
    ).toEqual(expected);
  });

  it('keeps a line of exactly the cap whole, and cuts one byte more', () => {
    expect(split(['0123456789abcdef\n'])).toEqual([whole('0123456789abcdef')]);
    expect(split(['0123456789abcdef\r\n', 'next'])).toEqual([whole('0123456789abcdef'), whole('next')]);
    expect(split(['0123456789abcdef', '\n'])).toEqual([whole('0123456789abcdef')]);
    expect(split(['0123456789abcdef'])).toEqual([whole('0123456789abcdef')]);
    expect(split(['0123456789abcdefg\nnext\n'])).toEqual([{ text: '0123456789abcdef', droppedBytes: 1 }, whole('next')]);
  });

  it('never cuts inside a UTF-8 character, and counts its bytes as dropped', () => {
    // 15 ASCII bytes, then a 3-byte "€": the cap (16) falls inside it.
    const line = `${'a'.repeat(15)}€tail`;
    for (const chunks of everySplit(Buffer.from(`${line}\n`))) {
      expect(split(chunks)).toEqual([{ text: 'a'.repeat(15), droppedBytes: Buffer.byteLength(line) - 15 }]);
    }
    // A 4-byte character that ends exactly at the cap is kept.
    expect(split([`${'a'.repeat(12)}😀x\n`])).toEqual([{ text: `${'a'.repeat(12)}😀`, droppedBytes: 1 }]);
  });

  it('counts every dropped byte of a long line however it arrives, and holds only the cap', () => {
    const splitter = new LineSplitter(16);
    const chunk = Buffer.alloc(64 * 1024, 'x');
    for (let i = 0; i < 160; i++) expect(splitter.push(chunk)).toEqual([]);
    expect(splitter.push(Buffer.from('x\nafter\n'))).toEqual([
      { text: 'x'.repeat(16), droppedBytes: 160 * chunk.length + 1 - 16 },
      whole('after'),
    ]);
  });

  it('refuses a cap too small for one UTF-8 character', () => {
    expect(() => new LineSplitter(3)).toThrow(/line cap must be a whole number of bytes >= 4, got 3/);
  });

  it('splitLines reads an async stream to its end', async () => {
    async function* chunks() {
      yield Buffer.from('first\nsec');
      yield Buffer.from('ond\r');
      yield Buffer.from('\nthird');
    }
    const lines: OutputLine[] = [];
    for await (const line of splitLines(chunks(), 16)) lines.push(line);
    expect(texts(lines)).toEqual(['first', 'second', 'third']);
  });
});

/** Docker's multiplexed framing: [stream, 0, 0, 0, size uint32 BE] + payload. */
function frame(stream: 1 | 2, payload: string): Buffer {
  const body = Buffer.from(payload);
  const header = Buffer.alloc(8);
  header[0] = stream;
  header.writeUInt32BE(body.length, 4);
  return Buffer.concat([header, body]);
}

async function collect(chunks: Buffer[]): Promise<string> {
  async function* source() {
    yield* chunks;
  }
  const parts: Buffer[] = [];
  for await (const payload of demuxDockerStream(source())) parts.push(Buffer.from(payload));
  return Buffer.concat(parts).toString();
}

describe('demuxDockerStream', () => {
  const stream = Buffer.concat([frame(1, 'out one\n'), frame(2, 'err\n'), frame(1, ''), frame(1, 'out two\n')]);

  it('yields the payloads of stdout and stderr in order, whatever the chunking', async () => {
    for (const chunks of everySplit(stream)) expect(await collect(chunks)).toBe('out one\nerr\nout two\n');
    expect(await collect([...stream].map((b) => Buffer.from([b])))).toBe('out one\nerr\nout two\n');
  });

  it('fails on a stream that ends inside a frame', async () => {
    await expect(collect([stream.subarray(0, 11)])).rejects.toThrow(/ended inside a frame \(5 payload bytes missing\)/);
    await expect(collect([stream.subarray(0, 3)])).rejects.toThrow(/ended inside a frame \(3 header bytes\)/);
  });
});
