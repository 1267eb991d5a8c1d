// `textpoke coverage <file>`: instruction coverage of kernel text — the share of
// instruction occurrences the emulator implements, and what is missing, ranked.
// The same report as `npm run coverage` (scripts/coverage.ts).

import type { Argv } from 'yargs';
import { existsSync, readFileSync } from 'fs';
import { elfChunks, isElfFile } from '../../kernel-model/image/coverage-input';
import { sweepCoverage, formatCoverage, coverageToJson, type CoverageChunk } from '../../emu/coverage';
import { loadVmlinux } from '../../kernel-model/image/vmlinux';
import { loadImage } from '../../kernel-model/image/load';
import { textSection } from '../../kernel-model/image/kernel-image';
import { parseU64 } from '../../emu/u64';
import { checkInt, inputFile } from '../args';
import { UserError } from '../errors';
import { print, printJson } from '../output';

export interface CoverageArgs {
  file: string;
  map?: string;
  section: string[];
  base?: string;
  top?: number;
  json: boolean;
}

export function coverageCommand(y: Argv): Argv<CoverageArgs> {
  return y
    .positional('file', { type: 'string', demandOption: true, describe: 'ELF vmlinux, fixture (name or .json/.bin), or a raw text blob' })
    .option('map', { type: 'string', describe: 'System.map of a vmlinux (default: the one beside it)' })
    .option('section', { type: 'string', array: true, default: [] as string[], describe: 'ELF sections to sweep (default .text)' })
    .option('base', { type: 'string', describe: 'load address of a raw blob (default 0)' })
    .option('top', { type: 'number', describe: 'entries per ranked list' })
    .option('json', { type: 'boolean', default: false, describe: 'print the report as one JSON object' })
    .example('$0 coverage .cache/kernel/6.1.0-*/vmlinux --top 20', "coverage of a real kernel's .text, per function")
    .example('$0 coverage minikernel --json', 'the fixture kernel') as unknown as Argv<CoverageArgs>;
}

export function runCoverage(a: CoverageArgs): number {
  const top = checkInt(a.top, '--top', 0, Number.MAX_SAFE_INTEGER);
  const file = inputFile(a.file, 'file to sweep');
  if (a.map !== undefined) inputFile(a.map, '--map');
  let chunks: CoverageChunk[];
  let title: string;
  let symbolize: ((x: bigint) => string) | undefined;
  // inputFile lets through only bare names that are no file: fixture names.
  const named = !existsSync(file);
  const fixture = named || file.endsWith('.json') || (file.endsWith('.bin') && existsSync(file.replace(/\.bin$/, '.json')));
  if (!named && isElfFile(file)) {
    const vm = loadVmlinux(file, { systemMap: a.map });
    try {
      const names = a.section.length ? a.section : ['.text'];
      const perFunction = vm.map !== null || vm.elf.symbols().length > 0;
      const r = elfChunks(vm, names, perFunction);
      chunks = r.chunks;
      title = `coverage of ${file} ${names.join(' ')} (${r.mode})`;
      const syms = vm.symbols;
      symbolize = (x) => syms.format(x);
    } finally {
      vm.close();
    }
  } else if (fixture) {
    if (a.section.length) throw new UserError('--section: only for an ELF file');
    const img = loadImage(file);
    const t = textSection(img);
    chunks = [{ base: t.address, bytes: img.read(t.address, t.size) }];
    title = `coverage of ${img.path} .text (linear)`;
    symbolize = (x) => img.symbols.format(x);
  } else {
    if (a.section.length || a.map) throw new UserError(`${file}: not an ELF file; --section and --map need one`);
    const base = a.base === undefined ? 0n : parseU64(a.base);
    if (base === undefined) throw new UserError(`--base: expected an address like 0xffffffff81000000 (got "${a.base}")`);
    chunks = [{ base, bytes: new Uint8Array(readFileSync(file)) }];
    title = `coverage of ${file} (raw blob at 0x${base.toString(16)}, linear)`;
  }
  // A share of nothing is no coverage: "0 of 0 = 100%" would read as success.
  if (chunks.every((c) => c.bytes.length === 0)) throw new UserError(`${file}: no bytes to sweep (the file or the section asked for is empty)`);
  const r = sweepCoverage(chunks);
  if (a.json) printJson({ file, ...(coverageToJson(r, symbolize) as object) });
  else print(formatCoverage(r, { top, symbolize: symbolize && ((x) => `0x${x.toString(16)} ${symbolize!(x)}`), title }));
  return 0;
}
