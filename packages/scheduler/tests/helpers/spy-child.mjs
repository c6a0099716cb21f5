// The fake trainer of @flatrank/testing, plus a record of what the coordinator sent it: one JSONL
// line per 'run' message ({key, start, startCheckpoint}) in $FLATRANK_SPY_FILE. Lets a test check the
// run options a trial child actually received.
import { appendFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';

process.on('message', (msg) => {
  if (msg?.type !== 'run') return;
  appendFileSync(
    process.env.FLATRANK_SPY_FILE,
    JSON.stringify({
      key: msg.trialKey,
      start: msg.config.start,
      startCheckpoint: msg.options.startCheckpoint,
    }) + '\n',
  );
});
await import(pathToFileURL(process.env.FLATRANK_SPY_TARGET).href);
