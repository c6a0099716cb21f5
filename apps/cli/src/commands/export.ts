/**
 * `flatrank export [--db F] --sweep NAME --format csv|json [--out FILE]`: one row per trial of a
 * sweep (flattened config, status, environment, results). --out is written to a temporary file in
 * the same directory and renamed, so a reader never sees half a file.
 */
import { renameSync, rmSync, writeFileSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import type { Command } from 'commander';
import { ValidationError } from '@flatrank/protocol';
import { formatRows, parseFormat } from '@flatrank/report';
import { ResultsStore, exportRows, resolveDbPath } from '@flatrank/store';

export function writeFileAtomically(file: string, text: string): void {
  const target = resolve(file);
  const tmp = join(dirname(target), `.${basename(target)}.${process.pid}.tmp`);
  try {
    writeFileSync(tmp, text);
    renameSync(tmp, target);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw new ValidationError('--out', `--out: cannot write ${target}: ${(e as Error).message}`, {
      cause: e,
    });
  }
}

export function registerExport(program: Command): void {
  program
    .command('export')
    .description('export every trial of a sweep (flattened config, environment, results) as CSV or JSON')
    .requiredOption('--sweep <name>', 'the sweep to export')
    .option('--db <file>', 'results database (default: $FLATRANK_DB, else ./flatrank.sqlite)')
    .option('--format <format>', 'csv or json', 'csv')
    .option('--out <file>', 'write to this file (atomically) instead of stdout')
    .action((flags: { sweep: string; db?: string; format: string; out?: string }) => {
      const format = parseFormat(flags.format, ['csv', 'json']);
      const store = ResultsStore.open(resolveDbPath(flags.db), { readonly: true });
      let text: string;
      let n: number;
      try {
        const { columns, rows } = exportRows(store, flags.sweep);
        text = formatRows(format, rows, columns);
        n = rows.length;
      } finally {
        store.close();
      }
      if (flags.out) {
        writeFileAtomically(flags.out, text);
        process.stderr.write(`wrote ${n} trial${n === 1 ? '' : 's'} to ${flags.out}\n`);
      } else process.stdout.write(text);
    });
}
