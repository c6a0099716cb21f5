/**
 * How the dashboard's browser tests, its bench and its docs screenshots start Debian's chromium
 * (through playwright-core, whose own browser download never runs): the executable and the flags
 * that keep a headless run off the network. Playwright adds a fresh temporary profile per launch.
 */
export const HEADLESS_CHROMIUM: { executablePath: string; args: readonly string[] } = {
  executablePath: process.env['FLATRANK_CHROMIUM'] ?? '/usr/bin/chromium',
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
};
