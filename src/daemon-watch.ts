/**
 * Why a run needs a watch on its daemon: a dockerd that dies uncleanly (SIGKILL, OOM, a crash) drops its
 * sockets without finishing the HTTP responses, and the attached output stream and the long `wait` request
 * can then hang forever instead of failing. A daemon that restarts quickly also forgets its event log, which
 * is where fleet reads whether the daemon killed the container. So, while a run is in flight, the container
 * is inspected every second: a daemon that does not answer, or a container that stopped while its `wait`
 * never returned, ends the run as the host's fault, and an outage seen at any point is remembered.
 */

/** How often a run in flight checks its daemon. */
export const DAEMON_WATCH_INTERVAL_MS = 1_000;
/** A daemon that takes longer than this to answer an inspect is treated as gone (a loaded daemon answers in ms). */
export const DAEMON_WATCH_TIMEOUT_MS = 15_000;
/** A container seen stopped for this long while its `wait` has not returned: the `wait` request was lost. */
export const LOST_WAIT_GRACE_MS = 3_000;

export interface DaemonWatchOptions {
  /** Whether the container is still running; throws when the daemon cannot be reached. */
  running(signal: AbortSignal): Promise<boolean>;
  /** Turns a failed check into the error the run ends with (a host fault). */
  outage(cause: unknown): Error;
  /** Called once, with the error, when the run must end: the caller aborts its stream and `wait`. */
  onLost(error: Error): void;
  intervalMs?: number;
  timeoutMs?: number;
  now?: () => number;
}

export class DaemonWatch {
  private timer: NodeJS.Timeout | undefined;
  private stoppedSince: number | null = null;
  private waitSettled = false;
  private lostError: Error | null = null;
  private checking = false;

  constructor(private readonly options: DaemonWatchOptions) {}

  /** The daemon was unreachable (or lost the run's `wait`) at some point since `start()`. */
  get lost(): Error | null {
    return this.lostError;
  }

  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => void this.check(), this.options.intervalMs ?? DAEMON_WATCH_INTERVAL_MS);
    this.timer.unref();
  }

  /** The run's `wait` returned: a stopped container is now expected. */
  waitReturned(): void {
    this.waitSettled = true;
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  private async check(): Promise<void> {
    if (this.checking || this.lostError) return;
    this.checking = true;
    const now = this.options.now ?? Date.now;
    try {
      const running = await this.options.running(AbortSignal.timeout(this.options.timeoutMs ?? DAEMON_WATCH_TIMEOUT_MS));
      if (!this.timer) return; // stopped while the check was in flight: the run is over
      if (running || this.waitSettled) {
        this.stoppedSince = null;
        return;
      }
      this.stoppedSince ??= now();
      if (now() - this.stoppedSince >= LOST_WAIT_GRACE_MS) {
        this.lose(new Error('the container stopped but Docker never answered its wait (the daemon restarted under it)'));
      }
    } catch (error) {
      if (this.timer) this.lose(error);
    } finally {
      this.checking = false;
    }
  }

  private lose(cause: unknown): void {
    if (this.lostError) return;
    this.lostError = this.options.outage(cause);
    this.stop();
    this.options.onLost(this.lostError);
  }
}
