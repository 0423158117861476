import { randomBytes } from 'node:crypto';
import type { Readable } from 'node:stream';
import Docker from 'dockerode';
import { pack } from 'tar-stream';
import { DaemonWatch } from './daemon-watch.ts';
import { demuxDockerStream } from './docker-output.ts';
import { DiskFullError, DockerUnavailableError, isHostFault, SpawnError } from './errors.ts';
import type { ContainerRuntime, ContainerSpec, ContainerSummary, InputFile, OutputLine, WorkerContainer } from './container-runtime.ts';
import { splitLines } from './line-splitter.ts';

/** Label of the throwaway containers `probeCreate` makes (never a worker). */
const PROBE_LABEL = 'fleet.probe';
const PROBE_BYTES = 256 * 1024;
/** Events a daemon keeps in memory (moby's eventsLimit); fewer since a time means none since then was dropped. */
const DAEMON_EVENT_BUFFER = 256;

interface DockerError extends Error {
  statusCode?: number;
  code?: string;
  json?: { message?: string };
}

/** How a connection to a daemon that stopped or restarted fails: refused, reset, or cut mid-request. */
const UNREACHABLE_CODES = new Set(['ECONNREFUSED', 'ENOENT', 'ECONNRESET', 'EPIPE', 'ECONNABORTED']);

/**
 * Turns a Docker failure into a SpawnError an operator can act on. An unreachable daemon and a full
 * disk are this host's faults (HostFaultError: the job goes elsewhere or waits, spending no attempt);
 * other 5xx errors may pass (retryable); a missing image or runtime will not fix itself.
 */
export function classifyDockerError(error: unknown, spec?: Pick<ContainerSpec, 'image' | 'runtime'>): SpawnError {
  if (error instanceof SpawnError) return error;
  const e = error as DockerError;
  const detail = e.json?.message ?? e.message ?? String(error);
  if (e.code === 'EACCES') {
    return new SpawnError(
      `the Docker daemon cannot be reached (${e.code}): start dockerd or set FLEET_DOCKER_HOST / DOCKER_HOST to a running daemon`,
      true,
      { cause: error },
    );
  }
  if ((e.code && UNREACHABLE_CODES.has(e.code)) || /socket hang up|daemon is shutting down/i.test(detail)) {
    return new DockerUnavailableError(
      `the Docker daemon cannot be reached (${e.code ?? detail}): start dockerd or set FLEET_DOCKER_HOST / DOCKER_HOST to a running daemon`,
      { cause: error },
    );
  }
  if (/no space left on device/i.test(detail)) {
    return new DiskFullError(`Docker's disk on this host is full (${detail}): free space under Docker's data root`, { cause: error });
  }
  if (e.statusCode === 404 && /image/i.test(detail)) {
    return new SpawnError(
      `the worker image ${spec?.image ?? ''} is not on this host (${detail}): build it with worker-image/build.sh or set FLEET_WORKER_IMAGE`,
      false,
      { cause: error },
    );
  }
  if (/runtime/i.test(detail) && /(unknown|invalid|not found)/i.test(detail)) {
    return new SpawnError(
      `Docker does not know the runtime ${spec?.runtime ?? ''} (${detail}): install sysbox on this host (deploy/install-sysbox.sh) or set FLEET_RUNTIME=runc`,
      false,
      { cause: error },
    );
  }
  if (e.statusCode === 409) return new SpawnError(`Docker conflict: ${detail}`, true, { cause: error });
  if (e.statusCode !== undefined && e.statusCode >= 400 && e.statusCode < 500) {
    return new SpawnError(`Docker refused the worker container: ${detail}`, false, { cause: error });
  }
  return new SpawnError(`Docker failed: ${detail}`, true, { cause: error });
}

