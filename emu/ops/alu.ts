// Integer ALU: add/or/adc/sbb/and/sub/xor/cmp/test, inc/dec/neg/not. Results set lazy
// flags (emu/flags.ts). Register forms are specialised: they are most of what kernel
// code executes.

import { Mnemonic } from 'iced-x86';
import type { Cpu } from '../cpu';
import { HI } from '../regs';
import type { Decoded } from '../decode';
import { type Exec, linkNext } from '../insn';
import { LZ_ADD, LZ_SUB, LZ_LOGIC, LZ_INC, LZ_DEC, LZ_ADC, LZ_SBB, getCF } from '../flags';
import { compileEa, memRead, memWrite, reader, sizeOf, maskOf, Unsupported, writeReg } from '../operands';
import type { OpRow } from '../optable';
import { GuestException } from '../fault';

/** An ALU operation: computes, records lazy flags, returns lo (hi in cpu.th). */
export type AluFn = (cpu: Cpu, size: number, aLo: number, aHi: number, bLo: number, bHi: number) => number;

/** Records a lazy-flags result (emu/flags.ts) and returns lo, hi left in cpu.th (the multiplies use it too). */
export function record(cpu: Cpu, op: number, size: number, aLo: number, aHi: number, bLo: number, bHi: number, lo: number, hi: number): number {
  cpu.lzOp = op;
  cpu.lzSize = size;
  cpu.aLo = aLo;
  cpu.aHi = aHi;
  cpu.bLo = bLo;
  cpu.bHi = bHi;
  cpu.rLo = lo;
  cpu.rHi = hi;
  cpu.th = hi;
  return lo;
}

export const add: AluFn = (cpu, size, aLo, aHi, bLo, bHi) => {
  if (size === 64) {
    const s = (aLo >>> 0) + (bLo >>> 0);
    return record(cpu, LZ_ADD, 64, aLo, aHi, bLo, bHi, s | 0, (aHi + bHi + (s > 0xffffffff ? 1 : 0)) | 0);
  }
  if (size === 32) return record(cpu, LZ_ADD, 32, aLo, 0, bLo, 0, (aLo + bLo) | 0, 0);
  return record(cpu, LZ_ADD, size, aLo, 0, bLo, 0, (aLo + bLo) & maskOf(size), 0);
};

export const sub: AluFn = (cpu, size, aLo, aHi, bLo, bHi) => {
  if (size === 64) {
    const s = (aLo >>> 0) - (bLo >>> 0);
    return record(cpu, LZ_SUB, 64, aLo, aHi, bLo, bHi, s | 0, (aHi - bHi - (s < 0 ? 1 : 0)) | 0);
  }
  if (size === 32) return record(cpu, LZ_SUB, 32, aLo, 0, bLo, 0, (aLo - bLo) | 0, 0);
  return record(cpu, LZ_SUB, size, aLo, 0, bLo, 0, (aLo - bLo) & maskOf(size), 0);
};

export const adc: AluFn = (cpu, size, aLo, aHi, bLo, bHi) => {
  const c = getCF(cpu);
  let lo: number;
  let hi = 0;
  if (size === 64) {
    const s = (aLo >>> 0) + (bLo >>> 0) + c;
    lo = s | 0;
    hi = (aHi + bHi + (s > 0xffffffff ? 1 : 0)) | 0;
  } else if (size === 32) {
    lo = (aLo + bLo + c) | 0;
  } else {
    lo = (aLo + bLo + c) & maskOf(size);
  }
  cpu.lzC = c;
  return record(cpu, LZ_ADC, size, aLo, aHi, bLo, bHi, lo, hi);
};

export const sbb: AluFn = (cpu, size, aLo, aHi, bLo, bHi) => {
  const c = getCF(cpu);
  let lo: number;
  let hi = 0;
  if (size === 64) {
    const s = (aLo >>> 0) - (bLo >>> 0) - c;
    lo = s | 0;
    hi = (aHi - bHi - (s < 0 ? 1 : 0)) | 0;
  } else if (size === 32) {
    lo = (aLo - bLo - c) | 0;
  } else {
    lo = (aLo - bLo - c) & maskOf(size);
  }
  cpu.lzC = c;
  return record(cpu, LZ_SBB, size, aLo, aHi, bLo, bHi, lo, hi);
};

