// ELF64 little-endian reader that works from an open file descriptor. A distribution
// vmlinux is ~50 MB, so only the headers are parsed up front; section contents and
// byte ranges are read on demand into Buffers. Every inconsistency in the headers is a
// LoadError naming the file and the byte offset of the field at fault.

import * as fs from 'fs';
import * as nodePath from 'path';

/** Bad input (a file, table or record we cannot use): one line naming where and what. */
export class LoadError extends Error {
  override name = 'LoadError';
}

export const SHT_NULL = 0;
export const SHT_PROGBITS = 1;
export const SHT_SYMTAB = 2;
export const SHT_STRTAB = 3;
export const SHT_NOBITS = 8;
export const SHF_WRITE = 0x1;
export const SHF_ALLOC = 0x2;
export const SHF_EXECINSTR = 0x4;
export const PT_LOAD = 1;
export const EM_X86_64 = 62;

const EHDR_SIZE = 64;
const SHDR_SIZE = 64;
const PHDR_SIZE = 56;
const SHN_XINDEX = 0xffff;

export interface ElfHeader {
  /** ET_EXEC = 2, ET_REL = 1, ET_DYN = 3 … */
  type: number;
  machine: number;
  entry: bigint;
  phoff: number;
  shoff: number;
  flags: number;
  phnum: number;
  shnum: number;
  shstrndx: number;
}

export interface ElfSection {
  index: number;
  name: string;
  type: number;
  flags: number;
  /** Link (virtual) address; 0 for sections that are not loaded. */
  addr: bigint;
  offset: number;
  size: number;
  link: number;
  info: number;
  addralign: number;
  entsize: number;
}

/** A named [start, end) link-address range (a section's extent). */
export interface AddrRange {
  name: string;
  start: bigint;
  end: bigint;
}

/** The range of `ranges` holding [addr, addr+len), if any. */
export function rangeHolding(ranges: readonly AddrRange[], addr: bigint, len = 1): AddrRange | undefined {
  for (const r of ranges) if (addr >= r.start && addr + BigInt(len) <= r.end) return r;
  return undefined;
}

export const STT_FUNC = 2;

export interface ElfSymbol {
  name: string;
  value: bigint;
  size: number;
  /** STT_* (0 none, 1 object, 2 func, 3 section, 4 file …). */
  type: number;
  /** STB_* (0 local, 1 global, 2 weak). */
  bind: number;
  /** Section index (0 undefined, 0xfff1 absolute). */
  shndx: number;
}

export interface ElfSegment {
  index: number;
  type: number;
  flags: number;
  offset: number;
  vaddr: bigint;
  paddr: bigint;
  filesz: number;
  memsz: number;
  align: number;
}

function hex(n: number | bigint): string {
  return '0x' + n.toString(16);
}

/** A 64-bit file field as a number, refusing values JavaScript cannot hold exactly. */
function safe(v: bigint, label: string, at: number, what: string): number {
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new LoadError(`${label}: byte ${hex(at)}: ${what} ${hex(v)} is too large`);
  return Number(v);
}

export class ElfFile {
  readonly header: ElfHeader;
  readonly sections: readonly ElfSection[];
  readonly segments: readonly ElfSegment[];
  /** File name used in error messages. */
  readonly label: string;
  private readonly byName = new Map<string, ElfSection>();
  /** Allocated sections with contents, sorted by address, for address lookups. */
  private readonly allocSorted: ElfSection[];
  private closed = false;

  private constructor(
    readonly path: string,
    private readonly fd: number,
    readonly fileSize: number,
  ) {
    this.label = path === '' ? 'elf' : nodePath.basename(path);
    const eh = this.readRaw(0, Math.min(EHDR_SIZE, fileSize));
    this.header = this.parseHeader(eh);
    this.sections = this.parseSections();
    this.segments = this.parseSegments();
    for (const s of this.sections) if (s.name && !this.byName.has(s.name)) this.byName.set(s.name, s);
    this.allocSorted = this.sections
      .filter((s) => (s.flags & SHF_ALLOC) !== 0 && s.size > 0)
      .sort((a, b) => (a.addr < b.addr ? -1 : a.addr > b.addr ? 1 : 0));
  }

  /** Opens and validates an ELF64 little-endian file; reads only its headers. */
  static open(file: string): ElfFile {
    let fd: number;
    try {
      fd = fs.openSync(file, 'r');
    } catch (e) {
      throw new LoadError(`${file}: cannot open: ${(e as Error).message}`);
    }
    try {
      return new ElfFile(file, fd, fs.fstatSync(fd).size);
    } catch (e) {
      fs.closeSync(fd);
      throw e;
    }
  }

