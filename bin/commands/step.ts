// `textpoke step <scenario|image>`: the single-stepping console. Interactive with
// readline and history on a terminal; line by line from a pipe (each command echoed
// after the prompt); or scripted with --cmd. The interpreter is
// kernel-model/console.ts; this file only moves lines in and out.
//
// Exit status: an interactive session ends with 0 (errors are reported and it goes
// on). With --cmd the first failing command stops the script with exit status 2; a
// piped session runs every line but also exits 2 when any failed, since a script that
// fails half-way should not look fine.

import type { Argv } from 'yargs';
import { createInterface } from 'readline';
import { existsSync, readFileSync } from 'fs';
import { homedir } from 'os';
import { join } from 'path';
import { openConsole, type ConsoleReply, type StepConsole } from '../../kernel-model/present/console';
import { checkInt, inputFile } from '../args';
import { writeOutput } from '../../kernel-model/image/output-file';
import { jsonLine, print } from '../output';

export interface StepArgs {
  target: string;
  cmd: string[];
  cpus: number;
  syntax: 'gas' | 'intel';
  json: boolean;
}

const HISTORY_SIZE = 1000;

export function stepCommand(y: Argv): Argv<StepArgs> {
  return y
    .positional('target', { type: 'string', demandOption: true, describe: 'scenario file, or a kernel image to boot with idle CPUs' })
    .option('cmd', { type: 'string', array: true, default: [] as string[], describe: 'run this console command (repeatable), then exit' })
    .option('cpus', { type: 'number', default: 2, describe: 'CPUs when booting an image (a scenario names its own)' })
    .option('syntax', { choices: ['gas', 'intel'] as const, default: 'gas' as const, describe: 'disassembly syntax' })
    .option('json', { type: 'boolean', default: false, describe: 'one JSON object per command: {"command", "ok", "output" | "error"}' })
    .example('$0 step fixtures/scenarios/nmi-deadlock-primary.json', 'interactive console (type help)')
    .example('$0 step fixtures/scenarios/nmi-deadlock-primary.json --cmd "break asm_exc_nmi" --cmd continue --cmd "regs 1"', 'scripted: stop at the first NMI and show CPU1')
    .example('printf "step 1 10\\nwhere\\n" | $0 step minikernel', 'commands from a pipe') as unknown as Argv<StepArgs>;
}

/** Prints a reply; returns false for a failed command. */
function show(con: StepConsole, line: string, r: ConsoleReply, a: StepArgs, echo: boolean): boolean {
  if (a.json) {
    const warnings = r.warnings ? { warnings: r.warnings } : {};
    process.stdout.write(jsonLine(r.error ? { command: line, ok: false, error: r.error } : { command: line, ok: true, output: r.data, ...warnings }) + '\n');
  } else {
    if (echo) print(`${con.prompt}${line}`);
    for (const w of r.warnings ?? []) process.stderr.write(`textpoke: warning: ${w}\n`);
    if (r.error) process.stderr.write(`textpoke: ${r.error}\n`);
    else print(r.text);
  }
  return !r.error;
}

export async function runStep(a: StepArgs): Promise<number> {
  const cpus = checkInt(a.cpus, '--cpus', 1, 256)!;
  const con = openConsole(inputFile(a.target, 'scenario or image'), { cpus, syntax: a.syntax });
  if (a.cmd.length > 0) {
    for (const line of a.cmd) {
      const r = con.exec(line);
      if (!show(con, line, r, a, true)) return 2;
      if (r.quit) break;
    }
    return 0;
  }
  if (!process.stdin.isTTY) {
    // A pipe is a script too: every command runs (the output shows what each did), but
    // the exit status says whether any failed, as with --cmd.
    const rl = createInterface({ input: process.stdin, terminal: false });
    let failed = false;
    for await (const line of rl) {
      if (line.trim() === '') continue;
      const r = con.exec(line);
      if (!show(con, line, r, a, true)) failed = true;
      if (r.quit) break;
    }
    rl.close();
    return failed ? 2 : 0;
  }
  return interactive(con, a);
}

function historyFile(): string {
  return process.env.TEXTPOKE_HISTORY ?? join(homedir(), '.textpoke_history');
}

function interactive(con: StepConsole, a: StepArgs): Promise<number> {
  let history: string[] = [];
  try {
    if (existsSync(historyFile())) history = readFileSync(historyFile(), 'utf8').split('\n').filter((l) => l).slice(-HISTORY_SIZE).reverse();
  } catch {
    // No history is no reason not to start.
  }
  const rl = createInterface({ input: process.stdin, output: process.stdout, prompt: con.prompt, terminal: true, history, historySize: HISTORY_SIZE });
  print(`textpoke console on ${con.run.scenario.name}: ${con.machine.cpus.length} CPUs. Type help for commands, quit to leave.`);
  rl.prompt();
  return new Promise((done) => {
    rl.on('line', (line) => {
      const r = con.exec(line);
      show(con, line, r, a, false);
      if (r.quit) rl.close();
      else rl.prompt();
    });
    rl.on('close', () => {
      try {
        const h = (rl as unknown as { history: string[] }).history;
        writeOutput(historyFile(), [...h].reverse().join('\n') + '\n');
      } catch {
        // Best effort: a read-only home keeps the session's history in memory only.
      }
      done(0);
    });
  });
}
