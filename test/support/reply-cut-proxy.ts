import { createServer, connect, type Socket } from 'node:net';

/**
 * A loopback TCP proxy in front of a Redis server that can lose one reply: the command reaches the server and
 * runs, and the connection breaks before its answer gets back. That is what a client sees when Redis stops (it
 * runs the commands it has read and exits without writing their replies) or the path between them breaks.
 */
export interface ReplyCutProxy {
  url: string;
  /**
   * Cuts the connection that next sends a chunk `matches` accepts, once the server has answered it. Resolves
   * when it has. The server's answers to that connection after the match are never delivered.
   */
  cutAfterReplyTo(matches: (request: Buffer) => boolean): Promise<void>;
  close(): Promise<void>;
}

// Sent behind the matched command on the same connection: Redis answers in order, so +PONG arriving means the
// matched command has run and been answered.
const MARKER = Buffer.from('*1\r\n$4\r\nPING\r\n');
const MARKER_REPLY = '+PONG\r\n';

export async function startReplyCutProxy(target: { host: string; port: number }): Promise<ReplyCutProxy> {
  const sockets = new Set<Socket>();
  let armed: { matches: (request: Buffer) => boolean; done: () => void } | undefined;

  const server = createServer((client) => {
    const upstream = connect(target.port, target.host);
    sockets.add(client).add(upstream);
    let cutting: { held: string; done: () => void } | undefined;
    const drop = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('data', (chunk: Buffer) => {
      if (cutting) return;
      upstream.write(chunk);
      if (armed?.matches(chunk)) {
        cutting = { held: '', done: armed.done };
        armed = undefined;
        upstream.write(MARKER);
      }
    });
    upstream.on('data', (chunk: Buffer) => {
      if (!cutting) {
        client.write(chunk);
        return;
      }
      cutting.held += chunk.toString('latin1');
      if (!cutting.held.endsWith(MARKER_REPLY)) return;
      drop();
      cutting.done();
    });
    client.on('error', drop).on('close', drop);
    upstream.on('error', drop).on('close', drop);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (!address || typeof address === 'string') throw new Error('reply-cut proxy has no port');

  return {
    url: `redis://127.0.0.1:${address.port}`,
    cutAfterReplyTo(matches) {
      return new Promise<void>((done) => {
        armed = { matches, done };
      });
    },
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
