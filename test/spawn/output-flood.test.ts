import { execFileSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { ContainerRuntime, ContainerSpec } from '../../src/container-runtime.ts';
import { createDockerRuntime } from '../../src/docker-runtime.ts';
import { createLogger } from '../../src/logger.ts';
import type { ContainerEvent } from '../../src/protocol.ts';
import { runWorker } from '../../src/run-worker.ts';
import { describeDocker, removeContainersWithLabel, testImage } from '../support/docker.ts';
import { completedLine, uid } from '../support/fleet.ts';

const MIB = 1024 * 1024;
const FLOOD_BYTES = 100 * MIB;
const LOG_FILE_BYTES = 4 * MIB;

/** Sizes of Docker's json-file log of a container (the current file and its rotated ones). */
function dockerLogFiles(id: string): number[] {
  const logPath = execFileSync('docker', ['inspect', '--format', '{{.LogPath}}', id], { encoding: 'utf8' }).trim();
  const dir = dirname(logPath);
  return readdirSync(dir)
    .filter((name) => name.startsWith(basename(logPath)))
    .map((name) => statSync(join(dir, name)).size);
}

/**
 * What an agent can do to the host that reads it: print 100 MiB without a newline. The reading side
 * (this process: Docker runtime + runWorker) must hold only a bounded piece of it, and the output after
 * it must still arrive.
 */
describeDocker('container output flood (real Docker, busybox worker, network none)', () => {
  let runtime: ContainerRuntime;
  const label = uid('flood');

  beforeAll(() => {
    runtime = createDockerRuntime();
  });
  afterAll(() => removeContainersWithLabel(`fleet.test=${label}`));

  const spec = (): ContainerSpec => ({
    name: uid('fleet-flood'),
    image: testImage(),
    env: {},
    labels: { 'fleet.test': label },
    runtime: 'runc',
    memoryBytes: 256 * MIB,
    nanoCpus: undefined,
    pidsLimit: 64,
    network: 'none',
    capAdd: [],
    securityOpt: [],
    volumes: {},
    // Small, so the flood rotates Docker's log many times while fleet follows it.
    log: { maxFileBytes: LOG_FILE_BYTES, maxFiles: 2 },
  });

  it('holds a 100 MiB line in bounded memory, cuts and marks it, and delivers the lines after it', async () => {
    const task = [
      'echo before',
      // 100 MiB of "x" and no newline until the end.
      `dd if=/dev/zero bs=1048576 count=${FLOOD_BYTES / MIB} 2>/dev/null | tr '\\000' x`,
      'echo',
      'echo after',
      completedLine('flood survived'),
    ].join('\n');
    const container = await runtime.create(spec(), [{ path: '/fleet/input/TASK.md', content: task }]);
    const logLines: string[] = [];
    const events: ContainerEvent[] = [];

    // The reading side is this process: sample its memory while it reads, and keep the peak.
    globalThis.gc?.();
    const base = process.memoryUsage();
    const peak = { heapUsed: base.heapUsed, rss: base.rss };
    let exitCode: number | null = null;
    let logConfig: unknown;
    let logFiles: number[] = [];
    const sampler = setInterval(() => {
      const now = process.memoryUsage();
      peak.heapUsed = Math.max(peak.heapUsed, now.heapUsed);
      peak.rss = Math.max(peak.rss, now.rss);
    }, 10);
    try {
      const outcome = await runWorker(container, {
        timeoutMs: 120_000,
        logger: createLogger({ level: 'silent' }),
        hooks: {
          onEvent: async (event) => void events.push(event),
          onLogLines: async (lines) => void logLines.push(...lines),
        },
      });
      exitCode = outcome.exitCode;
      logConfig = JSON.parse(
        execFileSync('docker', ['inspect', '--format', '{{json .HostConfig.LogConfig}}', container.id], { encoding: 'utf8' }),
      );
      logFiles = dockerLogFiles(container.id);
    } finally {
      clearInterval(sampler);
      await container.remove();
    }
    const heapGrowth = peak.heapUsed - base.heapUsed;
    const rssGrowth = peak.rss - base.rss;
    console.info(
      `flood of ${FLOOD_BYTES} bytes: peak heap growth ${(heapGrowth / MIB).toFixed(1)} MiB, peak RSS growth ${(rssGrowth / MIB).toFixed(1)} MiB`,
    );

    // Unbounded reading holds the whole line (100 MiB as a string, more while it is built).
    expect(heapGrowth).toBeLessThan(32 * MIB);
    // RSS also counts read buffers the collector has not freed yet (about 40 MiB measured): a loose bound.
    expect(rssGrowth).toBeLessThan(96 * MIB);

    expect(logLines[0]).toBe('before');
    // Compared in pieces: a failure message must not print 16 KiB of "x".
    const flood = logLines[1]!;
    expect(flood.length).toBeLessThan(17 * 1024);
    expect(/^x+/.exec(flood)?.[0].length).toBe(16384);
    // Every byte was read (and dropped): Docker's log rotation takes nothing from the attached stream.
    expect(flood.slice(16384)).toBe(`… [line cut at 16384 bytes; ${FLOOD_BYTES - 16384} more dropped]`);
    expect(logLines.slice(2)).toEqual(['after']);
    expect(events).toMatchObject([{ event_type: 'completed', summary: 'flood survived' }]);
    expect(exitCode).toBe(0);

    // Docker's own copy of the 100 MiB stayed within two files of the configured size (plus one log entry).
    expect(logConfig).toEqual({ Type: 'json-file', Config: { 'max-size': String(LOG_FILE_BYTES), 'max-file': '2' } });
    expect(logFiles.length).toBeLessThanOrEqual(2);
    for (const size of logFiles) expect(size).toBeLessThan(LOG_FILE_BYTES + 64 * 1024);
  }, 180_000);
});
