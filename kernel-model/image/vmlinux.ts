// A distribution vmlinux with its System.map: sections, symbols, the paravirt and
// alternatives tables, pv_ops's initial slots, and mapping into a Machine. The ELF is
// read lazily through its file descriptor; tables are parsed on first use; mapping
// can be whole sections or only the pages a scenario touches.

import { checkMapMatchesElf } from './map-match';
import * as fs from 'fs';
import * as path from 'path';
import type { Machine } from '../../emu/machine';
import { SymbolTable } from '../../emu/symbols';
import {
  ElfFile, LoadError, PT_LOAD, SHF_ALLOC, SHF_EXECINSTR, SHF_WRITE, SHT_NOBITS, STT_FUNC,
  type AddrRange,
} from './elf';
import { loadSystemMap, isTextType, type SystemMap } from './system-map';
import { parseParainstructions, type ParaSite } from './parainstructions';
import { parseAltinstructions, type AltInstr } from './altinstructions';
import { parseBtf, type Btf } from './btf';
import { layoutsFromBtf, type BtfLayouts } from './btf-layout';

const PAGE = 4096;
/** Sections are copied into guest memory in chunks of this size, never whole images. */
const CHUNK = 1 << 20;

export interface VmSection {
  name: string;
  index: number;
  /** Link address from the section header (0 for the zero-based .data..percpu). */
  addr: bigint;
  /** Where the section is mapped: its link address, or for a zero-based section its load address. */
  loadAddr: bigint;
  size: number;
  /** Executable (SHF_EXECINSTR): mapped as code, so writes to it are logged. */
  code: boolean;
  writable: boolean;
  /** No file contents (.bss): mapped as zeros. */
  nobits: boolean;
}

export interface FunctionRange {
  name: string;
  start: bigint;
  /** Exclusive: the next symbol's address, or the end of the section. */
  end: bigint;
  section: string;
}

export interface PvOpsSlot {
  index: number;
  /** Address of the slot (pv_ops + 8 * index). */
  slotAddr: bigint;
  /** Its initial value in .data. */
  target: bigint;
  /** The target as symbol[+offset] (hex when no symbol covers it). */
  symbol: string;
  /** True when the target is exactly a symbol's address. */
  exact: boolean;
}

export interface PvOpsTable {
  address: bigint;
  slots: PvOpsSlot[];
}

export type PvNameVerdict = 'match' | 'generic' | 'mismatch';

export interface PvNameCheck {
  index: number;
  /** Op name from the layout table, e.g. "lock.queued_spin_unlock" (null: no name for the slot). */
  name: string | null;
  symbol: string;
  /**
   * match: the target's name carries the op's name (native_save_fl for irq.save_fl);
   * generic: a shared default target that names no op (_paravirt_nop, _paravirt_ident_64);
   * mismatch: neither — the name table or the slot index is probably wrong.
   */
  verdict: PvNameVerdict;
}

export interface MapOptions {
  /** Section names to map; default every allocated section. */
  sections?: readonly string[];
}

export interface MapResult {
  sections: string[];
  bytes: number;
}

export interface LoadVmlinuxOptions {
  /** System.map path or parsed map; default: a System.map next to the vmlinux when there is one; null: none. */
  systemMap?: string | SystemMap | null;
  /** Struct layouts to use instead of the image's BTF (a hand-made ELF without .BTF). */
  layouts?: BtfLayouts;
}

/** Shared default targets: they implement many ops, so they name none. */
const GENERIC_TARGETS = new Set(['_paravirt_nop', 'paravirt_nop', '_paravirt_ident_64', 'paravirt_BUG', '_paravirt_ident_32']);
/**
 * Ops whose 6.1 native implementation has a different name (observed in Debian's
 * 6.1 pv_ops initialiser): op field -> a name fragment of its target.
 */
