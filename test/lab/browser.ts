/**
 * Headless Chromium for the e2e tests: Debian's chromium driven by playwright-core, in a fresh user
 * data dir each run, with the page's console errors and uncaught errors collected.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';

export const CHROMIUM = '/usr/bin/chromium';

/** For requireLab: whether Debian's chromium is installed. */
export function chromiumAvailable(): { ok: boolean; why: string } {
  return { ok: fs.existsSync(CHROMIUM), why: `no ${CHROMIUM} (apt-get install chromium)` };
}

export interface Chromium {
  context: BrowserContext;
  /** the first page, its console watched */
  page: Page;
  /** console errors and uncaught page errors, in order */
  consoleErrors: string[];
  /** closes the browser and removes its user data dir */
  close(): Promise<void>;
}

export async function launchChromium(viewport: { width: number; height: number }): Promise<Chromium> {
  const userData = fs.mkdtempSync(path.join(os.tmpdir(), 'nrhi-chromium-'));
  let context: BrowserContext;
  try {
    // a fresh user data dir each run (playwright passes it as --user-data-dir)
    context = await chromium.launchPersistentContext(userData, {
      executablePath: CHROMIUM,
      headless: true,
      viewport,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--disable-quic'],
    });
  } catch (err) {
    fs.rmSync(userData, { recursive: true, force: true });
    throw err;
  }
  const close = async () => {
    try {
      await context.close();
    } finally {
      fs.rmSync(userData, { recursive: true, force: true });
    }
  };
  try {
    const page = context.pages()[0] ?? (await context.newPage());
    const consoleErrors: string[] = [];
    page.on('console', (m) => {
      if (m.type() === 'error') consoleErrors.push(m.text());
    });
    page.on('pageerror', (e) => consoleErrors.push(String(e)));
    return { context, page, consoleErrors, close };
  } catch (err) {
    await close();
    throw err;
  }
}
