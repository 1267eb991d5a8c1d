// One CPU's architectural state and its data-memory access path. Instruction
// semantics live in emu/ops, event delivery in emu/events.ts, the step loop in
// emu/run.ts; this file only holds state and the accessors everything shares.

import { FlagState, LZ_NONE, FIXED1, IF } from './flags';
import { Memory, Page, PageFault, PAGE_SIZE, PAGE_CODE, PAGE_RWATCHED } from './memory';
import { Tlb, newKeys, newPages, flushCache, type DataCache, type TlbEntry } from './tlb';
import {
  translate, cacheable, ACCESS_READ, ACCESS_WRITE, ACCESS_FETCH, type Access,
  CR0_PG, CR0_WP, CR4_PAE, CR4_PGE, CR4_SMEP, CR4_SMAP, CR4_PCIDE, EFER_LME, EFER_NXE,
} from './paging';
import { forward, type PendingStore, type RmwState } from './store-buffer';
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

export interface CpuMemoryState {
  tlb: [number, TlbEntry][];
  stores: PendingStore[];
  rmw: RmwState | null;
}

export class Cpu implements FlagState, DataCache {
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

  // Segments. 64-bit mode ignores bases except FS and GS. CS is an accessor (its RPL is the CPL).
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
  // CR0, CR4 and EFER are accessors: a write may change how addresses translate.
  private _cr0 = 0x80050033; // PG PE MP ET NE WP AM, as Linux runs
  cr2Lo = 0;
  cr2Hi = 0;
  cr3Lo = 0;
  cr3Hi = 0;
  private _cr4 = 0x003006f0; // PAE PGE OSFXSR OSXMMEXCPT SMEP SMAP
  private _efer = 0xd01; // SCE LME LMA NXE
  private _cs = 0x10;
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

  apic!: LocalApic;

  // Translation: the direct-mapped data cache the hot path reads (emu/tlb.ts), the
  // architectural TLB behind it, and whether this CPU walks page tables at all.
  readonly tlbKey = newKeys();
  readonly tlbPage = newPages();
  readonly wtlbKey = newKeys();
  readonly wtlbPage = newPages();
  aliased = false;
  /** Some entry may be filled since the last flush (a flush of an empty cache is skipped). */
  cached = false;
  readonly tlb = new Tlb();
  paging = false;
  /** Scratch from `xlate`: the page may enter the data cache for this access. */
  xc = true;
  /** Hot-path reads and writes step aside: see updateSlow. */
  slow = false;
  private _track = false;
  /**
   * Stores not yet in memory, oldest first: the x86-TSO store buffer, then (at the tail)
   * the stores a split read-modify-write holds until its store step.
   */
  readonly stores: PendingStore[] = [];
  /** Non-null while an instruction runs as a split read-modify-write (emu/store-buffer.ts). */
  rmw: RmwState | null = null;
  /** This CPU's stores go through a store buffer (machine option memoryModel 'tso'). */
  tso = false;

  constructor(
    readonly id: number,
    readonly machine: Machine,
    readonly mem: Memory,
  ) {
    this.icache = new InsnCache(this);
    this.insn = this.icache.at(0, 0);
    mem.caches.push(this);
  }

  get cs(): number {
    return this._cs;
  }

  set cs(v: number) {
    // The data cache holds what the current privilege level may access outright.
    if (((v ^ this._cs) & 3) !== 0 && this.paging) flushCache(this);
    this._cs = v;
  }

  get cr0(): number {
    return this._cr0;
  }

  set cr0(v: number) {
    const old = this._cr0;
    this._cr0 = v;
    this.controlWritten('cr0', old);
  }

  get cr4(): number {
    return this._cr4;
  }

  set cr4(v: number) {
    const old = this._cr4;
    this._cr4 = v;
    this.controlWritten('cr4', old);
  }

  get efer(): number {
    return this._efer;
  }

  set efer(v: number) {
    const old = this._efer;
    this._efer = v;
    this.controlWritten('efer', old);
  }