const TARGET_ALIASES: Record<string, string> = {
  flush_tlb_user: 'flush_tlb_local',
  flush_tlb_kernel: 'flush_tlb_global',
  tlb_remove_table: 'tlb_remove_page',
};

function hex(n: number | bigint): string {
  return '0x' + n.toString(16);
}

export class Vmlinux {
  readonly symbols: SymbolTable;
  readonly sections: readonly VmSection[];
  /** Extents of executable sections at their link addresses. */
  readonly code: readonly AddrRange[];
  private paraCache: ParaSite[] | null = null;
  private altCache: AltInstr[] | null = null;
  private pvCache: PvOpsTable | null = null;
  private btfCache: Btf | null = null;
  private capCache: (string | null)[] | null = null;
  private readonly fnCache = new Map<string, FunctionRange[]>();
  /** Allocated sections by load address, for page lookups. */
  private readonly byLoad: VmSection[];

  constructor(
    readonly path: string,
    readonly elf: ElfFile,
    readonly map: SystemMap | null,
    private layoutCache: BtfLayouts | null = null,
  ) {
    this.symbols = map?.symbols ?? symbolsFromElf(elf);
    this.sections = vmSections(elf, this.symbols);
    this.code = elf.executableRanges();
    this.byLoad = this.sections.filter((s) => s.size > 0).sort((a, b) => (a.loadAddr < b.loadAddr ? -1 : a.loadAddr > b.loadAddr ? 1 : 0));
  }

  get label(): string {
    return this.elf.label;
  }

  close(): void {
    this.elf.close();
  }

  section(name: string): VmSection | undefined {
    return this.sections.find((s) => s.name === name);
  }

  requireSection(name: string): VmSection {
    const s = this.section(name);
    if (!s) throw new LoadError(`${this.label}: no section named ${name}`);
    return s;
  }

  /** The .text section. */
  get text(): VmSection {
    return this.requireSection('.text');
  }

  /** A symbol's address, or a LoadError naming it. */
  symbol(name: string): bigint {
    const a = this.symbols.resolve(name);
    if (a === undefined) throw new LoadError(`${this.label}: no symbol ${name}${this.map ? '' : ' (no System.map loaded)'}`);
    return a;
  }

  /** Image bytes at a link address (within one section). */
  readAt(addr: bigint, len: number): Buffer {
    return this.elf.readAt(addr, len);
  }

  // ---- Tables ----

  /** The image's BTF (CONFIG_DEBUG_INFO_BTF), parsed on first use. */
  btf(): Btf {
    if (!this.btfCache) {
      const s = this.elf.sections.find((x) => x.name === '.BTF');
      if (!s) {
        throw new LoadError(`${this.label}: no .BTF section: textpoke reads struct alt_instr, paravirt_patch_site and paravirt_patch_template from the kernel's BTF (build with CONFIG_DEBUG_INFO_BTF=y)`);
      }
      this.btfCache = parseBtf(this.elf.readSection(s), this.label);
    }
    return this.btfCache;
  }

  /** Struct layouts and pv_ops slot names, from BTF unless given at load time. */
  layouts(): BtfLayouts {
    this.layoutCache ??= layoutsFromBtf(this.btf());
    return this.layoutCache;
  }

  /** The kernel's linux_banner ("Linux version 6.12.117+deb13-cloud-amd64 …"). */
  banner(): string {
    return this.readCString(this.symbol('linux_banner'), 256).trim();
  }

  /** The Linux release, major.minor ("6.1", "6.12"), from linux_banner. */
  release(): string {
    const m = /^Linux version (\d+)\.(\d+)/.exec(this.banner());
    if (!m) throw new LoadError(`${this.label}: linux_banner does not start with "Linux version N.N"`);
    return `${m[1]}.${m[2]}`;
  }

  /** True when the kernel has a `.parainstructions` table (before 6.8). */
  hasParainstructions(): boolean {
    return this.elf.sections.some((x) => x.name === '.parainstructions');
  }

