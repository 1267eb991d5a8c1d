// What the coverage sweep reads from a kernel image: an ELF's executable sections,
// split into functions when symbols are known (so padding between functions is not
// decoded as code).

import { closeSync, openSync, readSync } from 'fs';
import type { CoverageChunk } from '../../emu/coverage';
import type { Vmlinux } from './vmlinux';

export function isElfFile(path: string): boolean {
  const fd = openSync(path, 'r');
  try {
    const b = Buffer.alloc(4);
    return readSync(fd, b, 0, 4, 0) === 4 && b[0] === 0x7f && b[1] === 0x45 && b[2] === 0x4c && b[3] === 0x46;
  } finally {
    closeSync(fd);
  }
}

/** Chunks for an ELF: per section, with function extents when symbols are known. */
export function elfChunks(vm: Vmlinux, sections: string[], perFunction: boolean): { chunks: CoverageChunk[]; mode: string } {
  const chunks: CoverageChunk[] = [];
  for (const name of sections) {
    const sec = vm.requireSection(name);
    const bytes = vm.elf.readSection(vm.elf.sections[sec.index]);
    const functions = perFunction
      ? vm.functions([name]).map((f) => ({ start: Number(f.start - sec.addr), end: Number(f.end - sec.addr) }))
      : undefined;
    chunks.push({ base: sec.addr, bytes, functions });
  }
  return { chunks, mode: perFunction ? 'per function' : 'linear' };
}
