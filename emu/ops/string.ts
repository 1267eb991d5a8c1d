// String instructions: movs, stos, lods, cmps, scas in all widths, with rep/repe/repne,
// the direction flag, 64-bit (rsi/rdi/rcx) or 32-bit (0x67: esi/edi/ecx) addressing and
// an FS/GS override on the source (the destination is always ES, base 0 in 64-bit mode).
//
// A repeated instruction runs at most REP_BUDGET iterations per execution and then
// returns itself, so the step loop regains control (events, other CPUs, the step
// limit) and a huge count never hangs the host. RCX/RSI/RDI are written after every
// iteration: a fault in iteration k leaves them as they were after iteration k-1,
// with RIP still at the instruction, which is what the SDM describes for an
// interrupted or faulting repeated string instruction. A fault during repe/repne
// cmps/scas also puts RFLAGS back to its value before the instruction (SDM Vol. 2B,
// REP/REPE/REPZ/REPNE/REPNZ: "the EFLAGS value is restored to the state prior to the
// execution of the instruction"); a batch boundary is invisible, but an interrupt taken
// there starts a new execution, as on a CPU. With 32-bit addressing and ECX=0 nothing is
// written: the SDM's loop runs no iteration (some Intel CPUs clear the upper halves
// anyway; see docs/notes/vendor-differences.md).
//
// rep movs/stos with DF=0 and 64-bit addressing copy or fill whole runs within a page
// with typed-array operations, but only when both pages are in the write (and read)
// TLB: those hold only RAM pages with no bookkeeping (not code, not watched, not
// MMIO), so nothing that must see individual writes is bypassed. Otherwise each
// element goes through the ordinary accessors. The fast path processes exactly the
// elements the per-element loop would, so the step count depends only on
// architectural state.

import { Code, Mnemonic } from 'iced-x86';
import type { Cpu } from '../cpu';
import { HI, RAX, RCX, RSI, RDI } from '../regs';
import type { Decoded } from '../decode';
import { type Exec, type Insn, linkNext } from '../insn';
import { DF, getZF, readFlags, writeFlags } from '../flags';
import { memRead, memWrite, Unsupported, getReg, setReg } from '../operands';
import type { OpRow } from '../optable';
import { pageKey } from '../u64';
import { sub, lockUd } from './alu';

/** Iterations of a repeated string instruction per execution (one emulator step). */
export const REP_BUDGET = 1024;

const MOVS = 0, STOS = 1, LODS = 2, CMPS = 3, SCAS = 4;

/** Repeat kinds: none; rep (count only); repe/repne (count and ZF, cmps/scas only). */
const NO_REP = 0, REP = 1, REPE = 2, REPNE = 3;

/** iced Code → [kind, element bytes]. Codes not listed (SSE movsd/cmpsd) are unsupported. */
const FORMS = new Map<number, [number, number]>([
  [Code.Movsb_m8_m8, [MOVS, 1]], [Code.Movsw_m16_m16, [MOVS, 2]],
  [Code.Movsd_m32_m32, [MOVS, 4]], [Code.Movsq_m64_m64, [MOVS, 8]],
  [Code.Stosb_m8_AL, [STOS, 1]], [Code.Stosw_m16_AX, [STOS, 2]],
  [Code.Stosd_m32_EAX, [STOS, 4]], [Code.Stosq_m64_RAX, [STOS, 8]],
  [Code.Lodsb_AL_m8, [LODS, 1]], [Code.Lodsw_AX_m16, [LODS, 2]],
  [Code.Lodsd_EAX_m32, [LODS, 4]], [Code.Lodsq_RAX_m64, [LODS, 8]],
  [Code.Cmpsb_m8_m8, [CMPS, 1]], [Code.Cmpsw_m16_m16, [CMPS, 2]],
  [Code.Cmpsd_m32_m32, [CMPS, 4]], [Code.Cmpsq_m64_m64, [CMPS, 8]],
  [Code.Scasb_AL_m8, [SCAS, 1]], [Code.Scasw_AX_m16, [SCAS, 2]],
  [Code.Scasd_EAX_m32, [SCAS, 4]], [Code.Scasq_RAX_m64, [SCAS, 8]],
]);

// ---- Address registers ----