async function tarOf(files: InputFile[]): Promise<Buffer> {
  const archive = pack();
  const dirs = new Set<string>();
  for (const file of files) {
    const parts = file.path.replace(/^\/+/, '').split('/');
    for (let i = 1; i < parts.length; i++) dirs.add(parts.slice(0, i).join('/'));
  }
  for (const dir of [...dirs].sort()) archive.entry({ name: `${dir}/`, type: 'directory', mode: 0o755 });
  for (const file of files) {
    archive.entry({ name: file.path.replace(/^\/+/, ''), mode: file.mode ?? 0o644 }, Buffer.from(file.content, 'utf8'));
  }
  archive.finalize();
  const chunks: Buffer[] = [];
  for await (const chunk of archive) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** Options of the Docker runtime that tests change. */
export interface DockerRuntimeOptions {
  dockerHost?: string;
  /** How often a run in flight checks its daemon (src/daemon-watch.ts); 0 turns the watch off. @defaultValue 1 s */
  watchIntervalMs?: number;
}

class DockerWorkerContainer implements WorkerContainer {
  private removed = false;
  private output: Readable | undefined;
  private readonly watch: DaemonWatch | undefined;
  /** Rejects when the watch finds the daemon gone: a `wait` that would hang gives up. */
  private readonly lost: Promise<never>;
  private loseRun: (error: Error) => void = () => {};
  constructor(
    private readonly docker: Docker,
    private readonly container: Docker.Container,
    private readonly spec: ContainerSpec,
    watchIntervalMs: number | undefined,
  ) {
    this.lost = new Promise<never>((_resolve, reject) => {
      this.loseRun = reject;
    });
    this.lost.catch(() => {});
    if (watchIntervalMs === 0) return;
    this.watch = new DaemonWatch({
      intervalMs: watchIntervalMs,
      running: async (signal) => {
        try {
          const info = await this.container.inspect({ abortSignal: signal });
          return info.State.Running === true;
        } catch (error) {
          // Removed by someone else: its `wait` returns on its own.
          if ((error as DockerError).statusCode === 404) return false;
          throw error;
        }
      },
      outage: (cause) => {
        const e = classifyDockerError(cause, this.spec);
        return isHostFault(e)
          ? e
          : new DockerUnavailableError(
              `the Docker daemon stopped answering during the run (${(e as Error).message}): not the task's failure`,
              {
                cause,
              },
            );
      },
      onLost: (error) => {
        // Both can hang on a daemon that died: the stream is cut with the error, the wait rejects with it.
        this.output?.destroy(error);
        this.loseRun(error);
      },
    });
  }

  get id() {
    return this.container.id;
  }

  async start() {
    try {
      // Attached before the start, as `docker run` does, so the stream holds the output from its first byte.
      // Unlike following the log file, attaching is paced by its reader: while fleet does not read, the
      // worker's writes block, so nothing piles up here and nothing is lost to Docker's log rotation.
      this.output = (await this.container.attach({ stream: true, stdout: true, stderr: true })) as unknown as Readable;
      await this.container.start();
      this.watch?.start();
    } catch (error) {
      this.closeOutput();
      throw classifyDockerError(error, this.spec);
    }
  }

  async *lines(maxLineBytes: number): AsyncIterable<OutputLine> {
    if (!this.output) throw new Error('lines() needs start(): the output is attached when the container starts');
    // Pulled chunk by chunk: memory holds one chunk and one capped line, whatever the container prints.
    try {
      yield* splitLines(demuxDockerStream(this.output), maxLineBytes);
    } catch (error) {
      // A daemon that goes away mid-run breaks the attached stream.
      throw classifyDockerError(error, this.spec);
    }
  }

  async wait() {
    try {
      const { StatusCode } = (await Promise.race([this.container.wait(), this.lost])) as { StatusCode: number };
      this.watch?.waitReturned();
      return StatusCode;
    } catch (error) {
      // The wait is one long request: a daemon that stops or restarts mid-run cuts it.
      throw classifyDockerError(error, this.spec);
    }
  }

  async exitState() {
    let killedFromOutside: boolean;
    let oomKilled: boolean;
    try {
      const info = await this.container.inspect();
      oomKilled = info.State.OOMKilled === true;
      killedFromOutside = !oomKilled && (await this.killedSince(info.State.StartedAt));
    } catch (error) {
      throw classifyDockerError(error, this.spec);
    } finally {
      this.watch?.stop();
    }
    // The daemon was away at some point of the run: whatever killed the worker, the task did not fail.
    if (!oomKilled && this.watch?.lost) throw this.watch.lost;
    // Read only when fleet did not stop the container: a kill someone else sent is, in practice, dockerd stopping
    // its containers to shut down or restart (the API still answers while it waits out their stop timeout).
    if (killedFromOutside) {
      throw new DockerUnavailableError(
        "the Docker daemon stopped the worker container (it is shutting down or restarting, or someone ran docker stop/kill): not the task's failure",
      );
    }
    return { oomKilled };
  }

  /**
   * Whether Docker recorded a `kill` of this container since it started, or cannot tell because it restarted
   * since (its event log is kept in memory). A restart is told from the log itself: it lacks the container's
   * own `start` event although it holds fewer events than the daemon keeps, so none since the start was dropped.
   */
  private async killedSince(startedAt: string): Promise<boolean> {
    const since = Math.floor(Date.parse(startedAt) / 1000);
    const ours = await this.eventsSince(since, { container: [this.container.id], event: ['start', 'kill'] });
    if (ours.some((e) => e.Action === 'kill')) return true;
    if (ours.some((e) => e.Action === 'start')) return false;
    return (await this.eventsSince(since, {})).length < DAEMON_EVENT_BUFFER;
  }

  private async eventsSince(since: number, filters: Record<string, string[]>): Promise<{ Action?: string }[]> {
    const stream = (await this.docker.getEvents({
      since,
      // Now, not later: the daemon holds the answer open until `until`. (A shutdown's kill comes a stop timeout,
      // 20 s, before the exit, so the current second's events are not needed.)
      until: Math.floor(Date.now() / 1000),
      filters,
    })) as unknown as Readable;
    let text = '';
    for await (const chunk of stream) {
      text += chunk.toString();
      if (text.length > 1024 * 1024) break;
    }
    stream.destroy();
    return text
      .split('\n')
      .filter((line) => line.trim())
      .map((line) => JSON.parse(line) as { Action?: string });
  }

  async kill() {
    try {
      await this.container.kill();
    } catch (error) {
      const e = error as DockerError;
      if (e.statusCode === 404 || e.statusCode === 409) return; // gone, or not running: already what we want
      throw classifyDockerError(error, this.spec);
    }
  }

  async remove(options: { graceMs?: number } = {}) {
    if (this.removed) return;
    this.watch?.stop();
    this.closeOutput();
    if (options.graceMs) await this.exitWithin(options.graceMs);
    await removeContainer(this.docker, this.container.id);
    this.removed = true;
  }

  /** Waits up to `ms` for the container to stop by itself; a daemon that errs or hangs only ends the wait. */
  private async exitWithin(ms: number) {
    let timer: NodeJS.Timeout | undefined;
    const expired = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, ms);
    });
    await Promise.race([this.container.wait({ condition: 'not-running' }).catch(() => {}), expired]);
    clearTimeout(timer);
  }

  private closeOutput() {
    this.output?.destroy();
  }
}

