/** `serve --open`: which command is started with the URL, and what happens when it cannot be. */
import { afterEach, describe, expect, it } from 'vitest';
import { createTempDb, fakeBrowser, type TempDb } from '@flatrank/testing';
import { browserCommand, openInBrowser } from '../src/index.js';

const URL_ = 'http://127.0.0.1:8321/';
let tmp: TempDb | undefined;
afterEach(() => tmp?.cleanup());

describe('browserCommand', () => {
  it("is $BROWSER when set (first of a colon list, %s for the URL, no shell), else the platform's opener", () => {
    expect(browserCommand(URL_, {}, 'linux')).toEqual({ command: 'xdg-open', args: [URL_] });
    expect(browserCommand(URL_, {}, 'darwin')).toEqual({ command: 'open', args: [URL_] });
    expect(browserCommand(URL_, { BROWSER: '' }, 'win32')).toEqual({ command: 'explorer', args: [URL_] });
    expect(browserCommand(URL_, { BROWSER: 'firefox' }, 'linux')).toEqual({
      command: 'firefox',
      args: [URL_],
    });
    expect(browserCommand(URL_, { BROWSER: 'chromium --new-window:firefox' }, 'linux')).toEqual({
      command: 'chromium',
      args: ['--new-window', URL_],
    });
    expect(browserCommand(URL_, { BROWSER: 'w3m --url=%s -dump' }, 'linux')).toEqual({
      command: 'w3m',
      args: [`--url=${URL_}`, '-dump'],
    });
    // A URL with shell syntax in it stays one argument.
    const odd = 'http://127.0.0.1:1/$(touch x);`id`';
    expect(browserCommand(odd, { BROWSER: 'firefox' }, 'linux').args).toEqual([odd]);
  });
});

describe('openInBrowser', () => {
  it('starts the command with the URL as its one argument', async () => {
    tmp = createTempDb({ create: false });
    const browser = fakeBrowser(tmp.dir);
    const errors: string[] = [];
    const child = openInBrowser(URL_, { env: { BROWSER: browser.command }, onError: (m) => errors.push(m) });
    expect(child).not.toBeNull();
    expect(await browser.firstStart()).toEqual([URL_]);
    expect(errors).toEqual([]);
  });

  it('a command that cannot start is a message naming it and the URL, not an error', async () => {
    tmp = createTempDb({ create: false });
    const missing = `${tmp.dir}/no-such-browser`;
    const message = await new Promise<string>((resolve) =>
      openInBrowser(URL_, { env: { BROWSER: missing }, onError: resolve }),
    );
    expect(message).toContain(`could not start ${missing}`);
    expect(message).toContain(`open ${URL_} yourself`);
  });
});
