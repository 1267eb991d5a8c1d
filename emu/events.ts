// Exceptions and interrupts, delivered through the IDT in guest memory as a 64-bit
// CPU does (SDM vol. 3, 6.14): 16-byte gates, IST stacks from the TSS, a 16-byte
// aligned frame of SS, RSP, RFLAGS, CS, RIP and an optional error code. A fault while
// delivering becomes #DF; a fault while delivering #DF shuts the CPU down (triple
// fault), which is how an exception "with no handler" ends a run.

import type { Cpu, ContextFrame } from './cpu';
import { HI, RSP } from './regs';
import { readFlags, IF, TF, NT, RF } from './flags';
import { PageFault } from './memory';
import { toBig } from './u64';

export const VEC_DE = 0, VEC_DB = 1, VEC_NMI = 2, VEC_BP = 3, VEC_OF = 4, VEC_BR = 5, VEC_UD = 6;
export const VEC_NM = 7, VEC_DF = 8, VEC_TS = 10, VEC_NP = 11, VEC_SS = 12, VEC_GP = 13, VEC_PF = 14;
export const VEC_MF = 16, VEC_AC = 17, VEC_MC = 18, VEC_XM = 19;

const NAMES: Record<number, string> = {
  0: '#DE', 1: '#DB', 2: 'NMI', 3: '#BP', 4: '#OF', 5: '#BR', 6: '#UD', 7: '#NM', 8: '#DF',
  10: '#TS', 11: '#NP', 12: '#SS', 13: '#GP', 14: '#PF', 16: '#MF', 17: '#AC', 18: '#MC', 19: '#XM',
};

export function vectorName(v: number): string {
  return NAMES[v] ?? (v < 32 ? `exception ${v}` : `IRQ ${v}`);
}

/** Exceptions that push an error code. */
function hasErrorCode(v: number): boolean {
  return v === 8 || (v >= 10 && v <= 14) || v === 17 || v === 21 || v === 29 || v === 30;
}

/** Raised inside delivery when the IDT or the new stack is unusable. */
class DeliveryFault {
  constructor(
    readonly vector: number,
    readonly errorCode: number,
    readonly why: string,
  ) {}
}

/** What kind of event is being delivered; decides the context label and NMI blocking. */
export type EventKind = 'exception' | 'nmi' | 'irq' | 'soft';

/**
 * Delivers a vector. `retLo/retHi` is the RIP saved in the frame: the faulting
 * instruction for faults, the next one for traps and software interrupts.
 */
export function deliver(
  cpu: Cpu,
  vector: number,
  errorCode: number | null,
  retLo: number,
  retHi: number,
  kind: EventKind,
  detail = '',
): void {
  // x86-TSO: delivery drains the store buffer (docs/notes/x86-tso.md).
  if (cpu.stores.length !== 0) cpu.drainAll();
  try {
    pushFrame(cpu, vector, errorCode, retLo, retHi, kind);
  } catch (e) {
    const why = e instanceof DeliveryFault ? e.why : e instanceof PageFault ? 'page fault on the new stack' : '';
    if (!(e instanceof DeliveryFault) && !(e instanceof PageFault)) throw e;
    if (vector === 8) {
      shutdownCpu(cpu, vector, retLo, retHi, `triple fault: cannot deliver #DF (${why})`);
      return;
    }
    const original = cpu.machine.firstFault.get(cpu.id) ?? { vector, detail };
    cpu.machine.firstFault.set(cpu.id, original);
    try {
      pushFrame(cpu, 8, 0, retLo, retHi, 'exception');
    } catch (e2) {
      if (!(e2 instanceof DeliveryFault) && !(e2 instanceof PageFault)) throw e2;
      const what = `${vectorName(original.vector)}${original.detail ? ` (${original.detail})` : ''}`;
      shutdownCpu(cpu, original.vector, retLo, retHi, `${what} with no usable handler: ${why}`);
    }
    return;
  }
  cpu.machine.firstFault.delete(cpu.id);
  if (detail) cpu.machine.noteException(cpu, vector, detail);
}

