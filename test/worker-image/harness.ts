import { execFile, execFileSync, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import Docker from 'dockerode';
import { promisify } from 'node:util';

const run = promisify(execFile);
export const workerImageDir = resolve(dirname(fileURLToPath(import.meta.url)), '../../worker-image');

/** Label on every container this test file makes (modules are per file), so its leak guard finds only its own. */
export const TEST_LABEL = `fleet.test.worker-image=${randomBytes(4).toString('hex')}`;

/** A worker event as the entrypoint prints it: `::fleet-event:: {json}`. */
export interface WorkerEvent {
  /** `exiting`: the worker's last line to the host (its exit code), never published. */
  event_type: 'started' | 'progress' | 'completed' | 'failed' | 'exiting';
  [key: string]: unknown;
}

export interface WorkerRun {
  exitCode: number;
  stdout: string;
  stderr: string;
  events: WorkerEvent[];
  /** Lines that are not events. */
  logLines: string[];
  /** The run outlived `timeoutMs` and was killed. */
  timedOut: boolean;
  /** The stopped container, kept until `remove()` so files can be copied out of it. */
  container: string;
  copyOut(path: string): Promise<string>;
  remove(): Promise<void>;
}

export interface RunOptions {
  env: Record<string, string>;
  /** Files for /fleet/input, copied in with `docker cp` before start (as the fleet's putArchive does). */
  input: Record<string, string>;
  /** host path -> container path (append `:ro` to the container path for read-only). */
  binds?: Record<string, string>;
  /** named volume -> container path */
  volumes?: Record<string, string>;
  capAdd?: string[];
  securityOpt?: string[];
  cgroupns?: string;
  /** Docker network (default none); `host` reaches loopback test servers. */
  network?: string;
  /** Kill the container after this long (a worker that hangs fails its test instead of the suite's timeout). */
  timeoutMs?: number;
}

export async function docker(args: string[], input?: string): Promise<{ stdout: string; stderr: string }> {
  if (input === undefined) return run('docker', args, { maxBuffer: 64 * 1024 * 1024 });
  return new Promise((resolvePromise, reject) => {
    const child = spawn('docker', args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) =>
      code === 0 ? resolvePromise({ stdout, stderr }) : reject(new Error(`docker ${args.join(' ')}: ${code}\n${stderr}`)),
    );
    child.stdin.end(input);
  });
}

/**
 * Builds the worker image with build.sh (a no-op when its hash tag exists) and returns that tag.
 * The base is a local debootstrap bookworm unless FLEET_WORKER_BASE names one; the CA bundle is
 * FLEET_CA_BUNDLE or NODE_EXTRA_CA_CERTS, as a TLS-intercepting proxy needs.
 */
export async function buildWorkerImage(): Promise<string> {
  const args = process.env.FLEET_WORKER_BASE ? ['--base', process.env.FLEET_WORKER_BASE] : ['--base-from-debootstrap'];
  const ca = process.env.FLEET_CA_BUNDLE ?? process.env.NODE_EXTRA_CA_CERTS;
  if (ca) args.push('--ca-bundle', ca);
  const logFile = join(tmpdir(), `fleet-worker-build-${process.pid}.log`);
  return new Promise((resolvePromise, reject) => {
    const child = spawn(join(workerImageDir, 'build.sh'), args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let log = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (log += d));
    child.on('error', reject);
    child.on('close', (code) => {
      writeFileSync(logFile, log);
      const tag = stdout.trim().split('\n').pop() ?? '';
      if (code === 0 && tag) resolvePromise(tag);
      else reject(new Error(`build.sh exited with ${code}; log in ${logFile}:\n${log.split('\n').slice(-40).join('\n')}`));
    });
  });
}

export const byType = (events: WorkerEvent[], type: WorkerEvent['event_type']) => events.filter((e) => e.event_type === type);

/** The host's static busybox, if it has one: the tiny image can then run; without it, it can only be loaded and listed. */
export const BUSYBOX = ['/bin/busybox', '/usr/bin/busybox'].find((p) => existsSync(p));

