// Does a System.map belong to this vmlinux? The map carries no build-id, but the
// kernel's linker script puts section-edge symbols exactly at the edges of the ELF's
// sections (_stext/_etext around .text, _sdata/_edata around .data, the .notes and
// .parainstructions bounds). A map from another build, even of the same version,
// disagrees on at least one of them (any change in code size moves _etext), so one
// clear error is given here instead of a confusing one later (a __per_cpu_load
// discrepancy, or pv_ops in the wrong place).

import type { ElfFile } from './elf';
import { LoadError } from './elf';
import type { SystemMap } from './system-map';

/** symbol, section, and which edge of the section the symbol marks. */
const EDGES: readonly [string, string, 'start' | 'end'][] = [
  ['_stext', '.text', 'start'],
  ['_etext', '.text', 'end'],
  ['_sdata', '.data', 'start'],
  ['_edata', '.data', 'end'],
  ['__start_notes', '.notes', 'start'],
  ['__stop_notes', '.notes', 'end'],
  ['__parainstructions', '.parainstructions', 'start'],
  ['__parainstructions_end', '.parainstructions', 'end'],
];

const hex = (v: bigint): string => '0x' + v.toString(16);

/** Throws LoadError "System.map does not match this vmlinux" on the first edge that disagrees. */
export function checkMapMatchesElf(elf: ElfFile, map: SystemMap, mapLabel: string): void {
  for (const [sym, section, edge] of EDGES) {
    const at = map.symbols.resolve(sym);
    const s = elf.sections.find((x) => x.name === section);
    if (at === undefined || !s || s.addr === 0n) continue;
    const want = edge === 'start' ? s.addr : s.addr + BigInt(s.size);
    if (at !== want) {
      throw new LoadError(
        `${mapLabel}: System.map does not match this vmlinux (${elf.label}): ${sym} is ${hex(at)} in the map but ${section} ${edge === 'start' ? 'starts' : 'ends'} at ${hex(want)} (a map from another build?)`,
      );
    }
  }
}