function shutdownCpu(cpu: Cpu, vector: number, lo: number, hi: number, detail: string): void {
  cpu.shutdown = { vector, rip: toBig(lo, hi), detail };
  cpu.brk = true;
}

function pushFrame(
  cpu: Cpu,
  vector: number,
  errorCode: number | null,
  retLo: number,
  retHi: number,
  kind: EventKind,
): void {
  const ext = kind === 'soft' ? 0 : 1;
  if (vector * 16 + 15 > cpu.idtrLimit) {
    throw new DeliveryFault(13, vector * 8 + 2 + ext, `vector ${vector} is beyond the IDT limit ${cpu.idtrLimit}`);
  }
  const g = (cpu.idtrLo >>> 0) + vector * 16;
  const gLo = g | 0;
  const gHi = (cpu.idtrHi + (g > 0xffffffff ? 1 : 0)) | 0;
  let w0: number, w1: number, w2: number;
  try {
    w0 = cpu.rd32(gLo, gHi);
    w1 = cpu.rd32((g + 4) | 0, gHi);
    w2 = cpu.rd32((g + 8) | 0, gHi);
  } catch (e) {
    if (e instanceof PageFault) throw new DeliveryFault(14, 0, `IDT at ${toBig(gLo, gHi).toString(16)} is unmapped`);
    throw e;
  }
  const type = (w1 >>> 8) & 0xf;
  const present = (w1 >>> 15) & 1;
  if (!present) throw new DeliveryFault(11, vector * 8 + 2 + ext, `IDT gate ${vector} is not present`);
  if (type !== 0xe && type !== 0xf) throw new DeliveryFault(13, vector * 8 + 2 + ext, `IDT gate ${vector} has type ${type}`);
  const ist = w1 & 7;
  const targetLo = (w0 & 0xffff) | (w1 & 0xffff0000);
  const targetHi = w2;
  const selector = (w0 >>> 16) & 0xffff;

  const r = cpu.r;
  const oldRspLo = r[RSP];
  const oldRspHi = r[RSP + HI];
  let spLo: number;
  let spHi: number;
  if (ist !== 0) {
    const t = (cpu.trLo >>> 0) + 0x24 + (ist - 1) * 8;
    try {
      spLo = cpu.rd64(t | 0, (cpu.trHi + (t > 0xffffffff ? 1 : 0)) | 0);
      spHi = cpu.th;
    } catch (e) {
      if (e instanceof PageFault) throw new DeliveryFault(10, cpu.trSel, `TSS for IST${ist} is unmapped`);
      throw e;
    }
  } else {
    spLo = oldRspLo;
    spHi = oldRspHi;
  }
  spLo &= ~0xf;
  const flags = readFlags(cpu);
  const words: [number, number][] = [
    [cpu.ss, 0],
    [oldRspLo, oldRspHi],
    [flags, 0],
    [cpu.cs, 0],
    [retLo, retHi],
  ];
  const withCode = errorCode !== null && hasErrorCode(vector);
  if (withCode) words.push([errorCode, 0]);
  // Check the whole frame is writable before changing anything, so a failed
  // delivery leaves the interrupted state intact for the #DF.
  const bytes = words.length * 8;
  const base = (spLo >>> 0) - bytes;
  const baseLo = base | 0;
  const baseHi = (spHi - (base < 0 ? 1 : 0)) | 0;
  cpu.probeWrite(baseLo, baseHi, bytes);
  let a = base;
  let ah = baseHi;
  for (let k = words.length - 1; k >= 0; k--) {
    cpu.wr64(a | 0, ah, words[k][0], words[k][1]);
    const s = (a >>> 0) + 8;
    a = s;
    if (s > 0xffffffff) {
      a = s - 4294967296;
      ah = (ah + 1) | 0;
    }
  }
  r[RSP] = baseLo;
  r[RSP + HI] = baseHi;
  // At CPL 0 there is no stack switch of SS: it keeps its selector.
  cpu.cs = selector;
  // Clear TF, NT and RF; an interrupt gate also clears IF. (AC is left alone: the
  // kernel's entry code clears it with CLAC.)
  let nf = flags & ~(TF | NT | RF);
  if (type === 0xe) nf &= ~IF;
  cpu.flags = nf;
  cpu.lzOp = 0;
  if (kind === 'nmi') cpu.nmiBlocked = true;
  cpu.halted = false;
  // The frame IRETQ will consume starts where the saved RIP is (after any error code).
  const ripSlot = withCode ? (baseLo >>> 0) + 8 : baseLo >>> 0;
  const frame: ContextFrame = {
    kind: kind === 'nmi' ? 'NMI' : kind === 'irq' ? `IRQ ${vector}` : vectorName(vector),
    vector,
    frameLo: ripSlot | 0,
    frameHi: (baseHi + (ripSlot > 0xffffffff ? 1 : 0)) | 0,
    ripLo: retLo,
    ripHi: retHi,
    rspLo: oldRspLo,
    rspHi: oldRspHi,
  };
  cpu.contexts.push(frame);
  cpu.setRip(targetLo, targetHi);
  cpu.machine.onDeliver(cpu, vector, kind);
}

