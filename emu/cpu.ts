// One CPU's architectural state and its data-memory access path. Instruction
// semantics live in emu/ops, event delivery in emu/events.ts, the step loop in
// emu/run.ts; this file only holds state and the accessors everything shares.

import { FlagState, LZ_NONE, FIXED1, IF } from './flags';
import { Memory, Page, PageFault, PAGE_SIZE, PAGE_RWATCHED } from './memory';
import { Insn, InsnCache } from './insn';
import { HI } from './regs';
import type { LocalApic } from './apic';
import type { Machine } from './machine';
import type { HostFrame } from './host';
import type { SpinTracker } from './spin';

export { RAX, RCX, RDX, RBX, RSP, RBP, RSI, RDI, R8, R9, R10, R11, R12, R13, R14, R15, HI, GPR_NAMES } from './regs';
export type { GprName } from './regs';
export { GuestException } from './fault';

/** An interrupted context, for reports: NMI, #BP, IRQ n, … (the thread is below all of them). */
export interface ContextFrame {
  kind: string;
  vector: number;
  /** Where the hardware frame was pushed (its RIP slot). */
  frameLo: number;
  frameHi: number;
  /** The interrupted RIP and RSP, saved in the frame. */
  ripLo: number;
  ripHi: number;
  rspLo: number;
  rspHi: number;
}

export class Cpu implements FlagState {
  /** GPRs: low halves at 0..15, high halves at 16..31, signed int32. */
  readonly r = new Int32Array(32);

  // FlagState (see flags.ts)
  flags = FIXED1;
  lzOp = LZ_NONE;
  lzSize = 64;
  rLo = 0;
  rHi = 0;
  aLo = 0;
  aHi = 0;
  bLo = 0;
  bHi = 0;
  lzC = 0;

  /** Scratch: high half of the last 64-bit value read (memory or operand). */
  th = 0;
  /** Scratch: high half of the last effective address computed. */
  eh = 0;

  // Segments. 64-bit mode ignores bases except FS and GS.
  cs = 0x10;
  ss = 0x18;
  ds = 0;
  es = 0;
  fsSel = 0;
  gsSel = 0;
  fsLo = 0;
  fsHi = 0;
  gsLo = 0;
  gsHi = 0;
  kgsLo = 0;
  kgsHi = 0;

  // Control registers. CR2 and CR3 are 64-bit; CR0/CR4 keep the low 32 bits we model.
  cr0 = 0x80050033; // PG PE MP ET NE WP AM, as Linux runs
  cr2Lo = 0;
  cr2Hi = 0;
  cr3Lo = 0;
  cr3Hi = 0;
  cr4 = 0x003006f0; // PAE PGE OSFXSR OSXMMEXCPT SMEP SMAP
  efer = 0xd01; // SCE LME LMA NXE
  idtrLo = 0;
  idtrHi = 0;
  idtrLimit = 0;
  gdtrLo = 0;
  gdtrHi = 0;
  gdtrLimit = 0;
  trSel = 0;
  trLo = 0;
  trHi = 0;
  /** MSRs not held in dedicated fields. */
  readonly msrs = new Map<number, bigint>();
  /** Added to the machine clock to form this CPU's TSC (IA32_TSC writes set it). */
  tscOffset = 0n;

  // Event state
  nmiBlocked = false;
  nmiPending = false;
  /** Maskable interrupts are inhibited for one instruction after STI (and MOV/POP SS). */
  intShadow = false;
  halted = false;
  /** Shutdown after a triple fault; the CPU runs no more. */
  shutdown: { vector: number; rip: bigint; detail: string } | null = null;
  /** Set to leave the step loop at the next boundary (event arrived, CPU blocked, …). */
  brk = false;
  /** A code hook ended the slice in front of the instruction (it did not execute). */
  deferred = false;
  /** A breakpoint stopped this CPU in front of this instruction. */
  stoppedAt: Insn | null = null;
  /** Skip hooks once when re-executing this instruction in this context (after a stop). */
  hookSkip: { ins: Insn; depth: number } | null = null;
  /**
   * Set by an instruction that returns itself to continue in the next step (a `rep`
   * string instruction between batches): hooks do not fire again for that.
   */
  continuing: Insn | null = null;
  readonly contexts: ContextFrame[] = [];

