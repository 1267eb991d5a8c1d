// Multiply and divide: mul, imul (one, two and three operands), div, idiv.
//
// No BigInt anywhere: a 64x64 product is built from 16-bit limbs (every partial sum
// stays exact in a double), and a 128/64 division takes one of three exact paths:
// doubles when the dividend is below 2^53, 16-bit long division when the divisor fits
// in 32 bits (each partial remainder stays below 2^48), and otherwise a 64-step
// shift-and-subtract, which is slow but rare (a kernel divides by 64-bit values almost
// only in time conversions, and those dividends are usually below 2^53).
//
// #DE (vector 0) is raised for a zero divisor and for a quotient that does not fit,
// before anything is written.

import { Mnemonic } from 'iced-x86';
import type { Cpu } from '../cpu';
import { HI, GuestException } from '../cpu';
import type { Decoded } from '../decode';
import { type Exec, linkNext } from '../insn';
import { CF, OF, ZF, SF, ARITH, LZ_NONE, LZ_IMUL64, parityFlag, setImulOverflow } from '../flags';
import { reader, sizeOf, Unsupported } from '../operands';
import type { OpRow } from '../optable';
import { lockUd, record } from './alu';
import { writeReg } from '../operands';

const TWO32 = 4294967296;
const RAX = 0;
const RDX = 2;

// ---- Multiplication cores; results in module scratch (no allocation per call) ----

/** The 128-bit product as four 32-bit words, least significant first. */
let p0 = 0, p1 = 0, p2 = 0, p3 = 0;

/** High word of the unsigned 32x32 product (the low word is Math.imul). */
export function mulHiU32(a: number, b: number): number {
  const au = a >>> 0;
  // a * b = y * 2^16 + x, both below 2^48 and exact; so is the floor below (< 2^49).
  const x = au * (b & 0xffff);
  const y = au * (b >>> 16);
  return Math.floor((y + Math.floor(x / 65536)) / 65536) | 0;
}

/** Unsigned 64x64 -> 128 into p0..p3, from four 32x32 products (column sums stay below 2^34). */
function mulU64(aLo: number, aHi: number, bLo: number, bHi: number): void {
  const hLL = mulHiU32(aLo, bLo);
  const s1 = (hLL >>> 0) + (Math.imul(aLo, bHi) >>> 0) + (Math.imul(aHi, bLo) >>> 0);
  const s2 = (mulHiU32(aLo, bHi) >>> 0) + (mulHiU32(aHi, bLo) >>> 0) + (Math.imul(aHi, bHi) >>> 0) + Math.floor(s1 / TWO32);
  p0 = Math.imul(aLo, bLo);
  p1 = s1 | 0;
  p2 = s2 | 0;
  p3 = (mulHiU32(aHi, bHi) + Math.floor(s2 / TWO32)) | 0;
}

/** Signed 64x64 -> 128 into p0..p3: the unsigned product, corrected for negative inputs. */
function mulS64(aLo: number, aHi: number, bLo: number, bHi: number): void {
  mulU64(aLo, aHi, bLo, bHi);
  // As unsigned, a negative a stands for a + 2^64: subtract b * 2^64 (and vice versa).
  if (aHi < 0) subHigh(bLo, bHi);
  if (bHi < 0) subHigh(aLo, aHi);
}

function subHigh(lo: number, hi: number): void {
  const s = (p2 >>> 0) - (lo >>> 0);
  p2 = s | 0;
  p3 = (p3 - hi - (s < 0 ? 1 : 0)) | 0;
}

/** Unsigned 32x32 -> 64: returns the low word, high word in p1. */
function mulU32(a: number, b: number): number {
  p1 = mulHiU32(a, b);
  return Math.imul(a, b);
}

/** Signed 32x32 -> 64: returns the low word, high word in p1. */
function mulS32(a: number, b: number): number {
  const lo = mulU32(a, b);
  let h = p1;
  if (a < 0) h -= b;
  if (b < 0) h -= a;
  p1 = h | 0;
  return lo;
}

