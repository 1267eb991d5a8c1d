#!/usr/bin/env node
// The textpoke command: a thin yargs layer. Each command parses its arguments and
// calls into the library; errors become one line on stderr and exit status 2.

import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { execCommand, runExec, type ExecArgs } from './commands/exec';
import { reportError } from './errors';

function main(argv: string[]): number {
  let code = 0;
  const debug = argv.includes('--debug');
  const wrap =
    <T>(fn: (a: T) => number) =>
    (a: T): void => {
      try {
        code = fn(a);
      } catch (e) {
        code = reportError(e, debug);
      }
    };
  yargs(argv)
    .scriptName('textpoke')
    .usage('$0 <command> [options]\n\nA multi-CPU x86-64 emulator for Linux runtime text patching.')
    .command('exec', 'run bytes on one CPU until hlt, the step limit or an unhandled exception', execCommand, wrap<ExecArgs>(runExec))
    .option('debug', { type: 'boolean', default: false, describe: 'show stack traces for errors' })
    .demandCommand(1, 'name a command (see --help)')
    .strict()
    .fail((msg, err) => {
      if (err) throw err;
      process.stderr.write(`textpoke: ${msg}\n`);
      code = 2;
    })
    .help()
    .parse();
  return code;
}

process.exitCode = main(hideBin(process.argv));