/** seg:rSI (or seg:ESI zero-extended); returns lo, hi in cpu.eh. */
function srcAddr(cpu: Cpu, a32: boolean, seg: 'fs' | 'gs' | null): number {
  const r = cpu.r;
  const lo = r[RSI];
  const hi = a32 ? 0 : r[RSI + HI];
  if (seg === null) {
    cpu.eh = hi;
    return lo;
  }
  const bl = seg === 'gs' ? cpu.gsLo : cpu.fsLo;
  const bh = seg === 'gs' ? cpu.gsHi : cpu.fsHi;
  const s = (lo >>> 0) + (bl >>> 0);
  cpu.eh = (hi + bh + (s > 0xffffffff ? 1 : 0)) | 0;
  return s | 0;
}

/** ES:rDI (ES has base 0 in 64-bit mode); returns lo, hi in cpu.eh. */
function dstAddr(cpu: Cpu, a32: boolean): number {
  const r = cpu.r;
  cpu.eh = a32 ? 0 : r[RDI + HI];
  return r[RDI];
}

/** Adds a signed delta to rSI/rDI; with 32-bit addressing the 32-bit write zero-extends. */
function advance(r: Int32Array, i: number, a32: boolean, delta: number): void {
  if (a32) {
    r[i] = (r[i] + delta) | 0;
    r[i + HI] = 0;
    return;
  }
  const s = (r[i] >>> 0) + delta;
  r[i] = s | 0;
  r[i + HI] = (r[i + HI] + (s > 0xffffffff ? 1 : s < 0 ? -1 : 0)) | 0;
}

function countZero(r: Int32Array, a32: boolean): boolean {
  return a32 ? r[RCX] === 0 : (r[RCX] | r[RCX + HI]) === 0;
}

/** The count, capped at `cap` (so a 64-bit RCX never needs more than a double). */
function countUpTo(r: Int32Array, a32: boolean, cap: number): number {
  if (!a32 && r[RCX + HI] !== 0) return cap;
  return Math.min(cap, r[RCX] >>> 0);
}

/** rCX -= k (k ≤ the count, so a 64-bit borrow is at most one). */
function decCount(r: Int32Array, a32: boolean, k: number): void {
  if (a32) {
    r[RCX] = (r[RCX] - k) | 0;
    r[RCX + HI] = 0;
    return;
  }
  const s = (r[RCX] >>> 0) - k;
  r[RCX] = s | 0;
  r[RCX + HI] = (r[RCX + HI] - (s < 0 ? 1 : 0)) | 0;
}

/** Performs one element and advances rSI/rDI by `delta`; memory is touched before registers. */
type Step = (cpu: Cpu, delta: number) => void;

function stepFor(kind: number, bytes: number, a32: boolean, seg: 'fs' | 'gs' | null): Step {
  const bits = bytes * 8;
  switch (kind) {
    case MOVS:
      return (cpu, delta) => {
        const s = srcAddr(cpu, a32, seg);
        const v = memRead(cpu, s, cpu.eh, bits);
        const vh = cpu.th;
        const d = dstAddr(cpu, a32);
        const dh = cpu.eh;
        memWrite(cpu, d, dh, bits, v, vh);
        advance(cpu.r, RSI, a32, delta);
        advance(cpu.r, RDI, a32, delta);
      };
    case STOS:
      return (cpu, delta) => {
        const d = dstAddr(cpu, a32);
        const dh = cpu.eh;
        const v = getReg(cpu, RAX, bits);
        memWrite(cpu, d, dh, bits, v, cpu.th);
        advance(cpu.r, RDI, a32, delta);
      };
    case LODS:
      return (cpu, delta) => {
        const s = srcAddr(cpu, a32, seg);
        const v = memRead(cpu, s, cpu.eh, bits);
        setReg(cpu, RAX, bits, v, bits === 64 ? cpu.th : 0);
        advance(cpu.r, RSI, a32, delta);
      };
    case CMPS:
      // Flags are those of src1 - src2, src1 being [seg:rSI] and src2 [ES:rDI].
      return (cpu, delta) => {
        const s = srcAddr(cpu, a32, seg);
        const a = memRead(cpu, s, cpu.eh, bits);
        const ah = bits === 64 ? cpu.th : 0;
        const d = dstAddr(cpu, a32);
        const b = memRead(cpu, d, cpu.eh, bits);
        const bh = bits === 64 ? cpu.th : 0;
        sub(cpu, bits, a, ah, b, bh);
        advance(cpu.r, RSI, a32, delta);
        advance(cpu.r, RDI, a32, delta);
      };
    default:
      // SCAS: flags of accumulator - [ES:rDI].
      return (cpu, delta) => {
        const d = dstAddr(cpu, a32);
        const b = memRead(cpu, d, cpu.eh, bits);
        const bh = bits === 64 ? cpu.th : 0;
        const a = getReg(cpu, RAX, bits);
        sub(cpu, bits, a, cpu.th, b, bh);
        advance(cpu.r, RDI, a32, delta);
      };
  }
}

