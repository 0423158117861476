import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * The test worker: busybox-static plus an entrypoint that runs TASK.md as a shell script, so
 * each test writes its worker's behaviour (events, output, exit code, sleeps) as the task. When
 * TASK.md holds a fenced sh block, only the first such block runs: fleet wraps a scope's task in
 * prose for fix and conflict workers, and the script inside still runs (it can tell them apart
 * by FLEET_PURPOSE).
 */
const FENCE = '`'.repeat(3);
const ENTRYPOINT = [
  '#!/bin/sh',
  'cd /tmp',
  `if grep -q '^${FENCE}sh$' /fleet/input/TASK.md; then`,
  `  awk '/^${FENCE}sh$/ { on = 1; next } on && /^${FENCE}$/ { exit } on { print }' /fleet/input/TASK.md > /tmp/task.sh`,
  '  exec sh /tmp/task.sh',
  'fi',
  'exec sh /fleet/input/TASK.md',
  '',
].join('\n');
const APPLETS = [
  'sh',
  'echo',
  'cat',
  'ls',
  'sleep',
  'seq',
  'head',
  'tail',
  'wc',
  'env',
  'id',
  'printf',
  'grep',
  'sed',
  'yes',
  'kill',
  'true',
  'false',
  'dd',
  'base64',
  'sha256sum',
  'tr',
  'test',
  '[',
  'expr',
  'date',
  'cmp',
  'stat',
  'rm',
  'mkdir',
  'touch',
  'wget',
  'awk',
  'cut',
];

function busyboxPath(): string {
  for (const candidate of ['/bin/busybox', '/usr/bin/busybox']) {
    if (spawnSync(candidate, ['true']).status === 0) return candidate;
  }
  throw new Error('busybox-static is not installed: apt-get install busybox-static');
}

/** Builds (once per content hash) and returns the test image's tag. */
export function ensureTestImage(): string {
  const hash = createHash('sha256').update(ENTRYPOINT).update(APPLETS.join(',')).digest('hex').slice(0, 12);
  const tag = `fleet-test-worker:${hash}`;
  if (spawnSync('docker', ['image', 'inspect', tag], { stdio: 'ignore' }).status === 0) return tag;
  const root = mkdtempSync(join(tmpdir(), 'fleet-test-image-'));
  try {
    for (const dir of ['bin', 'tmp', 'fleet/input', 'usr/local/bin']) mkdirSync(join(root, dir), { recursive: true });
    copyFileSync(busyboxPath(), join(root, 'bin/busybox'));
    for (const applet of APPLETS) symlinkSync('busybox', join(root, 'bin', applet));
    writeFileSync(join(root, 'usr/local/bin/fleet-worker'), ENTRYPOINT);
    chmodSync(join(root, 'usr/local/bin/fleet-worker'), 0o755);
    chmodSync(join(root, 'tmp'), 0o1777);
    const tar = execFileSync('tar', ['-C', root, '-c', '.'], { maxBuffer: 64 * 1024 * 1024 });
    execFileSync('docker', ['import', '-c', 'ENV PATH=/bin:/usr/local/bin', '-c', 'ENTRYPOINT ["/usr/local/bin/fleet-worker"]', '-', tag], {
      input: tar,
    });
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
  return tag;
}