/**
 * CF=OF as given. SF/ZF/PF/AF are undefined after a multiply and follow no simple
 * rule on the host (AMD); we derive SF/ZF/PF from the low half and clear AF, so all
 * six are written and the lazy state need not be folded in first.
 */
function setMulFlags(cpu: Cpu, overflow: boolean, lo: number, signBit: number, hi = 0): void {
  let f = (cpu.flags & ~ARITH) | parityFlag(lo);
  if (overflow) f |= CF | OF;
  if (signBit) f |= SF;
  if ((lo | hi) === 0) f |= ZF;
  cpu.flags = f;
  cpu.lzOp = LZ_NONE;
}

// ---- mul / imul, one operand: rDX:rAX = rAX * src ----

function compileMul1(d: Decoded, signed: boolean): Exec {
  const o0 = d.ops[0];
  const size = sizeOf(o0);
  if (d.lock) return lockUd(d);
  const src = reader(o0, size);
  switch (size) {
    case 8:
      return (cpu, ins) => {
        const b = src(cpu);
        const a = cpu.r[RAX] & 0xff;
        let p: number;
        let of: boolean;
        if (signed) {
          p = ((a << 24) >> 24) * ((b << 24) >> 24);
          of = p !== (p << 24) >> 24;
        } else {
          p = a * b;
          of = p > 0xff;
        }
        p &= 0xffff;
        cpu.r[RAX] = (cpu.r[RAX] & ~0xffff) | p;
        setMulFlags(cpu, of, p & 0xff, (p >>> 7) & 1);
        return ins.next ?? linkNext(cpu, ins);
      };
    case 16:
      return (cpu, ins) => {
        const b = src(cpu);
        const a = cpu.r[RAX] & 0xffff;
        let p: number;
        let of: boolean;
        if (signed) {
          p = ((a << 16) >> 16) * ((b << 16) >> 16);
          of = p !== (p << 16) >> 16;
        } else {
          p = a * b;
          of = p > 0xffff;
        }
        const r = cpu.r;
        r[RAX] = (r[RAX] & ~0xffff) | (p & 0xffff);
        r[RDX] = (r[RDX] & ~0xffff) | ((p >>> 16) & 0xffff);
        setMulFlags(cpu, of, p & 0xffff, (p >>> 15) & 1);
        return ins.next ?? linkNext(cpu, ins);
      };
    case 32:
      return (cpu, ins) => {
        const b = src(cpu);
        const r = cpu.r;
        const lo = signed ? mulS32(r[RAX], b) : mulU32(r[RAX], b);
        const hi = p1;
        r[RAX] = lo;
        r[RAX + HI] = 0;
        r[RDX] = hi;
        r[RDX + HI] = 0;
        setMulFlags(cpu, signed ? hi !== lo >> 31 : hi !== 0, lo, lo >>> 31);
        return ins.next ?? linkNext(cpu, ins);
      };
    default:
      return (cpu, ins) => {
        const bLo = src(cpu);
        const bHi = cpu.th;
        const r = cpu.r;
        if (signed) mulS64(r[RAX], r[RAX + HI], bLo, bHi);
        else mulU64(r[RAX], r[RAX + HI], bLo, bHi);
        r[RAX] = p0;
        r[RAX + HI] = p1;
        r[RDX] = p2;
        r[RDX + HI] = p3;
        const ext = signed ? p1 >> 31 : 0;
        setMulFlags(cpu, p2 !== ext || p3 !== ext, p0, p1 >>> 31, p1);
        return ins.next ?? linkNext(cpu, ins);
      };
  }
}

// ---- imul, two and three operands: dst = truncate(a * b) ----