// ---- Bulk runs (rep movs/stos, DF=0, 64-bit addressing) ----

/**
 * Copies up to `max` elements forward if the run stays within one source and one
 * destination page and both are in the TLBs. Updates rSI/rDI/rCX; returns the number
 * of elements done (0: take the per-element path for this one).
 */
function bulkMovs(cpu: Cpu, bytes: number, seg: 'fs' | 'gs' | null, max: number): number {
  const r = cpu.r;
  const slo = srcAddr(cpu, false, seg);
  const shi = cpu.eh;
  const dlo = r[RDI];
  const dhi = r[RDI + HI];
  const sOff = slo & 0xfff;
  const dOff = dlo & 0xfff;
  let k = Math.min(max, ((4096 - sOff) / bytes) | 0, ((4096 - dOff) / bytes) | 0);
  if (k < 2) return 0;
  const si = (slo >>> 12) & 255;
  const di = (dlo >>> 12) & 255;
  if (cpu.tlbKey[si] !== pageKey(slo, shi) || cpu.wtlbKey[di] !== pageKey(dlo, dhi)) return 0;
  const sp = cpu.tlbPage[si]!;
  const dp = cpu.wtlbPage[di]!;
  let n = k * bytes;
  if (sp === dp) {
    // Element-by-element copying forward replicates data when the destination starts
    // inside the source run; copyWithin (a memmove) would not. Runs no longer than the
    // distance are unaffected by their own writes, so copy one such run at a time.
    const dist = dOff - sOff;
    if (dist > 0 && dist < n) {
      if (dist < bytes) return 0;
      k = (dist / bytes) | 0;
      n = k * bytes;
    }
    dp.data.copyWithin(dOff, sOff, sOff + n);
  } else {
    dp.data.set(sp.data.subarray(sOff, sOff + n), dOff);
  }
  advance(r, RSI, false, n);
  advance(r, RDI, false, n);
  decCount(r, false, k);
  return k;
}

/** Fills up to `max` elements forward within one destination page in the write TLB. */
function bulkStos(cpu: Cpu, bytes: number, max: number): number {
  const r = cpu.r;
  const dlo = r[RDI];
  const dhi = r[RDI + HI];
  const dOff = dlo & 0xfff;
  const k = Math.min(max, ((4096 - dOff) / bytes) | 0);
  if (k < 2) return 0;
  const di = (dlo >>> 12) & 255;
  if (cpu.wtlbKey[di] !== pageKey(dlo, dhi)) return 0;
  const dp = cpu.wtlbPage[di]!;
  const data = dp.data;
  const n = k * bytes;
  const lo = r[RAX];
  const b = lo & 0xff;
  const rep32 = Math.imul(b, 0x01010101);
  const uniform =
    bytes === 1 ||
    (bytes === 2 && (lo & 0xffff) === (rep32 & 0xffff)) ||
    (bytes === 4 && lo === rep32) ||
    (bytes === 8 && lo === rep32 && r[RAX + HI] === rep32);
  if (uniform) {
    data.fill(b, dOff, dOff + n);
  } else {
    const v = dp.view;
    if (bytes === 2) v.setUint16(dOff, lo & 0xffff, true);
    else v.setInt32(dOff, lo, true);
    if (bytes === 8) v.setInt32(dOff + 4, r[RAX + HI], true);
    // Doubling the filled prefix: log2(n) copies instead of n element stores.
    for (let done = bytes; done < n; ) {
      const c = Math.min(done, n - done);
      data.copyWithin(dOff + done, dOff, dOff + c);
      done += c;
    }
  }
  advance(r, RDI, false, n);
  decCount(r, false, k);
  return k;
}

// ---- Compile ----

