import { describe, expect, it } from 'vitest';
import { buildContainerSpec, buildInputFiles, CAPS_DIND } from '../../src/container-spec.ts';
import { loadConfig } from '../../src/config.ts';
import { validateSpawnRequest } from '../../src/intake.ts';
import { legacyRequest } from '../support/fleet.ts';

const config = loadConfig({
  FLEET_HOST_ID: 'host-a',
  FLEET_WORKER_CPUS: '1.5',
  FLEET_DOCKER_NETWORK: 'none',
  FACTORY_API_KEY: 'factory-key',
  ANTHROPIC_API_KEY: 'anthropic-key',
});

function spec(overrides: Record<string, unknown> = {}, env: Record<string, string> = {}) {
  const { github_token: _t, ...request } = validateSpawnRequest(legacyRequest({ request_id: 'r-1', ...overrides }));
  const cfg = Object.keys(env).length ? loadConfig({ FLEET_HOST_ID: 'host-a', ...env }) : config;
  return buildContainerSpec({ request, githubToken: 'tok', branch: '', jobId: 'r-1', lockToken: 'lock-1', attempt: 1, config: cfg });
}

describe('buildContainerSpec', () => {
  it('sets resources, runtime, labels and network from config', () => {
    const s = spec();
    expect(s.runtime).toBe('sysbox-runc');
    expect(s.memoryBytes).toBe(4 * 1024 ** 3);
    expect(s.nanoCpus).toBe(1_500_000_000);
    expect(s.pidsLimit).toBe(4096);
    expect(s.network).toBe('none');
    expect(s.labels).toEqual({
      'fleet.request_id': 'r-1',
      'fleet.host': 'host-a',
      'fleet.job': 'r-1',
      'fleet.lock': 'lock-1',
      'fleet.prefix': 'fleet',
    });
    expect(s.capAdd).toEqual([]);
    expect(s.securityOpt).toEqual([]);
  });

  it('gives the container the protocol env and only the chosen agent key', () => {
    const s = spec({ agent: 'claude', mode: 'pr', base_branch: 'develop' });
    expect(s.env).toMatchObject({
      FLEET_REQUEST_ID: 'r-1',
      REPO: 'acme/widgets',
      FLEET_GIT_URL: 'https://github.com/acme/widgets.git',
      FLEET_BASE_BRANCH: 'develop',
      FLEET_AGENT: 'claude',
      GITHUB_TOKEN: 'tok',
      ANTHROPIC_API_KEY: 'anthropic-key',
      TASK_TITLE: 'Test task',
    });
    expect(s.env.FACTORY_API_KEY).toBeUndefined();
    expect(s.env.FLEET_GIT_URL).not.toContain('tok');
  });

  it('defaults to droid with the Factory key', () => {
    expect(spec().env).toMatchObject({ FLEET_AGENT: 'droid', FACTORY_API_KEY: 'factory-key' });
  });

  it('adds capabilities only in the explicit caps mode', () => {
    const s = spec({}, { FLEET_DIND: 'caps', FLEET_RUNTIME: 'runc' });
    expect(s.capAdd).toEqual(CAPS_DIND.capAdd);
    expect(s.securityOpt).toContain('seccomp=unconfined');
  });

  it('never asks Docker to remove the container by itself', () => {
    expect(Object.keys(spec())).not.toContain('autoRemove');
  });
});

describe('the host git mirror in the spec', () => {
  it('is mounted read-only and named to the worker only when the job has one', () => {
    const { github_token: _t, ...request } = validateSpawnRequest(legacyRequest({ request_id: 'r-1' }));
    const base = { request, githubToken: 'tok', branch: '', jobId: 'r-1', lockToken: 'l', attempt: 1, config };
    const withMirror = buildContainerSpec({ ...base, gitMirror: '/data/git-mirrors/acme_widgets-0123.git' });
    expect(withMirror.binds).toEqual({ '/data/git-mirrors/acme_widgets-0123.git': '/fleet/git-mirror' });
    expect(withMirror.env.FLEET_GIT_MIRROR).toBe('/fleet/git-mirror');
    const without = buildContainerSpec(base);
    expect(without.binds).toEqual({});
    expect(without.env.FLEET_GIT_MIRROR).toBeUndefined();
  });

  it('is on by default under the data dir, and off with FLEET_GIT_CACHE=off or a max of 0', () => {
    expect(loadConfig({ FLEET_DATA_DIR: '/var/fleet' }).gitCache).toEqual({ dir: '/var/fleet/git-mirrors', maxBytes: 20 * 1024 ** 3 });
    expect(loadConfig({ FLEET_GIT_CACHE_DIR: '/srv/mirrors', FLEET_GIT_CACHE_MAX: '5g' }).gitCache).toEqual({
      dir: '/srv/mirrors',
      maxBytes: 5 * 1024 ** 3,
    });
    expect(loadConfig({ FLEET_GIT_CACHE: 'off' }).gitCache).toBeUndefined();
    expect(loadConfig({ FLEET_GIT_CACHE_MAX: '0' }).gitCache).toBeUndefined();
    expect(() => loadConfig({ FLEET_GIT_CACHE_MAX: 'lots' })).toThrow(/FLEET_GIT_CACHE_MAX/);
  });
});

