// A distribution vmlinux seen through the KernelImage interface: sections at their
// load addresses, System.map symbols, pv_ops named by the 6.1 layout, and the
// paravirt sites from .parainstructions.

import type { Machine } from '../../emu/machine';
import type { SymbolTable } from '../../emu/symbols';
import type { ImageSection, KernelImage, PvSite } from './kernel-image';
import { ImageError } from './kernel-image';
import { loadVmlinux, type Vmlinux } from './vmlinux';
import { PV_OPS_6_1, PARAVIRT_TARGETS_6_1 } from './linux-6.1';

export class VmlinuxImage implements KernelImage {
  readonly kind = 'vmlinux' as const;
  readonly symbols: SymbolTable;
  readonly sections: ImageSection[];
  readonly pvOps: { address: bigint; slots: readonly string[] };
  readonly sites: PvSite[];
  readonly constants: Record<string, number> = {};
  readonly paravirtTargets = PARAVIRT_TARGETS_6_1;

  constructor(readonly vm: Vmlinux) {
    this.symbols = vm.symbols;
    this.sections = vm.sections.map((s) => ({ name: s.name, address: s.loadAddr, size: s.size, loaded: !s.nobits }));
    const pv = vm.symbols.resolve('pv_ops');
    if (pv === undefined) throw new ImageError(`${vm.path}: no pv_ops symbol (a System.map from the matching -dbg package is needed)`);
    const nslots = vm.pvOpsSlotCount();
    if (nslots !== PV_OPS_6_1.length) {
      throw new ImageError(`${vm.path}: pv_ops has ${nslots} slots; the Linux 6.1 layout this tool knows has ${PV_OPS_6_1.length}`);
    }
    this.pvOps = { address: pv, slots: PV_OPS_6_1 };
    this.sites = vm.parainstructions().map((p) => ({ address: p.addr, slot: p.type, op: PV_OPS_6_1[p.type] ?? `slot${p.type}`, len: p.len }));
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

export function loadVmlinuxImage(path: string, systemMap?: string): VmlinuxImage {
  return new VmlinuxImage(loadVmlinux(path, { systemMap }));
}