/** A one-file image (BUSYBOX, else a marker file) as a `docker save` tar, for an inner dockerd to load; the tag is removed from the host again. */
export function tinyImageTar(tag: string): Buffer {
  const root = mkdtempSync(join(tmpdir(), 'fleet-test-tiny-'));
  try {
    mkdirSync(join(root, 'bin'));
    if (BUSYBOX) copyFileSync(BUSYBOX, join(root, 'bin', 'busybox'));
    else writeFileSync(join(root, 'marker'), 'tiny\n');
    const tar = execFileSync('tar', ['-C', root, '-c', '.'], { maxBuffer: 64 * 1024 * 1024 });
    execFileSync('docker', ['import', '--change', 'CMD ["/bin/busybox","true"]', '-', tag], {
      input: tar,
      stdio: ['pipe', 'ignore', 'pipe'],
    });
    return execFileSync('docker', ['save', tag], { maxBuffer: 256 * 1024 * 1024 });
  } finally {
    spawnSync('docker', ['rmi', '--force', tag], { stdio: 'ignore' });
    rmSync(root, { recursive: true, force: true });
  }
}

/**
 * Splits the output into lines as the host's reader does (node:readline: CR, LF and CRLF end a line); an
 * event line that is not JSON is a log line, as on the host (and a test that meets one still gets its run,
 * so its container is removed).
 */
export function parseOutput(stdout: string): { events: WorkerEvent[]; logLines: string[] } {
  const events: WorkerEvent[] = [];
  const logLines: string[] = [];
  for (const line of stdout.split(/\r\n|\r|\n/)) {
    if (line === '') continue;
    const event = line.startsWith('::fleet-event:: ') ? parseEvent(line.slice('::fleet-event:: '.length)) : undefined;
    if (event) events.push(event);
    else logLines.push(line);
  }
  return { events, logLines };
}

function parseEvent(json: string): WorkerEvent | undefined {
  try {
    return JSON.parse(json) as WorkerEvent;
  } catch {
    return undefined;
  }
}

export const uniqueName = (prefix: string) => `${prefix}-${randomBytes(4).toString('hex')}`;

const ATTACH_GRACE_MS = 15_000;

