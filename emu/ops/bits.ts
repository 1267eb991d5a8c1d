// Bit operations: bt/bts/btr/btc, bsf/bsr, tzcnt/lzcnt/popcnt, movbe, and the BMI1
// GPR group (andn, bextr, blsi, blsmsk, blsr). Flags are computed eagerly.
//
// Flags the SDM leaves undefined keep their previous values where that is free, or are
// cleared where every arithmetic flag is written anyway; the host (AMD) follows no
// simple rule for them, and the oracle masks them.

import { Mnemonic } from 'iced-x86';
import type { Cpu } from '../cpu';
import { HI } from '../cpu';
import type { Decoded } from '../decode';
import { type Exec, linkNext } from '../insn';
import { CF, ZF, SF, ARITH, LZ_NONE, materialize } from '../flags';
import { compileEa, memRead, memWrite, reader, sizeOf, Unsupported, type MemOperand, type Ea } from '../operands';
import type { OpRow } from '../optable';
import { lockUd } from './alu';
import { writeReg } from '../operands';

// ---- bt / bts / btr / btc ----

const BT = 0;
const BTS = 1;
const BTR = 2;
const BTC = 3;

/** Applies op to bit k of (lo, hi): returns the new lo, new hi in cpu.th; old bit in oldBit. */
let oldBit = 0;
function bitOp(cpu: Cpu, op: number, lo: number, hi: number, k: number): number {
  let m = 0;
  let mh = 0;
  if (k < 32) m = 1 << k;
  else mh = 1 << (k - 32);
  oldBit = (lo & m) !== 0 || (hi & mh) !== 0 ? 1 : 0;
  switch (op) {
    case BTS:
      cpu.th = hi | mh;
      return lo | m;
    case BTR:
      cpu.th = hi & ~mh;
      return lo & ~m;
    case BTC:
      cpu.th = hi ^ mh;
      return lo ^ m;
    default:
      cpu.th = hi;
      return lo;
  }
}

/** CF is the tested bit; ZF keeps its value; the rest (undefined) keep theirs too. */
function setBtFlags(cpu: Cpu, bit: number): void {
  materialize(cpu);
  cpu.flags = (cpu.flags & ~CF) | bit;
}

function compileBt(d: Decoded, op: number): Exec {
  const [o0, o1] = d.ops;
  const size = sizeOf(o0);
  const kmask = size - 1;
  if (d.lock && (o0.k !== 'mem' || op === BT)) return lockUd(d);
  if (o0.k === 'reg') {
    const i = o0.reg;
    const ih = i + HI;
    if (o1.k === 'imm') {
      const k = o1.lo & kmask;
      if (size === 64 || size === 32) {
        const inHi = k >= 32;
        const m = 1 << (k & 31);
        const w = inHi ? ih : i;
        return (cpu, ins) => {
          const r = cpu.r;
          const v = r[w];
          setBtFlags(cpu, (v & m) !== 0 ? 1 : 0);
          if (op === BTS) r[w] = v | m;
          else if (op === BTR) r[w] = v & ~m;
          else if (op === BTC) r[w] = v ^ m;
          if (size === 32 && op !== BT) r[ih] = 0;
          return ins.next ?? linkNext(cpu, ins);
        };
      }
    }
    const rd = reader(o0, size);
    const src = reader(o1, size);
    return (cpu, ins) => {
      const k = src(cpu) & kmask;
      const v = rd(cpu);
      const lo = bitOp(cpu, op, v, cpu.th, k);
      setBtFlags(cpu, oldBit);
      if (op !== BT) writeReg(cpu, i, size, false, lo, cpu.th);
      return ins.next ?? linkNext(cpu, ins);
    };
  }
  if (o0.k !== 'mem') throw new Unsupported('bt operand');
  const ea = compileEa(o0);
  if (o1.k === 'imm') {
    // An immediate offset is taken mod the operand size: it never leaves the operand.
    const k = o1.lo & kmask;
    return (cpu, ins) => {
      const a = ea(cpu);
      const ah = cpu.eh;
      const v = memRead(cpu, a, ah, size);
      const lo = bitOp(cpu, op, v, size === 64 ? cpu.th : 0, k);
      const hi = cpu.th;
      if (op !== BT) memWrite(cpu, a, ah, size, lo, hi);
      setBtFlags(cpu, oldBit);
      return ins.next ?? linkNext(cpu, ins);
    };
  }
  if (o1.k !== 'reg') throw new Unsupported('bt offset operand');
  const off = reader(o1, size);
  const wrap = wrapOf(o0);
  return (cpu, ins) => {
    // A register offset is signed and may select any operand-sized word around the
    // base: (offset >> log2(size)) words away, arithmetic shift.
    const offLo = off(cpu);
    const offHi = cpu.th;
    let dLo: number;
    let dHi: number;
    if (size === 64) {
      dLo = ((offLo >>> 3) | (offHi << 29)) & ~7;
      dHi = offHi >> 3;
    } else {
      const s = size === 32 ? offLo : (offLo << 16) >> 16;
      dLo = (s >> 3) & ~(size / 8 - 1);
      dHi = dLo >> 31;
    }
    const a0 = ea(cpu);
    const sum = (a0 >>> 0) + (dLo >>> 0);
    let a = sum | 0;
    let ah = (cpu.eh + dHi + (sum > 0xffffffff ? 1 : 0)) | 0;
    if (wrap) ah = 0;
    const v = memRead(cpu, a, ah, size);
    const lo = bitOp(cpu, op, v, size === 64 ? cpu.th : 0, offLo & kmask);
    const hi = cpu.th;
    if (op !== BT) memWrite(cpu, a, ah, size, lo, hi);
    setBtFlags(cpu, oldBit);
    return ins.next ?? linkNext(cpu, ins);
  };
}