function compileImulN(d: Decoded): Exec {
  const [o0, o1, o2] = d.ops;
  if (o0.k !== 'reg') throw new Unsupported('imul destination');
  const size = o0.size;
  if (d.lock) return lockUd(d);
  const i = o0.reg;
  const ih = i + HI;
  const srcA = d.ops.length === 3 ? reader(o1, size) : reader(o0, size);
  const srcB = d.ops.length === 3 ? reader(o2, size) : reader(o1, size);
  switch (size) {
    case 16:
      return (cpu, ins) => {
        const a = srcA(cpu);
        const b = srcB(cpu);
        const p = ((a << 16) >> 16) * ((b << 16) >> 16);
        const lo = p & 0xffff;
        writeReg(cpu, i, 16, false, lo, 0);
        setMulFlags(cpu, p !== (p << 16) >> 16, lo, (lo >>> 15) & 1);
        return ins.next ?? linkNext(cpu, ins);
      };
    case 32:
      return (cpu, ins) => {
        const a = srcA(cpu);
        const b = srcB(cpu);
        const lo = Math.imul(a, b);
        // Inexact only when far outside the int32 range, where the answer is the same.
        const p = a * b;
        const r = cpu.r;
        r[i] = lo;
        r[ih] = 0;
        setMulFlags(cpu, p !== lo, lo, lo >>> 31);
        return ins.next ?? linkNext(cpu, ins);
      };
    default:
      return (cpu, ins) => {
        const aLo = srcA(cpu);
        const aHi = cpu.th;
        const bLo = srcB(cpu);
        const bHi = cpu.th;
        // The truncated product from 32-bit pieces; CF=OF (the full product's high
        // half) only if something reads them: hashes multiply and never look.
        const lo = Math.imul(aLo, bLo);
        const hi = (mulHiU32(aLo, bLo) + Math.imul(aLo, bHi) + Math.imul(aHi, bLo)) | 0;
        const r = cpu.r;
        r[i] = lo;
        r[ih] = hi;
        record(cpu, LZ_IMUL64, 64, aLo, aHi, bLo, bHi, lo, hi);
        return ins.next ?? linkNext(cpu, ins);
      };
  }
}

/** Whether the signed 64x64 product overflows 64 bits (CF=OF of IMUL, read lazily). */
export function imulOverflows(aLo: number, aHi: number, bLo: number, bHi: number): boolean {
  // Both fit in 32 bits: the product fits in 64.
  if (aHi === aLo >> 31 && bHi === bLo >> 31) return false;
  mulS64(aLo, aHi, bLo, bHi);
  const ext = p1 >> 31;
  return p2 !== ext || p3 !== ext;
}
setImulOverflow(imulOverflows);

function compileImul(d: Decoded): Exec {
  return d.ops.length === 1 ? compileMul1(d, true) : compileImulN(d);
}

// ---- Division ----

function divideError(why: string): never {
  throw new GuestException(0, null, why);
}

/** Quotient and remainder of the last udiv128 call, as 64-bit (lo, hi). */
let qLo = 0, qHi = 0, remLo = 0, remHi = 0;

/** Unsigned a >= b on 64-bit (lo, hi) pairs. */
function uge(aLo: number, aHi: number, bLo: number, bHi: number): boolean {
  const ah = aHi >>> 0;
  const bh = bHi >>> 0;
  return ah > bh || (ah === bh && aLo >>> 0 >= bLo >>> 0);
}

/**
 * Unsigned (n1:n0) / d for 64-bit halves n1 and n0 and a non-zero 64-bit d, with
 * n1 < d so that the quotient fits in 64 bits. Results in qLo/qHi/remLo/remHi.
 */
