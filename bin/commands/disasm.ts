// `textpoke disasm <image> <symbol|address>`: an objdump-style listing read from the
// image file (nothing is mapped), paravirt sites annotated with op and state.

import type { Argv } from 'yargs';
import { listing, formatListing, imageReader, imageSiteFacts } from '../../kernel-model/present/listing';
import { resolveAddress, ConsoleError } from '../../kernel-model/present/console';
import type { KernelImage } from '../../kernel-model/image/kernel-image';
import { VmlinuxImage } from '../../kernel-model/image/vmlinux-image';
import { checkInt } from '../args';
import { UserError } from '../errors';
import { print, printJson } from '../output';
import { openImage, imageOptions, type ImageArgs } from '../image-args';

export interface DisasmArgs extends ImageArgs {
  at: string;
  count?: number;
  syntax: 'gas' | 'intel';
  json: boolean;
}

/** Listing a whole function stops here unless --count says otherwise. */
const MAX_FUNCTION_INSNS = 2000;

export function disasmCommand(y: Argv): Argv<DisasmArgs> {
  return imageOptions(y)
    .positional('at', { type: 'string', demandOption: true, describe: 'symbol (name@N: the Nth of several with that name), symbol+0xoff, or 0x… address' })
    .option('count', { type: 'number', describe: 'instructions to list (default: to the end of the function, else 20)' })
    .option('syntax', { choices: ['gas', 'intel'] as const, default: 'gas' as const, describe: 'assembler syntax' })
    .option('json', { type: 'boolean', default: false, describe: 'print the listing as one JSON object' })
    .example('$0 disasm minikernel queued_spin_unlock', 'a fixture function, its pv site annotated')
    .example('$0 disasm vmlinux _raw_spin_unlock --syntax intel', 'a real kernel function (System.map beside vmlinux)') as unknown as Argv<DisasmArgs>;
}

/** Where the function holding `addr` ends: System.map extents, else the next symbol. */
function functionEnd(img: KernelImage, addr: bigint): bigint | undefined {
  if (img instanceof VmlinuxImage) return img.vm.functionAt(addr)?.end;
  let end: bigint | undefined;
  for (const n of img.symbols.names()) {
    const v = img.symbols.resolve(n)!;
    if (v > addr && (end === undefined || v < end)) end = v;
  }
  return end;
}

export function runDisasm(a: DisasmArgs): number {
  const count = checkInt(a.count, '--count', 1, 1_000_000);
  const img = openImage(a);
  let start: bigint;
  try {
    const warnings: string[] = [];
    start = resolveAddress(a.at, img.symbols, undefined, warnings);
    for (const w of warnings) process.stderr.write(`textpoke: warning: ${img.path}: ${w}\n`);
  } catch (e) {
    if (e instanceof ConsoleError) throw new UserError(`${img.path}: ${e.message}`);
    throw e;
  }
  const read = imageReader(img);
  if (read(start, 1).length === 0) throw new UserError(`${img.path}: ${a.at} (0x${start.toString(16)}) is in no loaded section of the image`);
  const end = count === undefined ? functionEnd(img, start) : undefined;
  const lines = listing({
    read,
    start,
    count: count ?? (end !== undefined ? MAX_FUNCTION_INSNS : 20),
    end,
    symbols: img.symbols,
    sites: img.sites,
    siteFacts: imageSiteFacts(img),
    syntax: a.syntax,
  });
  if (a.json) {
    printJson({
      image: img.path,
      address: start,
      symbol: img.symbols.format(start),
      insns: lines.map((l) => ({ address: l.address, bytes: l.bytes, text: l.text, symbol: l.symbol, site: l.site ? { op: l.site.op, len: l.site.len, state: l.site.state.kind, text: l.site.state.text } : undefined })),
    });
  } else {
    print(formatListing(lines));
  }
  return 0;
}
