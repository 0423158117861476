import { describe, expect, it } from 'vitest';
import { DaemonWatch, LOST_WAIT_GRACE_MS } from '../../src/daemon-watch.ts';

/** A watch checking every millisecond, with a clock the test moves, reporting its loss through a promise. */
function watch(running: () => Promise<boolean>, now: () => number) {
  let lost!: (error: Error) => void;
  const onLost = new Promise<Error>((resolve) => {
    lost = resolve;
  });
  const w = new DaemonWatch({
    running,
    outage: (cause) => new Error(`outage: ${(cause as Error).message}`),
    onLost: (error) => lost(error),
    intervalMs: 1,
    now,
  });
  return { w, onLost };
}

describe('DaemonWatch: a run in flight notices a daemon that died under it', () => {
  it('a daemon that does not answer ends the run with the outage error, once, and is remembered', async () => {
    let calls = 0;
    const { w, onLost } = watch(async () => {
      calls++;
      if (calls < 3) return true;
      throw new Error('connect ECONNREFUSED');
    }, Date.now);
    w.start();
    const error = await onLost;
    expect(error.message).toBe('outage: connect ECONNREFUSED');
    expect(w.lost).toBe(error);
  });

  it('a container stopped while its wait never returned is a lost wait, after the grace period only', async () => {
    let clock = 0;
    let checks = 0;
    const { w, onLost } = watch(
      async () => {
        checks++;
        // Each check moves the clock a second: the loss comes once the grace has passed, not at the first stopped check.
        clock += 1_000;
        return false;
      },
      () => clock,
    );
    w.start();
    const error = await onLost;
    expect(error.message).toMatch(/never answered its wait/);
    expect(checks).toBeGreaterThan(LOST_WAIT_GRACE_MS / 1_000);
  });

  it('a stopped container is expected once the wait returned, and a stopped watch reports nothing', async () => {
    let checks = 0;
    let seen!: () => void;
    const enough = new Promise<void>((resolve) => {
      seen = resolve;
    });
    let clock = 0;
    const { w } = watch(
      async () => {
        clock += 10_000;
        if (++checks === 5) seen();
        return false;
      },
      () => clock,
    );
    w.waitReturned();
    w.start();
    await enough;
    w.stop();
    expect(w.lost).toBeNull();
  });
});
