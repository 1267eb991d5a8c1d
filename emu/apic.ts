// The local APIC, one per CPU: ID, TPR, EOI, SVR, ISR/IRR, LDR and the ICR, reachable
// as x2APIC MSRs (0x800 + offset/16, ICR at 0x830) in x2APIC mode and as the xAPIC
// MMIO page at 0xFEE00000 (ICR at 0x300/0x310) in xAPIC mode, selected by
// IA32_APIC_BASE as on hardware. The APIC hands each IPI to the Machine (IpiBus), which
// delivers it at once (the default: the target sees it at its next instruction
// boundary) or keeps it in flight for a while (Machine.setIpiLatency, the explorer's
// 'ipi' choices; docs/notes/ipi-latency.md). While an IPI this APIC sent is in flight
// the xAPIC ICR's delivery-status bit (12) reads 1, "send pending" (SDM vol. 3,
// 11.6.1); in x2APIC mode the bit is reserved and reads 0 (11.12.9). Delivery modes
// fixed, lowest-priority (to the first target) and NMI are modelled; SMI, INIT and
// SIPI are recorded and otherwise ignored.

import type { MmioDevice } from './memory';

export const APIC_BASE_MSR = 0x1b;
export const APIC_DEFAULT_BASE = 0xfee00000n;
const BASE_BSP = 0x100;
const BASE_EXTD = 0x400; // x2APIC mode
const BASE_EN = 0x800;

// Register offsets in the xAPIC page (x2APIC MSR = 0x800 + offset >> 4).
export const REG_ID = 0x20, REG_VERSION = 0x30, REG_TPR = 0x80, REG_PPR = 0xa0, REG_EOI = 0xb0;
export const REG_LDR = 0xd0, REG_DFR = 0xe0, REG_SVR = 0xf0, REG_ISR = 0x100, REG_TMR = 0x180;
export const REG_IRR = 0x200, REG_ESR = 0x280, REG_ICR_LO = 0x300, REG_ICR_HI = 0x310;
export const REG_LVT_TIMER = 0x320, REG_LVT_LINT0 = 0x350, REG_LVT_LINT1 = 0x360, REG_LVT_ERROR = 0x370;
export const REG_SELF_IPI = 0x3f0;
export const MSR_X2APIC_ICR = 0x830;

export const DM_FIXED = 0, DM_LOWEST = 1, DM_SMI = 2, DM_NMI = 4, DM_INIT = 5, DM_SIPI = 6;
export const SH_NONE = 0, SH_SELF = 1, SH_ALL = 2, SH_OTHERS = 3;

/** A decoded interprocessor interrupt request. */
export interface Ipi {
  from: number;
  vector: number;
  mode: number;
  logical: boolean;
  shorthand: number;
  /** Destination field: 8-bit xAPIC ID/mask or 32-bit x2APIC ID. */
  dest: number;
  x2apic: boolean;
}

/** Where the APIC sends IPIs and accounts them (the Machine). */
export interface IpiBus {
  sendIpi(ipi: Ipi): void;
  /** Whether an IPI sent by CPU `from` is still on its way (the xAPIC delivery-status bit). */
  sendPending?(from: number): boolean;
}

/** ICR bit 12: delivery status (xAPIC; reserved in x2APIC mode). */
const ICR_SEND_PENDING = 0x1000;

export interface ApicState {
  irr: Uint32Array;
  isr: Uint32Array;
  tmr: Uint32Array;
  tpr: number;
  svr: number;
  ldr: number;
  dfr: number;
  esr: number;
  icrLo: number;
  icrHi: number;
  lvt: [number, number][];
  base: number;
  id: number;
  sent: number;
}

export class LocalApic implements MmioDevice {
  readonly irr = new Uint32Array(8);
  readonly isr = new Uint32Array(8);
  readonly tmr = new Uint32Array(8);
  tpr = 0;
  svr = 0x1ff;
  ldr = 0;
  dfr = 0xffffffff;
  esr = 0;
  icrLo = 0;
  icrHi = 0;
  lvt = new Map<number, number>([
    [REG_LVT_TIMER, 0x10000], [REG_LVT_LINT0, 0x10000], [REG_LVT_LINT1, 0x10000], [REG_LVT_ERROR, 0x10000],
  ]);
  base: number;
  /** IPIs this APIC sent, by delivery mode name, for reports. */
  sent = 0;