async function removeContainer(docker: Docker, id: string) {
  try {
    await docker.getContainer(id).remove({ force: true, v: true });
  } catch (error) {
    const e = error as DockerError;
    // 404: already gone; 409 "removal already in progress": someone else is removing it.
    if (e.statusCode === 404 || e.statusCode === 409) return;
    throw classifyDockerError(error);
  }
}

/** CgroupnsMode is missing from @types/dockerode's HostConfig; the Engine API has it since 1.41. */
function hostConfig(spec: ContainerSpec): Docker.HostConfig {
  const config: Docker.HostConfig & { CgroupnsMode?: string } = {
    Runtime: spec.runtime,
    Memory: spec.memoryBytes,
    NanoCpus: spec.nanoCpus,
    PidsLimit: spec.pidsLimit,
    NetworkMode: spec.network,
    AutoRemove: false,
    CapAdd: spec.capAdd.length ? spec.capAdd : undefined,
    SecurityOpt: spec.securityOpt.length ? spec.securityOpt : undefined,
    CgroupnsMode: spec.cgroupnsMode,
    Mounts: [
      ...Object.entries(spec.volumes).map(([source, target]) => ({ Type: 'volume' as const, Source: source, Target: target })),
      // Read-only: a unix socket in it still connects; the container cannot replace it.
      ...Object.entries(spec.binds ?? {}).map(([source, target]) => ({
        Type: 'bind' as const,
        Source: source,
        Target: target,
        ReadOnly: true,
      })),
      ...Object.entries(spec.writableBinds ?? {}).map(([source, target]) => ({ Type: 'bind' as const, Source: source, Target: target })),
    ],
    // Set explicitly: the daemon's default driver may keep everything (json-file without max-size does).
    LogConfig: { Type: 'json-file', Config: { 'max-size': String(spec.log.maxFileBytes), 'max-file': String(spec.log.maxFiles) } },
  };
  return config;
}