/** 32-bit addressing without an FS/GS base wraps at 4 GiB, the bit-offset step included. */
function wrapOf(m: MemOperand): boolean {
  return m.addr32 && m.seg === null;
}

// ---- bsf / bsr / tzcnt / lzcnt / popcnt ----

/** Index of the lowest set bit of a non-zero 32-bit value. */
function ctz32(v: number): number {
  return 31 - Math.clz32(v & -v);
}

function popcount32(v: number): number {
  v = v - ((v >>> 1) & 0x55555555);
  v = (v & 0x33333333) + ((v >>> 2) & 0x33333333);
  v = (v + (v >>> 4)) & 0x0f0f0f0f;
  return Math.imul(v, 0x01010101) >>> 24;
}

/** Sets the six arithmetic flags to exactly `f` (no lazy state to fold in). */
function putFlags(cpu: Cpu, f: number): void {
  cpu.flags = (cpu.flags & ~ARITH) | f;
  cpu.lzOp = LZ_NONE;
}

type CountFn = (lo: number, hi: number, size: number) => number;

/** Trailing zeros of a `size`-bit value; size for zero. */
const tz: CountFn = (lo, hi, size) => {
  if (lo !== 0) return ctz32(lo);
  if (size === 64 && hi !== 0) return 32 + ctz32(hi);
  return size;
};

/** Leading zeros of a `size`-bit value; size for zero. */
const lz: CountFn = (lo, hi, size) => {
  if (size === 64) return hi !== 0 ? Math.clz32(hi) : 32 + Math.clz32(lo);
  return Math.clz32(lo) - (32 - size);
};

function compileBitScan(d: Decoded, reverse: boolean): Exec {
  const [o0, o1] = d.ops;
  if (o0.k !== 'reg') throw new Unsupported('bsf/bsr destination');
  const size = o0.size;
  const i = o0.reg;
  const src = reader(o1, size);
  return (cpu, ins) => {
    const lo = src(cpu);
    const hi = cpu.th;
    materialize(cpu);
    if ((lo | hi) === 0) {
      // The destination keeps its whole value (even bits 63:32 for a 32-bit one), as
      // both vendors do and AMD documents.
      cpu.flags |= ZF;
      return ins.next ?? linkNext(cpu, ins);
    }
    const n = reverse ? size - 1 - lz(lo, hi, size) : tz(lo, hi, size);
    cpu.flags &= ~ZF;
    writeReg(cpu, i, size, false, n, 0);
    return ins.next ?? linkNext(cpu, ins);
  };
}

