import { QUEUE_NAMES, type QueueName } from '../../../queues/common.ts';
import { forgetStaleBridges, readBridges, type BridgeStatus } from '../../bridge-registry.ts';
import { forgetStaleHosts, readHosts, type HostStatus } from '../../host-registry.ts';
import { JOB_STATES } from '../../metrics.ts';
import type { OpsContext } from './connect.ts';

export interface FleetStatus {
  prefix: string;
  queues: Record<QueueName, Record<(typeof JOB_STATES)[number], number> & { paused: boolean; global_concurrency: number | null }>;
  hosts: HostStatus[];
  /** Hosts an operator drained: drained now, or will start drained. */
  drained: string[];
  /** Every running bridge: whether it is subscribed, and what it lost (drops, resubscribes, a full inbox). */
  bridges: BridgeStatus[];
  /** Entries waiting in the durable intake stream. */
  intake_entries: number;
}

async function drainedHosts(ops: OpsContext): Promise<string[]> {
  return (await ops.redis.hkeys(ops.keys.drained)).sort();
}

export async function readStatus(ops: OpsContext): Promise<FleetStatus> {
  const names = Object.keys(QUEUE_NAMES) as QueueName[];
  const queues = Object.fromEntries(
    await Promise.all(
      names.map(async (name) => {
        const queue = ops.queue(name);
        const [counts, paused, concurrency] = await Promise.all([
          queue.getJobCounts(...JOB_STATES),
          queue.isPaused(),
          queue.getGlobalConcurrency(),
        ]);
        const byState = Object.fromEntries(JOB_STATES.map((state) => [state, counts[state] ?? 0]));
        return [name, { ...byState, paused, global_concurrency: concurrency }];
      }),
    ),
  ) as FleetStatus['queues'];
  const [hosts, drained, bridges, intake] = await Promise.all([
    readHosts(ops.redis, ops.keys),
    drainedHosts(ops),
    readBridges(ops.redis, ops.keys),
    ops.redis.xlen(ops.keys.intake),
  ]);
  return { prefix: ops.config.prefix, queues, hosts, drained, bridges, intake_entries: intake };
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows
    .map((row) =>
      row
        .map((cell, i) => cell.padEnd(widths[i]!))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

function ago(seconds: number): string {
  if (seconds < 120) return `${seconds}s ago`;
  if (seconds < 7200) return `${Math.round(seconds / 60)}m ago`;
  return `${Math.round(seconds / 3600)}h ago`;
}

export function formatStatus(status: FleetStatus): string {
  const states = ['waiting', 'prioritized', 'delayed', 'active', 'completed', 'failed'] as const;
  const queueRows = [['QUEUE', ...states.map((s) => s.toUpperCase()), 'NOTE']];
  for (const [name, q] of Object.entries(status.queues)) {
    const note = [q.paused ? 'paused' : '', q.global_concurrency ? `global concurrency ${q.global_concurrency}` : '']
      .filter(Boolean)
      .join(', ');
    queueRows.push([name, ...states.map((s) => String(q[s])), note]);
  }
  const lines = [`prefix ${status.prefix}`, '', table(queueRows), ''];
  if (status.hosts.length === 0) {
    lines.push('no spawn host is registered (hosts register while `fleet start --roles spawn` runs)');
  } else {
    const hostRows = [
      ['HOST', 'RUNNING', 'CAP', 'LAST SEEN', 'STATE', 'VERSION', 'PID', 'UP SINCE', 'WARM POOL (idle/size, claims/misses)'],
    ];
    for (const h of status.hosts) {
      const state = h.stale ? 'STALE (no heartbeat)' : h.drained || status.drained.includes(h.host) ? 'drained' : 'ok';
      const warm = h.warm ? `${h.warm.idle}/${h.warm.size}, ${h.warm.claims}/${h.warm.misses}` : 'off';
      hostRows.push([h.host, String(h.running), String(h.cap), ago(h.age_seconds), state, h.version, String(h.pid), h.started_at, warm]);
    }
    lines.push(table(hostRows));
    const totalCap = status.hosts.filter((h) => !h.stale).reduce((sum, h) => sum + h.cap, 0);
    const totalRunning = status.hosts.filter((h) => !h.stale).reduce((sum, h) => sum + h.running, 0);
    lines.push('', `${totalRunning} of ${totalCap} container slots in use on live hosts`);
  }
  const absentDrained = status.drained.filter((d) => !status.hosts.some((h) => h.host === d));
  if (absentDrained.length) lines.push(`drained, not running now (will start drained): ${absentDrained.join(', ')}`);
  lines.push('', ...formatBridges(status));
  return `${lines.join('\n')}\n`;
}

/** Bridges, with what pub/sub lost loudly marked: a drop or a full inbox means requests were lost. */
function formatBridges(status: FleetStatus): string[] {
  const lines: string[] = [];
  if (status.bridges.length === 0) lines.push('no bridge is running (requests published on worker:spawn are lost)');
  else {
    const rows = [['BRIDGE', 'STATE', 'DISCONNECTS', 'RESUBSCRIBES', 'DROPPED', 'INBOX', 'PEAK INBOX', 'LAST SEEN']];
    for (const b of status.bridges) {
      const state = b.stale ? 'STALE (no heartbeat)' : b.subscribed ? 'subscribed' : 'NOT SUBSCRIBED';
      rows.push([
        b.id,
        state,
        String(b.disconnects),
        String(b.resubscribes),
        String(b.dropped),
        String(b.inbox_depth),
        String(b.inbox_peak_depth),
        ago(b.age_seconds),
      ]);
    }
    lines.push(table(rows));
    const lossy = status.bridges.filter((b) => b.disconnects > 0 || b.dropped > 0);
    for (const b of lossy) {
      lines.push(
        `WARNING: bridge ${b.id} lost pub/sub messages: ${b.disconnects} disconnect(s)${b.last_disconnect_at ? `, last at ${b.last_disconnect_at}` : ''}, ` +
          `${b.dropped} dropped from a full inbox (see its log and README "Bursts")`,
      );
    }
  }
  lines.push(`durable intake stream: ${status.intake_entries} entr${status.intake_entries === 1 ? 'y' : 'ies'} waiting`);
  return lines;
}

export async function runStatus(
  ops: OpsContext,
  options: { json: boolean; pruneStale: boolean },
  out: NodeJS.WritableStream,
  err: NodeJS.WritableStream,
): Promise<number> {
  if (options.pruneStale) {
    const gone = [
      ...(await forgetStaleHosts(ops.redis, ops.keys)),
      ...(await forgetStaleBridges(ops.redis, ops.keys)).map((id) => `bridge ${id}`),
    ];
    err.write(gone.length ? `forgot stale host${gone.length > 1 ? 's' : ''}: ${gone.join(', ')}\n` : 'no stale host to forget\n');
  }
  const status = await readStatus(ops);
  out.write(options.json ? `${JSON.stringify(status, null, 2)}\n` : formatStatus(status));
  return 0;
}
