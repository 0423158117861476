import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { classifyDockerError } from '../../src/docker-runtime.ts';
import { DiskFullError, DockerUnavailableError, isHostFault, SpawnError } from '../../src/errors.ts';
import { HostHealth } from '../../src/host-health.ts';

const silent = pino({ level: 'silent' });

describe('classifyDockerError: host faults', () => {
  it('a refused, reset or cut connection is DockerUnavailableError: a host fault, retryable', () => {
    for (const code of ['ECONNREFUSED', 'ECONNRESET', 'ENOENT', 'EPIPE']) {
      const e = classifyDockerError(Object.assign(new Error(`connect ${code}`), { code }));
      expect(e).toBeInstanceOf(DockerUnavailableError);
      expect(e).toMatchObject({ retryable: true, errorType: 'spawn_error' });
      expect(isHostFault(e)).toBe(true);
    }
    expect(isHostFault(classifyDockerError(new Error('socket hang up')))).toBe(true);
  });

  it('"no space left on device" is DiskFullError, saying where to free space', () => {
    const e = classifyDockerError(
      Object.assign(new Error('(HTTP code 500) server error'), {
        statusCode: 500,
        json: { message: 'write /var/lib/docker/x: no space left on device' },
      }),
    );
    expect(e).toBeInstanceOf(DiskFullError);
    expect(e.message).toMatch(/data root/);
    expect(isHostFault(e)).toBe(true);
  });

  it("a missing image is the request's configuration, not a host fault", () => {
    const e = classifyDockerError(Object.assign(new Error('no such image'), { statusCode: 404 }), { image: 'x:1', runtime: 'runc' });
    expect(e).toBeInstanceOf(SpawnError);
    expect(isHostFault(e)).toBe(false);
  });

  it('is recognised by name, as when rebuilt from another process', () => {
    expect(isHostFault({ name: 'DockerUnavailableError', message: 'x' })).toBe(true);
    expect(isHostFault({ name: 'SpawnError', message: 'x' })).toBe(false);
  });
});

describe('HostHealth', () => {
  function health(probeOk: () => boolean) {
    const calls: string[] = [];
    let resumed!: () => void;
    const resumedOnce = new Promise<void>((r) => (resumed = r));
    let probedTwice!: () => void;
    const twoFailedProbes = new Promise<void>((r) => (probedTwice = r));
    const h = new HostHealth({
      logger: silent,
      intervalMs: 5,
      probe: async () => {
        calls.push('probe');
        if (calls.filter((c) => c === 'probe').length === 2) probedTwice();
        if (!probeOk()) throw new Error('still down');
      },
      pause: async () => {
        calls.push('pause');
      },
      resume: async () => {
        calls.push('resume');
        resumed();
      },
    });
    return { h, calls, resumedOnce, twoFailedProbes };
  }

  it('out of rotation on a fault (paused once, readiness fails), back by itself once the probe passes', async () => {
    let up = false;
    const { h, calls, resumedOnce, twoFailedProbes } = health(() => up);
    h.report(new DockerUnavailableError('the Docker daemon cannot be reached (ECONNREFUSED)'));
    h.report(new DockerUnavailableError('a second job met the same fault'));
    expect(h.faulted()).toBe(true);
    expect(() => h.check()).toThrow(/ECONNREFUSED/);
    await twoFailedProbes;
    expect(h.faulted()).toBe(true);
    up = true;
    await resumedOnce;
    expect(h.faulted()).toBe(false);
    expect(() => h.check()).not.toThrow();
    expect(calls.filter((c) => c === 'pause')).toHaveLength(1);
    expect(calls.filter((c) => c === 'resume')).toHaveLength(1);
    h.stop();
  });

  it('stopped: reports change nothing, no probe runs', async () => {
    const { h, calls } = health(() => true);
    h.stop();
    h.report(new DiskFullError('full'));
    expect(h.faulted()).toBe(false);
    expect(calls).toEqual([]);
  });
});