  /** `.parainstructions`, parsed and validated on first use. */
  parainstructions(): ParaSite[] {
    if (!this.paraCache) {
      const layout = this.layouts().paraSite;
      if (!layout || !this.hasParainstructions()) {
        throw new LoadError(`${this.label}: no .parainstructions (since Linux 6.8 paravirt call sites are alternatives with ALT_FLAG_DIRECT_CALL)`);
      }
      if (layout.size !== 16 || layout.instr.offset !== 0 || layout.type.offset !== 8 || layout.len.offset !== 9) {
        throw new LoadError(`${this.label}: BTF struct paravirt_patch_site is ${layout.size} bytes with instr@${layout.instr.offset} type@${layout.type.offset} len@${layout.len.offset}; textpoke reads the 16-byte layout (instr@0 type@8 len@9)`);
      }
      const s = this.elf.requireSection('.parainstructions');
      const slots = this.map ? this.pvOpsSlotCount() : undefined;
      this.paraCache = parseParainstructions(this.elf.readSection(s), {
        label: this.label, fileOffset: s.offset, code: this.code, slots,
      });
    }
    return this.paraCache;
  }

  /** `.altinstructions`, parsed and validated on first use (record layout from BTF). */
  altinstructions(): AltInstr[] {
    if (!this.altCache) {
      const s = this.elf.requireSection('.altinstructions');
      this.altCache = parseAltinstructions(this.elf.readSection(s), {
        label: this.label, sectionAddr: s.addr, fileOffset: s.offset, code: this.code, layout: this.layouts().altInstr,
      });
    }
    return this.altCache;
  }

  /**
   * Feature-bit names from the kernel's own x86_cap_flags table (the names
   * /proc/cpuinfo prints; null for bits without one), then x86_bug_flags
   * ("bug:" + name), indexed by X86_FEATURE_* / X86_BUG_* number.
   */
  capFlagNames(): (string | null)[] {
    if (this.capCache) return this.capCache;
    const words = this.layouts().capabilityWords;
    const readTable = (sym: string, n: number): (string | null)[] => {
      const at = this.symbol(sym);
      const ptrs = this.elf.readAt(at, n * 8);
      const out: (string | null)[] = [];
      for (let i = 0; i < n; i++) {
        const p = ptrs.readBigUInt64LE(i * 8);
        out.push(p === 0n ? null : this.readCString(p, 64));
      }
      return out;
    };
    const capBytes = this.symbolExtent('x86_cap_flags');
    const ncap = capBytes / 8;
    if (ncap % 32 !== 0 || ncap / 32 >= words) {
      throw new LoadError(`${this.label}: x86_cap_flags spans ${capBytes} bytes: not NCAPINTS*32 pointers below the ${words} capability words of cpuinfo_x86`);
    }
    const nbug = (words - ncap / 32) * 32;
    this.capCache = [...readTable('x86_cap_flags', ncap), ...readTable('x86_bug_flags', nbug).map((n) => (n ? `bug:${n}` : null))];
    return this.capCache;
  }

  /** Bytes from a symbol to the next symbol at a higher address (System.map). */
  private symbolExtent(name: string): number {
    const at = this.symbol(name);
    const next = this.nextSymbolAfter(at);
    if (next === undefined) throw new LoadError(`${this.label}: cannot size ${name}: no symbol follows it`);
    return Number(next - at);
  }

  private readCString(addr: bigint, max: number): string {
    const b = this.elf.readAt(addr, max);
    const end = b.indexOf(0);
    return b.subarray(0, end < 0 ? max : end).toString('latin1');
  }

