/**
 * Replicated Redis topologies on loopback, for the failover and Cluster tests and the bench: a
 * primary with a replica watched by three sentinels, and a three-primary Cluster made with
 * `redis-cli --cluster create`. Every server is a child of the test, in a temp dir it removes.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Redis } from 'ioredis';
import { freePort, TEST_SERVER_ARGS } from './redis.ts';

const run = promisify(execFile);

interface Server {
  port: number;
  child: ChildProcess;
  exited: Promise<void>;
}

function launch(command: string, args: string[]): Server & { port: number } {
  const child = spawn(command, args, { stdio: 'ignore' });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const port = Number(args[args.indexOf('--port') + 1] ?? 0);
  return { port, child, exited };
}

/** Resolves once the server answers PING (or `check` passes); rejects if it exits first. */
async function until(server: Server, check: (client: Redis) => Promise<boolean> = async () => true, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    if (server.child.exitCode !== null) throw new Error(`server on port ${server.port} exited with code ${server.child.exitCode}`);
    const client = new Redis({
      port: server.port,
      host: '127.0.0.1',
      lazyConnect: true,
      maxRetriesPerRequest: 0,
      retryStrategy: () => null,
    });
    client.on('error', () => {});
    try {
      await client.connect();
      if (await check(client)) return;
    } catch (error) {
      last = error;
    } finally {
      client.disconnect();
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`server on port ${server.port} not ready: ${String(last ?? 'check never passed')}`);
}

/** Kills a topology's servers and removes its folder (their data, logs and configs). */
async function tearDown(servers: Server[], dir: string): Promise<void> {
  await Promise.all(
    servers.map(async (s) => {
      if (s.child.exitCode === null && s.child.signalCode === null) s.child.kill('SIGKILL');
      await s.exited;
    }),
  );
  rmSync(dir, { recursive: true, force: true });
}

export interface SentinelTopology {
  /** The name the sentinels monitor (REDIS_SENTINEL_NAME). */
  name: string;
  sentinels: { host: string; port: number }[];
  /** REDIS_SENTINELS. */
  sentinelList: string;
  /** The port of the primary as the sentinels see it now. */
  primaryPort(): Promise<number>;
  /**
   * kill -9 of the current primary; resolves with the promotion that follows, timed from the kill to
   * the sentinels' `+switch-master` (the failover time).
   */
  killPrimary(): Promise<{ killedPort: number; promoted: Promise<{ port: number; failoverMs: number }> }>;
  stop(): Promise<void>;
}

/**
 * One primary, one replica, three sentinels (quorum 2). down-after 1 s: a killed primary is promoted
 * away from in about two to three seconds, as fast as Sentinel sensibly goes.
 */
