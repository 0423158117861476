import { type ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { testImage } from '../support/docker.ts';

export interface PrivateDockerdOptions {
  /** A daemon.json of its own (e.g. extra runtimes such as runsc). */
  configFile?: string;
  /** Data root on disk with overlay2 instead of a small tmpfs with vfs (for the real worker image). */
  onDisk?: boolean;
  /** The image to load from the system daemon. @defaultValue the busybox test image */
  image?: string;
}

/**
 * A Docker daemon of the fault suite's own: its own socket, data root (a small tmpfs, so a test can fill it),
 * exec root, pid file and supervised containerd, no bridge and no iptables. The suite restarts and stops this
 * one; the system's dockerd, which other tests and engineers use, is never touched.
 */
export class PrivateDockerd {
  readonly dir: string;
  readonly socket: string;
  readonly dataRoot: string;
  private child: ChildProcess | undefined;
  /** The busybox test image, loaded into this daemon. */
  image = '';

  private constructor(
    readonly dataRootBytes: number,
    private readonly options: PrivateDockerdOptions = {},
  ) {
    this.dir = mkdtempSync(join(tmpdir(), 'fleet-faults-dockerd-'));
    this.socket = join(this.dir, 'docker.sock');
    this.dataRoot = join(this.dir, 'data');
  }

  /** The daemon needs root (it mounts a tmpfs and runs containers); a test without it skips. */
  static usable(): boolean {
    return process.getuid?.() === 0 && spawnSync('dockerd', ['--version'], { stdio: 'ignore' }).status === 0;
  }

  /** Starts the daemon on a fresh tmpfs data root and loads the busybox test image into it; returns it and the image. */
  static async start(dataRootBytes = 96 * 1024 ** 2, options: PrivateDockerdOptions = {}): Promise<PrivateDockerd> {
    const d = new PrivateDockerd(dataRootBytes, options);
    mkdirSync(d.dataRoot);
    if (!options.onDisk) execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${dataRootBytes}`, 'tmpfs', d.dataRoot]);
    await d.up();
    const image = options.image ?? testImage();
    // `docker save` from the system daemon piped into `load` in ours: the image is not built twice, nor held in memory.
    execFileSync('sh', ['-c', 'docker save "$1" | docker -H "$2" load --quiet', 'sh', image, d.host], { stdio: 'ignore' });
    d.image = image;
    return d;
  }

  get host(): string {
    return `unix://${this.socket}`;
  }

  /** The docker CLI against this daemon. */
  cli(args: string[], input?: Buffer): string {
    return execFileSync('docker', ['-H', this.host, ...args], { input, encoding: 'utf8', maxBuffer: 64 * 1024 ** 2 });
  }

  answers(): boolean {
    return (
      spawnSync('docker', ['-H', this.host, 'version', '--format', '{{.Server.Version}}'], { stdio: 'ignore', timeout: 5_000 }).status === 0
    );
  }

  /** Starts dockerd and resolves once it answers on its socket. */
  async up(): Promise<void> {
    if (this.child && this.child.exitCode === null) return;
    const log = openSync(join(this.dir, 'dockerd.log'), 'a');
    this.child = spawn(
      'dockerd',
      [
        '--host',
        this.host,
        '--data-root',
        this.dataRoot,
        '--exec-root',
        join(this.dir, 'exec'),
        '--pidfile',
        join(this.dir, 'docker.pid'),
        '--bridge=none',
        '--iptables=false',
        '--ip6tables=false',
        // vfs: works on a tmpfs data root, and the test image is a couple of MB. On disk: overlay2, for big images.
        '--storage-driver',
        this.options.onDisk ? 'overlay2' : 'vfs',
        ...(this.options.configFile ? ['--config-file', this.options.configFile] : []),
        // Containers get 2 s to stop when the daemon shuts down, not the default 15.
        '--shutdown-timeout',
        '2',
      ],
      { stdio: ['ignore', log, log] },
    );
    const exited = new Promise<never>((_resolve, reject) =>
      this.child!.once('exit', (code) => reject(new Error(`dockerd exited (${code}) before it answered; see ${this.dir}/dockerd.log`))),
    );
    // Polled: dockerd announces readiness only in its log, and the socket appears before the API serves.
    const ready = (async () => {
      for (let i = 0; i < 300 && !this.answers(); i++) await new Promise((r) => setTimeout(r, 100));
      if (!this.answers()) throw new Error(`dockerd did not answer within 30 s; see ${this.dir}/dockerd.log`);
    })();
    await Promise.race([ready, exited]);
  }

  /**
   * SIGTERM, as systemd stops it: dockerd stops each running container (SIGTERM, then SIGKILL after the container's
   * StopTimeout) and exits. SIGKILL: a daemon crash; the containers outlive it until the next start kills them.
   */
  async down(signal: 'SIGTERM' | 'SIGKILL' = 'SIGTERM'): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null) return;
    const containerd = this.containerdPid();
    const gone = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill(signal);
    await gone;
    this.child = undefined;
    // dockerd's supervised containerd is told to stop when dockerd dies, and is left a zombie until this
    // machine's init reaps it (about 2 s here). A dockerd started before then finds its pid file naming a pid
    // that answers kill -0, takes it for a running containerd, and times out waiting on it. Once it has
    // exited, its pid file is removed, as a reboot or a supervisor's cleanup would leave it.
    if (containerd !== undefined) {
      await waitExited(containerd, 15_000);
      rmSync(join(this.dir, 'exec', 'containerd', 'containerd.pid'), { force: true });
    }
  }

  private containerdPid(): number | undefined {
    try {
      return Number.parseInt(readFileSync(join(this.dir, 'exec', 'containerd', 'containerd.pid'), 'utf8'), 10) || undefined;
    } catch {
      return undefined;
    }
  }

  async restart(signal: 'SIGTERM' | 'SIGKILL' = 'SIGTERM'): Promise<void> {
    await this.down(signal);
    await this.up();
  }

  /** Fills the data root's tmpfs to the last byte (returns the filler's path; remove it to free the space). */
  fillDisk(): string {
    const filler = join(this.dataRoot, 'filler');
    spawnSync('dd', ['if=/dev/zero', `of=${filler}`, 'bs=1M', `count=${Math.ceil(this.dataRootBytes / 1024 ** 2) + 1}`], {
      stdio: 'ignore',
    });
    return filler;
  }

  freeDisk(filler: string): void {
    rmSync(filler, { force: true });
  }

  containersWithLabel(label: string): string[] {
    return this.cli(['ps', '-a', '-q', '--no-trunc', '--filter', `label=${label}`])
      .split('\n')
      .filter(Boolean);
  }

  /** Stops the daemon, unmounts its data root and removes its directory. */
  async destroy(): Promise<void> {
    if (this.child?.exitCode === null) {
      for (const id of this.cli(['ps', '-a', '-q']).split('\n').filter(Boolean)) spawnSync('docker', ['-H', this.host, 'rm', '-f', id]);
    }
    await this.down();
    spawnSync('umount', [this.dataRoot], { stdio: 'ignore' });
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Resolves once the process has exited (gone, or a zombie not yet reaped), or after the bound. */
async function waitExited(pid: number, timeoutMs: number): Promise<void> {
  const alive = () => {
    try {
      process.kill(pid, 0);
    } catch {
      return false;
    }
    try {
      return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
    } catch {
      return false;
    }
  };
  for (const deadline = Date.now() + timeoutMs; alive() && Date.now() < deadline; ) await new Promise((r) => setTimeout(r, 50));
}
