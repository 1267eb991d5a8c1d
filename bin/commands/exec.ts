// `textpoke exec`: run bytes on one bare CPU until HLT, the step limit, or an
// exception with no handler; print the registers. A long run shows progress on a
// terminal, and Ctrl-C (SIGINT) stops it cleanly: the registers so far are printed
// with stop "interrupted" and exit status 130.

import type { Argv } from 'yargs';
import { execCodeAsync, execResultJson, parseRegs, REG_NAMES } from '../../emu/exec';
import { progressBar } from '../output';
import { parseU64 } from '../../emu/u64';
import { UserError } from '../errors';
import { checkInt } from '../args';

export interface ExecArgs {
  code: string;
  at?: string;
  regs?: string;
  'max-steps': number;
  json: boolean;
}

export function parseHexBytes(text: string, what: string): Uint8Array {
  const t = text.replace(/\s+/g, '').replace(/^0x/i, '');
  if (t.length === 0 || t.length % 2 !== 0 || !/^[0-9a-fA-F]+$/.test(t)) {
    throw new UserError(`${what}: expected an even number of hex digits, e.g. "48c7c001000000f4" (got "${text}")`);
  }
  return Uint8Array.from(t.match(/../g)!.map((b) => parseInt(b, 16)));
}

export function execCommand(y: Argv): Argv<ExecArgs> {
  return y
    .option('code', { type: 'string', demandOption: true, describe: 'instruction bytes in hex' })
    .option('at', { type: 'string', describe: 'load address (default 0x401000)' })
    .option('regs', { type: 'string', describe: 'initial registers as JSON: {"rax":"0x1",…}' })
    .option('max-steps', { type: 'number', default: 1000000, describe: 'step limit' })
    .option('json', { type: 'boolean', default: false, describe: 'print one JSON object' })
    .example('$0 exec --code 4801d8f4 --regs \'{"rax":"0x2","rbx":"0x3"}\' --json', 'add rbx to rax, then hlt') as unknown as Argv<ExecArgs>;
}

export async function runExec(a: ExecArgs): Promise<number> {
  const code = parseHexBytes(a.code, '--code');
  let at: bigint | undefined;
  if (a.at !== undefined) {
    at = parseU64(a.at);
    if (at === undefined) throw new UserError(`--at: expected an address like 0x401000 (got "${a.at}")`);
  }
  let regs = {};
  if (a.regs !== undefined) {
    let json: unknown;
    try {
      json = JSON.parse(a.regs);
    } catch (e) {
      throw new UserError(`--regs: not valid JSON (${(e as Error).message})`);
    }
    regs = parseRegs(json, '--regs');
  }
  checkInt(a['max-steps'], '--max-steps', 0, Number.MAX_SAFE_INTEGER);
  const bar = progressBar('exec', a['max-steps'], a.json);
  const stop = new AbortController();
  const onSigint = (): void => stop.abort();
  process.on('SIGINT', onSigint);
  let r;
  try {
    r = await execCodeAsync({ code, at, regs, maxSteps: a['max-steps'] }, { signal: stop.signal, onProgress: bar ? (n) => bar.update(n) : undefined });
  } finally {
    process.off('SIGINT', onSigint);
    bar?.done();
  }
  if (a.json) {
    process.stdout.write(JSON.stringify(execResultJson(r)) + '\n');
  } else {
    const ex = r.exception ? ` ${r.exception.name} at 0x${r.exception.rip.toString(16)}: ${r.exception.detail}` : '';
    process.stdout.write(`stop: ${r.stop}${ex}\nsteps: ${r.steps}\n`);
    for (const n of REG_NAMES) process.stdout.write(`${n.padEnd(6)} 0x${r.regs[n].toString(16).padStart(16, '0')}\n`);
  }
  // 128 + SIGINT, as a shell reports a command Ctrl-C ended.
  return r.stop === 'interrupted' ? 130 : 0;
}