/** IRETQ: pops the frame, unblocks NMIs (any IRETQ does, as on hardware), serializes. */
export function iretq(cpu: Cpu): void {
  const r = cpu.r;
  const spLo = r[RSP];
  const spHi = r[RSP + HI];
  const read = (k: number): [number, number] => {
    const s = (spLo >>> 0) + 8 * k;
    const lo = cpu.rd64(s | 0, (spHi + (s > 0xffffffff ? 1 : 0)) | 0);
    return [lo, cpu.th];
  };
  const rip = read(0);
  const cs = read(1);
  const fl = read(2);
  const rsp = read(3);
  const ss = read(4);
  closeContext(cpu, spLo, spHi, rip, rsp);
  cpu.cs = cs[0] & 0xffff;
  cpu.ss = ss[0] & 0xffff;
  // Every RFLAGS bit except VM (meaningless in 64-bit mode) and the reserved ones.
  cpu.flags = (fl[0] & 0x3d7fd5) | 2;
  cpu.lzOp = 0;
  r[RSP] = rsp[0];
  r[RSP + HI] = rsp[1];
  cpu.nmiBlocked = false;
  cpu.serialize();
  cpu.setRip(rip[0], rip[1]);
  // Unblocked NMIs or re-enabled interrupts are recognised at the next boundary.
  cpu.brk = true;
}

/**
 * Drops the context entry an IRETQ closes, and any the guest abandoned above it. Entry
 * code may move the frame (Linux-style NMI entries copy it off the IST stack) and
 * handlers may edit it (an int3 handler rewinds RIP or emulates a call), so the entry
 * is found by its frame slot, else by where the IRETQ returns to, else it is the
 * innermost one.
 */
function closeContext(cpu: Cpu, spLo: number, spHi: number, rip: [number, number], rsp: [number, number]): void {
  const cs = cpu.contexts;
  if (cs.length === 0) return;
  for (let k = cs.length - 1; k >= 0; k--) {
    if (cs[k].frameLo === spLo && cs[k].frameHi === spHi) {
      cs.length = k;
      return;
    }
  }
  for (let k = cs.length - 1; k >= 0; k--) {
    const c = cs[k];
    if (c.ripLo === rip[0] && c.ripHi === rip[1] && c.rspLo === rsp[0] && c.rspHi === rsp[1]) {
      cs.length = k;
      return;
    }
  }
  cs.length--;
}

/** Error code of a #PF from our PageFault: P=0 (not present), W/R, I/D; supervisor. */
export function pageFaultCode(pf: PageFault): number {
  return pf.code;
}
