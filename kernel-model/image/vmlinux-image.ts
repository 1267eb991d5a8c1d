// A distribution vmlinux seen through the KernelImage interface: sections at their
// load addresses, System.map symbols, pv_ops slots named from the kernel's BTF, and
// the paravirt sites: .parainstructions before Linux 6.8, the ALT_FLAG_DIRECT_CALL
// alternatives (`call *pv_ops[slot](%rip)`) since.

import type { Machine } from '../../emu/machine';
import type { SymbolTable } from '../../emu/symbols';
import type { ImageSection, KernelImage, PvSite } from './kernel-image';
import { ImageError } from './kernel-image';
import { loadVmlinux, type Vmlinux } from './vmlinux';
import { PARAVIRT_TARGETS_6_1 } from './linux-6.1';
import { LoadError } from './elf';

export class VmlinuxImage implements KernelImage {
  readonly kind = 'vmlinux' as const;
  readonly symbols: SymbolTable;
  readonly sections: ImageSection[];
  readonly pvOps: { address: bigint; slots: readonly string[] };
  readonly sites: PvSite[];
  readonly constants: Record<string, number> = {};
  readonly paravirtTargets: Readonly<Record<string, string>>;
  /** Where the sites come from: .parainstructions (before 6.8) or DIRECT_CALL alternatives. */
  readonly siteSource: 'parainstructions' | 'altinstructions';

  /**
   * `original`: the unpatched image of the same kernel, whose DIRECT_CALL sites still
   * hold `call *pv_ops[slot](%rip)` (a 6.8+ image that was boot-patched no longer says
   * which slot a site calls through).
   */
  constructor(readonly vm: Vmlinux, readonly original?: VmlinuxImage) {
    this.symbols = vm.symbols;
    this.sections = vm.sections.map((s) => ({ name: s.name, address: s.loadAddr, size: s.size, loaded: !s.nobits }));
    const pv = vm.symbols.resolve('pv_ops');
    if (pv === undefined) throw new ImageError(`${vm.path}: no pv_ops symbol (a System.map from the matching -dbg package is needed)`);
    const nslots = vm.pvOpsSlotCount();
    const names = vm.layouts().pvOpsSlots;
    if (nslots !== names.length) {
      throw new ImageError(`${vm.path}: pv_ops has ${nslots} slots by System.map but BTF struct paravirt_patch_template has ${names.length}`);
    }
    this.pvOps = { address: pv, slots: names };
    const op = (slot: number): string => names[slot] || `slot${slot}`;
    if (vm.hasParainstructions()) {
      this.siteSource = 'parainstructions';
      this.sites = vm.parainstructions().map((p) => ({ address: p.addr, slot: p.type, op: op(p.type), len: p.len }));
    } else {
      this.siteSource = 'altinstructions';
      this.sites = directCallSites(original?.vm ?? vm, pv, nslots).map((d) => ({ address: d.address, slot: d.slot, op: op(d.slot), len: d.len }));
    }
    this.paravirtTargets = Object.fromEntries(Object.entries(PARAVIRT_TARGETS_6_1).filter(([, sym]) => vm.symbols.resolve(sym) !== undefined));
  }

  get path(): string {
    return this.vm.path;
  }

  read(address: bigint, len: number): Uint8Array {
    return new Uint8Array(this.vm.readAt(address, len));
  }

  mapInto(m: Machine): void {
    this.vm.mapInto(m);
    m.symbols.addAll(this.symbols);
  }

  /** File offset of a loaded byte (to write a patched copy of the ELF in place). */
  fileOffset(address: bigint): number {
    for (const s of this.vm.elf.sections) {
      if (s.type === 8 /* NOBITS */ || s.addr === 0n) continue;
      if (address >= s.addr && address < s.addr + BigInt(s.size)) return s.offset + Number(address - s.addr);
    }
    throw new ImageError(`${this.path}: address 0x${address.toString(16)} is in no section with file contents`);
  }
}

export function loadVmlinuxImage(path: string, systemMap?: string, original?: VmlinuxImage): VmlinuxImage {
  return new VmlinuxImage(loadVmlinux(path, { systemMap }), original);
}

/**
 * The paravirt call sites of a 6.8+ kernel: alternatives flagged ALT_FLAG_DIRECT_CALL,
 * whose original is `ff 15 rel32`, an indirect call through a pv_ops slot. Several
 * records may name one site (nested alternatives); each site is listed once.
 */
export function directCallSites(vm: Vmlinux, pvOps: bigint, nslots: number): { address: bigint; slot: number; len: number }[] {
  const out = new Map<bigint, { address: bigint; slot: number; len: number }>();
  for (const a of vm.altinstructions()) {
    if (!a.directCall) continue;
    const b = vm.readAt(a.instr, 6);
    if (a.instrlen !== 6 || b[0] !== 0xff || b[1] !== 0x15) {
      throw new LoadError(`${vm.label}: .altinstructions record ${a.index}: ALT_FLAG_DIRECT_CALL at 0x${a.instr.toString(16)} is not a 6-byte call *rel32(%rip) (${b.toString('hex')}): an image patched already names no pv_ops slot; give the original (verify --against)`);
    }
    const ptr = BigInt.asUintN(64, a.instr + 6n + BigInt(b.readInt32LE(2)));
    const off = ptr - pvOps;
    if (off < 0n || off % 8n !== 0n || off / 8n >= BigInt(nslots)) {
      throw new LoadError(`${vm.label}: .altinstructions record ${a.index}: the call at 0x${a.instr.toString(16)} goes through 0x${ptr.toString(16)}, not a pv_ops slot`);
    }
    if (!out.has(a.instr)) out.set(a.instr, { address: a.instr, slot: Number(off / 8n), len: a.instrlen });
  }
  return [...out.values()].sort((x, y) => (x.address < y.address ? -1 : x.address > y.address ? 1 : 0));
}