describe('buildInputFiles', () => {
  it('writes TASK.md, AGENTS.md when given, and request.json without the token', () => {
    const { github_token: _t, ...request } = validateSpawnRequest(legacyRequest({ agents_content: '# rules' }));
    const files = buildInputFiles(request);
    expect(files.map((f) => f.path)).toEqual(['/fleet/input/TASK.md', '/fleet/input/request.json', '/fleet/input/AGENTS.md']);
    expect(files.find((f) => f.path.endsWith('request.json'))!.content).not.toContain('ghp_');
  });

  it('omits AGENTS.md when agents_content is null', () => {
    const { github_token: _t, ...request } = validateSpawnRequest(legacyRequest());
    expect(buildInputFiles(request).map((f) => f.path)).not.toContain('/fleet/input/AGENTS.md');
  });
});

describe('model endpoints and the model map', () => {
  const env = {
    ANTHROPIC_API_KEY: 'anthropic-key',
    OPENAI_API_KEY: 'openai-key',
    FLEET_ANTHROPIC_BASE_URL: 'https://gw.example/anthropic/',
    FLEET_OPENAI_BASE_URL: 'https://gw.example/openai/v1',
    FLEET_DROID_MODEL_PROVIDER: 'generic-chat-completion-api',
    FLEET_DROID_MODEL_BASE_URL: 'https://gw.example/chat/v1',
    FLEET_DROID_MODEL_API_KEY: 'droid-model-key',
    FLEET_AGENT_MAX_RETRIES: '2',
    FLEET_MODEL_MAP: JSON.stringify({ '*': { 'old-model': 'new-model' }, codex: { 'old-model': 'gpt-5-codex' } }),
  };
  const endpointVars = [
    'ANTHROPIC_BASE_URL',
    'OPENAI_BASE_URL',
    'FLEET_DROID_MODEL_PROVIDER',
    'FLEET_DROID_MODEL_BASE_URL',
    'FLEET_DROID_MODEL_API_KEY',
    'FLEET_DROID_MODEL_MAX_OUTPUT_TOKENS',
  ];
  const endpointsOf = (agent: string) =>
    Object.keys(spec({ agent }, env).env)
      .filter((k) => endpointVars.includes(k))
      .sort();

  it("gives each agent its own endpoint only, never another agent's", () => {
    expect(endpointsOf('claude')).toEqual(['ANTHROPIC_BASE_URL']);
    expect(endpointsOf('codex')).toEqual(['OPENAI_BASE_URL']);
    expect(endpointsOf('droid')).toEqual([
      'FLEET_DROID_MODEL_API_KEY',
      'FLEET_DROID_MODEL_BASE_URL',
      'FLEET_DROID_MODEL_MAX_OUTPUT_TOKENS',
      'FLEET_DROID_MODEL_PROVIDER',
    ]);
    expect(endpointsOf('custom')).toEqual([]);
    expect(spec({ agent: 'claude' }, env).env.ANTHROPIC_BASE_URL).toBe('https://gw.example/anthropic');
    expect(spec({ agent: 'droid' }, env).env).toMatchObject({
      FLEET_DROID_MODEL_API_KEY: 'droid-model-key',
      FLEET_DROID_MODEL_MAX_OUTPUT_TOKENS: '16384',
      FLEET_AGENT_MAX_RETRIES: '2',
    });
    expect(spec({ agent: 'custom' }, env).env.FLEET_AGENT_MAX_RETRIES).toBeUndefined();
  });

  it("maps the requested model per agent, an agent's entry before '*', and leaves others as requested", () => {
    expect(spec({ agent: 'claude', model: 'old-model' }, env).env.MODEL).toBe('new-model');
    expect(spec({ agent: 'codex', model: 'old-model' }, env).env.MODEL).toBe('gpt-5-codex');
    expect(spec({ agent: 'claude', model: 'other-model' }, env).env.MODEL).toBe('other-model');
  });
});