export function createDockerRuntime(options: DockerRuntimeOptions = {}): ContainerRuntime {
  const docker = options.dockerHost ? dockerFromHost(options.dockerHost) : new Docker();
  return {
    async create(spec, files) {
      let container: Docker.Container;
      try {
        container = await docker.createContainer({
          name: spec.name,
          Image: spec.image,
          Env: Object.entries(spec.env).map(([k, v]) => `${k}=${v}`),
          Labels: spec.labels,
          Tty: false,
          OpenStdin: false,
          // A worker's inner dockerd needs time to shut down cleanly, or its cache volume is left unusable.
          StopTimeout: 20,
          HostConfig: hostConfig(spec),
        });
      } catch (error) {
        throw classifyDockerError(error, spec);
      }
      try {
        if (files.length) await container.putArchive(await tarOf(files), { path: '/' });
      } catch (error) {
        await removeContainer(docker, container.id).catch(() => {});
        throw classifyDockerError(error, spec);
      }
      return new DockerWorkerContainer(docker, container, spec, options.watchIntervalMs);
    },

    async list(labels) {
      try {
        const found = await docker.listContainers({
          all: true,
          filters: { label: Object.entries(labels).map(([k, v]) => `${k}=${v}`) },
        });
        return found.map((c): ContainerSummary => ({ id: c.Id, labels: c.Labels ?? {}, state: c.State }));
      } catch (error) {
        throw classifyDockerError(error);
      }
    },

    removeById: (id) => removeContainer(docker, id),

    async rename(id, name) {
      try {
        await docker.getContainer(id).rename({ name });
      } catch (error) {
        throw classifyDockerError(error);
      }
    },

    async ping() {
      try {
        await docker.ping();
      } catch (error) {
        throw classifyDockerError(error);
      }
    },

    async volumeSize(name) {
      try {
        // The per-volume size is only in the disk-usage report; Docker computes it on request.
        const usage = (await docker.df()) as { Volumes?: { Name: string; UsageData?: { Size: number } }[] };
        const volume = usage.Volumes?.find((v) => v.Name === name);
        return volume ? Math.max(0, volume.UsageData?.Size ?? 0) : null;
      } catch (error) {
        throw classifyDockerError(error);
      }
    },

    async removeVolume(name) {
      try {
        await docker.getVolume(name).remove({ force: true });
      } catch (error) {
        if ((error as DockerError).statusCode === 404) return;
        throw classifyDockerError(error);
      }
    },

    async probeCreate(image) {
      const spec = { image, runtime: 'runc' };
      let container: Docker.Container;
      try {
        container = await docker.createContainer({
          name: `fleet-probe-${randomBytes(6).toString('hex')}`,
          Image: image,
          Labels: { [PROBE_LABEL]: '1' },
          HostConfig: { NetworkMode: 'none', LogConfig: { Type: 'none', Config: {} } },
        });
      } catch (error) {
        throw classifyDockerError(error, spec);
      }
      try {
        // About the size of a worker's input files: a disk that takes this takes theirs.
        await container.putArchive(await tarOf([{ path: '/tmp/fleet-probe', content: 'x'.repeat(PROBE_BYTES) }]), { path: '/' });
      } catch (error) {
        throw classifyDockerError(error, spec);
      } finally {
        await removeContainer(docker, container.id).catch(() => {});
      }
    },

    async runtimes() {
      try {
        const info = (await docker.info()) as { Runtimes?: Record<string, unknown> };
        return Object.keys(info.Runtimes ?? {});
      } catch (error) {
        throw classifyDockerError(error);
      }
    },

    async hasImage(image) {
      try {
        await docker.getImage(image).inspect();
        return true;
      } catch (error) {
        if ((error as DockerError).statusCode === 404) return false;
        throw classifyDockerError(error);
      }
    },
  };
}

function dockerFromHost(host: string): Docker {
  if (host.startsWith('unix://')) return new Docker({ socketPath: host.slice('unix://'.length) });
  const url = new URL(host.replace(/^tcp:/, 'http:'));
  return new Docker({ host: url.hostname, port: Number(url.port || 2375), protocol: url.protocol === 'https:' ? 'https' : 'http' });
}