  /**
   * Number of pv_ops slots: the size of struct paravirt_patch_template (BTF), which
   * must fit before the next symbol (System.map; the linker may pad after it).
   */
  pvOpsSlotCount(): number {
    const at = this.symbol('pv_ops');
    const next = this.nextSymbolAfter(at);
    if (next === undefined) throw new LoadError(`${this.label}: cannot size pv_ops: no symbol follows it`);
    const room = Number(next - at);
    const n = this.layouts().pvOpsSlots.length;
    if (room < n * 8) {
      throw new LoadError(`${this.label}: pv_ops has room for ${room} bytes before the next symbol, less than the ${n} slots of struct paravirt_patch_template`);
    }
    return n;
  }

  private nextSymbolAfter(addr: bigint): bigint | undefined {
    if (!this.map) return undefined;
    let best: bigint | undefined;
    for (const e of this.map.entries) if (e.address > addr && (best === undefined || e.address < best)) best = e.address;
    return best;
  }

  /** pv_ops's initial slot values from .data, symbolized. */
  pvOps(): PvOpsTable {
    if (this.pvCache) return this.pvCache;
    const address = this.symbol('pv_ops');
    const n = this.pvOpsSlotCount();
    const bytes = this.elf.readAt(address, n * 8);
    const slots: PvOpsSlot[] = [];
    for (let k = 0; k < n; k++) {
      const target = bytes.readBigUInt64LE(k * 8);
      const hit = this.symbols.lookup(target);
      slots.push({
        index: k, slotAddr: address + BigInt(8 * k), target, symbol: this.symbols.format(target), exact: hit?.offset === 0n,
      });
    }
    this.pvCache = { address, slots };
    return this.pvCache;
  }

  /**
   * Checks a slot-name table (index -> "group.op", from the 6.1 layout research)
   * against the symbolized initial targets. Returns one verdict per slot; a table
   * longer than pv_ops is a LoadError.
   */
  checkPvOpNames(names: readonly (string | null)[]): PvNameCheck[] {
    const { slots } = this.pvOps();
    if (names.length > slots.length) {
      throw new LoadError(`${this.label}: pv_ops name table has ${names.length} entries but pv_ops has ${slots.length} slots`);
    }
    return slots.map((s) => {
      const name = names[s.index] ?? null;
      return { index: s.index, name, symbol: s.symbol, verdict: pvNameVerdict(name, s.symbol) };
    });
  }

  // ---- Functions ----

  /**
   * Function extents in the given executable sections (default .text): System.map
   * text symbols (or the ELF's own function symbols), each running to the next
   * symbol at a higher address or the end of its section. Aliases keep the first name.
   */
  functions(sectionNames: readonly string[] = ['.text']): FunctionRange[] {
    const out: FunctionRange[] = [];
    for (const sn of sectionNames) {
      const cached = this.fnCache.get(sn);
      if (cached) {
        out.push(...cached);
        continue;
      }
      const mark = out.length;
      const sec = this.requireSection(sn);
      const start = sec.addr;
      const end = sec.addr + BigInt(sec.size);
      const points: { name: string; address: bigint }[] = [];
      if (this.map) {
        for (const e of this.map.entries) if (isTextType(e.type) && e.address >= start && e.address < end) points.push(e);
      } else {
        // Among aliases, function symbols and globals name the range (the sort below is stable).
        const rank = (t: number, b: number): number => (t === STT_FUNC ? 0 : 2) + (b === 0 ? 1 : 0);
        const syms = this.elf.symbols().filter(
          (e) => (e.type === STT_FUNC || e.type === 0) && e.name && e.shndx === sec.index && e.value >= start && e.value < end,
        );
        syms.sort((a, b) => rank(a.type, a.bind) - rank(b.type, b.bind));
        for (const e of syms) points.push({ name: e.name, address: e.value });
      }
      points.sort((a, b) => (a.address < b.address ? -1 : a.address > b.address ? 1 : 0));
      if (points.length === 0 || points[0].address > start) points.unshift({ name: sn, address: start });
      for (let i = 0; i < points.length; i++) {
        const p = points[i];
        if (i > 0 && points[i - 1].address === p.address) continue;
        let j = i + 1;
        while (j < points.length && points[j].address === p.address) j++;
        out.push({ name: p.name, start: p.address, end: j < points.length ? points[j].address : end, section: sn });
      }
      this.fnCache.set(sn, out.slice(mark));
    }
    return out;
  }

