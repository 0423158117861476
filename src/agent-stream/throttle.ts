/**
 * At most one value per interval, and the last one wins: a value that comes too soon waits for the end of
 * the interval and is replaced by any later one. Agents call tools many times a second; subscribers need
 * to know what the agent does now, not every step.
 */
export class LatestWins<T> {
  private pending: { value: T } | undefined;
  private lastSent = -Infinity;
  private timer: ReturnType<typeof setTimeout> | undefined;

  constructor(
    private readonly intervalMs: number,
    private readonly send: (value: T) => void,
    private readonly now: () => number = Date.now,
  ) {}

  push(value: T): void {
    const wait = this.lastSent + this.intervalMs - this.now();
    if (wait <= 0 && !this.timer) {
      this.emit(value);
      return;
    }
    this.pending = { value };
    this.timer ??= setTimeout(() => this.flush(), Math.max(0, wait));
  }

  /** Sends the waiting value now (before something that must come after it). */
  flush(): void {
    this.cancelTimer();
    const pending = this.pending;
    this.pending = undefined;
    if (pending) this.emit(pending.value);
  }

  /** Drops the waiting value. */
  close(): void {
    this.cancelTimer();
    this.pending = undefined;
  }

  private emit(value: T) {
    this.lastSent = this.now();
    this.send(value);
  }

  private cancelTimer() {
    clearTimeout(this.timer);
    this.timer = undefined;
  }
}