  // Execution
  readonly icache: InsnCache;
  /** Current instruction (RIP is insn.lo/insn.hi at an instruction boundary). */
  insn: Insn;
  /** Sequence number of code writes this CPU has observed through serialization. */
  serialSeq = 0;
  /** Bumped on each serialization; stale-mode decodes remember it. */
  serialEpoch = 0;
  /** Instructions retired (including host-routine steps). */
  retired = 0;
  /** Host routines active on this CPU, innermost last. */
  readonly hostFrames: HostFrame[] = [];
  /** Non-null while this CPU waits (host wait, PAUSE spin, HLT with nothing to wake it). */
  blocked: { reason: string; detail: string } | null = null;
  spin: SpinTracker | null = null;
  /** When true, reads take the slow path so the spin tracker sees them. */
  track = false;

  apic!: LocalApic;

  constructor(
    readonly id: number,
    readonly machine: Machine,
    readonly mem: Memory,
  ) {
    this.icache = new InsnCache(this);
    this.insn = this.icache.at(0, 0);
  }

  // ---- RIP ----

  get rip(): bigint {
    return (BigInt(this.insn.hi >>> 0) << 32n) | BigInt(this.insn.lo >>> 0);
  }

  setRip(lo: number, hi: number): void {
    this.insn = this.icache.at(lo, hi);
  }

  setRipBig(v: bigint): void {
    const a = BigInt.asUintN(64, v);
    this.setRip(Number(a & 0xffffffffn) | 0, Number(a >> 32n) | 0);
  }

  // ---- Registers (API side) ----

  getReg(i: number): bigint {
    return (BigInt(this.r[i + HI] >>> 0) << 32n) | BigInt(this.r[i] >>> 0);
  }

  setReg(i: number, v: bigint): void {
    const a = BigInt.asUintN(64, v);
    this.r[i] = Number(a & 0xffffffffn) | 0;
    this.r[i + HI] = Number(a >> 32n) | 0;
  }

  get interruptsEnabled(): boolean {
    return (this.flags & IF) !== 0;
  }

  // ---- Data memory: the hot path ----
  // Each accessor tries the TLB for an access within one page; everything else (TLB
  // miss, page crossing, MMIO, unmapped, logged or watched pages, spin tracking) goes
  // through the slow path, which is written for clarity rather than speed.

  rd8(lo: number, hi: number): number {
    const m = this.mem;
    const i = (lo >>> 12) & 255;
    if (m.tlbKey[i] === (hi >>> 0) * 1048576 + (lo >>> 12) && !this.track) {
      return m.tlbPage[i]!.data[lo & 0xfff];
    }
    return this.rdSlow(lo, hi, 1);
  }

  rd16(lo: number, hi: number): number {
    const m = this.mem;
    const off = lo & 0xfff;
    const i = (lo >>> 12) & 255;
    if (off <= 4094 && m.tlbKey[i] === (hi >>> 0) * 1048576 + (lo >>> 12) && !this.track) {
      return m.tlbPage[i]!.view.getUint16(off, true);
    }
    return this.rdSlow(lo, hi, 2);
  }

  /** Returns the value as a signed int32. */
  rd32(lo: number, hi: number): number {
    const m = this.mem;
    const off = lo & 0xfff;
    const i = (lo >>> 12) & 255;
    if (off <= 4092 && m.tlbKey[i] === (hi >>> 0) * 1048576 + (lo >>> 12) && !this.track) {
      return m.tlbPage[i]!.view.getInt32(off, true);
    }
    return this.rdSlow(lo, hi, 4) | 0;
  }