export async function startSentinelTopology(options: { downAfterMs?: number } = {}): Promise<SentinelTopology> {
  const dir = mkdtempSync(join(tmpdir(), 'fleet-test-sentinel-'));
  const name = 'fleetprimary';
  const servers: Server[] = [];
  try {
    const [primaryPort, replicaPort] = [await freePort(), await freePort()];
    const data: Server[] = [];
    for (const [port, extra] of [
      [primaryPort, []],
      [replicaPort, ['--replicaof', '127.0.0.1', String(primaryPort)]],
    ] as const) {
      const server = launch('redis-server', [
        '--port',
        String(port),
        '--dir',
        dir,
        '--appendfilename',
        `aof-${port}`,
        '--appenddirname',
        `aof-${port}`,
        ...TEST_SERVER_ARGS,
        ...extra,
      ]);
      servers.push(server);
      data.push(server);
    }
    await until(data[0]!);
    await until(data[1]!, async (c) => /master_link_status:up/.test(await c.info('replication')));

    const sentinelPorts = [await freePort(), await freePort(), await freePort()];
    for (const port of sentinelPorts) {
      const file = join(dir, `sentinel-${port}.conf`);
      writeFileSync(
        file,
        [
          `port ${port}`,
          'bind 127.0.0.1',
          `dir ${dir}`,
          `sentinel monitor ${name} 127.0.0.1 ${primaryPort} 2`,
          `sentinel down-after-milliseconds ${name} ${options.downAfterMs ?? 1000}`,
          `sentinel failover-timeout ${name} 10000`,
          `sentinel parallel-syncs ${name} 1`,
          '',
        ].join('\n'),
      );
      servers.push(launch('redis-sentinel', [file, '--port', String(port), '--loglevel', 'warning']));
    }
    // Ready when each sentinel knows the replica and the other two sentinels (a quorum can vote).
    for (const sentinel of servers.slice(2)) {
      await until(sentinel, async (c) => {
        const master = (await c.call('SENTINEL', 'MASTER', name)) as string[];
        const field = (k: string) => Number(master[master.indexOf(k) + 1]);
        return field('num-slaves') >= 1 && field('num-other-sentinels') >= 2;
      });
    }
    const sentinels = sentinelPorts.map((port) => ({ host: '127.0.0.1', port }));
    const byPort = new Map(data.map((s) => [s.port, s]));

    const askSentinel = async (): Promise<number> => {
      const client = new Redis({ port: sentinelPorts[0]!, host: '127.0.0.1', lazyConnect: true });
      try {
        await client.connect();
        const [, port] = (await client.call('SENTINEL', 'GET-MASTER-ADDR-BY-NAME', name)) as [string, string];
        return Number(port);
      } finally {
        client.disconnect();
      }
    };

    return {
      name,
      sentinels,
      sentinelList: sentinels.map((s) => `${s.host}:${s.port}`).join(','),
      primaryPort: askSentinel,
      async killPrimary() {
        const killedPort = await askSentinel();
        const primary = byPort.get(killedPort);
        if (!primary) throw new Error(`the primary on ${killedPort} is not one of this topology's servers`);
        // Subscribed before the kill: +switch-master is an event, published once.
        const watcher = new Redis({ port: sentinelPorts[1]!, host: '127.0.0.1' });
        await watcher.subscribe('+switch-master');
        const promoted = new Promise<{ port: number; failoverMs: number }>((resolve, reject) => {
          const timer = setTimeout(() => reject(new Error('no +switch-master within 30 s')), 30_000);
          watcher.on('message', (_channel: string, message: string) => {
            // "<name> <old-ip> <old-port> <new-ip> <new-port>"
            const parts = message.split(' ');
            if (parts[0] !== name) return;
            clearTimeout(timer);
            watcher.disconnect();
            resolve({ port: Number(parts[4]), failoverMs: Date.now() - killedAt });
          });
        });
        const killedAt = Date.now();
        primary.child.kill('SIGKILL');
        await primary.exited;
        return { killedPort, promoted };
      },
      stop: () => tearDown(servers, dir),
    };
  } catch (error) {
    await tearDown(servers, dir);
    throw error;
  }
}

export interface ClusterTopology {
  nodes: { host: string; port: number }[];
  /** REDIS_CLUSTER_NODES. */
  nodeList: string;
  stop(): Promise<void>;
}

/** Three cluster-enabled primaries (no replicas) joined by `redis-cli --cluster create`. */
export async function startClusterTopology(): Promise<ClusterTopology> {
  const dir = mkdtempSync(join(tmpdir(), 'fleet-test-cluster-'));
  const servers: Server[] = [];
  try {
    const ports = [await freePort(), await freePort(), await freePort()];
    for (const port of ports) {
      servers.push(
        launch('redis-server', [
          '--port',
          String(port),
          '--dir',
          dir,
          '--cluster-enabled',
          'yes',
          '--cluster-config-file',
          `nodes-${port}.conf`,
          '--cluster-node-timeout',
          '2000',
          '--appendfilename',
          `aof-${port}`,
          '--appenddirname',
          `aof-${port}`,
          ...TEST_SERVER_ARGS,
        ]),
      );
    }
    for (const server of servers) await until(server);
    await run('redis-cli', ['--cluster', 'create', ...ports.map((p) => `127.0.0.1:${p}`), '--cluster-replicas', '0', '--cluster-yes']);
    // Every node must agree the cluster is whole before a client sees a consistent slot map.
    for (const server of servers) await until(server, async (c) => /cluster_state:ok/.test((await c.call('CLUSTER', 'INFO')) as string));
    const nodes = ports.map((port) => ({ host: '127.0.0.1', port }));
    return {
      nodes,
      nodeList: nodes.map((n) => `${n.host}:${n.port}`).join(','),
      stop: () => tearDown(servers, dir),
    };
  } catch (error) {
    await tearDown(servers, dir);
    throw error;
  }
}