  /** The function holding `addr` (by System.map extents), if any. */
  functionAt(addr: bigint): FunctionRange | undefined {
    const sec = this.elf.sectionAt(addr);
    if (!sec || (sec.flags & SHF_EXECINSTR) === 0) return undefined;
    const fns = this.functions([sec.name]);
    let lo = 0;
    let hi = fns.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (fns[mid].end <= addr) lo = mid + 1;
      else if (fns[mid].start > addr) hi = mid - 1;
      else return fns[mid];
    }
    return undefined;
  }

  // ---- Mapping into a Machine ----

  /**
   * Maps sections (default: all allocated ones) at their load addresses, copying the
   * file in 1 MiB chunks; executable sections are marked as code. Pages already mapped
   * are overwritten with the image.
   */
  mapInto(machine: Machine, opts: MapOptions = {}): MapResult {
    const names = opts.sections ?? this.sections.map((s) => s.name);
    const done: string[] = [];
    let bytes = 0;
    for (const n of names) {
      const s = this.requireSection(n);
      if (s.nobits) {
        machine.mem.map(s.loadAddr, s.size);
      } else {
        const sec = this.elf.sections[s.index];
        for (let off = 0; off < s.size; off += CHUNK) {
          const len = Math.min(CHUNK, s.size - off);
          machine.load(s.loadAddr + BigInt(off), this.elf.readSectionRange(sec, off, len), s.code);
        }
      }
      bytes += s.size;
      done.push(n);
    }
    return { sections: done, bytes };
  }

  /**
   * Maps just the pages holding [addr, addr+len) with the image's contents (for a
   * scenario that runs a few functions of a 14 MB .text). Pages already mapped are
   * left alone, so guest writes survive. Returns the number of pages mapped.
   */
  mapRange(machine: Machine, addr: bigint, len: number): number {
    const first = addr & ~BigInt(PAGE - 1);
    const last = (addr + BigInt(Math.max(len, 1)) - 1n) & ~BigInt(PAGE - 1);
    let n = 0;
    for (let p = first; p <= last; p += BigInt(PAGE)) {
      if (machine.mem.isMapped(p)) continue;
      const img = this.pageImage(p);
      if (!img) throw new LoadError(`${this.label}: address ${hex(p)} is in no allocated section`);
      machine.load(p, img.bytes, img.code);
      n++;
    }
    return n;
  }

  /** Maps the pages of a function (by name, extent from System.map). */
  mapFunction(machine: Machine, name: string): FunctionRange {
    const at = this.symbol(name);
    const f = this.functionAt(at);
    if (!f || f.start !== at) throw new LoadError(`${this.label}: ${name} is not a function in an executable section`);
    this.mapRange(machine, f.start, Number(f.end - f.start));
    return f;
  }

  /**
   * The image's contents of the 4 KiB page at `pageAddr` (load addresses), assembled
   * from every section overlapping it, and whether any of them is code; null when no
   * section overlaps. This is the hook for demand paging once memory can fault pages in.
   */
  pageImage(pageAddr: bigint): { bytes: Uint8Array; code: boolean } | null {
    const pEnd = pageAddr + BigInt(PAGE);
    const bytes = new Uint8Array(PAGE);
    let hit = false;
    let code = false;
    for (const s of this.byLoad) {
      const sEnd = s.loadAddr + BigInt(s.size);
      if (s.loadAddr >= pEnd || sEnd <= pageAddr) continue;
      hit = true;
      code ||= s.code;
      if (s.nobits) continue;
      const from = s.loadAddr > pageAddr ? s.loadAddr : pageAddr;
      const to = sEnd < pEnd ? sEnd : pEnd;
      const chunk = this.elf.readSectionRange(this.elf.sections[s.index], Number(from - s.loadAddr), Number(to - from));
      bytes.set(chunk, Number(from - pageAddr));
    }
    return hit ? { bytes, code } : null;
  }
}