  close(): void {
    if (!this.closed) {
      this.closed = true;
      fs.closeSync(this.fd);
    }
  }

  private fail(at: number, what: string): never {
    throw new LoadError(`${this.label}: byte ${hex(at)}: ${what}`);
  }

  /** Reads file bytes [offset, offset+length) (fewer at end of file). */
  private readRaw(offset: number, length: number): Buffer {
    if (this.closed) throw new LoadError(`${this.label}: read after close`);
    const buf = Buffer.allocUnsafe(length);
    let got = 0;
    while (got < length) {
      const n = fs.readSync(this.fd, buf, got, length - got, offset + got);
      if (n === 0) break;
      got += n;
    }
    return got === length ? buf : buf.subarray(0, got);
  }

  private parseHeader(b: Buffer): ElfHeader {
    if (b.length < 16 || b[0] !== 0x7f || b[1] !== 0x45 || b[2] !== 0x4c || b[3] !== 0x46) {
      this.fail(0, 'not an ELF file (expected 7f 45 4c 46)');
    }
    if (b[4] !== 2) this.fail(4, `EI_CLASS is ${b[4]}, expected 2 (ELF64)`);
    if (b[5] !== 1) this.fail(5, `EI_DATA is ${b[5]}, expected 1 (little-endian)`);
    if (b[6] !== 1) this.fail(6, `EI_VERSION is ${b[6]}, expected 1`);
    if (b.length < EHDR_SIZE) this.fail(b.length, `ELF header truncated (file size ${hex(this.fileSize)}, header needs ${hex(EHDR_SIZE)})`);
    const h: ElfHeader = {
      type: b.readUInt16LE(16),
      machine: b.readUInt16LE(18),
      entry: b.readBigUInt64LE(24),
      phoff: safe(b.readBigUInt64LE(32), this.label, 32, 'e_phoff'),
      shoff: safe(b.readBigUInt64LE(40), this.label, 40, 'e_shoff'),
      flags: b.readUInt32LE(48),
      phnum: b.readUInt16LE(56),
      shnum: b.readUInt16LE(60),
      shstrndx: b.readUInt16LE(62),
    };
    const ehsize = b.readUInt16LE(52);
    if (ehsize < EHDR_SIZE) this.fail(52, `e_ehsize is ${ehsize}, expected at least ${EHDR_SIZE}`);
    const phentsize = b.readUInt16LE(54);
    if (h.phnum > 0 && phentsize !== PHDR_SIZE) this.fail(54, `e_phentsize is ${phentsize}, expected ${PHDR_SIZE}`);
    const shentsize = b.readUInt16LE(58);
    if (h.shoff !== 0 && shentsize !== SHDR_SIZE) this.fail(58, `e_shentsize is ${shentsize}, expected ${SHDR_SIZE}`);
    if (h.shoff !== 0) {
      // Extended numbering: with 0 / SHN_XINDEX the real counts live in section 0.
      if (h.shoff + SHDR_SIZE > this.fileSize) {
        this.fail(40, `section header table runs past end of file (size ${hex(this.fileSize)})`);
      }
      const s0 = this.readRaw(h.shoff, SHDR_SIZE);
      if (h.shnum === 0) h.shnum = safe(s0.readBigUInt64LE(32), this.label, h.shoff + 32, 'extended section count');
      if (h.shstrndx === SHN_XINDEX) h.shstrndx = s0.readUInt32LE(40);
    }
    return h;
  }