  setCr3(lo: number, hi: number): void {
    this.cr3Lo = lo;
    this.cr3Hi = hi;
    this.controlWritten('cr3', 0);
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
  // Each accessor tries this CPU's data cache for an access within one page; everything
  // else (cache miss, page crossing, MMIO, unmapped, logged or watched pages, spin
  // tracking, pending stores) goes through the slow path, which is written for clarity
  // rather than speed. With paging on, the cache holds only translations the TLB grants
  // outright in the current mode, so the compare below is the whole cost of paging.

  rd8(lo: number, hi: number): number {
    const i = (lo >>> 12) & 255;
    if (this.tlbKey[i] === (hi >>> 0) * 1048576 + (lo >>> 12) && !this.slow) {
      return this.tlbPage[i]!.data[lo & 0xfff];
    }
    return this.rdSlow(lo, hi, 1);
  }

  rd16(lo: number, hi: number): number {
    const off = lo & 0xfff;
    const i = (lo >>> 12) & 255;
    if (off <= 4094 && this.tlbKey[i] === (hi >>> 0) * 1048576 + (lo >>> 12) && !this.slow) {
      return this.tlbPage[i]!.view.getUint16(off, true);
    }
    return this.rdSlow(lo, hi, 2);
  }

  /** Returns the value as a signed int32. */
  rd32(lo: number, hi: number): number {
    const off = lo & 0xfff;
    const i = (lo >>> 12) & 255;
    if (off <= 4092 && this.tlbKey[i] === (hi >>> 0) * 1048576 + (lo >>> 12) && !this.slow) {
      return this.tlbPage[i]!.view.getInt32(off, true);
    }
    return this.rdSlow(lo, hi, 4) | 0;
  }

  /** Returns the low half; the high half is left in `th`. */
  rd64(lo: number, hi: number): number {
    const off = lo & 0xfff;
    const i = (lo >>> 12) & 255;
    if (off <= 4088 && this.tlbKey[i] === (hi >>> 0) * 1048576 + (lo >>> 12) && !this.slow) {
      const v = this.tlbPage[i]!.view;
      this.th = v.getInt32(off + 4, true);
      return v.getInt32(off, true);
    }
    const l = this.rdSlow(lo, hi, 4) | 0;
    const s = (lo >>> 0) + 4;
    this.th = this.rdSlow(s | 0, (hi + (s > 0xffffffff ? 1 : 0)) | 0, 4) | 0;
    return l;
  }

  wr8(lo: number, hi: number, v: number): void {
    const i = (lo >>> 12) & 255;
    if (this.wtlbKey[i] === (hi >>> 0) * 1048576 + (lo >>> 12) && !this.slow) {
      this.wtlbPage[i]!.data[lo & 0xfff] = v;
      return;
    }
    this.wrSlow(lo, hi, 1, v);
  }

  wr16(lo: number, hi: number, v: number): void {
    const off = lo & 0xfff;
    const i = (lo >>> 12) & 255;
    if (off <= 4094 && this.wtlbKey[i] === (hi >>> 0) * 1048576 + (lo >>> 12) && !this.slow) {
      this.wtlbPage[i]!.view.setUint16(off, v, true);
      return;
    }
    this.wrSlow(lo, hi, 2, v);
  }

  wr32(lo: number, hi: number, v: number): void {
    const off = lo & 0xfff;
    const i = (lo >>> 12) & 255;
    if (off <= 4092 && this.wtlbKey[i] === (hi >>> 0) * 1048576 + (lo >>> 12) && !this.slow) {
      this.wtlbPage[i]!.view.setInt32(off, v, true);
      return;
    }
    this.wrSlow(lo, hi, 4, v);
  }

  wr64(lo: number, hi: number, vlo: number, vhi: number): void {
    const off = lo & 0xfff;
    const i = (lo >>> 12) & 255;
    if (off <= 4088 && this.wtlbKey[i] === (hi >>> 0) * 1048576 + (lo >>> 12) && !this.slow) {
      const v = this.wtlbPage[i]!.view;
      v.setInt32(off, vlo, true);
      v.setInt32(off + 4, vhi, true);
      return;
    }
    this.wr64Slow(lo, hi, vlo, vhi);
  }

  // ---- Translation (emu/paging.ts when paging is on; the identity otherwise) ----

  /**
   * Physical page number of the linear page at (lo, hi) for an access of `kind`; throws
   * #PF/#GP. Leaves in `xc` whether the hot path may cache the page for that access.
   */
  xlate(lo: number, hi: number, kind: Access): number {
    const fp = this.mem.footprint;
    if (fp !== null) {
      // The explorer records this step's accesses: note it, and cache nothing so the
      // next access comes here too. Fetches are not data (code writes are global).
      if (kind !== ACCESS_FETCH) fp.note(lo, hi, kind === ACCESS_WRITE);
      const key = this.paging ? translate(this, lo, hi, kind).pfn : (hi >>> 0) * 1048576 + (lo >>> 12);
      this.xc = false;
      return key;
    }
    if (!this.paging) {
      this.xc = true;
      return (hi >>> 0) * 1048576 + (lo >>> 12);
    }
    const e = translate(this, lo, hi, kind);
    this.xc = cacheable(this, e, kind) && (kind !== ACCESS_WRITE || e.dirty);
    return e.pfn;
  }

  /** The RAM page at physical page `key`; an absent one faults as unmapped at (lo, hi). */
  private ram(key: number, lo: number, hi: number, kind: Access): Page {
    const pg = this.mem.pages.get(key);
    if (pg) return pg;
    const what = this.paging ? `physical page 0x${(key * 4096).toString(16)} has no memory` : null;
    throw new PageFault(lo, hi, kind === ACCESS_WRITE, kind === ACCESS_FETCH, undefined, what);
  }

  /** The page instruction bytes at (lo, hi) come from (fetch rights checked when paging). */
  codePage(lo: number, hi: number): Page {
    return this.ram(this.xlate(lo, hi, ACCESS_FETCH), lo, hi, ACCESS_FETCH);
  }

  /** The physical address of linear `addr` as this CPU's TLB has it (itself if paging is off or it is not cached). */
  physical(addr: bigint): bigint {
    if (!this.paging) return addr;
    const a = BigInt.asUintN(64, addr);
    const e = this.tlb.get(Number(a >> 12n));
    return e ? (BigInt(e.pfn) << 12n) | (a & 0xfffn) : a;
  }

  /** Physical page number of (lo, hi) as the TLB has it, without walking or faulting. */
  private peekKey(lo: number, hi: number): number | undefined {
    const vpn = (hi >>> 0) * 1048576 + (lo >>> 12);
    return this.paging ? this.tlb.get(vpn)?.pfn : vpn;
  }

  private fillRead(lo: number, hi: number, pg: Page): void {
    const i = (lo >>> 12) & 255;
    const vpn = (hi >>> 0) * 1048576 + (lo >>> 12);
    this.tlbKey[i] = vpn;
    this.tlbPage[i] = pg;
    this.cached = true;
    if (vpn !== pg.key) this.aliased = true;
  }

  private fillWrite(lo: number, hi: number, pg: Page): void {
    const i = (lo >>> 12) & 255;
    const vpn = (hi >>> 0) * 1048576 + (lo >>> 12);
    this.wtlbKey[i] = vpn;
    this.wtlbPage[i] = pg;
    this.cached = true;
    if (vpn !== pg.key) this.aliased = true;
  }

  /** After a write to CR0, CR3, CR4 or EFER: the paging mode, TLB and caches (SDM 4.10.4.1). */
  controlWritten(reg: 'cr0' | 'cr3' | 'cr4' | 'efer', old: number): void {
    const was = this.paging;
    this.paging =
      this.machine.pagingEnabled && (this._cr0 & CR0_PG) !== 0 && (this._cr4 & CR4_PAE) !== 0 && (this._efer & EFER_LME) !== 0;
    flushCache(this);
    let forget = was !== this.paging;
    if (reg === 'cr3') {
      this.tlb.flush((this._cr4 & CR4_PGE) !== 0);
      forget ||= this.paging;
    } else if (
      (reg === 'cr0' && ((old ^ this._cr0) & (CR0_PG | CR0_WP)) !== 0) ||
      (reg === 'cr4' && ((old ^ this._cr4) & (CR4_PGE | CR4_PAE | CR4_SMEP | CR4_SMAP | CR4_PCIDE)) !== 0) ||
      (reg === 'efer' && ((old ^ this._efer) & EFER_NXE) !== 0)
    ) {
      this.tlb.flush(false);
      forget ||= this.paging;
    }
    // Decoded instructions are keyed by linear address: a new mapping must fetch again.
    if (forget) this.icache.forgetAll();
  }

  /** INVLPG: the TLB entries for the page, the cached page, and decodes made through it. */
  invlpg(lo: number, hi: number): void {
    this.tlb.invalidate((hi >>> 0) * 1048576 + (lo >>> 12));
    flushCache(this);
    if (this.paging) this.icache.forgetPage(lo, hi);
  }

  /**
   * Reads without side effects (no spin tracking, no MMIO): the value a write is about
   * to replace, for the spin detector. Unmapped memory reads as 0 (the write faults).
   */
  peek(lo: number, hi: number, size: number): number {
    // The spin detector's peeks decide whether a step blocks: they are reads too.
    if (this.mem.footprint !== null) this.mem.footprint.note(lo, hi, false);
    let v = 0;
    for (let k = 0; k < size; k++) {
      const s = (lo >>> 0) + k;
      const bl = s | 0;
      const bh = (hi + (s > 0xffffffff ? 1 : 0)) | 0;
      const key = this.peekKey(bl, bh);
      const pg = key === undefined ? undefined : this.mem.pages.get(key);
      if (pg) v += pg.data[bl & 0xfff] * 2 ** (8 * k);
    }
    return v;
  }

  /** Reads `size` (1, 2 or 4) bytes, returned unsigned. */
  rdSlow(lo: number, hi: number, size: number): number {
    const off = lo & 0xfff;
    let v: number;
    if (off + size <= PAGE_SIZE) {
      const key = this.xlate(lo, hi, ACCESS_READ);
      const dev = this.mem.mmioByKey(key);
      if (dev) {
        v = dev.read(this.id, off, size) >>> 0;
      } else {
        const pg = this.ram(key, lo, hi, ACCESS_READ);
        if (this.xc && !(pg.flags & PAGE_RWATCHED)) this.fillRead(lo, hi, pg);
        v = size === 1 ? pg.data[off] : size === 2 ? pg.view.getUint16(off, true) : pg.view.getUint32(off, true);
        if (this.stores.length !== 0) v = forward(this.stores, pg, off, size, v);
        if (pg.flags & PAGE_RWATCHED) this.mem.noteRead(pg, off, size, this.id, lo, hi);
      }
    } else {
      v = 0;
      for (let k = 0; k < size; k++) {
        const s = (lo >>> 0) + k;
        const blo = s | 0;
        const bhi = (hi + (s > 0xffffffff ? 1 : 0)) | 0;
        const pg = this.ram(this.xlate(blo, bhi, ACCESS_READ), blo, bhi, ACCESS_READ);
        let b = pg.data[blo & 0xfff];
        if (this.stores.length !== 0) b = forward(this.stores, pg, blo & 0xfff, 1, b);
        v += b * 2 ** (8 * k);
        if (pg.flags & PAGE_RWATCHED) this.mem.noteRead(pg, blo & 0xfff, 1, this.id, blo, bhi);
      }
    }
    if (this.rmw !== null) this.rmw.reads++;
    if (this._track) this.spin!.noteRead(lo, hi, size, v);
    return v;
  }

  /** A 64-bit write as one access (so a watcher sees both halves at once). */
  private wr64Slow(lo: number, hi: number, vlo: number, vhi: number): void {
    const off = lo & 0xfff;
    if (this._track) {
      const s = (lo >>> 0) + 4;
      const hi2 = (hi + (s > 0xffffffff ? 1 : 0)) | 0;
      this.spin!.noteWrite(lo, hi, 4, this.peek(lo, hi, 4));
      this.spin!.noteWrite(s | 0, hi2, 4, this.peek(s | 0, hi2, 4));
    }
    if (off <= PAGE_SIZE - 8) {
      const key = this.xlate(lo, hi, ACCESS_WRITE);
      if (!this.mem.mmioByKey(key)) {
        this.store(this.ram(key, lo, hi, ACCESS_WRITE), off, 8, vlo, vhi, lo, hi);
        return;
      }
    }
    // Page-crossing (or MMIO): every page must be writable before either half is stored.
    this.probeWrite(lo, hi, 8);
    this.wrSlow(lo, hi, 4, vlo, false);
    const s = (lo >>> 0) + 4;
    this.wrSlow(s | 0, (hi + (s > 0xffffffff ? 1 : 0)) | 0, 4, vhi, false);
  }

  wrSlow(lo: number, hi: number, size: number, v: number, tracked = true): void {
    const off = lo & 0xfff;
    if (this._track && tracked) this.spin!.noteWrite(lo, hi, size, this.peek(lo, hi, size));
    if (off + size <= PAGE_SIZE) {
      const key = this.xlate(lo, hi, ACCESS_WRITE);
      const dev = this.mem.mmioByKey(key);
      if (dev) {
        // Uncacheable: ordered after every earlier store, never buffered (SDM 11.3).
        if (this._track) this.spin!.noteImpure();
        this.drainAll();
        dev.write(this.id, off, size, size === 4 ? v >>> 0 : v & (size === 1 ? 0xff : 0xffff));
        return;
      }
      this.store(this.ram(key, lo, hi, ACCESS_WRITE), off, size, v, 0, lo, hi);
      return;
    }
    // Page-crossing: check both pages first so a fault leaves memory unchanged.
    this.probeWrite(lo, hi, size);
    for (let k = 0; k < size; k++) {
      const s = (lo >>> 0) + k;
      const blo = s | 0;
      const bhi = (hi + (s > 0xffffffff ? 1 : 0)) | 0;
      const pg = this.ram(this.xlate(blo, bhi, ACCESS_WRITE), blo, bhi, ACCESS_WRITE);
      this.store(pg, blo & 0xfff, 1, (v >>> (8 * k)) & 0xff, 0, blo, bhi);
    }
  }

  /**
   * One translated store of `size` bytes: held by a split read-modify-write that has
   * read, queued in the store buffer under x86-TSO, or written to memory now.
   */
  private store(pg: Page, off: number, size: number, vlo: number, vhi: number, lo: number, hi: number): void {
    const rmw = this.rmw;
    if (rmw !== null && rmw.reads > 0) {
      this.stores.push({ pg, off, size, vlo, vhi, lo, hi });
      rmw.held++;
      this.updateSlow();
      return;
    }
    if (this.tso) {
      if (this.stores.length - (rmw?.held ?? 0) >= this.machine.storeBufferSize) this.drainOne();
      this.stores.push({ pg, off, size, vlo, vhi, lo, hi });
      if (pg.flags & PAGE_CODE) this.icache.forgetPage(lo, hi);
      this.updateSlow();
      return;
    }
    if (this.xc && pg.flags === 0) this.fillWrite(lo, hi, pg);
    this.commit({ pg, off, size, vlo, vhi, lo, hi });
  }

  /** Writes a store into memory, logging code-page writes and waking watchers. */
  commit(st: PendingStore): void {
    const { pg, off, size } = st;
    // Snapshots: the page is saved before its first change after one (emu/journal.ts).
    this.mem.touch(pg);
    const v = pg.view;
    if (size === 1) pg.data[off] = st.vlo;
    else if (size === 2) v.setUint16(off, st.vlo, true);
    else {
      v.setInt32(off, st.vlo, true);
      if (size === 8) v.setInt32(off + 4, st.vhi, true);
    }
    if (pg.flags !== 0) {
      this.mem.noteWrite(pg, off, size, this.id, st.lo, st.hi);
      if (pg.flags & PAGE_CODE) this.icache.ownWrite(pg);
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
      const key = this.xlate(a | 0, h, ACCESS_WRITE);
      if (!this.mem.mmioByKey(key)) this.ram(key, a | 0, h, ACCESS_WRITE);
      left -= PAGE_SIZE;
      if (left <= 0) return;
      // Next page: its first byte.
      const s = (a & ~0xfff) + PAGE_SIZE;
      a = s >>> 0;
      if (s > 0xffffffff) h = (h + 1) | 0;
    }
  }

  // ---- Pending stores: the x86-TSO store buffer and split read-modify-writes ----

  /** Whether the hot path must step aside (spin tracking, or stores this CPU must forward). */
  updateSlow(): void {
    this.slow = this._track || this.stores.length !== 0 || this.rmw !== null;
  }

  /** When true, reads take the slow path so the spin tracker sees them. */
  get track(): boolean {
    return this._track;
  }

  set track(v: boolean) {
    this._track = v;
    this.updateSlow();
  }

  /** Stores other CPUs cannot see yet that a drain step may make visible (not held by an RMW). */
  get drainable(): number {
    return this.stores.length - (this.rmw?.held ?? 0);
  }

  /** Makes the oldest buffered store visible: one schedulable step under x86-TSO. */
  drainOne(): void {
    const st = this.stores.shift();
    if (!st) return;
    this.commit(st);
    this.updateSlow();
  }

  /** Empties the store buffer (locked instructions, MFENCE, serializing, event delivery). */
  drainAll(): void {
    const held = this.rmw?.held ?? 0;
    while (this.stores.length > held) this.drainOne();
  }

  /** For machine snapshots: the TLB, the pending stores and a split RMW in progress (entries are immutable). */
  saveMemoryState(): CpuMemoryState {
    return { tlb: this.tlb.entries(), stores: this.stores.slice(), rmw: this.rmw ? { ...this.rmw } : null };
  }

  loadMemoryState(s: CpuMemoryState): void {
    this.tlb.restore(s.tlb);
    this.stores.length = 0;
    this.stores.push(...s.stores);
    this.rmw = s.rmw ? { ...s.rmw } : null;
    flushCache(this);
    this.updateSlow();
  }

  /** Stores buffered for the page of (lo, hi), to lay over fetched bytes (own SMC). */
  bufferedFor(pg: Page): PendingStore[] {
    return this.stores.filter((st) => st.pg === pg);
  }

  // ---- Serialization (SDM "serializing instructions"; the XMC rule depends on it) ----

  serialize(): void {
    if (this.stores.length !== 0) this.drainAll();
    this.serialSeq = this.mem.writeSeq;
    this.serialEpoch++;
    this.icache.afterSerialize();
  }
}

export { PageFault };
