/**
 * Dead-host detection: `kill -9` of the spawn host running a job → the job's worker running again on the other
 * host (its first progress event there), with the default lock settings and with 10 s. Not part of `npm run bench`
 * (it takes minutes and needs Docker): `node bin/run-ts.js bench/dead-host.ts`.
 * ROUNDS=n repeats each setting.
 */
import { Redis } from 'ioredis';
import { channels, type FleetEvent } from '../src/protocol.ts';
import { removeContainersWithLabel, testImage } from '../test/support/docker.ts';
import { eventLine, legacyRequest, publishJson, spawnFleetProcess, startTestFleet, testEnv } from '../test/support/fleet.ts';
import { startRedis } from '../test/support/redis.ts';

const SETTINGS = [
  { name: 'defaults (30 s / 30 s)', lock: '30', stalled: '30' },
  { name: '10 s / 10 s', lock: '10', stalled: '10' },
];
const rounds = Number(process.env.ROUNDS ?? 1);

async function measure(url: string, image: string, lock: string, stalled: string): Promise<number> {
  const shared = {
    FLEET_PREFIX: `bench-dead-${Date.now()}`,
    FLEET_HOST_CONCURRENCY: '1',
    FLEET_LOCK_DURATION: lock,
    FLEET_STALLED_INTERVAL: stalled,
  };
  const sub = new Redis(url);
  const progress: { at: number; event: FleetEvent }[] = [];
  let notify: (() => void) | undefined;
  sub.on('message', (_c, message: string) => {
    const event = JSON.parse(message) as FleetEvent;
    if (event.event_type === 'progress') progress.push({ at: Date.now(), event });
    notify?.();
  });
  await sub.subscribe(channels.allEvents);
  const nextProgress = (count: number) =>
    new Promise<number>((resolve) => {
      const check = () => {
        if (progress.length >= count) resolve(progress[count - 1]!.at);
      };
      notify = check;
      check();
    });
  const bridge = await startTestFleet(testEnv(url, image, shared), ['bridge']);
  const doomedEnv = testEnv(url, image, shared);
  const survivorEnv = testEnv(url, image, shared);
  const doomed = spawnFleetProcess(doomedEnv, ['spawn']);
  await doomed.ready;
  const redis = new Redis(url);
  try {
    const request = legacyRequest({
      task_content: `${eventLine({ event_type: 'progress', message: 'working', stage: null, progress_pct: null })}\nsleep 120`,
    });
    await publishJson(redis, channels.spawn, request);
    await nextProgress(1);
    // The survivor is up before the kill, so its start-up is not counted.
    const survivor = spawnFleetProcess(survivorEnv, ['spawn']);
    await survivor.ready;
    const killedAt = Date.now();
    doomed.child.kill('SIGKILL');
    await doomed.exited;
    const rerunAt = await nextProgress(2);
    survivor.child.kill('SIGKILL');
    await survivor.exited;
    return rerunAt - killedAt;
  } finally {
    await bridge.stop();
    redis.disconnect();
    sub.disconnect();
    for (const e of [doomedEnv, survivorEnv]) removeContainersWithLabel(`fleet.host=${e.FLEET_HOST_ID}`);
  }
}

const server = await startRedis();
const image = testImage();
const rows: { setting: string; round: number; kill9_to_rerun_s: number }[] = [];
try {
  for (const s of SETTINGS) {
    for (let round = 1; round <= rounds; round++) {
      const ms = await measure(server.url, image, s.lock, s.stalled);
      rows.push({ setting: s.name, round, kill9_to_rerun_s: Math.round(ms / 100) / 10 });
    }
  }
} finally {
  await server.stop();
}
console.log('\nkill -9 of the host running a job → the job running again on the other host (its first progress event there)');
console.table(rows);