/** Creates, fills and runs one worker container to its end (network none unless told), like the fleet does. */
export async function runWorker(image: string, options: RunOptions): Promise<WorkerRun> {
  const name = uniqueName('fleet-test-worker');
  const args = ['create', '--name', name, '--label', TEST_LABEL, '--network', options.network ?? 'none'];
  for (const [k, v] of Object.entries(options.env)) args.push('-e', `${k}=${v}`);
  for (const [host, target] of Object.entries(options.binds ?? {})) args.push('-v', `${host}:${target}`);
  for (const [volume, target] of Object.entries(options.volumes ?? {})) args.push('-v', `${volume}:${target}`);
  for (const cap of options.capAdd ?? []) args.push('--cap-add', cap);
  for (const opt of options.securityOpt ?? []) args.push('--security-opt', opt);
  if (options.cgroupns) args.push('--cgroupns', options.cgroupns);
  args.push(image);
  await docker(args);

  const inputDir = mkdtempSync(join(tmpdir(), 'fleet-test-input-'));
  try {
    for (const [file, content] of Object.entries(options.input)) writeFileSync(join(inputDir, file), content);
    await docker(['cp', `${inputDir}/.`, `${name}:/fleet/input/`]);
  } finally {
    rmSync(inputDir, { recursive: true, force: true });
  }

  let timedOut = false;
  const timer = options.timeoutMs
    ? setTimeout(() => {
        timedOut = true;
        spawn('docker', ['kill', name], { stdio: 'ignore' });
      }, options.timeoutMs)
    : undefined;
  // `docker start --attach` was once seen in CI never to return after its container had exited (the test then
  // timed out). A wait for the container's next exit, asked of the Engine API before the start (Debian's docker
  // CLI has no `wait --condition`), says when it has; the attach then has ATTACH_GRACE_MS to deliver the rest,
  // after which the output is read from the container's log.
  const exited = new Docker()
    .getContainer(name)
    .wait({ condition: 'next-exit' })
    .then(
      () => true,
      () => false,
    );
  const started = await new Promise<{ stdout: string; stderr: string }>((resolvePromise, reject) => {
    const child = spawn('docker', ['start', '--attach', name], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let grace: NodeJS.Timeout | undefined;
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', () => {
      clearTimeout(grace);
      resolvePromise({ stdout, stderr });
    });
    void exited.then((known) => {
      if (!known) return;
      grace = setTimeout(() => {
        child.removeAllListeners('close');
        child.kill();
        docker(['logs', name]).then(resolvePromise, reject);
      }, ATTACH_GRACE_MS);
    });
  }).finally(() => clearTimeout(timer));
  const { stdout: code } = await docker(['inspect', '--format', '{{.State.ExitCode}}', name]);
  const { events, logLines } = parseOutput(started.stdout);
  return {
    exitCode: Number(code.trim()),
    stdout: started.stdout,
    stderr: started.stderr,
    events,
    logLines,
    timedOut,
    container: name,
    async copyOut(path: string) {
      const dir = mkdtempSync(join(tmpdir(), 'fleet-test-out-'));
      try {
        await docker(['cp', `${name}:${path}`, join(dir, 'file')]);
        return readFileSync(join(dir, 'file'), 'utf8');
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
    async remove() {
      await docker(['rm', '--force', '--volumes', name]).catch(() => {});
    },
  };
}

/** A bare repository with one commit on `main` (README.md), in a temp dir the container can bind-mount. */
export interface BareRepo {
  dir: string;
  path: string;
  git(...args: string[]): Promise<string>;
  /** Adds a commit on `branch` (created from main when absent) with one file, and returns its sha. */
  commitOn(branch: string, file: string, content: string): Promise<string>;
  cleanup(): void;
}

export async function makeBareRepo(): Promise<BareRepo> {
  const dir = mkdtempSync(join(tmpdir(), 'fleet-test-repo-'));
  const path = join(dir, 'origin.git');
  const seed = join(dir, 'seed');
  const git = async (cwd: string, ...args: string[]) =>
    (await run('git', ['-c', 'user.name=fleet-test', '-c', 'user.email=test@fleet.invalid', '-C', cwd, ...args])).stdout.trim();
  await run('git', ['init', '--quiet', '--bare', '--initial-branch=main', path]);
  await run('git', ['init', '--quiet', '--initial-branch=main', seed]);
  writeFileSync(join(seed, 'README.md'), 'hello\n');
  await git(seed, 'add', 'README.md');
  await git(seed, 'commit', '--quiet', '-m', 'initial');
  await git(seed, 'push', '--quiet', path, 'main');
  return {
    dir,
    path,
    git: (...args) => git(path, ...args),
    async commitOn(branch, file, content) {
      await git(seed, 'fetch', '--quiet', path, `+refs/heads/*:refs/remotes/origin/*`);
      const exists = await git(path, 'rev-parse', '--verify', '--quiet', `refs/heads/${branch}`).catch(() => '');
      await git(seed, 'checkout', '--quiet', '-B', branch, exists ? `origin/${branch}` : 'origin/main');
      mkdirSync(dirname(join(seed, file)), { recursive: true });
      writeFileSync(join(seed, file), content);
      await git(seed, 'add', file);
      await git(seed, 'commit', '--quiet', '-m', `add ${file}`);
      await git(seed, 'push', '--quiet', path, `${branch}:${branch}`);
      return git(path, 'rev-parse', branch);
    },
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  };
}

/** Files under `dir` that contain `needle` (to search a bare repository for a secret). */
export async function grepTree(dir: string, needle: string): Promise<string[]> {
  try {
    const { stdout } = await run('grep', ['-r', '-l', '-a', '-F', needle, dir]);
    return stdout.split('\n').filter(Boolean);
  } catch (error) {
    if ((error as { code?: number }).code === 1) return [];
    throw error;
  }
}

export const fakeToken = () => `ghp_fleettest${randomBytes(12).toString('hex')}`;

/** Removes whatever these tests left behind; returns the names it had to remove (a leak). */
export async function removeLeftovers(): Promise<string[]> {
  const { stdout } = await docker(['ps', '--all', '--quiet', '--filter', `label=${TEST_LABEL}`]);
  const ids = stdout.split('\n').filter(Boolean);
  if (ids.length) await docker(['rm', '--force', '--volumes', ...ids]);
  return ids;
}

/** Makes a directory readable by the agent's uid (mkdtemp creates 0700). */
export function openForAgent(path: string): void {
  chmodSync(path, 0o755);
}
