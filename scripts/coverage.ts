// npm run coverage -- [file] [--system-map FILE | --no-symbols] [--section NAME]... [--base ADDR] [--top N] [--json]
// Instruction coverage of a text blob or an ELF (default: the cached Debian kernel,
// fetched if needed): the share of instruction occurrences the opcode table
// implements, and the missing mnemonics and unsupported forms ranked by count.

import * as fs from 'fs';
import { elfChunks, isElfFile } from '../kernel-model/image/coverage-input';
import { sweepCoverage, formatCoverage, coverageToJson, type CoverageChunk } from '../emu/coverage';
import { loadVmlinux } from '../kernel-model/image/vmlinux';
import { downloadKernel } from '../kernel-model/image/download';

const USAGE =
  'usage: coverage [file] [--system-map FILE | --no-symbols] [--section NAME]... [--base ADDR] [--top N] [--json]\n' +
  '  file: an ELF (swept per function when it has symbols or a System.map) or a raw text blob (swept linearly);\n' +
  '        default: the cached Debian 6.1 vmlinux (downloaded if missing)';

interface Args {
  file?: string;
  systemMap?: string;
  noSymbols: boolean;
  sections: string[];
  base: bigint;
  top?: number;
  json: boolean;
}

function parseArgs(argv: string[]): Args {
  const a: Args = { noSymbols: false, sections: [], base: 0n, json: false };
  for (let i = 0; i < argv.length; i++) {
    const x = argv[i];
    const value = (): string => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${x} needs a value\n${USAGE}`);
      return v;
    };
    if (x === '--system-map') a.systemMap = value();
    else if (x === '--no-symbols') a.noSymbols = true;
    else if (x === '--section') a.sections.push(value());
    else if (x === '--base') {
      const v = value();
      if (!/^(0x)?[0-9a-fA-F]+$/.test(v)) throw new Error(`--base: expected a hex address, got '${v}'`);
      a.base = BigInt(v.startsWith('0x') ? v : '0x' + v);
    } else if (x === '--top') {
      const v = Number(value());
      if (!Number.isInteger(v) || v < 0) throw new Error('--top: expected a non-negative integer');
      a.top = v;
    } else if (x === '--json') a.json = true;
    else if (x === '--help' || x === '-h') {
      process.stdout.write(USAGE + '\n');
      process.exit(0);
    } else if (!x.startsWith('-') && a.file === undefined) a.file = x;
    else throw new Error(`unknown argument '${x}'\n${USAGE}`);
  }
  return a;
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const t0 = performance.now();
  let file = args.file;
  let systemMap = args.systemMap;
  if (!file) {
    const k = await downloadKernel({ log: (s) => process.stderr.write(`coverage: ${s}\n`) });
    file = k.vmlinux;
    systemMap ??= k.systemMap;
  }
  let chunks: CoverageChunk[];
  let title: string;
  let symbolName: ((a: bigint) => string) | undefined;
  if (isElfFile(file)) {
    const vm = loadVmlinux(file, { systemMap: args.noSymbols ? null : systemMap });
    try {
      const sections = args.sections.length ? args.sections : ['.text'];
      const hasSymbols = !args.noSymbols && (vm.map !== null || vm.elf.symbols().length > 0);
      const r = elfChunks(vm, sections, hasSymbols);
      chunks = r.chunks;
      title = `coverage of ${file} ${sections.join(' ')} (${r.mode}${vm.map ? ', System.map' : ''})`;
      const syms = vm.symbols;
      symbolName = (a) => syms.format(a);
    } finally {
      vm.close();
    }
  } else {
    if (args.sections.length || systemMap) throw new Error(`${file}: not an ELF file; --section and --system-map need one`);
    chunks = [{ base: args.base, bytes: fs.readFileSync(file) }];
    title = `coverage of ${file} (raw blob at 0x${args.base.toString(16)}, linear)`;
  }
  const loadSecs = (performance.now() - t0) / 1000;
  const report = sweepCoverage(chunks);
  if (args.json) {
    process.stdout.write(JSON.stringify({ file, loadSeconds: loadSecs, ...(coverageToJson(report, symbolName) as object) }, null, 2) + '\n');
  } else {
    const symbolize = symbolName && ((a: bigint): string => `0x${a.toString(16)} ${symbolName!(a)}`);
    process.stdout.write(formatCoverage(report, { top: args.top, symbolize, title }) + '\n');
    process.stdout.write(`(load ${loadSecs.toFixed(2)} s, sweep ${report.seconds.toFixed(2)} s)\n`);
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`coverage: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(e instanceof Error && e.name === 'LoadError' ? 2 : 1);
});