/** Verdict for one slot name against its symbolized target (see PvNameCheck). */
export function pvNameVerdict(name: string | null, symbol: string): PvNameVerdict {
  const target = symbol.replace(/\+0x[0-9a-f]+$/, '');
  if (GENERIC_TARGETS.has(target)) return 'generic';
  if (!name) return 'mismatch';
  const op = name.slice(name.lastIndexOf('.') + 1);
  if (target.includes(op)) return 'match';
  const alias = TARGET_ALIASES[op];
  return alias && target.includes(alias) ? 'match' : 'mismatch';
}

/** Function and object symbols of an unstripped ELF (when there is no System.map). */
function symbolsFromElf(elf: ElfFile): SymbolTable {
  const t = new SymbolTable();
  for (const s of elf.symbols()) if (s.name && s.shndx !== 0) t.add(s.name, s.value, s.size);
  return t;
}

function vmSections(elf: ElfFile, symbols: SymbolTable): VmSection[] {
  // Kernel virtual minus physical address of the loaded image, from the first
  // segment that is not zero-based: places a zero-based section at its load address.
  const anchor = elf.segments.find((p) => p.type === PT_LOAD && p.vaddr !== 0n);
  const delta = anchor ? anchor.vaddr - anchor.paddr : 0n;
  const out: VmSection[] = [];
  for (const s of elf.sections) {
    if ((s.flags & SHF_ALLOC) === 0 || !s.name) continue;
    let loadAddr = s.addr;
    if (s.addr === 0n) {
      const seg = elf.segments.find((p) => p.type === PT_LOAD && s.offset >= p.offset && s.offset < p.offset + Math.max(p.filesz, 1));
      if (!seg) throw new LoadError(`${elf.label}: zero-based section ${s.name} lies in no loadable segment`);
      loadAddr = BigInt.asUintN(64, seg.paddr + BigInt(s.offset - seg.offset) + delta);
      if (s.name === '.data..percpu') {
        const sym = symbols.resolve('__per_cpu_load');
        if (sym !== undefined && sym !== loadAddr) {
          throw new LoadError(`${elf.label}: .data..percpu loads at ${hex(loadAddr)} by its segment but __per_cpu_load is ${hex(sym)}`);
        }
      }
    }
    out.push({
      name: s.name, index: s.index, addr: s.addr, loadAddr, size: s.size,
      code: (s.flags & SHF_EXECINSTR) !== 0, writable: (s.flags & SHF_WRITE) !== 0, nobits: s.type === SHT_NOBITS,
    });
  }
  return out;
}

/** Opens a vmlinux (headers only) and its System.map. */
export function loadVmlinux(file: string, opts: LoadVmlinuxOptions = {}): Vmlinux {
  let map: SystemMap | null = null;
  let mapLabel = 'System.map';
  if (opts.systemMap === undefined) {
    const beside = path.join(path.dirname(file), 'System.map');
    if (fs.existsSync(beside)) [map, mapLabel] = [loadSystemMap(beside), beside];
  } else if (typeof opts.systemMap === 'string') {
    [map, mapLabel] = [loadSystemMap(opts.systemMap), opts.systemMap];
  } else {
    map = opts.systemMap;
  }
  const elf = ElfFile.open(file);
  try {
    if (elf.header.machine !== 62) throw new LoadError(`${elf.label}: byte 0x12: e_machine is ${elf.header.machine}, expected 62 (x86-64)`);
    if (map) checkMapMatchesElf(elf, map, mapLabel);
    return new Vmlinux(file, elf, map, opts.layouts ?? null);
  } catch (e) {
    elf.close();
    throw e;
  }
}
