// The kernel's ORC unwind tables (Linux 6.1, arch/x86/include/asm/orc_types.h and
// arch/x86/kernel/unwind_orc.c; docs/notes/gdb-remote.md cites them):
// `.orc_unwind_ip` is a sorted array of s32 offsets, each relative to its own address,
// giving the first instruction an entry covers; `.orc_unwind` holds the matching
// 6-byte entries: s16 sp_offset, s16 bp_offset, then a little-endian bitfield
// sp_reg:4, bp_reg:4, type:2, end:1. An entry says where the caller's stack pointer
// (the CFA) is — a register plus an offset, possibly read through memory — and where
// its frame pointer was saved; its type says whether the frame is a call frame or an
// interrupt/exception frame (pt_regs, or only the iret frame).

import type { KernelImage } from './kernel-image';

export const ORC_REG = { UNDEFINED: 0, PREV_SP: 1, DX: 2, DI: 3, BP: 4, SP: 5, R10: 6, R13: 7, BP_INDIRECT: 8, SP_INDIRECT: 9 } as const;
export const ORC_TYPE = { CALL: 0, REGS: 1, REGS_PARTIAL: 2 } as const;

export interface OrcEntry {
  spOffset: number;
  bpOffset: number;
  spReg: number;
  bpReg: number;
  type: number;
  end: boolean;
}

export class OrcTable {
  /** Each entry's first address, as an offset from `base` (a double holds it exactly). */
  private readonly ips: Float64Array;
  private readonly base: bigint;

  private constructor(
    ipBytes: Uint8Array,
    ipAddr: bigint,
    private readonly entries: DataView,
    readonly count: number,
  ) {
    this.base = ipAddr & ~0xffffffffn;
    const v = new DataView(ipBytes.buffer, ipBytes.byteOffset, ipBytes.byteLength);
    this.ips = new Float64Array(count);
    const off0 = Number(ipAddr - this.base);
    for (let i = 0; i < count; i++) this.ips[i] = off0 + 4 * i + v.getInt32(4 * i, true);
  }

  /** The image's tables, or null when it has none (fixtures; kernels built without ORC). */
  static fromImage(img: KernelImage): OrcTable | null {
    const ip = img.sections.find((s) => s.name === '.orc_unwind_ip');
    const un = img.sections.find((s) => s.name === '.orc_unwind');
    if (!ip || !un || !ip.loaded || !un.loaded) return null;
    const count = Math.floor(ip.size / 4);
    if (un.size < count * 6) return null;
    const entries = img.read(un.address, count * 6);
    return new OrcTable(img.read(ip.address, count * 4), ip.address, new DataView(entries.buffer, entries.byteOffset, entries.byteLength), count);
  }

  /** The entry covering `addr`: the last one whose first address is at or below it. */
  lookup(addr: bigint): OrcEntry | null {
    const d = addr - this.base;
    if (d < 0n || d > 0xffffffffn) return null;
    const x = Number(d);
    let lo = 0;
    let hi = this.count - 1;
    let best = -1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (this.ips[mid] <= x) {
        best = mid;
        lo = mid + 1;
      } else hi = mid - 1;
    }
    if (best < 0) return null;
    const o = best * 6;
    const bits = this.entries.getUint16(o + 4, true);
    return {
      spOffset: this.entries.getInt16(o, true),
      bpOffset: this.entries.getInt16(o + 2, true),
      spReg: bits & 0xf,
      bpReg: (bits >> 4) & 0xf,
      type: (bits >> 8) & 3,
      end: ((bits >> 10) & 1) === 1,
    };
  }
}