function compileCount(d: Decoded, fn: CountFn | null): Exec {
  const [o0, o1] = d.ops;
  if (o0.k !== 'reg') throw new Unsupported('destination');
  const size = o0.size;
  const i = o0.reg;
  const src = reader(o1, size);
  if (fn === null) {
    // popcnt: every arithmetic flag cleared except ZF, set for a zero source.
    return (cpu, ins) => {
      const lo = src(cpu);
      const hi = cpu.th;
      const n = popcount32(lo) + (size === 64 ? popcount32(hi) : 0);
      writeReg(cpu, i, size, false, n, 0);
      putFlags(cpu, n === 0 ? ZF : 0);
      return ins.next ?? linkNext(cpu, ins);
    };
  }
  return (cpu, ins) => {
    const lo = src(cpu);
    const hi = cpu.th;
    const n = fn(lo, hi, size);
    writeReg(cpu, i, size, false, n, 0);
    // CF: the source was zero (count == size); ZF: the count is zero. The rest are
    // undefined; they keep their values.
    materialize(cpu);
    cpu.flags = (cpu.flags & ~(CF | ZF)) | (n === size ? CF : 0) | (n === 0 ? ZF : 0);
    return ins.next ?? linkNext(cpu, ins);
  };
}

// ---- movbe ----

function bswap32(v: number): number {
  return ((v & 0xff) << 24) | ((v & 0xff00) << 8) | ((v >>> 8) & 0xff00) | (v >>> 24);
}

function compileMovbe(d: Decoded): Exec {
  const [o0, o1] = d.ops;
  const size = sizeOf(o0);
  if (o0.k === 'reg' && o1.k === 'mem') {
    const ea = compileEa(o1);
    const i = o0.reg;
    return (cpu, ins) => {
      const a = ea(cpu);
      const v = memRead(cpu, a, cpu.eh, size);
      if (size === 64) writeReg(cpu, i, 64, false, bswap32(cpu.th), bswap32(v));
      else if (size === 32) writeReg(cpu, i, 32, false, bswap32(v), 0);
      else writeReg(cpu, i, 16, false, ((v & 0xff) << 8) | (v >>> 8), 0);
      return ins.next ?? linkNext(cpu, ins);
    };
  }
  if (o0.k === 'mem' && o1.k === 'reg') {
    const ea: Ea = compileEa(o0);
    const src = reader(o1, size);
    return (cpu, ins) => {
      const v = src(cpu);
      const vh = cpu.th;
      const a = ea(cpu);
      if (size === 64) memWrite(cpu, a, cpu.eh, 64, bswap32(vh), bswap32(v));
      else if (size === 32) memWrite(cpu, a, cpu.eh, 32, bswap32(v), 0);
      else memWrite(cpu, a, cpu.eh, 16, ((v & 0xff) << 8) | (v >>> 8), 0);
      return ins.next ?? linkNext(cpu, ins);
    };
  }
  throw new Unsupported('movbe operands');
}

// ---- BMI1 ----

/** Flags for the BMI1 logic ops: SF/ZF from the result, CF as given, OF (and AF, PF) clear. */
function setBmiFlags(cpu: Cpu, size: number, lo: number, hi: number, cf: number, keepSf: boolean): void {
  let f = cf;
  if ((lo | hi) === 0) f |= ZF;
  if (keepSf && (size === 64 ? hi : lo) < 0) f |= SF;
  putFlags(cpu, f);
}

const ANDN = 0;
const BLSI = 1;
const BLSMSK = 2;
const BLSR = 3;

/** andn (three operands) and blsi/blsmsk/blsr (two): 32/64-bit only. */
function compileBmiLogic(d: Decoded, op: number): Exec {
  const o0 = d.ops[0];
  if (o0.k !== 'reg') throw new Unsupported('destination');
  const size = o0.size;
  const i = o0.reg;
  const a = reader(d.ops[1], size);
  const b = op === ANDN ? reader(d.ops[2], size) : a;
  return (cpu, ins) => {
    const xl = a(cpu);
    const xh = size === 64 ? cpu.th : 0;
    let rl: number;
    let rh: number;
    let cf = 0;
    if (op === ANDN) {
      const yl = b(cpu);
      const yh = size === 64 ? cpu.th : 0;
      rl = ~xl & yl;
      rh = ~xh & yh;
    } else {
      const zero = (xl | xh) === 0;
      // x - 1 and -x on (lo, hi); the borrow into hi happens only when lo is 0.
      const ml = (xl - 1) | 0;
      const mh = size === 64 ? (xh - (xl === 0 ? 1 : 0)) | 0 : 0;
      if (op === BLSI) {
        const nl = -xl | 0;
        const nh = size === 64 ? (~xh + (xl === 0 ? 1 : 0)) | 0 : 0;
        rl = xl & nl;
        rh = xh & nh;
        cf = zero ? 0 : CF;
      } else if (op === BLSMSK) {
        rl = xl ^ ml;
        rh = size === 64 ? xh ^ mh : 0;
        cf = zero ? CF : 0;
      } else {
        rl = xl & ml;
        rh = xh & mh;
        cf = zero ? CF : 0;
      }
    }
    writeReg(cpu, i, size, false, rl, rh);
    // blsmsk's result is never zero, so computing ZF from it matches "ZF cleared".
    setBmiFlags(cpu, size, rl, rh, cf, true);
    return ins.next ?? linkNext(cpu, ins);
  };
}