function udiv128(n1Lo: number, n1Hi: number, n0Lo: number, n0Hi: number, dLo: number, dHi: number): void {
  if (dHi === 0) {
    // Long division by 16-bit digits; n1 < d < 2^32, so each partial stays below 2^48.
    const dv = dLo >>> 0;
    let r = n1Lo >>> 0;
    let t = r * 65536 + (n0Hi >>> 16);
    const q3 = Math.floor(t / dv);
    r = t - q3 * dv;
    t = r * 65536 + (n0Hi & 0xffff);
    const q2 = Math.floor(t / dv);
    r = t - q2 * dv;
    t = r * 65536 + (n0Lo >>> 16);
    const q1 = Math.floor(t / dv);
    r = t - q1 * dv;
    t = r * 65536 + (n0Lo & 0xffff);
    const q0 = Math.floor(t / dv);
    r = t - q0 * dv;
    qHi = (q3 << 16) | q2;
    qLo = (q1 << 16) | q0;
    remLo = r | 0;
    remHi = 0;
    return;
  }
  if ((n1Lo | n1Hi) === 0 && n0Hi >>> 0 < 0x200000) {
    // Dividend below 2^53 (and d >= 2^32): doubles are exact.
    const n = (n0Hi >>> 0) * TWO32 + (n0Lo >>> 0);
    if (dHi >>> 0 >= 0x200000) {
      qLo = qHi = 0;
      remLo = n0Lo;
      remHi = n0Hi;
      return;
    }
    const dv = (dHi >>> 0) * TWO32 + (dLo >>> 0);
    const r = n % dv;
    const q = (n - r) / dv;
    qLo = q | 0;
    qHi = Math.floor(q / TWO32) | 0;
    remLo = r % TWO32 | 0;
    remHi = Math.floor(r / TWO32) | 0;
    return;
  }
  // Restoring division, one quotient bit per step.
  let rl = n1Lo;
  let rh = n1Hi;
  let ql = 0;
  let qh = 0;
  for (let k = 63; k >= 0; k--) {
    const top = rh >>> 31;
    rh = (rh << 1) | (rl >>> 31);
    rl = (rl << 1) | (k >= 32 ? (n0Hi >>> (k - 32)) & 1 : (n0Lo >>> k) & 1);
    // With the bit shifted out of the top, the true remainder exceeds d.
    if (top || uge(rl, rh, dLo, dHi)) {
      const s = (rl >>> 0) - (dLo >>> 0);
      rl = s | 0;
      rh = (rh - dHi - (s < 0 ? 1 : 0)) | 0;
      if (k >= 32) qh |= 1 << (k - 32);
      else ql |= 1 << k;
    }
  }
  qLo = ql;
  qHi = qh;
  remLo = rl;
  remHi = rh;
}

function compileDiv(d: Decoded): Exec {
  const o0 = d.ops[0];
  const size = sizeOf(o0);
  if (d.lock) return lockUd(d);
  const src = reader(o0, size);
  switch (size) {
    case 8:
      return (cpu, ins) => {
        const dv = src(cpu);
        if (dv === 0) divideError('divide by zero');
        const n = cpu.r[RAX] & 0xffff;
        const q = Math.floor(n / dv);
        if (q > 0xff) divideError('quotient too large');
        cpu.r[RAX] = (cpu.r[RAX] & ~0xffff) | ((n - q * dv) << 8) | q;
        return ins.next ?? linkNext(cpu, ins);
      };
    case 16:
      return (cpu, ins) => {
        const dv = src(cpu);
        if (dv === 0) divideError('divide by zero');
        const r = cpu.r;
        const n = (((r[RDX] & 0xffff) << 16) | (r[RAX] & 0xffff)) >>> 0;
        const q = Math.floor(n / dv);
        if (q > 0xffff) divideError('quotient too large');
        r[RAX] = (r[RAX] & ~0xffff) | q;
        r[RDX] = (r[RDX] & ~0xffff) | (n - q * dv);
        return ins.next ?? linkNext(cpu, ins);
      };
    case 32:
      return (cpu, ins) => {
        const dv = src(cpu) >>> 0;
        if (dv === 0) divideError('divide by zero');
        const r = cpu.r;
        const hi = r[RDX] >>> 0;
        const lo = r[RAX] >>> 0;
        let q: number;
        let rem: number;
        if (hi === 0) {
          rem = lo % dv;
          q = (lo - rem) / dv;
        } else {
          if (hi >= dv) divideError('quotient too large');
          udiv128(0, 0, lo, hi, dv, 0);
          q = qLo;
          rem = remLo;
        }
        r[RAX] = q | 0;
        r[RAX + HI] = 0;
        r[RDX] = rem | 0;
        r[RDX + HI] = 0;
        return ins.next ?? linkNext(cpu, ins);
      };
    default:
      return (cpu, ins) => {
        const dLo = src(cpu);
        const dHi = cpu.th;
        if ((dLo | dHi) === 0) divideError('divide by zero');
        const r = cpu.r;
        const nhLo = r[RDX];
        const nhHi = r[RDX + HI];
        if (uge(nhLo, nhHi, dLo, dHi)) divideError('quotient too large');
        udiv128(nhLo, nhHi, r[RAX], r[RAX + HI], dLo, dHi);
        r[RAX] = qLo;
        r[RAX + HI] = qHi;
        r[RDX] = remLo;
        r[RDX + HI] = remHi;
        return ins.next ?? linkNext(cpu, ins);
      };
  }
}

