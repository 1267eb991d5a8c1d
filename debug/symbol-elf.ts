// An ELF64 file that holds nothing but a machine's symbols and its image's section
// layout, for gdb's `file` or `add-symbol-file` (System V gABI, "Sections" and
// "Symbol Table"). Every section is SHT_NOBITS: gdb then reads instruction bytes from
// the target, which is what we want while text is being rewritten (a file copy of
// .text would show the bytes before patching).
//
// Symbol sizes: an entry's size when the table knows it; otherwise the distance to the
// next symbol in the same section (fixture manifests and System.map carry no sizes),
// so gdb can bound functions for `disassemble` and frames.

import { writeFileViaTemp } from './output-file';
import type { SymbolTable } from '../emu/symbols';
import type { ImageSection } from '../kernel-model/image/kernel-image';

const SHT_SYMTAB = 2;
const SHT_STRTAB = 3;
const SHT_NOBITS = 8;
const SHF_WRITE = 1n;
const SHF_ALLOC = 2n;
const SHF_EXECINSTR = 4n;
const STT_OBJECT = 1;
const STT_FUNC = 2;
const STB_GLOBAL = 1;
const SHN_ABS = 0xfff1;

class StrTab {
  private readonly parts: Buffer[] = [Buffer.from([0])];
  private size = 1;
  add(s: string): number {
    const at = this.size;
    const b = Buffer.from(s + '\0', 'utf8');
    this.parts.push(b);
    this.size += b.length;
    return at;
  }
  bytes(): Buffer {
    return Buffer.concat(this.parts);
  }
}

function isText(s: ImageSection): boolean {
  return s.name === '.text' || s.name.startsWith('.text.') || s.name === '.noinstr.text' || s.name === '.entry.text';
}

/** The ELF image (bytes) for these sections and symbols. */
export function symbolElf(sections: readonly ImageSection[], symbols: SymbolTable): Buffer {
  const secs = sections.filter((s) => s.size > 0).slice().sort((a, b) => (a.address < b.address ? -1 : 1));
  const shstr = new StrTab();
  const str = new StrTab();
  const inSection = (a: bigint): number => secs.findIndex((s) => a >= s.address && a < s.address + BigInt(s.size));
  const entries = symbols.all().slice().sort((a, b) => (a.address < b.address ? -1 : a.address > b.address ? 1 : 0));
  const syms: Buffer[] = [Buffer.alloc(24)];
  entries.forEach((e, i) => {
    const si = inSection(e.address);
    let size = BigInt(e.size);
    if (size === 0n && si >= 0) {
      const sec = secs[si];
      const end = sec.address + BigInt(sec.size);
      let next = end;
      for (let k = i + 1; k < entries.length; k++) {
        if (entries[k].address > e.address) {
          next = entries[k].address < end ? entries[k].address : end;
          break;
        }
      }
      size = next - e.address;
    }
    const b = Buffer.alloc(24);
    b.writeUInt32LE(str.add(e.name), 0);
    b.writeUInt8((STB_GLOBAL << 4) | (si >= 0 && isText(secs[si]) ? STT_FUNC : STT_OBJECT), 4);
    b.writeUInt16LE(si >= 0 ? si + 1 : SHN_ABS, 6);
    b.writeBigUInt64LE(e.address, 8);
    b.writeBigUInt64LE(size, 16);
    syms.push(b);
  });
  const symtab = Buffer.concat(syms);
  const strtab = str.bytes();
  // Section headers: null, the image's sections, .symtab, .strtab, .shstrtab.
  const heads: { name: number; type: number; flags: bigint; addr: bigint; off: number; size: number; link: number; info: number; align: number; entsize: number }[] = [
    { name: 0, type: 0, flags: 0n, addr: 0n, off: 0, size: 0, link: 0, info: 0, align: 0, entsize: 0 },
  ];
  for (const s of secs) {
    const flags = SHF_ALLOC | (isText(s) ? SHF_EXECINSTR : SHF_WRITE);
    heads.push({ name: shstr.add(s.name), type: SHT_NOBITS, flags, addr: s.address, off: 64, size: s.size, link: 0, info: 0, align: 16, entsize: 0 });
  }
  const symIdx = heads.length;
  const symName = shstr.add('.symtab');
  const strName = shstr.add('.strtab');
  const shstrName = shstr.add('.shstrtab');
  const shstrtab = shstr.bytes();
  const symOff = 64;
  const strOff = symOff + symtab.length;
  const shstrOff = strOff + strtab.length;
  const shOff = (shstrOff + shstrtab.length + 7) & ~7;
  heads.push({ name: symName, type: SHT_SYMTAB, flags: 0n, addr: 0n, off: symOff, size: symtab.length, link: symIdx + 1, info: 1, align: 8, entsize: 24 });
  heads.push({ name: strName, type: SHT_STRTAB, flags: 0n, addr: 0n, off: strOff, size: strtab.length, link: 0, info: 0, align: 1, entsize: 0 });
  heads.push({ name: shstrName, type: SHT_STRTAB, flags: 0n, addr: 0n, off: shstrOff, size: shstrtab.length, link: 0, info: 0, align: 1, entsize: 0 });
  const eh = Buffer.alloc(64);
  eh.set([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1, 0], 0); // ELFCLASS64, little-endian, version 1, System V
  eh.writeUInt16LE(2, 16); // ET_EXEC
  eh.writeUInt16LE(62, 18); // EM_X86_64
  eh.writeUInt32LE(1, 20);
  eh.writeBigUInt64LE(0n, 24); // e_entry
  eh.writeBigUInt64LE(0n, 32); // e_phoff
  eh.writeBigUInt64LE(BigInt(shOff), 40);
  eh.writeUInt16LE(64, 52); // e_ehsize
  eh.writeUInt16LE(56, 54); // e_phentsize
  eh.writeUInt16LE(0, 56);
  eh.writeUInt16LE(64, 58); // e_shentsize
  eh.writeUInt16LE(heads.length, 60);
  eh.writeUInt16LE(heads.length - 1, 62); // e_shstrndx
  const sh = Buffer.alloc(64 * heads.length);
  heads.forEach((h, i) => {
    const o = i * 64;
    sh.writeUInt32LE(h.name, o);
    sh.writeUInt32LE(h.type, o + 4);
    sh.writeBigUInt64LE(h.flags, o + 8);
    sh.writeBigUInt64LE(h.addr, o + 16);
    sh.writeBigUInt64LE(BigInt(h.off), o + 24);
    sh.writeBigUInt64LE(BigInt(h.size), o + 32);
    sh.writeUInt32LE(h.link, o + 40);
    sh.writeUInt32LE(h.info, o + 44);
    sh.writeBigUInt64LE(BigInt(h.align), o + 48);
    sh.writeBigUInt64LE(BigInt(h.entsize), o + 56);
  });
  const pad = Buffer.alloc(shOff - (shstrOff + shstrtab.length));
  return Buffer.concat([eh, symtab, strtab, shstrtab, pad, sh]);
}

/** Writes the symbol ELF to `path` through a temporary file renamed into place. */
export function writeSymbolElf(path: string, sections: readonly ImageSection[], symbols: SymbolTable): void {
  writeFileViaTemp(path, symbolElf(sections, symbols));
}
