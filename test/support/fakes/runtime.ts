/**
 * An in-memory {@link ContainerRuntime} whose containers print scripted lines and exit with a
 * scripted code, or run until killed; and {@link ManualTimers}, a run timeout a test fires by hand.
 * Both record what the processor did to them, so a test asserts on calls, not on timing.
 */
import { randomBytes } from 'node:crypto';
import type {
  ContainerRuntime,
  ContainerSpec,
  ContainerSummary,
  ExitState,
  InputFile,
  OutputLine,
  WorkerContainer,
} from '../../../src/container-runtime.ts';
import { EVENT_PREFIX } from '../../../src/events.ts';
import type { RunTimers } from '../../../src/run-worker.ts';

/** What one container does, chosen per container from its spec (so a fix worker can differ from a task worker). */
export interface ContainerScript {
  /** Output lines, in order; use {@link eventLine} for protocol events. */
  lines?: string[];
  /** Exit code once the lines are out. @defaultValue 0 */
  exitCode?: number;
  /** After its lines the container runs until it is killed (then exits 137, as Docker reports SIGKILL). */
  hang?: boolean;
  /** `create` throws this instead of making a container (a Docker failure). */
  createError?: Error;
  /** The memory limit killed it: exits 137 after its lines and reports OOMKilled, as Docker does. */
  oomKilled?: boolean;
  /** Its output stream breaks with this after its lines (the Docker daemon went away mid-run). */
  streamError?: Error;
}

/** A `::fleet-event:: {json}` output line. */
export function eventLine(event: Record<string, unknown>): string {
  return `${EVENT_PREFIX}${JSON.stringify(event)}`;
}

export const completedEvent = (
  fields: { commit_sha?: string | null; branch?: string | null; files_changed?: string[]; summary?: string | null } = {},
) => eventLine({ event_type: 'completed', commit_sha: 'c0ffee', branch: null, files_changed: ['a.txt'], summary: 'done', ...fields });

export const failedEvent = (error_type: string, error_message: string) =>
  eventLine({ event_type: 'failed', error_type, error_message, logs_tail: null });

function deferred<T>() {
  let resolve!: (value: T) => void;
  let reject!: (error: Error) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  // A rejection nobody awaits (the run ended on the stream's error first) is not an unhandled one.
  promise.catch(() => {});
  return { promise, resolve, reject };
}

export class FakeContainer implements WorkerContainer {
  readonly id = randomBytes(32).toString('hex');
  started = false;
  killed = false;
  /** Times remove() was called (the processor must call it at least once, whatever happened). */
  removed = 0;
  private readonly killSignal = deferred<void>();
  private readonly exit = deferred<number>();

  constructor(
    readonly spec: ContainerSpec,
    readonly files: InputFile[],
    private readonly script: ContainerScript,
    private readonly onStart: (c: FakeContainer) => void,
  ) {}

  async start(): Promise<void> {
    this.started = true;
    this.onStart(this);
  }

  async *lines(maxLineBytes: number): AsyncIterable<OutputLine> {
    for (const line of this.script.lines ?? []) {
      if (this.killed) break;
      const bytes = Buffer.from(line, 'utf8');
      yield bytes.length > maxLineBytes
        ? { text: bytes.subarray(0, maxLineBytes).toString('utf8'), droppedBytes: bytes.length - maxLineBytes }
        : { text: line, droppedBytes: 0 };
    }
    if (this.script.streamError) {
      this.exit.reject(this.script.streamError);
      throw this.script.streamError;
    }
    if (this.script.hang && !this.killed) await this.killSignal.promise;
    this.exit.resolve(this.killed || this.script.oomKilled ? 137 : (this.script.exitCode ?? 0));
  }

  wait(): Promise<number> {
    return this.exit.promise;
  }

  /** Times exitState() was read. */
  exitStateReads = 0;
  async exitState(): Promise<ExitState> {
    this.exitStateReads++;
    return { oomKilled: this.script.oomKilled === true };
  }

  async kill(): Promise<void> {
    this.killed = true;
    this.killSignal.resolve();
  }

  async remove(): Promise<void> {
    this.removed++;
  }
}

export class FakeRuntime implements ContainerRuntime {
  /** Every container made, in order. */
  readonly containers: FakeContainer[] = [];
  /** Specs `create` was called with, including calls that threw. */
  readonly createCalls: ContainerSpec[] = [];
  private readonly startWaiters: ((c: FakeContainer) => void)[] = [];

  constructor(private readonly script: (spec: ContainerSpec) => ContainerScript = () => ({ lines: [completedEvent()] })) {}

  async create(spec: ContainerSpec, files: InputFile[]): Promise<WorkerContainer> {
    this.createCalls.push(spec);
    const script = this.script(spec);
    if (script.createError) throw script.createError;
    const container = new FakeContainer(spec, files, script, (c) => {
      for (const w of this.startWaiters.splice(0)) w(c);
    });
    this.containers.push(container);
    return container;
  }

  /** Resolves when the next container starts: call it before the processor gets that far. */
  nextStart(): Promise<FakeContainer> {
    return new Promise((resolve) => this.startWaiters.push(resolve));
  }

  async list(): Promise<ContainerSummary[]> {
    return this.containers
      .filter((c) => c.removed === 0)
      .map((c) => ({ id: c.id, labels: c.spec.labels, state: c.killed ? 'exited' : 'running' }));
  }
  async removeById(id: string): Promise<void> {
    const found = this.containers.find((c) => c.id === id);
    if (found) found.removed++;
  }
  async ping(): Promise<void> {
    if (this.probeError) throw this.probeError;
  }
  /** What `probeCreate` and `ping` throw while set (a host fault that has not cleared yet). */
  probeError: Error | null = null;
  probes = 0;
  async probeCreate(): Promise<void> {
    this.probes++;
    if (this.probeError) throw this.probeError;
  }
  async hasImage(): Promise<boolean> {
    return true;
  }
  async volumeSize(): Promise<number | null> {
    return null;
  }
  async removeVolume(): Promise<void> {}
}

/** The run timeout, fired by the test: a job times out without anyone waiting for it. */
export class ManualTimers implements RunTimers {
  readonly armed: { ms: number; fire: () => void; live: boolean }[] = [];
  private readonly waiters: (() => void)[] = [];

  after(ms: number, fire: () => void): () => void {
    const timer = { ms, fire, live: true };
    this.armed.push(timer);
    for (const w of this.waiters.splice(0)) w();
    return () => {
      timer.live = false;
    };
  }

  /** Resolves once a timer is armed (at once if one is). */
  async nextArmed(): Promise<void> {
    if (this.armed.some((t) => t.live)) return;
    await new Promise<void>((resolve) => this.waiters.push(resolve));
  }

  /** Fires every armed timer as if its time had come; returns how many fired. */
  fireAll(): number {
    const live = this.armed.filter((t) => t.live);
    for (const t of live) {
      t.live = false;
      t.fire();
    }
    return live.length;
  }
}
