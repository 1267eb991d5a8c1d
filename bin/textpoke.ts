#!/usr/bin/env node
// The textpoke command: a thin yargs layer. Each command parses its arguments and
// calls into the library; errors become one line on stderr and exit status 2
// (bad input) or 70 (a bug). See each command's --help for examples.

import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { execCommand, runExec, type ExecArgs } from './commands/exec';
import { demoCommand, runDemoCommand, type DemoArgs } from './commands/demo';
import { runCommand, runRun, type RunArgs } from './commands/run';
import { loadCommand, runLoad, type LoadArgs } from './commands/load';
import { disasmCommand, runDisasm, type DisasmArgs } from './commands/disasm';
import { patchCommand, runPatch, type PatchArgs } from './commands/patch';
import { verifyCommand, runVerify, type VerifyArgs } from './commands/verify';
import { stepCommand, runStep, type StepArgs } from './commands/step';
import { exploreCommand, runExplore, type ExploreArgs } from './commands/explore';
import { coverageCommand, runCoverage, type CoverageArgs } from './commands/coverage';
import { gdbCommand, runGdb, type GdbArgs } from './commands/gdb';
import { reportError, UserError } from './errors';
import { setBlocksByDefault } from '../emu/machine';

async function main(argv: string[]): Promise<number> {
  let code = 0;
  const debug = argv.includes('--debug');
  const wrap =
    <T>(fn: (a: T) => number | Promise<number>) =>
    async (a: T): Promise<void> => {
      try {
        code = await fn(a);
      } catch (e) {
        code = reportError(e, debug);
      }
    };
  await yargs(argv)
    .scriptName('textpoke')
    .usage('$0 <command> [options]\n\nA multi-CPU x86-64 emulator for Linux runtime text patching.')
    .command('demo', "the seed's NMI deadlock with nmi=false, then the NMI-safe patch completing with nmi=true", demoCommand, wrap<DemoArgs>(runDemoCommand))
    .command('run <scenario>', 'run a scenario and explain the outcome (deadlock, completed, step-limit, xmc-violation, oops)', runCommand, wrap<RunArgs>(runRun))
    .command('load [image]', 'what an image holds: sections, symbols, pv sites by op, alternatives', loadCommand, wrap<LoadArgs>(runLoad))
    .command('disasm <image> <at>', 'objdump-style listing of a symbol or address, pv sites annotated with op and state', disasmCommand, wrap<DisasmArgs>(runDisasm))
    .command('patch [image]', 'runtime-patch pv ops on emulated CPUs (or --boot: boot-time patching) and write the patched image', patchCommand, wrap<PatchArgs>(runPatch))
    .command('verify [image]', 'check every pv site against what the alternatives engine generates for pv_ops (exit 1 on a mismatch)', verifyCommand, wrap<VerifyArgs>(runVerify))
    .command('explore [scenario]', 'every schedule and NMI placement within a bound: minimal counterexamples, replay files (exit 1 on a bug)', exploreCommand, wrap<ExploreArgs>(runExplore))
    .command('step <target>', 'single-stepping console on a scenario or image (interactive, piped, or --cmd)', stepCommand, wrap<StepArgs>(runStep))
    .command('gdb <target>', 'a GDB remote stub on 127.0.0.1: each CPU a thread, breakpoints and watchpoints kept by the emulator', gdbCommand, wrap<GdbArgs>(runGdb))
    .command('coverage <file>', 'instruction coverage of kernel text: what the emulator implements, what is missing', coverageCommand, wrap<CoverageArgs>(runCoverage))
    .command('exec', 'run bytes on one CPU until hlt, the step limit or an unhandled exception', execCommand, wrap<ExecArgs>(runExec))
    .option('color', { type: 'boolean', describe: 'colour output (default: only on a terminal; never with NO_COLOR)' })
    .option('debug', { type: 'boolean', default: false, describe: 'show stack traces for errors' })
    .option('blocks', { type: 'boolean', default: true, describe: 'compile hot code into blocks (--no-blocks: step every instruction, for comparison)' })
    .middleware((a) => setBlocksByDefault(a.blocks !== false))
    .demandCommand(1, 'name a command')
    .strict()
    .fail((msg, err) => {
      // Throwing ends the parse at the first usage error, so no handler runs after it.
      throw err ?? new UserError(`${msg.replace(/\s*\n\s*/g, ' ')} (see --help)`);
    })
    .help()
    .version()
    .wrap(Math.min(120, process.stdout.columns || 100))
    .exitProcess(false)
    .parseAsync();
  return code;
}

// A reader that stops early (| head) is not an error.
process.stdout.on('error', (e: NodeJS.ErrnoException) => {
  if (e.code === 'EPIPE') process.exit(process.exitCode ?? 0);
  throw e;
});

main(hideBin(process.argv)).then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    process.exitCode = reportError(e, process.argv.includes('--debug'));
  },
);