  /** Returns the low half; the high half is left in `th`. */
  rd64(lo: number, hi: number): number {
    const m = this.mem;
    const off = lo & 0xfff;
    const i = (lo >>> 12) & 255;
    if (off <= 4088 && m.tlbKey[i] === (hi >>> 0) * 1048576 + (lo >>> 12) && !this.track) {
      const v = m.tlbPage[i]!.view;
      this.th = v.getInt32(off + 4, true);
      return v.getInt32(off, true);
    }
    const l = this.rdSlow(lo, hi, 4) | 0;
    const s = (lo >>> 0) + 4;
    this.th = this.rdSlow(s | 0, (hi + (s > 0xffffffff ? 1 : 0)) | 0, 4) | 0;
    return l;
  }

  wr8(lo: number, hi: number, v: number): void {
    const m = this.mem;
    const i = (lo >>> 12) & 255;
    if (m.wtlbKey[i] === (hi >>> 0) * 1048576 + (lo >>> 12) && !this.track) {
      m.wtlbPage[i]!.data[lo & 0xfff] = v;
      return;
    }
    this.wrSlow(lo, hi, 1, v);
  }

  wr16(lo: number, hi: number, v: number): void {
    const m = this.mem;
    const off = lo & 0xfff;
    const i = (lo >>> 12) & 255;
    if (off <= 4094 && m.wtlbKey[i] === (hi >>> 0) * 1048576 + (lo >>> 12) && !this.track) {
      m.wtlbPage[i]!.view.setUint16(off, v, true);
      return;
    }
    this.wrSlow(lo, hi, 2, v);
  }

  wr32(lo: number, hi: number, v: number): void {
    const m = this.mem;
    const off = lo & 0xfff;
    const i = (lo >>> 12) & 255;
    if (off <= 4092 && m.wtlbKey[i] === (hi >>> 0) * 1048576 + (lo >>> 12) && !this.track) {
      m.wtlbPage[i]!.view.setInt32(off, v, true);
      return;
    }
    this.wrSlow(lo, hi, 4, v);
  }

  wr64(lo: number, hi: number, vlo: number, vhi: number): void {
    const m = this.mem;
    const off = lo & 0xfff;
    const i = (lo >>> 12) & 255;
    if (off <= 4088 && m.wtlbKey[i] === (hi >>> 0) * 1048576 + (lo >>> 12) && !this.track) {
      const v = m.wtlbPage[i]!.view;
      v.setInt32(off, vlo, true);
      v.setInt32(off + 4, vhi, true);
      return;
    }
    this.wr64Slow(lo, hi, vlo, vhi);
  }

  /** A 64-bit write as one logged access (so a watcher sees both halves at once). */
  private wr64Slow(lo: number, hi: number, vlo: number, vhi: number): void {
    const off = lo & 0xfff;
    if (this.track) {
      const s = (lo >>> 0) + 4;
      const hi2 = (hi + (s > 0xffffffff ? 1 : 0)) | 0;
      this.spin!.noteWrite(lo, hi, 4, this.peek(lo, hi, 4));
      this.spin!.noteWrite(s | 0, hi2, 4, this.peek(s | 0, hi2, 4));
    }
    if (off <= PAGE_SIZE - 8 && !this.mem.mmioAt(lo, hi)) {
      const pg = this.mem.writePage(lo, hi);
      pg.view.setInt32(off, vlo, true);
      pg.view.setInt32(off + 4, vhi, true);
      this.afterSlowWrite(pg, off, 8, lo, hi);
      return;
    }
    // Page-crossing: both pages must be writable before either half is stored.
    this.probeWrite(lo, hi, 8);
    this.wrSlow(lo, hi, 4, vlo, false);
    const s = (lo >>> 0) + 4;
    this.wrSlow(s | 0, (hi + (s > 0xffffffff ? 1 : 0)) | 0, 4, vhi, false);
  }

  /**
   * Reads without side effects (no spin tracking, no MMIO): the value a write is about
   * to replace, for the spin detector. Unmapped memory reads as 0 (the write faults).
   */
  peek(lo: number, hi: number, size: number): number {
    let v = 0;
    for (let k = 0; k < size; k++) {
      const s = (lo >>> 0) + k;
      const pg = this.mem.pageAt(s | 0, (hi + (s > 0xffffffff ? 1 : 0)) | 0);
      if (pg) v += pg.data[(s | 0) & 0xfff] * 2 ** (8 * k);
    }
    return v;
  }

