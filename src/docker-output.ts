/**
 * Reading a container's output from Docker without trusting its size.
 *
 * Why not dockerode's `modem.demuxStream`: it writes every frame into the destination stream without waiting
 * for it to drain, so a consumer that pauses (awaiting Redis) lets the whole output pile up in memory. This
 * demultiplexer is pulled by its consumer; while the consumer waits, the HTTP response is not read and the
 * backlog stays in Docker's log file (which `LogConfig` bounds).
 */

/** Docker's multiplexed stream (TTY off): 8-byte frame headers [stream, 0, 0, 0, size as uint32 BE]. */
const HEADER_BYTES = 8;

/** The payloads of a multiplexed stdout/stderr stream, in order, both streams together. */
export async function* demuxDockerStream(source: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
  const header = Buffer.alloc(HEADER_BYTES);
  let headerHeld = 0;
  let payloadLeft = 0;
  for await (const chunk of source) {
    let at = 0;
    while (at < chunk.length) {
      if (payloadLeft === 0) {
        const take = Math.min(HEADER_BYTES - headerHeld, chunk.length - at);
        header.set(chunk.subarray(at, at + take), headerHeld);
        headerHeld += take;
        at += take;
        if (headerHeld === HEADER_BYTES) {
          payloadLeft = header.readUInt32BE(4);
          headerHeld = 0;
        }
        continue;
      }
      const take = Math.min(payloadLeft, chunk.length - at);
      yield chunk.subarray(at, at + take);
      payloadLeft -= take;
      at += take;
    }
  }
  if (headerHeld !== 0 || payloadLeft !== 0)
    throw new Error(
      `Docker's output stream ended inside a frame (${headerHeld ? `${headerHeld} header bytes` : `${payloadLeft} payload bytes missing`})`,
    );
}
