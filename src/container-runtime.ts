/**
 * Launching a worker sits behind this interface; Docker (docker-runtime.ts) is the one real
 * implementation. Processors see only this, so they hold no Docker API calls of their own.
 */

/** Everything needed to create one worker container; built by the pure `buildContainerSpec`. */
export interface ContainerSpec {
  name: string;
  image: string;
  env: Record<string, string>;
  labels: Record<string, string>;
  runtime: string;
  memoryBytes: number;
  nanoCpus: number | undefined;
  pidsLimit: number;
  /** Docker network mode or name; undefined: Docker's default. */
  network: string | undefined;
  capAdd: string[];
  securityOpt: string[];
  cgroupnsMode?: string;
  /** Named volumes: volume name → mount path inside the container. */
  volumes: Record<string, string>;
  /** Host folders bind-mounted read-only: host path → mount path (the egress proxy's socket directory, the git mirror). */
  binds?: Record<string, string>;
  /** Host folders bind-mounted read-write: a warm pool container's /fleet/input, where its claim is written. */
  writableBinds?: Record<string, string>;
  /**
   * Docker's own (json-file) log of the container: rotated at `maxFileBytes`, at most `maxFiles` files. Without
   * a bound, a worker that prints without end fills the host's disk.
   */
  log: { maxFileBytes: number; maxFiles: number };
}

/** One line of a container's output, without its line end. */
export interface OutputLine {
  /** The line's text; for a cut line, its first bytes (up to the cap, whole UTF-8 characters). */
  text: string;
  /** Bytes of the line past the cap that were dropped; 0 for a line that was not cut. */
  droppedBytes: number;
}

/** A file copied into the container before it starts (PROTOCOL §5: never through env). */
export interface InputFile {
  path: string;
  content: string;
  mode?: number;
}

export interface WorkerContainer {
  readonly id: string;
  start(): Promise<void>;
  /**
   * Output lines, stdout and stderr, from the container's start until it exits. No line holds more than
   * `maxLineBytes`: the rest of a longer one is dropped (and counted), never buffered.
   */
  lines(maxLineBytes: number): AsyncIterable<OutputLine>;
  /** Resolves with the exit code when the container stops. */
  wait(): Promise<number>;
  /**
   * How the container ended, read after `wait()`: whether the kernel killed it for its memory limit
   * (an exit code alone cannot tell that from a task that died of SIGKILL).
   */
  exitState(): Promise<ExitState>;
  kill(): Promise<void>;
  /**
   * Removes the container; safe to call twice or on a container already gone. With `graceMs`, a container still
   * running (a worker stopping its inner dockerd) gets that long to exit on its own before it is killed.
   */
  remove(options?: { graceMs?: number }): Promise<void>;
}

export interface ExitState {
  /** The memory limit's OOM killer ended a process of the container (Docker's State.OOMKilled). */
  oomKilled: boolean;
}

export interface ContainerSummary {
  id: string;
  labels: Record<string, string>;
  state: string;
}

export interface ContainerRuntime {
  /** Creates the container and copies the files in; throws SpawnError saying what to do. */
  create(spec: ContainerSpec, files: InputFile[]): Promise<WorkerContainer>;
  list(labels: Record<string, string>): Promise<ContainerSummary[]>;
  removeById(id: string): Promise<void>;
  /** Throws SpawnError when the daemon cannot be reached. */
  ping(): Promise<void>;
  hasImage(image: string): Promise<boolean>;
  /** The container runtimes the daemon knows (`docker info` Runtimes); a host checks its FLEET_RUNTIME against them. */
  runtimes?(): Promise<string[]>;
  /**
   * Creates a throwaway container from `image`, copies a small file in and removes it: whether a worker
   * could be launched now. A host out of rotation for a full disk probes with this; throws as `create` does.
   */
  probeCreate(image: string): Promise<void>;
  /** Bytes a named volume holds; null when it does not exist. */
  volumeSize(name: string): Promise<number | null>;
  removeVolume(name: string): Promise<void>;
  /**
   * Renames a container (a claimed pool container takes its job's container name). Optional: a runtime without
   * it runs no warm pool.
   */
  rename?(id: string, name: string): Promise<void>;
}

/** Labels every worker container carries; `fleet reap` and start-up reaping read them. */
export const LABELS = {
  requestId: 'fleet.request_id',
  host: 'fleet.host',
  job: 'fleet.job',
  /** The BullMQ lock token of the attempt that made the container: only its owner may keep it. */
  lock: 'fleet.lock',
  prefix: 'fleet.prefix',
  /** The warm pool instance (src/warm-pool.ts) that started the container; absent on a job's own container. */
  pool: 'fleet.pool',
} as const;