  /** Reads `size` (1, 2 or 4) bytes, returned unsigned. */
  rdSlow(lo: number, hi: number, size: number): number {
    const off = lo & 0xfff;
    let v: number;
    const dev = this.mem.mmioAt(lo, hi);
    if (dev) {
      v = dev.read(this.id, off, size) >>> 0;
    } else if (off + size <= PAGE_SIZE) {
      const pg = this.mem.readPage(lo, hi, false);
      v =
        size === 1 ? pg.data[off] : size === 2 ? pg.view.getUint16(off, true) : pg.view.getUint32(off, true);
      if (pg.flags & PAGE_RWATCHED) this.mem.noteRead(pg, off, size, this.id, lo, hi);
    } else {
      v = 0;
      for (let k = 0; k < size; k++) {
        const s = (lo >>> 0) + k;
        const blo = s | 0;
        const bhi = (hi + (s > 0xffffffff ? 1 : 0)) | 0;
        const pg = this.mem.readPage(blo, bhi, false);
        v += pg.data[blo & 0xfff] * 2 ** (8 * k);
        if (pg.flags & PAGE_RWATCHED) this.mem.noteRead(pg, blo & 0xfff, 1, this.id, blo, bhi);
      }
    }
    if (this.track) this.spin!.noteRead(lo, hi, size, v);
    return v;
  }

  wrSlow(lo: number, hi: number, size: number, v: number, tracked = true): void {
    const off = lo & 0xfff;
    const dev = this.mem.mmioAt(lo, hi);
    if (dev) {
      if (this.track) this.spin!.noteImpure();
      dev.write(this.id, off, size, size === 4 ? v >>> 0 : v & (size === 1 ? 0xff : 0xffff));
      return;
    }
    if (this.track && tracked) this.spin!.noteWrite(lo, hi, size, this.peek(lo, hi, size));
    if (off + size <= PAGE_SIZE) {
      const pg = this.mem.writePage(lo, hi);
      if (size === 1) pg.data[off] = v;
      else if (size === 2) pg.view.setUint16(off, v, true);
      else pg.view.setInt32(off, v, true);
      this.afterSlowWrite(pg, off, size, lo, hi);
      return;
    }
    // Page-crossing: check both pages first so a fault leaves memory unchanged.
    this.probeWrite(lo, hi, size);
    for (let k = 0; k < size; k++) {
      const s = (lo >>> 0) + k;
      const blo = s | 0;
      const bhi = (hi + (s > 0xffffffff ? 1 : 0)) | 0;
      const pg = this.mem.writePage(blo, bhi);
      pg.data[blo & 0xfff] = (v >>> (8 * k)) & 0xff;
      this.afterSlowWrite(pg, blo & 0xfff, 1, blo, bhi);
    }
  }

  private afterSlowWrite(pg: Page, off: number, size: number, lo: number, hi: number): void {
    if (pg.flags !== 0) {
      this.mem.noteWrite(pg, off, size, this.id, lo, hi);
      if (pg.flags & 1) this.icache.ownWrite(pg);
    }
  }

  /**
   * Checks that `size` bytes at (lo, hi) are writable without writing, for stores that
   * must be all or nothing. A fault names the first byte of the first unmapped page,
   * as the CPU reports it in CR2.
   */
  probeWrite(lo: number, hi: number, size: number): void {
    let a = lo >>> 0;
    let h = hi;
    let left = size + (lo & 0xfff);
    for (;;) {
      if (!this.mem.mmioAt(a | 0, h)) this.mem.writePage(a | 0, h);
      left -= PAGE_SIZE;
      if (left <= 0) return;
      // Next page: its first byte.
      const s = (a & ~0xfff) + PAGE_SIZE;
      a = s >>> 0;
      if (s > 0xffffffff) h = (h + 1) | 0;
    }
  }

  // ---- Serialization (SDM "serializing instructions"; the XMC rule depends on it) ----

  serialize(): void {
    this.serialSeq = this.mem.writeSeq;
    this.serialEpoch++;
    this.icache.afterSerialize();
  }
}

export { PageFault };