let bxHi = 0;
/** bits [start, start+len) of a `size`-bit value; returns lo, hi in bxHi. */
function extract(lo: number, hi: number, size: number, start: number, len: number): number {
  if (start >= size || len === 0) {
    bxHi = 0;
    return 0;
  }
  // Shift right by start.
  let sl: number;
  let sh: number;
  if (size === 32) {
    sl = lo >>> start;
    sh = 0;
  } else if (start === 0) {
    sl = lo;
    sh = hi;
  } else if (start < 32) {
    sl = (lo >>> start) | (hi << (32 - start));
    sh = hi >>> start;
  } else {
    sl = hi >>> (start - 32);
    sh = 0;
  }
  // Keep len bits (len >= size keeps everything).
  if (len < 32) {
    sl &= (1 << len) - 1;
    sh = 0;
  } else if (size === 64 && len < 64) {
    sh = len === 32 ? 0 : sh & ((1 << (len - 32)) - 1);
  }
  bxHi = sh | 0;
  return sl | 0;
}

function compileBextr(d: Decoded): Exec {
  const [o0, o1, o2] = d.ops;
  if (o0.k !== 'reg') throw new Unsupported('destination');
  const size = o0.size;
  const i = o0.reg;
  const src = reader(o1, size);
  const ctl = reader(o2, size);
  return (cpu, ins) => {
    const xl = src(cpu);
    const xh = size === 64 ? cpu.th : 0;
    const c = ctl(cpu);
    const lo = extract(xl, xh, size, c & 0xff, (c >>> 8) & 0xff);
    const hi = bxHi;
    writeReg(cpu, i, size, false, lo, hi);
    setBmiFlags(cpu, size, lo, hi, 0, false);
    return ins.next ?? linkNext(cpu, ins);
  };
}

export const rows: OpRow[] = [
  { mnemonic: Mnemonic.Bt, compile: (d) => compileBt(d, BT), check: 'oracle' },
  { mnemonic: Mnemonic.Bts, compile: (d) => compileBt(d, BTS), check: 'oracle' },
  { mnemonic: Mnemonic.Btr, compile: (d) => compileBt(d, BTR), check: 'oracle' },
  { mnemonic: Mnemonic.Btc, compile: (d) => compileBt(d, BTC), check: 'oracle' },
  { mnemonic: Mnemonic.Bsf, compile: (d) => compileBitScan(d, false), check: 'oracle' },
  { mnemonic: Mnemonic.Bsr, compile: (d) => compileBitScan(d, true), check: 'oracle' },
  { mnemonic: Mnemonic.Tzcnt, compile: (d) => compileCount(d, tz), check: 'oracle' },
  { mnemonic: Mnemonic.Lzcnt, compile: (d) => compileCount(d, lz), check: 'oracle' },
  { mnemonic: Mnemonic.Popcnt, compile: (d) => compileCount(d, null), check: 'oracle' },
  { mnemonic: Mnemonic.Movbe, compile: compileMovbe, check: 'oracle' },
  { mnemonic: Mnemonic.Andn, compile: (d) => compileBmiLogic(d, ANDN), check: 'oracle' },
  { mnemonic: Mnemonic.Blsi, compile: (d) => compileBmiLogic(d, BLSI), check: 'oracle' },
  { mnemonic: Mnemonic.Blsmsk, compile: (d) => compileBmiLogic(d, BLSMSK), check: 'oracle' },
  { mnemonic: Mnemonic.Blsr, compile: (d) => compileBmiLogic(d, BLSR), check: 'oracle' },
  { mnemonic: Mnemonic.Bextr, compile: compileBextr, check: 'oracle' },
];
