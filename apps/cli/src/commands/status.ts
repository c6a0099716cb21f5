/**
 * `flatrank status [sweep] [--db F]`: progress of sweeps from the database (read-only): done,
 * running (device, epoch), failed, ETA — the same table `flatrank run` draws live.
 */
import type { Command } from 'commander';
import { ValidationError } from '@flatrank/protocol';
import { describeNotInSpec, progressLine, renderStatus, snapshotFromStore } from '@flatrank/scheduler';
import { ResultsStore, resolveDbPath } from '@flatrank/store';

export function registerStatus(program: Command): void {
  program
    .command('status')
    .description(
      'progress of a sweep (or of every sweep) from the database: done, running with device and epoch, failed, ETA',
    )
    .argument('[sweep]', 'sweep name (default: a one-line summary of every sweep)')
    .option('--db <file>', 'results database (default: $FLATRANK_DB, else ./flatrank.sqlite)')
    .action((sweepName: string | undefined, flags: { db?: string }) => {
      const store = ResultsStore.open(resolveDbPath(flags.db), { readonly: true });
      try {
        if (sweepName === undefined) {
          const sweeps = store.listSweeps();
          if (sweeps.length === 0) process.stdout.write(`no sweeps in ${store.path}\n`);
          for (const s of sweeps)
            process.stdout.write(
              `${progressLine(snapshotFromStore(store, s))}${s.finishedAt ? ' (finished)' : ''}\n`,
            );
          return;
        }
        const sweep = store.getSweep(sweepName);
        if (!sweep) {
          const names = store.listSweeps().map((s) => s.name);
          throw new ValidationError(
            'sweep',
            `sweep: no sweep named ${JSON.stringify(sweepName)} in ${store.path}; sweeps: ${names.length ? names.join(', ') : '(none)'}`,
          );
        }
        const snap = snapshotFromStore(store, sweep);
        process.stdout.write(renderStatus(snap));
        // Counts above are the points of the latest spec; say what an earlier version left behind.
        const notInSpec = describeNotInSpec(sweep.name, store.membershipCounts(sweep.id, 'retired'));
        if (notInSpec) process.stdout.write(`${notInSpec}\n`);
        const failed = store.listTrials({ sweepId: sweep.id, status: 'failed' });
        for (const t of failed)
          process.stdout.write(`failed ${t.key.slice(0, 10)} (attempt ${t.attempts}): ${t.error ?? ''}\n`);
      } finally {
        store.close();
      }
    });
}