function logic(cpu: Cpu, size: number, lo: number, hi: number): number {
  cpu.lzOp = LZ_LOGIC;
  cpu.lzSize = size;
  cpu.rLo = lo;
  cpu.rHi = hi;
  cpu.th = hi;
  return lo;
}

export const and: AluFn = (cpu, size, aLo, aHi, bLo, bHi) => logic(cpu, size, aLo & bLo, aHi & bHi);
export const or: AluFn = (cpu, size, aLo, aHi, bLo, bHi) => logic(cpu, size, aLo | bLo, aHi | bHi);
export const xor: AluFn = (cpu, size, aLo, aHi, bLo, bHi) => logic(cpu, size, aLo ^ bLo, aHi ^ bHi);

const inc: AluFn = (cpu, size, aLo, aHi) => {
  const c = getCF(cpu);
  add(cpu, size, aLo, aHi, 1, 0);
  cpu.lzOp = LZ_INC;
  cpu.lzC = c;
  return cpu.rLo;
};

const dec: AluFn = (cpu, size, aLo, aHi) => {
  const c = getCF(cpu);
  sub(cpu, size, aLo, aHi, 1, 0);
  cpu.lzOp = LZ_DEC;
  cpu.lzC = c;
  return cpu.rLo;
};

const neg: AluFn = (cpu, size, aLo, aHi) => sub(cpu, size, 0, 0, aLo, aHi);

const not: AluFn = (cpu, size, aLo, aHi) => {
  // NOT changes no flags.
  if (size === 64) {
    cpu.th = ~aHi;
    return ~aLo;
  }
  cpu.th = 0;
  return size === 32 ? ~aLo : ~aLo & maskOf(size);
};

/** Two-operand ALU instruction; `store` false for cmp/test. */
export function compileBinary(d: Decoded, fn: AluFn, store: boolean): Exec {
  const [o0, o1] = d.ops;
  const size = sizeOf(o0);
  if (d.lock && (o0.k !== 'mem' || !store)) return lockUd(d);
  if (o0.k === 'reg' && !o0.high8 && size >= 32) {
    const dl = o0.reg;
    const dh = dl + HI;
    if (o1.k === 'reg' && !o1.high8) {
      const sl = o1.reg;
      const sh = sl + HI;
      if (size === 64) {
        return (cpu, ins) => {
          const r = cpu.r;
          const lo = fn(cpu, 64, r[dl], r[dh], r[sl], r[sh]);
          if (store) {
            r[dl] = lo;
            r[dh] = cpu.th;
          }
          return ins.next ?? linkNext(cpu, ins);
        };
      }
      return (cpu, ins) => {
        const r = cpu.r;
        const lo = fn(cpu, 32, r[dl], 0, r[sl], 0);
        if (store) {
          r[dl] = lo;
          r[dh] = 0;
        }
        return ins.next ?? linkNext(cpu, ins);
      };
    }
    if (o1.k === 'imm') {
      const il = size === 64 ? o1.lo | 0 : o1.lo | 0;
      const ih = size === 64 ? o1.hi | 0 : 0;
      return (cpu, ins) => {
        const r = cpu.r;
        const lo = fn(cpu, size, r[dl], size === 64 ? r[dh] : 0, il, ih);
        if (store) {
          r[dl] = lo;
          r[dh] = cpu.th;
        }
        return ins.next ?? linkNext(cpu, ins);
      };
    }
  }
  const src = reader(o1, size);
  if (o0.k === 'mem') {
    const ea = compileEa(o0);
    return (cpu, ins) => {
      const a = ea(cpu);
      const ah = cpu.eh;
      const v = memRead(cpu, a, ah, size);
      const vh = size === 64 ? cpu.th : 0;
      const b = src(cpu);
      const lo = fn(cpu, size, v, vh, b, cpu.th);
      if (store) memWrite(cpu, a, ah, size, lo, cpu.th);
      return ins.next ?? linkNext(cpu, ins);
    };
  }
  if (o0.k !== 'reg') throw new Unsupported('destination');
  const dst = reader(o0, size);
  const i = o0.reg;
  const high8 = o0.high8;
  return (cpu, ins) => {
    const a = dst(cpu);
    const ah = cpu.th;
    const b = src(cpu);
    const lo = fn(cpu, size, a, ah, b, cpu.th);
    if (store) writeReg(cpu, i, size, high8, lo, cpu.th);
    return ins.next ?? linkNext(cpu, ins);
  };
}

