import type { ContainerSpec } from '../../src/container-runtime.ts';
import { completedEvent, FakeRuntime } from '../support/fakes/runtime.ts';

/** Test settings for a fleet on `target` instead of REDIS_URL (testEnv always sets one). */
export function topologyEnv(base: Record<string, string>, vars: Record<string, string>): Record<string, string> {
  const { REDIS_URL: _url, ...rest } = base;
  return { ...rest, ...vars };
}

/** The request id a container was made for. */
export const requestOf = (spec: ContainerSpec) => spec.env.FLEET_REQUEST_ID!;

/** A runtime whose containers complete at once, counting the runs of each request. */
export function countingRuntime(script?: (spec: ContainerSpec) => string[]): { runtime: FakeRuntime; runs: Map<string, number> } {
  const runs = new Map<string, number>();
  const runtime = new FakeRuntime((spec) => {
    runs.set(requestOf(spec), (runs.get(requestOf(spec)) ?? 0) + 1);
    return { lines: script ? script(spec) : [completedEvent()] };
  });
  return { runtime, runs };
}