  /** Every register (machine snapshots save it). */
  saveState(): ApicState {
    return {
      irr: this.irr.slice(), isr: this.isr.slice(), tmr: this.tmr.slice(), tpr: this.tpr, svr: this.svr, ldr: this.ldr,
      dfr: this.dfr, esr: this.esr, icrLo: this.icrLo, icrHi: this.icrHi, lvt: [...this.lvt], base: this.base, id: this.id,
      sent: this.sent,
    };
  }

  loadState(s: ApicState): void {
    this.irr.set(s.irr);
    this.isr.set(s.isr);
    this.tmr.set(s.tmr);
    this.tpr = s.tpr;
    this.svr = s.svr;
    this.ldr = s.ldr;
    this.dfr = s.dfr;
    this.esr = s.esr;
    this.icrLo = s.icrLo;
    this.icrHi = s.icrHi;
    this.lvt = new Map(s.lvt);
    this.base = s.base;
    this.id = s.id;
    this.sent = s.sent;
  }

  constructor(
    readonly cpu: number,
    public id: number,
    private readonly bus: IpiBus,
    x2apic: boolean,
  ) {
    this.base = 0xfee00000 | BASE_EN | (cpu === 0 ? BASE_BSP : 0) | (x2apic ? BASE_EXTD : 0);
  }

  get x2apic(): boolean {
    return (this.base & BASE_EXTD) !== 0;
  }

  get enabled(): boolean {
    return (this.base & BASE_EN) !== 0 && (this.svr & 0x100) !== 0;
  }

  /** x2APIC logical ID: cluster in bits 31:16, one-hot position in 15:0. */
  private get x2Ldr(): number {
    return ((this.id >>> 4) << 16) | (1 << (this.id & 15));
  }

  // ---- Register file, shared by both interfaces ----

  readReg(off: number): number {
    switch (off) {
      case REG_ID:
        return this.x2apic ? this.id : (this.id & 0xff) << 24;
      case REG_VERSION:
        return 0x00050014; // version 0x14, 6 LVT entries
      case REG_TPR:
        return this.tpr;
      case REG_PPR:
        return this.ppr();
      case REG_LDR:
        return this.x2apic ? this.x2Ldr : this.ldr;
      case REG_DFR:
        return this.dfr;
      case REG_SVR:
        return this.svr;
      case REG_ESR:
        return this.esr;
      case REG_ICR_LO:
        return (this.icrLo & ~ICR_SEND_PENDING) | (this.bus.sendPending?.(this.cpu) === true ? ICR_SEND_PENDING : 0);
      case REG_ICR_HI:
        return this.icrHi;
      default:
        if (off >= REG_ISR && off < REG_ISR + 0x80) return this.isr[(off - REG_ISR) >> 4];
        if (off >= REG_TMR && off < REG_TMR + 0x80) return this.tmr[(off - REG_TMR) >> 4];
        if (off >= REG_IRR && off < REG_IRR + 0x80) return this.irr[(off - REG_IRR) >> 4];
        return this.lvt.get(off) ?? 0;
    }
  }

  writeReg(off: number, v: number): void {
    switch (off) {
      case REG_ID:
        if (!this.x2apic) this.id = v >>> 24;
        return;
      case REG_TPR:
        this.tpr = v & 0xff;
        return;
      case REG_EOI:
        this.eoi();
        return;
      case REG_LDR:
        if (!this.x2apic) this.ldr = v & 0xff000000;
        return;
      case REG_DFR:
        this.dfr = v | 0x0fffffff;
        return;
      case REG_SVR:
        this.svr = v & 0x13ff;
        return;
      case REG_ESR:
        this.esr = 0;
        return;
      case REG_ICR_HI:
        this.icrHi = v & 0xff000000;
        return;
      case REG_ICR_LO:
        // xAPIC: writing the low word sends, to the destination in ICR high bits 31:24.
        this.icrLo = v & 0x000cdfff;
        this.send(this.icrLo, this.icrHi >>> 24, false);
        return;
      case REG_SELF_IPI:
        this.send(v & 0xff | (SH_SELF << 18), 0, true);
        return;
      default:
        if (this.lvt.has(off)) this.lvt.set(off, v);
    }
  }

  private send(lo: number, dest: number, x2apic: boolean): void {
    this.sent++;
    this.bus.sendIpi({
      from: this.cpu,
      vector: lo & 0xff,
      mode: (lo >>> 8) & 7,
      logical: (lo & 0x800) !== 0,
      shorthand: (lo >>> 18) & 3,
      dest,
      x2apic,
    });
  }

