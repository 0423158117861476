import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ERROR_TYPES } from '../../src/protocol.ts';

const root = resolve(import.meta.dirname, '../..');

function sources(dir: string): string[] {
  return readdirSync(join(root, dir)).flatMap((name) => {
    const path = join(dir, name);
    return statSync(join(root, path)).isDirectory() ? sources(path) : path.endsWith('.ts') ? [path] : [];
  });
}

const product = ['src', 'processors', 'queues'].flatMap(sources).map((path) => readFileSync(join(root, path), 'utf8'));
const workerScript = readFileSync(join(root, 'worker-image/fleet-worker'), 'utf8');

// ErrorType is a closed union, so TypeScript already refuses a type fleet's own code makes up; the worker
// image is bash, and only this test keeps it and the list in step.
describe('ERROR_TYPES', () => {
  it('holds every type the worker image reports', () => {
    const reported = [...workerScript.matchAll(/\bfail\s+([a-z_]+)\s/g)].map((m) => m[1]!);
    expect(reported.length).toBeGreaterThan(5);
    for (const type of new Set(reported)) expect(ERROR_TYPES, `fleet-worker reports ${type}`).toContain(type);
  });

  it('holds no type that nothing produces', () => {
    const everything = [...product, workerScript].join('\n').replace(/export const ERROR_TYPES = \[[^\]]*\]/, '');
    for (const type of ERROR_TYPES) expect(everything, `${type} is listed but never produced`).toMatch(new RegExp(`['"\\s]${type}['"\\s]`));
  });
});
