// PAUSE-loop detection, so a CPU spinning on an unchanged location costs no host time.
//
// A loop iteration from one PAUSE to the next that (1) ends at the same PAUSE, (2)
// leaves every register, flag and memory location it wrote as it found them (a
// `call` in the loop rewrites the same return address: that is allowed), and (3) read
// only values it will read again, is a fixed point: every further iteration repeats
// it exactly until one of the locations it read changes or an event arrives. So after
// one such iteration the CPU blocks, watching the addresses it read. Nothing is
// approximated: the blocked CPU resumes exactly where it would have been.

import type { Cpu } from './cpu';
import { readFlags } from './flags';
import { toBig } from './u64';

const MAX_READS = 64;
const MAX_WRITES = 32;
/** Iterations longer than this are not treated as spins. */
const MAX_STEPS = 4096;

export interface SpinRead {
  lo: number;
  hi: number;
  size: number;
  value: number;
  /**
   * The iteration wrote this location before reading it (a preempt count raised and
   * dropped again around a trylock): the value is the iteration's own, so it is not
   * compared with memory at the end, but a change by anyone else still wakes the CPU.
   */
  own?: boolean;
}

export interface SpinState {
  pauseLo: number;
  pauseHi: number;
  active: boolean;
  regs: Int32Array;
  flags: number;
  writes: SpinRead[];
  impure: boolean;
  startRetired: number;
  reads: SpinRead[];
  loopLo: number;
  loopHi: number;
  loopSince: number;
  loopLast: number;
}

export class SpinTracker {
  /** Address of the PAUSE that started the iteration being watched. */
  private pauseLo = 0;
  private pauseHi = 0;
  private active = false;
  private readonly regs = new Int32Array(32);
  private flags = 0;
  private writes: SpinRead[] = [];
  private impure = false;
  private startRetired = 0;
  reads: SpinRead[] = [];
  /**
   * The PAUSE loop this CPU has been going round without leaving: where, since which
   * of its retired instructions, and its last iteration. For livelock detection.
   */
  loopLo = 0;
  loopHi = 0;
  loopSince = -1;
  loopLast = -1;

  constructor(private readonly cpu: Cpu) {}

  /** Whether an iteration is being watched (the explorer's state hash reads the rest only then). */
  get tracking(): boolean {
    return this.active;
  }

  /** Everything this tracker knows (machine snapshots save it). */
  saveState(): SpinState {
    return {
      pauseLo: this.pauseLo, pauseHi: this.pauseHi, active: this.active, regs: this.regs.slice(), flags: this.flags,
      writes: this.writes.slice(), impure: this.impure, startRetired: this.startRetired, reads: this.reads.slice(),
      loopLo: this.loopLo, loopHi: this.loopHi, loopSince: this.loopSince, loopLast: this.loopLast,
    };
  }

  loadState(s: SpinState): void {
    this.pauseLo = s.pauseLo;
    this.pauseHi = s.pauseHi;
    this.active = s.active;
    this.regs.set(s.regs);
    this.flags = s.flags;
    this.writes = s.writes.slice();
    this.impure = s.impure;
    this.startRetired = s.startRetired;
    this.reads = s.reads.slice();
    this.loopLo = s.loopLo;
    this.loopHi = s.loopHi;
    this.loopSince = s.loopSince;
    this.loopLast = s.loopLast;
  }

  noteRead(lo: number, hi: number, size: number, value: number): void {
    if (this.reads.length >= MAX_READS) {
      this.impure = true;
      this.stopTracking();
      return;
    }
    this.reads.push({ lo, hi, size, value, own: this.wroteEarlier(lo, hi, size) });
  }

  /** Whether this iteration already wrote every byte of (lo, hi, size). */
  private wroteEarlier(lo: number, hi: number, size: number): boolean {
    const a = lo >>> 0;
    for (const w of this.writes) if (w.hi === hi && (w.lo >>> 0) <= a && a + size <= (w.lo >>> 0) + w.size) return true;
    return false;
  }