  private parseSections(): ElfSection[] {
    const h = this.header;
    if (h.shoff === 0 || h.shnum === 0) return [];
    const tableEnd = h.shoff + h.shnum * SHDR_SIZE;
    if (tableEnd > this.fileSize) {
      this.fail(0x28, `section header table (${h.shnum} entries at ${hex(h.shoff)}) runs past end of file (size ${hex(this.fileSize)})`);
    }
    if (h.shstrndx >= h.shnum) this.fail(0x3e, `e_shstrndx ${h.shstrndx} is not below the section count ${h.shnum}`);
    const tab = this.readRaw(h.shoff, h.shnum * SHDR_SIZE);
    const raw: (ElfSection & { nameOff: number })[] = [];
    for (let i = 0; i < h.shnum; i++) {
      const o = i * SHDR_SIZE;
      const at = h.shoff + o;
      const s = {
        index: i,
        name: '',
        nameOff: tab.readUInt32LE(o),
        type: tab.readUInt32LE(o + 4),
        flags: safe(tab.readBigUInt64LE(o + 8), this.label, at + 8, 'sh_flags'),
        addr: tab.readBigUInt64LE(o + 16),
        offset: safe(tab.readBigUInt64LE(o + 24), this.label, at + 24, 'sh_offset'),
        size: safe(tab.readBigUInt64LE(o + 32), this.label, at + 32, 'sh_size'),
        link: tab.readUInt32LE(o + 40),
        info: tab.readUInt32LE(o + 44),
        addralign: safe(tab.readBigUInt64LE(o + 48), this.label, at + 48, 'sh_addralign'),
        entsize: safe(tab.readBigUInt64LE(o + 56), this.label, at + 56, 'sh_entsize'),
      };
      if (i > 0 && s.type !== SHT_NOBITS && s.type !== SHT_NULL && s.offset + s.size > this.fileSize) {
        this.fail(at + 24, `section ${i} contents [${hex(s.offset)}, ${hex(s.offset + s.size)}) run past end of file (size ${hex(this.fileSize)})`);
      }
      raw.push(s);
    }
    const strtab = raw[h.shstrndx];
    if (strtab.type !== SHT_STRTAB) {
      this.fail(h.shoff + h.shstrndx * SHDR_SIZE + 4, `section name table (section ${h.shstrndx}) has type ${strtab.type}, expected ${SHT_STRTAB} (SHT_STRTAB)`);
    }
    const names = this.readRaw(strtab.offset, strtab.size);
    return raw.map((s) => {
      const { nameOff, ...rest } = s;
      if (nameOff >= names.length && s.index !== 0) {
        this.fail(h.shoff + s.index * SHDR_SIZE, `section ${s.index} name offset ${hex(nameOff)} is outside the name table (size ${hex(names.length)})`);
      }
      const end = names.indexOf(0, nameOff);
      if (end < 0) this.fail(strtab.offset + nameOff, `section ${s.index} name is not NUL-terminated`);
      return { ...rest, name: names.toString('latin1', nameOff, end) };
    });
  }

  private parseSegments(): ElfSegment[] {
    const h = this.header;
    if (h.phoff === 0 || h.phnum === 0) return [];
    if (h.phoff + h.phnum * PHDR_SIZE > this.fileSize) {
      this.fail(0x20, `program header table (${h.phnum} entries at ${hex(h.phoff)}) runs past end of file (size ${hex(this.fileSize)})`);
    }
    const tab = this.readRaw(h.phoff, h.phnum * PHDR_SIZE);
    const out: ElfSegment[] = [];
    for (let i = 0; i < h.phnum; i++) {
      const o = i * PHDR_SIZE;
      const at = h.phoff + o;
      const p: ElfSegment = {
        index: i,
        type: tab.readUInt32LE(o),
        flags: tab.readUInt32LE(o + 4),
        offset: safe(tab.readBigUInt64LE(o + 8), this.label, at + 8, 'p_offset'),
        vaddr: tab.readBigUInt64LE(o + 16),
        paddr: tab.readBigUInt64LE(o + 24),
        filesz: safe(tab.readBigUInt64LE(o + 32), this.label, at + 32, 'p_filesz'),
        memsz: safe(tab.readBigUInt64LE(o + 40), this.label, at + 40, 'p_memsz'),
        align: safe(tab.readBigUInt64LE(o + 48), this.label, at + 48, 'p_align'),
      };
      if (p.type === PT_LOAD && p.offset + p.filesz > this.fileSize) {
        this.fail(at + 8, `segment ${i} contents [${hex(p.offset)}, ${hex(p.offset + p.filesz)}) run past end of file (size ${hex(this.fileSize)})`);
      }
      out.push(p);
    }
    return out;
  }

  /** The first section with this name. */
  section(name: string): ElfSection | undefined {
    return this.byName.get(name);
  }

  /** The section with this name, or a LoadError saying it is missing. */
  requireSection(name: string): ElfSection {
    const s = this.byName.get(name);
    if (!s) throw new LoadError(`${this.label}: no section named ${name}`);
    return s;
  }

  /** A section's contents (zeros for SHT_NOBITS such as .bss). */
  readSection(sec: ElfSection | string): Buffer {
    const s = typeof sec === 'string' ? this.requireSection(sec) : sec;
    if (s.type === SHT_NOBITS) return Buffer.alloc(s.size);
    return this.readRaw(s.offset, s.size);
  }

