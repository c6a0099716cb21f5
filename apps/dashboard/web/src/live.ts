/** Polling for live pages: the header dot shows whether the last refresh worked. */

/** How often live pages re-read the API (ms); `?poll=` overrides it (tests, slow links). */
export const POLL_MS = (() => {
  const v = Number(new URLSearchParams(location.search).get('poll'));
  return Number.isInteger(v) && v >= 200 && v <= 600_000 ? v : 2000;
})();

const timers: number[] = [];

/** Calls `tick` every POLL_MS while the page is open (one call at a time). */
export function poll(tick: () => Promise<void>): void {
  const live = document.getElementById('live');
  let busy = false;
  const run = async () => {
    if (busy) return;
    busy = true;
    try {
      await tick();
      live?.setAttribute('class', 'live on');
      live?.setAttribute('title', `live: updated ${new Date().toLocaleTimeString()}`);
    } catch (e) {
      live?.setAttribute('class', 'live err');
      live?.setAttribute('title', `refresh failed: ${(e as Error).message}`);
    } finally {
      busy = false;
    }
  };
  timers.push(window.setInterval(() => void run(), POLL_MS));
}

export function stopPolling(): void {
  for (const t of timers.splice(0)) clearInterval(t);
}