/** One-operand read-modify-write (inc/dec/neg/not). */
export function compileUnary(d: Decoded, fn: AluFn): Exec {
  const o0 = d.ops[0];
  const size = sizeOf(o0);
  if (d.lock && o0.k !== 'mem') return lockUd(d);
  if (o0.k === 'reg') {
    const i = o0.reg;
    const ih = i + HI;
    const high8 = o0.high8;
    if (size === 64) {
      return (cpu, ins) => {
        const r = cpu.r;
        r[i] = fn(cpu, 64, r[i], r[ih], 0, 0);
        r[ih] = cpu.th;
        return ins.next ?? linkNext(cpu, ins);
      };
    }
    const rd = reader(o0, size);
    return (cpu, ins) => {
      const v = rd(cpu);
      const lo = fn(cpu, size, v, 0, 0, 0);
      writeReg(cpu, i, size, high8, lo, 0);
      return ins.next ?? linkNext(cpu, ins);
    };
  }
  if (o0.k !== 'mem') throw new Unsupported('operand');
  const ea = compileEa(o0);
  return (cpu, ins) => {
    const a = ea(cpu);
    const ah = cpu.eh;
    const v = memRead(cpu, a, ah, size);
    const lo = fn(cpu, size, v, size === 64 ? cpu.th : 0, 0, 0);
    memWrite(cpu, a, ah, size, lo, cpu.th);
    return ins.next ?? linkNext(cpu, ins);
  };
}

/** LOCK on a form that cannot take it is #UD. */
export function lockUd(d: Decoded): Exec {
  return () => {
    throw new GuestException(6, null, `lock prefix not allowed on this form of '${d.name}'`);
  };
}

export const rows: OpRow[] = [
  { mnemonic: Mnemonic.Add, compile: (d) => compileBinary(d, add, true), check: 'oracle' },
  { mnemonic: Mnemonic.Or, compile: (d) => compileBinary(d, or, true), check: 'oracle' },
  { mnemonic: Mnemonic.Adc, compile: (d) => compileBinary(d, adc, true), check: 'oracle' },
  { mnemonic: Mnemonic.Sbb, compile: (d) => compileBinary(d, sbb, true), check: 'oracle' },
  { mnemonic: Mnemonic.And, compile: (d) => compileBinary(d, and, true), check: 'oracle' },
  { mnemonic: Mnemonic.Sub, compile: (d) => compileBinary(d, sub, true), check: 'oracle' },
  { mnemonic: Mnemonic.Xor, compile: (d) => compileBinary(d, xor, true), check: 'oracle' },
  { mnemonic: Mnemonic.Cmp, compile: (d) => compileBinary(d, sub, false), check: 'oracle' },
  { mnemonic: Mnemonic.Test, compile: (d) => compileBinary(d, and, false), check: 'oracle' },
  { mnemonic: Mnemonic.Inc, compile: (d) => compileUnary(d, inc), check: 'oracle' },
  { mnemonic: Mnemonic.Dec, compile: (d) => compileUnary(d, dec), check: 'oracle' },
  { mnemonic: Mnemonic.Neg, compile: (d) => compileUnary(d, neg), check: 'oracle' },
  { mnemonic: Mnemonic.Not, compile: (d) => compileUnary(d, not), check: 'oracle' },
];
