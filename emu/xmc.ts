// The cross-modifying-code checker. The SDM (vol. 3, 9.1.3) lets a CPU run code that
// another CPU wrote only after the executing CPU has serialized. The checker reports a
// CPU executing an instruction any of whose bytes after the first was written by
// another agent after this CPU last serialized. The first byte alone is exempt: a
// single-byte store of int3 over an opcode is the one cross-modification the int3
// protocol relies on (the CPU sees either the old byte or 0xCC, both whole).
//
// It runs only when an instruction is revalidated (its page was written since it was
// last checked), so it costs nothing while code is not being modified.

import type { Cpu } from './cpu';
import type { Insn } from './insn';
import { toBig } from './u64';

export interface XmcByte {
  /** Offset within the instruction (≥ 1). */
  offset: number;
  /** Writer CPU (-1: the host API / loader). */
  writer: number;
  /** Global write sequence number of that write. */
  seq: number;
}

export interface XmcViolation {
  cpu: number;
  address: bigint;
  length: number;
  /** The modified bytes after the first. */
  bytes: XmcByte[];
  /** The write sequence number up to which this CPU had serialized. */
  serialSeq: number;
  /** Machine step at which the CPU executed the instruction. */
  step: number;
  mnemonic: string;
}

export class XmcChecker {
  readonly violations: XmcViolation[] = [];
  private readonly seen = new Set<string>();
  /** Called on each new violation (the machine may stop the run). */
  onViolation: ((v: XmcViolation) => void) | null = null;

  check(cpu: Cpu, ins: Insn): void {
    const len = ins.len;
    if (len <= 1) return;
    let found: XmcByte[] | null = null;
    let maxSeq = 0;
    for (let k = 1; k < len; k++) {
      const s = (ins.lo >>> 0) + k;
      const lo = s | 0;
      const hi = (ins.hi + (s > 0xffffffff ? 1 : 0)) | 0;
      const pg = cpu.mem.pageAt(lo, hi);
      if (!pg || !pg.writer) continue;
      const off = lo & 0xfff;
      const w = pg.writer[off];
      const q = pg.seq![off];
      if (w !== cpu.id && q > cpu.serialSeq) {
        (found ??= []).push({ offset: k, writer: w, seq: q });
        if (q > maxSeq) maxSeq = q;
      }
    }
    if (!found) return;
    const key = `${cpu.id}:${ins.lo}:${ins.hi}:${maxSeq}`;
    if (this.seen.has(key)) return;
    this.seen.add(key);
    const v: XmcViolation = {
      cpu: cpu.id,
      address: toBig(ins.lo, ins.hi),
      length: len,
      bytes: found,
      serialSeq: cpu.serialSeq,
      step: cpu.machine.currentStep(cpu),
      mnemonic: ins.name,
    };
    this.violations.push(v);
    this.onViolation?.(v);
  }

  /** The reported keys (machine snapshots save them with the violations). */
  seenKeys(): Set<string> {
    return new Set(this.seen);
  }

  loadState(violations: XmcViolation[], seen: Set<string>): void {
    this.violations.length = 0;
    this.violations.push(...violations);
    this.seen.clear();
    for (const k of seen) this.seen.add(k);
  }

  clear(): void {
    this.violations.length = 0;
    this.seen.clear();
  }
}