function compileIdiv(d: Decoded): Exec {
  const o0 = d.ops[0];
  const size = sizeOf(o0);
  if (d.lock) return lockUd(d);
  const src = reader(o0, size);
  switch (size) {
    case 8:
      return (cpu, ins) => {
        const dv = (src(cpu) << 24) >> 24;
        if (dv === 0) divideError('divide by zero');
        const n = (cpu.r[RAX] << 16) >> 16;
        const q = Math.trunc(n / dv);
        if (q > 127 || q < -128) divideError('quotient too large');
        const rem = n % dv;
        cpu.r[RAX] = (cpu.r[RAX] & ~0xffff) | ((rem & 0xff) << 8) | (q & 0xff);
        return ins.next ?? linkNext(cpu, ins);
      };
    case 16:
      return (cpu, ins) => {
        const dv = (src(cpu) << 16) >> 16;
        if (dv === 0) divideError('divide by zero');
        const r = cpu.r;
        const n = (r[RDX] << 16) | (r[RAX] & 0xffff);
        const q = Math.trunc(n / dv);
        if (q > 32767 || q < -32768) divideError('quotient too large');
        r[RAX] = (r[RAX] & ~0xffff) | (q & 0xffff);
        r[RDX] = (r[RDX] & ~0xffff) | (n % dv & 0xffff);
        return ins.next ?? linkNext(cpu, ins);
      };
    case 32:
      return (cpu, ins) => {
        const dv = src(cpu);
        if (dv === 0) divideError('divide by zero');
        const r = cpu.r;
        const hi = r[RDX];
        const lo = r[RAX];
        let q: number;
        let rem: number;
        if (hi === lo >> 31) {
          // The dividend fits in 32 bits; only -2^31 / -1 overflows.
          q = Math.trunc(lo / dv);
          if (q > 0x7fffffff) divideError('quotient too large');
          rem = lo % dv;
        } else {
          // Divide magnitudes, then apply signs.
          const neg = hi < 0;
          let mLo = lo;
          let mHi = hi;
          if (neg) {
            mLo = -lo | 0;
            mHi = (~hi + (lo === 0 ? 1 : 0)) | 0;
          }
          const dm = Math.abs(dv);
          if (mHi >>> 0 >= dm) divideError('quotient too large');
          udiv128(0, 0, mLo, mHi, dm | 0, 0);
          const qm = qLo >>> 0;
          const qneg = neg !== dv < 0;
          if (qm > (qneg ? 0x80000000 : 0x7fffffff)) divideError('quotient too large');
          q = qneg ? -qm : qm;
          rem = neg ? -(remLo >>> 0) : remLo >>> 0;
        }
        r[RAX] = q | 0;
        r[RAX + HI] = 0;
        r[RDX] = rem | 0;
        r[RDX + HI] = 0;
        return ins.next ?? linkNext(cpu, ins);
      };
    default:
      return (cpu, ins) => {
        let dLo = src(cpu);
        let dHi = cpu.th;
        if ((dLo | dHi) === 0) divideError('divide by zero');
        const r = cpu.r;
        let n1Lo = r[RDX];
        let n1Hi = r[RDX + HI];
        let n0Lo = r[RAX];
        let n0Hi = r[RAX + HI];
        // Fast path: dividend and divisor both below 2^53 in magnitude.
        if (n1Lo === n1Hi && n1Hi === n0Hi >> 31 && small53(n0Lo, n0Hi) && small53(dLo, dHi)) {
          const n = n0Hi * TWO32 + (n0Lo >>> 0);
          const dv = dHi * TWO32 + (dLo >>> 0);
          const rem = n % dv;
          const q = (n - rem) / dv;
          r[RAX] = q % TWO32 | 0;
          r[RAX + HI] = Math.floor(q / TWO32) | 0;
          r[RDX] = rem % TWO32 | 0;
          r[RDX + HI] = Math.floor(rem / TWO32) | 0;
          return ins.next ?? linkNext(cpu, ins);
        }
        const neg = n1Hi < 0;
        if (neg) {
          // 128-bit negation: invert, add one.
          n0Lo = ~n0Lo;
          n0Hi = ~n0Hi;
          n1Lo = ~n1Lo;
          n1Hi = ~n1Hi;
          const s0 = (n0Lo >>> 0) + 1;
          n0Lo = s0 | 0;
          const c0 = s0 > 0xffffffff ? 1 : 0;
          const s1 = (n0Hi >>> 0) + c0;
          n0Hi = s1 | 0;
          const c1 = s1 > 0xffffffff ? 1 : 0;
          const s2 = (n1Lo >>> 0) + c1;
          n1Lo = s2 | 0;
          n1Hi = (n1Hi + (s2 > 0xffffffff ? 1 : 0)) | 0;
        }
        const dneg = dHi < 0;
        if (dneg) {
          dLo = -dLo | 0;
          dHi = (~dHi + (dLo === 0 ? 1 : 0)) | 0;
        }
        if (uge(n1Lo, n1Hi, dLo, dHi)) divideError('quotient too large');
        udiv128(n1Lo, n1Hi, n0Lo, n0Hi, dLo, dHi);
        const qneg = neg !== dneg;
        // |q| may be at most 2^63 when negative, 2^63 - 1 otherwise.
        if (qHi < 0 && !(qneg && qHi === -0x80000000 && qLo === 0)) divideError('quotient too large');
        let ql = qLo;
        let qh = qHi;
        if (qneg) {
          ql = -qLo | 0;
          qh = (~qHi + (ql === 0 ? 1 : 0)) | 0;
        }
        let rl = remLo;
        let rh = remHi;
        if (neg) {
          rl = -remLo | 0;
          rh = (~remHi + (rl === 0 ? 1 : 0)) | 0;
        }
        r[RAX] = ql;
        r[RAX + HI] = qh;
        r[RDX] = rl;
        r[RDX + HI] = rh;
        return ins.next ?? linkNext(cpu, ins);
      };
  }
}

/** |v| < 2^53 for a signed 64-bit (lo, hi). */
function small53(lo: number, hi: number): boolean {
  return hi >= 0 ? hi < 0x200000 : hi > -0x200000 || (hi === -0x200000 && lo !== 0);
}

export const rows: OpRow[] = [
  { mnemonic: Mnemonic.Mul, compile: (d) => compileMul1(d, false), check: 'oracle' },
  { mnemonic: Mnemonic.Imul, compile: compileImul, check: 'oracle' },
  { mnemonic: Mnemonic.Div, compile: compileDiv, check: 'oracle' },
  { mnemonic: Mnemonic.Idiv, compile: compileIdiv, check: 'oracle' },
];