  /** `length` bytes of a section starting `offset` bytes into it. */
  readSectionRange(sec: ElfSection, offset: number, length: number): Buffer {
    if (offset < 0 || length < 0 || offset + length > sec.size) {
      throw new LoadError(`${this.label}: range [${hex(offset)}, ${hex(offset + length)}) is outside section ${sec.name} (size ${hex(sec.size)})`);
    }
    if (sec.type === SHT_NOBITS) return Buffer.alloc(length);
    return this.readRaw(sec.offset + offset, length);
  }

  /** File bytes [offset, offset+length); a LoadError if the range is outside the file. */
  readFile(offset: number, length: number): Buffer {
    if (offset < 0 || length < 0 || offset + length > this.fileSize) {
      throw new LoadError(`${this.label}: byte ${hex(offset)}: read of ${hex(length)} bytes runs past end of file (size ${hex(this.fileSize)})`);
    }
    return this.readRaw(offset, length);
  }

  /** The allocated section whose link-address range holds `addr`. */
  sectionAt(addr: bigint): ElfSection | undefined {
    const a = BigInt.asUintN(64, addr);
    const es = this.allocSorted;
    let lo = 0;
    let hi = es.length - 1;
    let best: ElfSection | undefined;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (es[mid].addr <= a) {
        best = es[mid];
        lo = mid + 1;
      } else hi = mid - 1;
    }
    if (best && a < best.addr + BigInt(best.size)) return best;
    // Sections may nest or overlap (a kernel's zero-based .data..percpu): a short scan.
    for (const s of es) if (a >= s.addr && a < s.addr + BigInt(s.size)) return s;
    return undefined;
  }

  /** The static symbol table (.symtab), or [] when the file is stripped. */
  symbols(): ElfSymbol[] {
    const tab = this.sections.find((s) => s.type === SHT_SYMTAB);
    if (!tab) return [];
    if (tab.entsize !== 24 || tab.size % 24 !== 0) {
      throw new LoadError(`${this.label}: byte ${hex(this.header.shoff + tab.index * SHDR_SIZE + 56)}: symbol table entry size ${tab.entsize} / table size ${hex(tab.size)}: expected 24-byte entries`);
    }
    const strs = this.sections[tab.link];
    if (!strs || strs.type !== SHT_STRTAB) {
      throw new LoadError(`${this.label}: byte ${hex(this.header.shoff + tab.index * SHDR_SIZE + 40)}: symbol table's string table (section ${tab.link}) is not SHT_STRTAB`);
    }
    const b = this.readSection(tab);
    const names = this.readSection(strs);
    const out: ElfSymbol[] = [];
    for (let o = 24; o < b.length; o += 24) {
      const nameOff = b.readUInt32LE(o);
      if (nameOff >= names.length && nameOff !== 0) {
        this.fail(tab.offset + o, `symbol ${o / 24} name offset ${hex(nameOff)} is outside the string table (size ${hex(names.length)})`);
      }
      const end = names.indexOf(0, nameOff);
      const info = b[o + 4];
      out.push({
        name: nameOff === 0 ? '' : names.toString('latin1', nameOff, end < 0 ? names.length : end),
        type: info & 15,
        bind: info >> 4,
        shndx: b.readUInt16LE(o + 6),
        value: b.readBigUInt64LE(o + 8),
        size: safe(b.readBigUInt64LE(o + 16), this.label, tab.offset + o + 16, 'st_size'),
      });
    }
    return out;
  }

  /** Extents of the allocated, executable sections (.text, .init.text, .altinstr_replacement …). */
  executableRanges(): AddrRange[] {
    return this.allocSorted
      .filter((s) => (s.flags & SHF_EXECINSTR) !== 0)
      .map((s) => ({ name: s.name, start: s.addr, end: s.addr + BigInt(s.size) }));
  }

  /** `length` bytes at link address `addr`, which must lie within one allocated section. */
  readAt(addr: bigint, length: number): Buffer {
    const s = this.sectionAt(addr);
    if (!s) throw new LoadError(`${this.label}: address ${hex(BigInt.asUintN(64, addr))} is in no allocated section`);
    const off = Number(BigInt.asUintN(64, addr) - s.addr);
    if (off + length > s.size) {
      throw new LoadError(`${this.label}: ${hex(length)} bytes at ${hex(BigInt.asUintN(64, addr))} run past the end of section ${s.name}`);
    }
    return this.readSectionRange(s, off, length);
  }

  readU64At(addr: bigint): bigint {
    return this.readAt(addr, 8).readBigUInt64LE(0);
  }
}