  /** A write of `size` bytes at (lo, hi) is about to replace `old`. */
  noteWrite(lo: number, hi: number, size: number, old: number): void {
    if (this.writes.length >= MAX_WRITES) {
      this.impure = true;
      this.stopTracking();
      return;
    }
    this.writes.push({ lo, hi, size, value: old });
  }

  /** Whether every location written during the iteration holds its value from before it. */
  private writesUndone(): boolean {
    const seen = new Set<string>();
    for (const w of this.writes) {
      const k = `${w.lo}:${w.hi}:${w.size}`;
      if (seen.has(k)) continue; // only the first write knows the original value
      seen.add(k);
      if (this.cpu.peek(w.lo, w.hi, w.size) !== w.value) return false;
    }
    return true;
  }

  /** Time-dependent input (rdtsc, port reads): the iteration is not a fixed point. */
  noteImpure(): void {
    this.impure = true;
    this.stopTracking();
  }

  private stopTracking(): void {
    this.cpu.track = false;
  }

  /** Instructions this CPU has spent in its current PAUSE loop (0 if it is not in one). */
  loopLength(): number {
    if (this.loopSince < 0 || this.cpu.retired - this.loopLast > MAX_STEPS) return 0;
    return this.cpu.retired - this.loopSince;
  }

  /** Leaving the loop for an event handler ends it. */
  endLoop(): void {
    this.loopSince = -1;
  }

  /** Forget everything (an event was delivered, or the CPU was woken). */
  reset(): void {
    this.active = false;
    this.cpu.track = false;
    this.reads = [];
    this.writes = [];
  }

  /**
   * Called when PAUSE at (lo, hi) executes. Returns true if the CPU should block
   * because the iteration that just ended is a fixed point.
   */
  onPause(lo: number, hi: number): boolean {
    const cpu = this.cpu;
    // The same PAUSE again soon after the last one: still the same loop.
    if (this.loopSince >= 0 && lo === this.loopLo && hi === this.loopHi && cpu.retired - this.loopLast <= MAX_STEPS) {
      this.loopLast = cpu.retired;
    } else {
      this.loopLo = lo;
      this.loopHi = hi;
      this.loopSince = cpu.retired;
      this.loopLast = cpu.retired;
    }
    if (
      this.active &&
      lo === this.pauseLo &&
      hi === this.pauseHi &&
      !this.impure &&
      this.writesUndone() &&
      this.readsStillCurrent() &&
      cpu.retired - this.startRetired <= MAX_STEPS &&
      this.sameState()
    ) {
      cpu.track = false;
      return true;
    }
    this.active = true;
    this.pauseLo = lo;
    this.pauseHi = hi;
    this.regs.set(cpu.r);
    this.flags = readFlags(cpu);
    this.writes = [];
    this.impure = false;
    this.reads = [];
    this.startRetired = cpu.retired;
    cpu.track = true;
    return false;
  }

  /**
   * Another CPU may have changed a location after this iteration read it: then the
   * next iteration differs, and blocking now would wait for a write already done.
   */
  private readsStillCurrent(): boolean {
    for (const r of this.reads) if (!r.own && this.cpu.peek(r.lo, r.hi, r.size) !== r.value >>> 0) return false;
    return true;
  }

  private sameState(): boolean {
    const r = this.cpu.r;
    for (let i = 0; i < 32; i++) if (r[i] !== this.regs[i]) return false;
    return readFlags(this.cpu) === this.flags;
  }

  /** Human-readable list of the watched locations. */
  describe(symbolize: (a: bigint) => string): string {
    const seen = new Set<string>();
    const parts: string[] = [];
    for (const r of this.reads) {
      if (r.own) continue;
      const a = toBig(r.lo, r.hi);
      const s = `${symbolize(a)} (0x${(r.value >>> 0).toString(16)})`;
      if (!seen.has(s)) {
        seen.add(s);
        parts.push(s);
      }
    }
    return parts.length ? parts.join(', ') : 'nothing it reads can change';
  }
}
