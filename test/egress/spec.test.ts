import { existsSync, lstatSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.ts';
import { buildContainerSpec } from '../../src/container-spec.ts';
import { EGRESS_MOUNT, openEgressSession, type EgressSession } from '../../src/egress/session.ts';
import { validateSpawnRequest } from '../../src/intake.ts';
import { redactor } from '../../src/redact.ts';
import { legacyRequest } from '../support/fleet.ts';

// The container of a proxy-mode job, built from a real session (a proxy on a unix socket, no Docker).

const config = loadConfig({ FLEET_HOST_ID: 'host-a', FLEET_DOCKER_NETWORK: 'bridge', FLEET_EGRESS: 'open' });
let session: EgressSession | undefined;

afterEach(async () => {
  await session?.close();
  session = undefined;
});

describe('a proxy-mode container', () => {
  it('runs on network none with the socket directory mounted, the proxy settings and no token', async () => {
    const { github_token: _t, ...request } = validateSpawnRequest(legacyRequest({ request_id: 'r-1' }));
    session = await openEgressSession({
      repo: request.repo,
      token: 'ghp_the_real_token',
      config: { ...config, egress: { mode: 'proxy', allow: ['github'], requestAllow: [], methods: 'all' } },
      hooks: { onBlocked: () => {} },
    });
    const spec = buildContainerSpec({
      request,
      githubToken: 'ghp_the_real_token',
      branch: '',
      jobId: 'r-1',
      lockToken: 'lock',
      attempt: 1,
      egress: session,
      config,
    });
    expect(spec.network).toBe('none');
    expect(Object.values(spec.binds!)).toEqual([EGRESS_MOUNT]);
    expect(spec.env.GITHUB_TOKEN).toBeUndefined();
    expect(JSON.stringify(spec)).not.toContain('ghp_the_real_token');
    expect(spec.env).toMatchObject({
      FLEET_EGRESS: 'proxy',
      FLEET_EGRESS_SOCKET: `${EGRESS_MOUNT}/proxy.sock`,
      HTTPS_PROXY: 'http://127.0.0.1:3128',
      https_proxy: 'http://127.0.0.1:3128',
      NO_PROXY: 'localhost,127.0.0.1,::1',
      // https forge: root's git trusts the fleet CA, copied in as an input file, for the forge only
      FLEET_FORGE_CA: '/fleet/input/forge-ca.pem',
    });
    const key = session.files.find((f) => f.path === '/fleet/input/broker-key')!;
    expect(key.mode).toBe(0o600);
    expect(key.content).toMatch(/^[0-9a-f]{64}$/);
    expect(session.files.find((f) => f.path === '/fleet/input/forge-ca.pem')!.content).toContain('BEGIN CERTIFICATE');
    // The key is masked wherever output goes, for as long as the job runs.
    expect(redactor.redact(`password=${key.content}`)).not.toContain(key.content);
  });

  it('listens in a given directory (a warm pool container of its own) and leaves the directory to its owner', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'fleet-spec-egress-'));
    try {
      const opened = await openEgressSession({
        repo: 'acme/widgets',
        token: 'ghp_the_real_token',
        config: { ...config, egress: { mode: 'proxy', allow: ['github'], requestAllow: [], methods: 'all' } },
        hooks: { onBlocked: () => {} },
        dir,
      });
      expect(opened.binds).toEqual({ [dir]: EGRESS_MOUNT });
      expect(lstatSync(join(dir, 'proxy.sock')).isSocket()).toBe(true);
      await opened.close();
      expect(existsSync(dir)).toBe(true);
      expect(readdirSync(dir)).toEqual([]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('open mode keeps the Docker network and the token, as before', () => {
    const { github_token: _t, ...request } = validateSpawnRequest(legacyRequest({ request_id: 'r-2' }));
    const spec = buildContainerSpec({ request, githubToken: 'tok', branch: '', jobId: 'r-2', lockToken: 'lock', attempt: 1, config });
    expect(spec.network).toBe('bridge');
    expect(spec.binds).toEqual({});
    expect(spec.env.GITHUB_TOKEN).toBe('tok');
    expect(spec.env.HTTPS_PROXY).toBeUndefined();
  });
});