  /** Whether this APIC is addressed by a destination field (shorthand not used). */
  matches(dest: number, logical: boolean, x2apic: boolean): boolean {
    if (!logical) {
      const broadcast = x2apic ? 0xffffffff : 0xff;
      return dest >>> 0 === broadcast || dest >>> 0 === (x2apic ? this.id >>> 0 : this.id & 0xff);
    }
    if (x2apic) {
      const l = this.x2Ldr;
      return (dest >>> 16) === (l >>> 16) && (dest & l & 0xffff) !== 0;
    }
    // Flat model: the top byte of the LDR is a bitmask.
    return ((this.ldr >>> 24) & dest & 0xff) !== 0;
  }

  // ---- MMIO (xAPIC mode only; the page is not decoded in x2APIC mode) ----

  read(_cpu: number, offset: number, _size: number): number {
    if (this.x2apic) return 0xffffffff;
    return this.readReg(offset & 0xff0);
  }

  write(_cpu: number, offset: number, _size: number, value: number): void {
    if (this.x2apic) return;
    this.writeReg(offset & 0xff0, value);
  }

  // ---- MSRs ----

  /** Returns undefined when the MSR is not an APIC MSR; throws 'gp' when access must #GP. */
  readMsr(msr: number): bigint | undefined | 'gp' {
    if (msr === APIC_BASE_MSR) return BigInt(this.base >>> 0);
    if (msr < 0x800 || msr > 0x8ff) return undefined;
    if (!this.x2apic) return 'gp';
    // No delivery status in x2APIC mode: bit 12 is reserved (reads 0).
    if (msr === MSR_X2APIC_ICR) return (BigInt(this.icrHi >>> 0) << 32n) | BigInt((this.icrLo & ~ICR_SEND_PENDING) >>> 0);
    if (msr === 0x80b || msr === 0x83f) return 'gp'; // EOI and SELF_IPI are write-only
    return BigInt(this.readReg((msr - 0x800) << 4) >>> 0);
  }

  writeMsr(msr: number, v: bigint): boolean | 'gp' {
    if (msr === APIC_BASE_MSR) {
      this.base = Number(v & 0xfffffd00n) | 0;
      return true;
    }
    if (msr < 0x800 || msr > 0x8ff) return false;
    if (!this.x2apic) return 'gp';
    if (msr === MSR_X2APIC_ICR) {
      // x2APIC: one 64-bit write, destination in bits 63:32.
      this.icrHi = Number(v >> 32n) | 0;
      this.icrLo = Number(v & 0x000cdfffn);
      this.send(this.icrLo, this.icrHi, true);
      return true;
    }
    if (msr === 0x802 || msr === 0x80d) return 'gp'; // ID and LDR are read-only in x2APIC mode
    this.writeReg((msr - 0x800) << 4, Number(v & 0xffffffffn) | 0);
    return true;
  }

  // ---- Interrupt acceptance ----

  /** A fixed-mode interrupt arrives: it waits in the IRR. */
  acceptFixed(vector: number): void {
    if (vector < 16) {
      this.esr |= 0x40; // illegal vector
      return;
    }
    this.irr[vector >>> 5] |= 1 << (vector & 31);
  }

  private static highest(bits: Uint32Array): number {
    for (let w = 7; w >= 0; w--) {
      if (bits[w] !== 0) return w * 32 + 31 - Math.clz32(bits[w]);
    }
    return -1;
  }

  /** Processor priority: the higher of TPR and the class of the highest in-service vector. */
  ppr(): number {
    const isrv = LocalApic.highest(this.isr);
    const isrClass = isrv < 0 ? 0 : isrv & 0xf0;
    return (this.tpr & 0xf0) >= isrClass ? this.tpr : isrClass;
  }

  /** The vector the CPU would take now (IF permitting), or -1. */
  deliverable(): number {
    if (!this.enabled) return -1;
    const v = LocalApic.highest(this.irr);
    if (v < 0) return -1;
    return (v & 0xf0) > (this.ppr() & 0xf0) ? v : -1;
  }

  /** The CPU takes `vector`: IRR to ISR. */
  ack(vector: number): void {
    this.irr[vector >>> 5] &= ~(1 << (vector & 31));
    this.isr[vector >>> 5] |= 1 << (vector & 31);
  }

  eoi(): void {
    const v = LocalApic.highest(this.isr);
    if (v >= 0) this.isr[v >>> 5] &= ~(1 << (v & 31));
  }

  /** CR8 is an alias of TPR bits 7:4. */
  get cr8(): number {
    return (this.tpr >>> 4) & 0xf;
  }

  set cr8(v: number) {
    this.tpr = (v & 0xf) << 4;
  }
}
