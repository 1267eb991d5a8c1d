// `textpoke gdb <scenario|image>`: a GDB remote stub on 127.0.0.1 for a prepared
// scenario run (or an image booted with idle CPUs). The stub is debug/gdb-server.ts;
// this file parses options, writes the symbol file and says where to connect.

import type { Argv } from 'yargs';
import { consoleScenario } from '../../kernel-model/present/console';
import { prepareScenario } from '../../kernel-model/scenario/run';
import { serveGdb } from '../../debug/gdb-server';
import { writeSymbolElf } from '../../debug/symbol-elf';
import { checkInt, inputFile, outputFile, scheduleOverride } from '../args';
import { print } from '../output';

export interface GdbArgs {
  target: string;
  port: number;
  'symbol-file'?: string;
  cpus: number;
  seed?: number;
  schedule?: string;
  verbose: boolean;
}

export function gdbCommand(y: Argv): Argv<GdbArgs> {
  return y
    .positional('target', { type: 'string', demandOption: true, describe: 'scenario file, or a kernel image to boot with idle CPUs' })
    .option('port', { type: 'number', default: 1234, describe: 'TCP port on 127.0.0.1 (0: any free port)' })
    .option('symbol-file', { type: 'string', describe: "write the image's symbols as an ELF for gdb's file / add-symbol-file" })
    .option('cpus', { type: 'number', default: 2, describe: 'CPUs when booting an image (a scenario names its own)' })
    .option('seed', { type: 'number', describe: 'random schedule with this seed' })
    .option('schedule', { type: 'string', describe: 'rr:<quantum>, random:<seed>[:<maxQuantum>], or a JSON schedule' })
    .option('verbose', { type: 'boolean', default: false, describe: 'log every packet on stderr' })
    .example('$0 gdb fixtures/scenarios/nmi-deadlock-primary.json --symbol-file /tmp/mk.elf', 'then: gdb -ex "file /tmp/mk.elf" -ex "target remote :1234"')
    .example('$0 gdb minikernel --cpus 4 --port 0', 'an idle 4-CPU machine on a free port') as unknown as Argv<GdbArgs>;
}

export async function runGdb(a: GdbArgs): Promise<number> {
  const port = checkInt(a.port, '--port', 0, 65535)!;
  const cpus = checkInt(a.cpus, '--cpus', 1, 256)!;
  if (a['symbol-file'] !== undefined) outputFile(a['symbol-file'], '--symbol-file');
  const { scenario, file } = consoleScenario(inputFile(a.target, 'scenario or image'), cpus);
  const run = prepareScenario(scenario, { schedule: scheduleOverride(a, scenario.schedule, scenario.cpus) }, file);
  if (a['symbol-file'] !== undefined) writeSymbolElf(a['symbol-file'], run.img.sections, run.m.symbols);
  const server = await serveGdb(run, { port, log: a.verbose ? (l) => process.stderr.write(l + '\n') : undefined });
  print(`textpoke gdb: ${scenario.name}, ${run.m.cpus.length} CPUs, listening on 127.0.0.1:${server.port} (gdb: target remote :${server.port})`);
  await server.finished;
  return 0;
}
