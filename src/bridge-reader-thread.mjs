// The bridge's subscriber, in a thread of its own (src/bridge-reader.ts starts it). Measured: with
// decoding, validation, sealing and enqueueing on the same event loop, a 20 000 × 2 KiB burst made
// Redis close the subscriber at the stock 32 MB limit, while a subscriber doing nothing else read it
// all. So this thread does nothing else: it reads, hands raw messages to the main thread in
// batches, and keeps the in-process bound (messages handed over but not yet handled). Plain
// JavaScript, so it loads without the TypeScript loader.
import { parentPort, workerData } from 'node:worker_threads';
import { Cluster, Redis } from 'ioredis';

const { spec, channels, maxMessages, maxBytes } = workerData;

// `spec` is what src/redis-connection.ts's connectionSpec decided for a subscriber (plain data, so
// it crossed into this thread); this adds the functions openConnection adds there: a demoted
// primary's READONLY means a failover happened, so reconnect (Sentinel then names the new primary);
// and reconnect at most a second apart, so the bridge hears again soon after a promotion.
// A Cluster subscribes on one node: classic pub/sub reaches every node.
const reconnectOnError = (error) => (error.message.startsWith('READONLY') ? 2 : false);
const retryStrategy = (times) => Math.min(times * 100, 1_000);
const functions = { reconnectOnError, retryStrategy };
const redis =
  spec.kind === 'cluster'
    ? new Cluster(spec.nodes, { ...spec.options, redisOptions: { ...spec.options.redisOptions, ...functions } })
    : spec.kind === 'single'
      ? new Redis(spec.url, { ...spec.options, ...functions })
      : new Redis({ ...spec.options, ...functions });
const ID = /"request_id"\s*:\s*"([A-Za-z0-9._-]{1,128})"/;

let inTransitMessages = 0;
let inTransitBytes = 0;
let subscribed = false;
let stopping = false;
let batch = [];
let transfer = [];
let flushScheduled = false;

const post = (event, list) => parentPort.postMessage(event, list);
const flush = () => {
  flushScheduled = false;
  if (!batch.length) return;
  post({ type: 'messages', messages: batch }, transfer);
  batch = [];
  transfer = [];
};

redis.on('messageBuffer', (channelBuffer, raw) => {
  const channel = channelBuffer.toString();
  if (inTransitMessages >= maxMessages || inTransitBytes + raw.length > maxBytes) {
    // Full: dropped here, reported with the id its first bytes name so the main thread answers it.
    const id = ID.exec(raw.subarray(0, 4096).toString('utf8'))?.[1] ?? null;
    post({ type: 'dropped', channel, requestId: id, bytes: raw.length, inTransit: inTransitMessages, inTransitBytes });
    return;
  }
  inTransitMessages++;
  inTransitBytes += raw.length;
  // A buffer that owns its memory moves to the main thread without a copy.
  const owns = raw.byteOffset === 0 && raw.byteLength === raw.buffer.byteLength && raw.byteLength >= 65536;
  const data = owns ? raw : new Uint8Array(raw);
  batch.push({ channel, raw: data });
  if (owns) transfer.push(data.buffer);
  if (!flushScheduled) {
    flushScheduled = true;
    setImmediate(flush);
  }
});

redis.on('close', () => {
  if (stopping || !subscribed) return;
  subscribed = false;
  post({ type: 'disconnected', at: Date.now() });
});
redis.on('ready', () => {
  if (stopping || subscribed) return;
  // ioredis resubscribes by itself; subscribing again and awaiting it tells when Redis confirmed.
  redis.subscribe(...channels).then(
    () => {
      if (stopping || subscribed) return;
      subscribed = true;
      post({ type: 'resubscribed', at: Date.now() });
    },
    (error) => post({ type: 'error', message: `resubscribe failed: ${error.message}` }),
  );
});
redis.on('error', (error) => post({ type: 'error', message: error.message }));

parentPort.on('message', async (message) => {
  if (message.type === 'handled') {
    inTransitMessages -= message.count;
    inTransitBytes -= message.bytes;
  } else if (message.type === 'stop') {
    stopping = true;
    subscribed = false;
    await redis.unsubscribe(...channels).catch(() => {});
    flush();
    redis.disconnect();
    post({ type: 'stopped' });
    parentPort.close();
  }
});

try {
  await redis.subscribe(...channels);
  subscribed = true;
  post({ type: 'subscribed' });
} catch (error) {
  post({ type: 'failed', message: error.message });
}
