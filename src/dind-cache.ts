import type { Logger } from 'pino';
import type { ContainerRuntime } from './container-runtime.ts';

/**
 * The per-slot image cache (FLEET_DIND_CACHE): the host has `cap` slots, each with a named
 * volume mounted at the inner /var/lib/docker, so the images one job loaded are there for the
 * next job on that slot — the seed's "images are pulled in every worker". A slot is lent to one
 * job at a time (two inner dockerds must never share a data root); when its volume has grown
 * past the limit it is removed on return and starts empty next time.
 */
export class DindSlots {
  private readonly free: number[];
  private readonly checks = new Set<Promise<void>>();
  private readonly waiters: (() => void)[] = [];

  constructor(
    private readonly options: {
      hostId: string;
      prefix: string;
      slots: number;
      maxBytes: number;
      runtime: ContainerRuntime;
      logger: Logger;
    },
  ) {
    this.free = Array.from({ length: options.slots }, (_, i) => i);
  }

  volumeName(slot: number): string {
    return `${this.options.prefix.replace(/[^A-Za-z0-9_.-]/g, '')}-dind-${this.options.hostId}-${slot}`;
  }

  /**
   * A free slot's volume. The host never runs more jobs than slots, but a slot comes back only
   * after its size check, so a job that starts right after another may wait that long for it.
   */
  async acquire(): Promise<{ volume: string; release(): void }> {
    let slot = this.free.shift();
    while (slot === undefined) {
      await new Promise<void>((resolve) => this.waiters.push(resolve));
      slot = this.free.shift();
    }
    let released = false;
    return {
      volume: this.volumeName(slot),
      release: () => {
        if (released) return;
        released = true;
        const check = this.prune(slot).finally(() => {
          this.free.push(slot);
          this.checks.delete(check);
          this.waiters.shift()?.();
        });
        this.checks.add(check);
      },
    };
  }

  private async prune(slot: number): Promise<void> {
    const name = this.volumeName(slot);
    try {
      const size = await this.options.runtime.volumeSize(name);
      if (size !== null && size > this.options.maxBytes) {
        await this.options.runtime.removeVolume(name);
        this.options.logger.info(
          { volume: name, bytes: size, max_bytes: this.options.maxBytes },
          'slot cache volume over its limit: removed',
        );
      }
    } catch (error) {
      this.options.logger.warn({ err: error, volume: name }, 'could not check the slot cache volume; it stays as it is');
    }
  }

  /** Settles when every pending size check is done (stop, tests). */
  async settled(): Promise<void> {
    await Promise.allSettled([...this.checks]);
  }
}
