/** Debian's chromium for the browser tests (HEADLESS_CHROMIUM: the executable and flags). */
import { existsSync } from 'node:fs';
import { chromium, type Browser } from 'playwright-core';
import { HEADLESS_CHROMIUM } from '../src/index.js';

export const CHROMIUM = HEADLESS_CHROMIUM.executablePath;

export interface Launched {
  browser: Browser;
  close(): Promise<void>;
}

export async function launchChromium(): Promise<Launched> {
  if (!existsSync(CHROMIUM))
    throw new Error(
      `no chromium at ${CHROMIUM}: install Debian's chromium (.ci/run does) or set FLATRANK_CHROMIUM`,
    );
  const browser = await chromium.launch({ ...HEADLESS_CHROMIUM, args: [...HEADLESS_CHROMIUM.args] });
  return {
    browser,
    async close() {
      await browser.close();
    },
  };
}
