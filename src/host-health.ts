import type { Logger } from 'pino';
import type { ContainerRuntime } from './container-runtime.ts';
import type { HostFaultError } from './errors.ts';

/** How often a faulted host probes whether the fault has cleared. */
export const HOST_PROBE_INTERVAL_MS = 1_000;

export interface HostHealthOptions {
  /** Resolves once the fault is gone (Docker answers, a container can be created again); throws while it is not. */
  probe(fault: HostFaultError): Promise<void>;
  /** Stop taking jobs. */
  pause(): Promise<void>;
  /** The fault cleared: clean up after it and take jobs again. */
  resume(): Promise<void>;
  logger: Logger;
  /** @defaultValue HOST_PROBE_INTERVAL_MS */
  intervalMs?: number;
}

/**
 * A host that failed a run through no fault of the task (Docker away, disk full) takes itself out of
 * rotation: it stops taking jobs and answers 503 on /readyz until a probe finds it healthy, then resumes by
 * itself. The failed job was already put back in the queue by the processor, for this host or another.
 */
export class HostHealth {
  private fault: HostFaultError | null = null;
  private since = 0;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(private readonly options: HostHealthOptions) {}

  faulted(): boolean {
    return this.fault !== null;
  }

  /** For /readyz: throws while the host is out of rotation, saying why. */
  check(): void {
    if (this.fault) throw new Error(`host out of rotation since ${new Date(this.since).toISOString()}: ${this.fault.message}`);
  }

  /** Takes the host out of rotation (once per fault; a second report while out changes nothing). */
  report(fault: HostFaultError): void {
    if (this.fault || this.stopped) return;
    this.fault = fault;
    this.since = Date.now();
    // Loud on purpose: every job this host would take fails until someone (or the daemon) fixes it.
    this.options.logger.error(
      { err: fault, fault: fault.name },
      'HOST FAULT: this host takes no jobs until the fault clears; its jobs go back to the queue',
    );
    void this.options.pause().catch((error) => this.options.logger.error({ err: error }, 'could not pause the spawn worker'));
    this.schedule();
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => void this.tryRecover(), this.options.intervalMs ?? HOST_PROBE_INTERVAL_MS);
    this.timer.unref();
  }

  private async tryRecover(): Promise<void> {
    const fault = this.fault;
    if (!fault || this.stopped) return;
    try {
      await this.options.probe(fault);
    } catch {
      this.schedule();
      return;
    }
    const outMs = Date.now() - this.since;
    this.fault = null;
    this.options.logger.warn({ fault: fault.name, out_ms: outMs }, 'host fault cleared: taking jobs again');
    try {
      await this.options.resume();
    } catch (error) {
      this.options.logger.error({ err: error }, 'could not resume the spawn worker after a host fault');
    }
  }
}

/**
 * Throws when Docker does not know the runtime this host launches workers with (FLEET_RUNTIME, sysbox-runc by
 * default): every job would fail with spawn_error, so the host says so at start and on /readyz instead.
 */
export async function checkRuntimeKnown(runtime: Pick<ContainerRuntime, 'runtimes'>, configured: string): Promise<void> {
  if (!runtime.runtimes) return;
  const known = await runtime.runtimes();
  if (known.includes(configured)) return;
  throw new Error(
    `Docker on this host does not know the runtime ${configured} (FLEET_RUNTIME); it knows ${known.join(', ') || 'none'}: ` +
      'install sysbox (deploy/install-sysbox.sh) or set FLEET_RUNTIME to one of those (runc with FLEET_DIND=caps or off on a test machine)',
  );
}
