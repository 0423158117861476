import { existsSync, mkdirSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Redis } from 'ioredis';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { RunningFleet } from '../../src/fleet.ts';
import { channels } from '../../src/protocol.ts';
import { describeDocker, testImage } from '../support/docker.ts';
import { completedLine, eventLine, legacyRequest, ResultListener, startTestFleet, testEnv, TEST_TOKEN } from '../support/fleet.ts';
import { startRedis, type TestRedis } from '../support/redis.ts';
import { ADMIN, READER } from '../ops/support.ts';

const CHROMIUM = '/usr/bin/chromium';
const ARTIFACTS = resolve(import.meta.dirname, '../../test-artifacts');
const SCREENSHOT = join(ARTIFACTS, 'board-completed-job.png');
const LOG_LINES = ['cloning acme/widgets', 'editing README.md', 'committing 1 file'];

if (!existsSync(CHROMIUM)) {
  // CI installs Debian's chromium; a missing browser there is a failure, not a skip.
  if (process.env.FLEET_REQUIRE_DOCKER === '1') throw new Error(`${CHROMIUM} is missing: apt-get install chromium`);
  console.warn(`\n*** NOTICE: ${CHROMIUM} is missing; the board browser test is SKIPPED (apt-get install chromium) ***\n`);
}
const describeBrowser = existsSync(CHROMIUM) ? describeDocker : describeDocker.skip;

describeBrowser('the board in a real browser', () => {
  let redis: TestRedis;
  let fleet: RunningFleet;
  let browser: Browser;
  let base: string;
  let requestId: string;

  beforeAll(async () => {
    redis = await startRedis();
    const env = testEnv(redis.url, testImage(), {
      FLEET_BOARD_HOST: '127.0.0.1',
      FLEET_BOARD_USER: ADMIN.user,
      FLEET_BOARD_PASSWORD: ADMIN.password,
      FLEET_BOARD_READONLY_USER: READER.user,
      FLEET_BOARD_READONLY_PASSWORD: READER.password,
    });
    fleet = await startTestFleet(env, ['bridge', 'spawn', 'board']);
    base = `http://127.0.0.1:${fleet.httpPort}`;

    // One job through the real path: pub/sub request, bridge, spawn role, container output.
    const listener = await ResultListener.start(redis.url);
    const client = new Redis(redis.url);
    try {
      const request = legacyRequest({
        task_content: [
          eventLine({ event_type: 'started', repo: 'acme/widgets', task_summary: 'board browser test' }),
          ...LOG_LINES.slice(0, 2).map((line) => `echo '${line}'`),
          eventLine({ event_type: 'progress', stage: 'edit', message: 'README updated', progress_pct: 90 }),
          `echo '${LOG_LINES[2]}'`,
          completedLine('README updated'),
        ].join('\n'),
      });
      requestId = request.request_id as string;
      await client.publish(channels.spawn, JSON.stringify(request));
      expect((await listener.next(requestId)).success).toBe(true);
    } finally {
      await listener.close();
      await client.quit();
    }

    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
    });
  });

  afterAll(async () => {
    await browser?.close();
    await fleet?.stop();
    await redis?.stop();
  });

  const open = async (account: { user: string; password: string }): Promise<Page> => {
    const context = await browser.newContext({
      httpCredentials: { username: account.user, password: account.password },
      viewport: { width: 1400, height: 900 },
    });
    return context.newPage();
  };

  /** From the board's front page to the completed job's card, as an operator clicks. */
  const openCompletedJob = async (page: Page) => {
    await page.goto(`${base}/admin/queues`);
    await page.locator('#bull-board-sidebar').getByRole('link', { name: 'spawn', exact: true }).click();
    await page.getByRole('link', { name: /^COMPLETED/ }).click();
    await page.waitForURL(/\/admin\/queues\/queue\/spawn\?status=completed/);
    const card = page
      .locator('div', { hasText: requestId })
      .filter({ has: page.getByRole('tab', { name: 'Logs' }) })
      .last();
    await card.waitFor();
    return card;
  };

  it('logs in, opens the spawn queue and shows a completed job with its container output', async () => {
    const page = await open(ADMIN);
    const card = await openCompletedJob(page);

    // No secret on the board: the Data tab shows the token sealed, never its value or ciphertext.
    await card.getByRole('tab', { name: 'Data' }).click();
    // biome-ignore lint/performance/useDomNodeTextContent: Playwright's innerText is what a person sees on the card
    await expect.poll(() => card.innerText()).toContain('[sealed]');
    // biome-ignore lint/performance/useDomNodeTextContent: the text as shown, as above
    const data = await card.innerText();
    expect(data).not.toContain(TEST_TOKEN);
    expect(data).not.toMatch(/"sealedToken":\s*"v\d/);

    await card.getByRole('tab', { name: 'Logs' }).click();
    for (const line of LOG_LINES) await card.getByText(line).waitFor();
    // The worker last reported 90 %; a finished request shows 100 %.
    // biome-ignore lint/performance/useDomNodeTextContent: Playwright's innerText is what a person sees on the card
    await expect.poll(() => card.innerText()).toContain('100%');

    mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: SCREENSHOT });
    expect(statSync(SCREENSHOT).size).toBeGreaterThan(10_000);
    await page.context().close();
  });

  it('shows the read-only account the same job without the buttons that change it', async () => {
    const page = await open(READER);
    const card = await openCompletedJob(page);
    for (const line of LOG_LINES) await card.getByText(line).waitFor();
    expect(await page.getByRole('button', { name: /Retry all|Clean all/ }).count()).toBe(0);
    await page.context().close();
  });

  it('shows nothing to a browser without credentials or with wrong ones', async () => {
    for (const httpCredentials of [undefined, { username: ADMIN.user, password: 'not the password' }]) {
      const context = await browser.newContext({ httpCredentials });
      const page = await context.newPage();
      // Headless Chromium has no login prompt: the 401 shows as such or fails the navigation.
      const outcome = await page.goto(`${base}/admin/queues`).then(
        (r) => String(r?.status()),
        (e: Error) => e.message,
      );
      expect(outcome).toMatch(/^401$|ERR_INVALID_AUTH_CREDENTIALS/);
      expect(await page.locator('#bull-board-sidebar').count()).toBe(0);
      const response = await context.request.get(`${base}/admin/queues/api/queues`);
      expect(response.status()).toBe(401);
      await context.close();
    }
  });
});