function compileString(d: Decoded): Exec {
  const form = FORMS.get(d.code);
  if (!form) throw new Unsupported('SSE form (only the string instruction is implemented)');
  if (d.lock) return lockUd(d);
  const [kind, bytes] = form;
  const a32 = d.addrSize === 32;
  // Only movs, lods and cmps have a DS-relative source that an override can change.
  const seg = kind === MOVS || kind === LODS || kind === CMPS ? d.seg : null;
  const step = stepFor(kind, bytes, a32, seg);
  const compares = kind === CMPS || kind === SCAS;
  const rep = !(d.rep || d.repe || d.repne) ? NO_REP : !compares ? REP : d.repne ? REPNE : REPE;

  if (rep === NO_REP) {
    return (cpu, ins) => {
      step(cpu, cpu.flags & DF ? -bytes : bytes);
      return ins.next ?? linkNext(cpu, ins);
    };
  }

  const bulk =
    a32 ? null
    : kind === MOVS ? (cpu: Cpu, max: number) => bulkMovs(cpu, bytes, seg, max)
    : kind === STOS ? (cpu: Cpu, max: number) => bulkStos(cpu, bytes, max)
    : null;
  // repe continues while ZF=1, repne while ZF=0.
  const whileZf = rep === REPE;

  const run: Exec = (cpu, ins) => {
    const r = cpu.r;
    const down = (cpu.flags & DF) !== 0;
    const delta = down ? -bytes : bytes;
    let budget = REP_BUDGET;
    while (!countZero(r, a32)) {
      // A split read-modify-write (emu/store-buffer.ts) is one element per step.
      if (budget === 0 || (cpu.rmw !== null && budget !== REP_BUDGET)) {
        cpu.continuing = ins;
        return ins;
      }
      if (bulk !== null && !down && !cpu.slow) {
        const k = bulk(cpu, countUpTo(r, a32, budget));
        if (k > 0) {
          budget -= k;
          continue;
        }
      }
      step(cpu, delta);
      decCount(r, a32, 1);
      budget--;
      if (rep !== REP && getZF(cpu) !== whileZf) break;
    }
    return ins.next ?? linkNext(cpu, ins);
  };
  if (rep === REP) return run;
  return (cpu, ins) => {
    // Continuing straight from the previous batch (nothing ran in between): still the
    // same execution, whose flags from before are kept.
    const prev = batchFlags.get(cpu);
    const before = prev !== undefined && prev.ins === ins && prev.retired + 1 === cpu.retired ? prev.flags : readFlags(cpu);
    let next: Insn;
    try {
      next = run(cpu, ins);
    } catch (e) {
      writeFlags(cpu, before);
      throw e;
    }
    if (next === ins) batchFlags.set(cpu, { ins, retired: cpu.retired, flags: before });
    return next;
  };
}

/**
 * RFLAGS from before a repe/repne cmps/scas that ended a batch unfinished, per CPU:
 * the next batch restores them if it faults. `retired` tells a direct continuation
 * (the very next step) from a re-execution after an interrupt handler ran.
 */
const batchFlags = new WeakMap<Cpu, { ins: Insn; retired: number; flags: number }>();

const SSE = 'SSE2 scalar double (same mnemonic as the string instruction): no SSE state is modelled';
const row = (mnemonic: number): OpRow => ({
  mnemonic, compile: compileString, check: 'oracle',
  unimplemented:
    mnemonic === Mnemonic.Movsd ? { Movsd_xmm_xmmm64: SSE, Movsd_xmmm64_xmm: SSE }
    : mnemonic === Mnemonic.Cmpsd ? { Cmpsd_xmm_xmmm64_imm8: SSE }
    : undefined,
});

export const rows: OpRow[] = [
  row(Mnemonic.Movsb), row(Mnemonic.Movsw), row(Mnemonic.Movsd), row(Mnemonic.Movsq),
  row(Mnemonic.Stosb), row(Mnemonic.Stosw), row(Mnemonic.Stosd), row(Mnemonic.Stosq),
  row(Mnemonic.Lodsb), row(Mnemonic.Lodsw), row(Mnemonic.Lodsd), row(Mnemonic.Lodsq),
  row(Mnemonic.Cmpsb), row(Mnemonic.Cmpsw), row(Mnemonic.Cmpsd), row(Mnemonic.Cmpsq),
  row(Mnemonic.Scasb), row(Mnemonic.Scasw), row(Mnemonic.Scasd), row(Mnemonic.Scasq),
];
