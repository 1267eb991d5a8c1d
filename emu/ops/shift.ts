// Shifts and rotates: shl/sal, shr, sar, rol, ror, rcl, rcr (by 1, imm8, CL) and the
// double shifts shld/shrd. Flags are computed eagerly: every count that changes
// anything rewrites CF and OF at least, and a count of zero (after masking) leaves all
// flags alone, so there is no lazy form worth keeping. Register shifts by an immediate
// are specialised: compilers emit them for every bitfield and index computation.
//
// Where the SDM leaves a result undefined but the host CPU (AMD, which the oracle
// runs on) produces something definite, we reproduce the host: 8/16-bit shifts by
// more than the width act as if on a wider register (CF becomes 0 for shl/shr, the
// sign for sar), AF reads 1 after a shift, and a 16-bit shld/shrd by 17..31 draws
// the bits shifted in from a second copy of the source (see dshift16).

import { Mnemonic } from 'iced-x86';
import type { Cpu } from '../cpu';
import { HI } from '../cpu';
import type { Decoded } from '../decode';
import { type Exec, linkNext } from '../insn';
import { CF, AF, ZF, SF, OF, ARITH, LZ_NONE, materialize, materializeKeepingSzap, parityFlag } from '../flags';
import { compileEa, memRead, memWrite, reader, sizeOf, maskOf, Unsupported } from '../operands';
import type { OpRow } from '../optable';
import { lockUd } from './alu';
import { writeReg } from '../operands';

/** Shifts by a masked, non-zero count; returns lo, leaves hi in cpu.th, sets flags. */
type ShiftFn = (cpu: Cpu, size: number, lo: number, hi: number, m: number) => number;

// ---- 64-bit helpers on (lo, hi); counts 0..64; the high half comes back in sHi ----

let sHi = 0;

function shl64(lo: number, hi: number, c: number): number {
  if (c === 0) {
    sHi = hi;
    return lo;
  }
  if (c < 32) {
    sHi = (hi << c) | (lo >>> (32 - c));
    return lo << c;
  }
  sHi = c < 64 ? lo << (c - 32) : 0;
  return 0;
}

function shr64(lo: number, hi: number, c: number): number {
  if (c === 0) {
    sHi = hi;
    return lo;
  }
  if (c < 32) {
    sHi = (hi >>> c) | 0;
    return (lo >>> c) | (hi << (32 - c));
  }
  sHi = 0;
  return c < 64 ? (hi >>> (c - 32)) | 0 : 0;
}

function sar64(lo: number, hi: number, c: number): number {
  if (c === 0) {
    sHi = hi;
    return lo;
  }
  if (c < 32) {
    sHi = hi >> c;
    return (lo >>> c) | (hi << (32 - c));
  }
  sHi = hi >> 31;
  return c < 64 ? hi >> (c - 32) : hi >> 31;
}

/** Bit k (0..63) of (lo, hi). */
function bit64(lo: number, hi: number, k: number): number {
  return k < 32 ? (lo >>> k) & 1 : (hi >>> (k - 32)) & 1;
}

function msb(lo: number, hi: number, size: number): number {
  return size === 64 ? hi >>> 31 : (lo >>> (size - 1)) & 1;
}

/** Flags after a shift that writes all six arithmetic flags (OF as given). */
function setShiftFlags(cpu: Cpu, size: number, lo: number, hi: number, cf: number, of: number): void {
  let f = (cpu.flags & ~ARITH) | cf | parityFlag(lo) | AF;
  if ((lo | hi) === 0) f |= ZF;
  if (msb(lo, hi, size)) f |= SF;
  if (of) f |= OF;
  // The non-arithmetic bits of cpu.flags are authoritative even while flags are lazy,
  // so overwriting every arithmetic bit needs no materialize.
  cpu.flags = f;
  cpu.lzOp = LZ_NONE;
}

/** Flags after a rotate: only CF and OF change. */
function setRotateFlags(cpu: Cpu, cf: number, of: number): void {
  materializeKeepingSzap(cpu);
  cpu.flags = (cpu.flags & ~(CF | OF)) | cf | (of ? OF : 0);
}

// ---- The operations ----

const shl: ShiftFn = (cpu, size, lo, hi, m) => {
  if (size === 64) {
    const rl = shl64(lo, hi, m);
    const rh = sHi;
    const cf = bit64(lo, hi, 64 - m);
    setShiftFlags(cpu, 64, rl, rh, cf, (rh >>> 31) ^ cf);
    cpu.th = rh;
    return rl;
  }
  cpu.th = 0;
  if (size === 32) {
    const r = lo << m;
    const cf = (lo >>> (32 - m)) & 1;
    setShiftFlags(cpu, 32, r, 0, cf, (r >>> 31) ^ cf);
    return r;
  }
  // 8/16-bit counts may exceed the width (they are masked to 5 bits).
  const r = (lo << m) & maskOf(size);
  const cf = m <= size ? (lo >>> (size - m)) & 1 : 0;
  setShiftFlags(cpu, size, r, 0, cf, ((r >>> (size - 1)) & 1) ^ cf);
  return r;
};

const shr: ShiftFn = (cpu, size, lo, hi, m) => {
  if (size === 64) {
    const rl = shr64(lo, hi, m);
    const rh = sHi;
    setShiftFlags(cpu, 64, rl, rh, bit64(lo, hi, m - 1), m === 1 ? hi >>> 31 : 0);
    cpu.th = rh;
    return rl;
  }
  cpu.th = 0;
  // lo is non-negative below 32 bits, so bits past the width shift in as zero.
  const r = (lo >>> m) | 0;
  setShiftFlags(cpu, size, r, 0, (lo >>> (m - 1)) & 1, m === 1 ? msb(lo, 0, size) : 0);
  return r;
};

const sar: ShiftFn = (cpu, size, lo, hi, m) => {
  if (size === 64) {
    const rl = sar64(lo, hi, m);
    const rh = sHi;
    setShiftFlags(cpu, 64, rl, rh, bit64(lo, hi, m - 1), 0);
    cpu.th = rh;
    return rl;
  }
  cpu.th = 0;
  const v = size === 32 ? lo : size === 16 ? (lo << 16) >> 16 : (lo << 24) >> 24;
  const r = (v >> m) & maskOf(size);
  setShiftFlags(cpu, size, r, 0, (v >> (m - 1)) & 1, 0);
  return r;
};

const rol: ShiftFn = (cpu, size, lo, hi, m) => {
  if (size === 64) {
    const l1 = shl64(lo, hi, m);
    const h1 = sHi;
    const rl = l1 | shr64(lo, hi, 64 - m);
    const rh = h1 | sHi;
    const cf = rl & 1;
    setRotateFlags(cpu, cf, (rh >>> 31) ^ cf);
    cpu.th = rh;
    return rl;
  }
  cpu.th = 0;
  // The masked count rotates mod the width, but CF is still written when that is 0.
  const c = size === 32 ? m : m & (size - 1);
  const r = size === 32 ? (lo << c) | (lo >>> (32 - c)) : ((lo << c) | (lo >>> (size - c))) & maskOf(size);
  const cf = r & 1;
  setRotateFlags(cpu, cf, msb(r, 0, size) ^ cf);
  return r;
};

const ror: ShiftFn = (cpu, size, lo, hi, m) => {
  if (size === 64) {
    const l1 = shr64(lo, hi, m);
    const h1 = sHi;
    const rl = l1 | shl64(lo, hi, 64 - m);
    const rh = h1 | sHi;
    const top = rh >>> 31;
    setRotateFlags(cpu, top, top ^ ((rh >>> 30) & 1));
    cpu.th = rh;
    return rl;
  }
  cpu.th = 0;
  const c = size === 32 ? m : m & (size - 1);
  const r = size === 32 ? (lo >>> c) | (lo << (32 - c)) : ((lo >>> c) | (lo << (size - c))) & maskOf(size);
  const top = msb(r, 0, size);
  setRotateFlags(cpu, top, top ^ ((r >>> (size - 2)) & 1));
  return r;
};

/** Rotate count through CF: the rotation is of size+1 bits. */
function rcCount(size: number, m: number): number {
  return size === 8 ? m % 9 : size === 16 ? m % 17 : m;
}

const rcl: ShiftFn = (cpu, size, lo, hi, m) => {
  const c = rcCount(size, m);
  cpu.th = hi;
  materialize(cpu);
  const cin = cpu.flags & CF;
  if (c === 0) {
    // A count that is a multiple of 9 (17) rotates nothing, yet the host still
    // writes OF by the one-bit rule, and iced does not mark OF undefined here.
    setRotateFlags(cpu, cin, msb(lo, hi, size) ^ cin);
    return lo;
  }
  if (size === 64) {
    let rl = shl64(lo, hi, c);
    let rh = sHi;
    if (cin) {
      if (c <= 32) rl |= 1 << (c - 1);
      else rh |= 1 << (c - 33);
    }
    rl |= shr64(lo, hi, 65 - c);
    rh |= sHi;
    const cf = bit64(lo, hi, 64 - c);
    setRotateFlags(cpu, cf, (rh >>> 31) ^ cf);
    cpu.th = rh;
    return rl;
  }
  let r = (lo << c) | (cin << (c - 1));
  if (c > 1) r |= lo >>> (size + 1 - c);
  r = size === 32 ? r | 0 : r & maskOf(size);
  const cf = (lo >>> (size - c)) & 1;
  setRotateFlags(cpu, cf, msb(r, 0, size) ^ cf);
  return r;
};

const rcr: ShiftFn = (cpu, size, lo, hi, m) => {
  const c = rcCount(size, m);
  cpu.th = hi;
  materialize(cpu);
  const cin = cpu.flags & CF;
  if (c === 0) {
    setRotateFlags(cpu, cin, msb(lo, hi, size) ^ ((lo >>> (size - 2)) & 1));
    return lo;
  }
  if (size === 64) {
    let rl = shr64(lo, hi, c);
    let rh = sHi;
    if (cin) {
      if (c <= 32) rh |= 1 << (32 - c);
      else rl |= 1 << (64 - c);
    }
    rl |= shl64(lo, hi, 65 - c);
    rh |= sHi;
    setRotateFlags(cpu, bit64(lo, hi, c - 1), (rh >>> 31) ^ ((rh >>> 30) & 1));
    cpu.th = rh;
    return rl;
  }
  let r = (lo >>> c) | (cin << (size - c));
  if (c > 1) r |= lo << (size + 1 - c);
  r = size === 32 ? r | 0 : r & maskOf(size);
  setRotateFlags(cpu, (lo >>> (c - 1)) & 1, msb(r, 0, size) ^ ((r >>> (size - 2)) & 1));
  return r;
};

// ---- Compilation ----

/** The count operand: a constant (by 1, imm8) or CL. Returns the constant or -1 for CL. */
function constCount(o: Decoded['ops'][number]): number {
  if (o.k === 'imm') return o.lo & 0xff;
  if (o.k === 'reg' && o.reg === 1 && o.size === 8 && !o.high8) return -1;
  throw new Unsupported('shift count operand');
}

function compileShift(d: Decoded, fn: ShiftFn): Exec {
  const [o0, o1] = d.ops;
  const size = sizeOf(o0);
  const cmask = size === 64 ? 63 : 31;
  if (d.lock) return lockUd(d);
  const k = constCount(o1);
  if (k >= 0) {
    const m = k & cmask;
    if (o0.k === 'reg') {
      const i = o0.reg;
      const ih = i + HI;
      if (m === 0) {
        // Nothing changes, except that a 32-bit register write still clears bits 63:32.
        if (size !== 32) return (cpu, ins) => ins.next ?? linkNext(cpu, ins);
        return (cpu, ins) => {
          cpu.r[ih] = 0;
          return ins.next ?? linkNext(cpu, ins);
        };
      }
      const hot = fastRegImm(fn, size, i, m);
      if (hot) return hot;
      const high8 = o0.high8;
      const rd = reader(o0, size);
      return (cpu, ins) => {
        const v = rd(cpu);
        const lo = fn(cpu, size, v, cpu.th, m);
        writeReg(cpu, i, size, high8, lo, cpu.th);
        return ins.next ?? linkNext(cpu, ins);
      };
    }
    if (o0.k !== 'mem') throw new Unsupported('shift destination');
    const ea = compileEa(o0);
    return (cpu, ins) => {
      const a = ea(cpu);
      const ah = cpu.eh;
      const v = memRead(cpu, a, ah, size);
      if (m === 0) return ins.next ?? linkNext(cpu, ins);
      const lo = fn(cpu, size, v, size === 64 ? cpu.th : 0, m);
      memWrite(cpu, a, ah, size, lo, cpu.th);
      return ins.next ?? linkNext(cpu, ins);
    };
  }
  if (o0.k === 'reg') {
    const i = o0.reg;
    const high8 = o0.high8;
    const rd = reader(o0, size);
    return (cpu, ins) => {
      const m = cpu.r[1] & cmask;
      const v = rd(cpu);
      const vh = cpu.th;
      const lo = m === 0 ? v : fn(cpu, size, v, vh, m);
      writeReg(cpu, i, size, high8, lo, m === 0 ? vh : cpu.th);
      return ins.next ?? linkNext(cpu, ins);
    };
  }
  if (o0.k !== 'mem') throw new Unsupported('shift destination');
  const ea = compileEa(o0);
  return (cpu, ins) => {
    const m = cpu.r[1] & cmask;
    const a = ea(cpu);
    const ah = cpu.eh;
    const v = memRead(cpu, a, ah, size);
    if (m === 0) return ins.next ?? linkNext(cpu, ins);
    const lo = fn(cpu, size, v, size === 64 ? cpu.th : 0, m);
    memWrite(cpu, a, ah, size, lo, cpu.th);
    return ins.next ?? linkNext(cpu, ins);
  };
}

/** shl/shr/sar of a 32/64-bit register by a constant: inline, no operand closures. */
function fastRegImm(fn: ShiftFn, size: number, i: number, m: number): Exec | null {
  const ih = i + HI;
  // shr: OF is the original sign for a one-bit shift (the host also clears it beyond).
  const ofTop = m === 1 ? 1 : 0;
  if (size === 32) {
    if (fn === shl) {
      const back = 32 - m;
      return (cpu, ins) => {
        const r = cpu.r;
        const v = r[i];
        const x = v << m;
        const cf = (v >>> back) & 1;
        r[i] = x;
        r[ih] = 0;
        setShiftFlags(cpu, 32, x, 0, cf, (x >>> 31) ^ cf);
        return ins.next ?? linkNext(cpu, ins);
      };
    }
    if (fn === shr) {
      return (cpu, ins) => {
        const r = cpu.r;
        const v = r[i];
        const x = (v >>> m) | 0;
        r[i] = x;
        r[ih] = 0;
        setShiftFlags(cpu, 32, x, 0, (v >>> (m - 1)) & 1, ofTop & (v >>> 31));
        return ins.next ?? linkNext(cpu, ins);
      };
    }
    if (fn === sar) {
      return (cpu, ins) => {
        const r = cpu.r;
        const v = r[i];
        const x = v >> m;
        r[i] = x;
        r[ih] = 0;
        setShiftFlags(cpu, 32, x, 0, (v >> (m - 1)) & 1, 0);
        return ins.next ?? linkNext(cpu, ins);
      };
    }
    return null;
  }
  if (size !== 64) return null;
  if (fn === shl && m < 32) {
    const back = 32 - m;
    return (cpu, ins) => {
      const r = cpu.r;
      const lo = r[i];
      const hi = r[ih];
      const xl = lo << m;
      const xh = (hi << m) | (lo >>> back);
      const cf = (hi >>> back) & 1;
      r[i] = xl;
      r[ih] = xh;
      setShiftFlags(cpu, 64, xl, xh, cf, (xh >>> 31) ^ cf);
      return ins.next ?? linkNext(cpu, ins);
    };
  }
  if (fn === shr && m < 32) {
    const back = 32 - m;
    return (cpu, ins) => {
      const r = cpu.r;
      const lo = r[i];
      const hi = r[ih];
      const xl = (lo >>> m) | (hi << back);
      const xh = (hi >>> m) | 0;
      r[i] = xl;
      r[ih] = xh;
      setShiftFlags(cpu, 64, xl, xh, (lo >>> (m - 1)) & 1, ofTop & (hi >>> 31));
      return ins.next ?? linkNext(cpu, ins);
    };
  }
  if (fn === sar && m < 32) {
    const back = 32 - m;
    return (cpu, ins) => {
      const r = cpu.r;
      const lo = r[i];
      const hi = r[ih];
      const xl = (lo >>> m) | (hi << back);
      const xh = hi >> m;
      r[i] = xl;
      r[ih] = xh;
      setShiftFlags(cpu, 64, xl, xh, (lo >>> (m - 1)) & 1, 0);
      return ins.next ?? linkNext(cpu, ins);
    };
  }
  if (fn === shl || fn === shr || fn === sar) {
    return (cpu, ins) => {
      const r = cpu.r;
      r[i] = fn(cpu, 64, r[i], r[ih], m);
      r[ih] = cpu.th;
      return ins.next ?? linkNext(cpu, ins);
    };
  }
  return null;
}

// ---- shld / shrd ----

/**
 * Double shift of `size` bits by a masked, non-zero count m; dst is shifted, bits come
 * in from src. Returns lo (hi in cpu.th) and sets flags.
 */
function dshift(cpu: Cpu, left: boolean, size: number, dl: number, dh: number, sl: number, sh: number, m: number): number {
  let rl: number;
  let rh = 0;
  let cf: number;
  if (size === 64) {
    if (left) {
      const l1 = shl64(dl, dh, m);
      const h1 = sHi;
      rl = l1 | shr64(sl, sh, 64 - m);
      rh = h1 | sHi;
      cf = bit64(dl, dh, 64 - m);
    } else {
      const l1 = shr64(dl, dh, m);
      const h1 = sHi;
      rl = l1 | shl64(sl, sh, 64 - m);
      rh = h1 | sHi;
      cf = bit64(dl, dh, m - 1);
    }
  } else if (size === 32) {
    if (left) {
      rl = (dl << m) | (sl >>> (32 - m));
      cf = (dl >>> (32 - m)) & 1;
    } else {
      rl = (dl >>> m) | (sl << (32 - m));
      cf = (dl >>> (m - 1)) & 1;
    }
  } else {
    rl = dshift16(left, dl, sl, m);
    cf = dshiftCf;
  }
  // OF is defined for one-bit shifts only (sign change). For other counts we follow the
  // host: shld XORs the top bit with the last bit out, shrd the top two result bits,
  // and a 16-bit shld past 16 clears it.
  const top = msb(rl, rh, size);
  let of: number;
  if (!left) of = top ^ (size === 64 ? (rh >>> 30) & 1 : (rl >>> (size - 2)) & 1);
  else of = size === 16 && m > 16 ? 0 : top ^ cf;
  setShiftFlags(cpu, size, rl, rh, cf, of);
  cpu.th = rh;
  return rl;
}

let dshiftCf = 0;

/**
 * 16-bit shld/shrd; CF in dshiftCf. The SDM leaves counts 17..31 undefined; the host
 * shifts the 48-bit string dst:src:src (shld) or src:src:dst (shrd), so past 16 the
 * result is a rotation of src, and CF reads 0.
 */
function dshift16(left: boolean, d: number, s: number, m: number): number {
  // Each case needs only a 32-bit window of the 48-bit string.
  if (left) {
    if (m <= 16) {
      const w = (d << 16) | s; // dst:src
      dshiftCf = (d >>> (16 - m)) & 1;
      return (w >>> (16 - m)) & 0xffff;
    }
    const w = (s << 16) | s; // src:src, the tail of dst:src:src
    dshiftCf = 0;
    return (w >>> (32 - m)) & 0xffff;
  }
  if (m <= 16) {
    const w = (s << 16) | d; // src:dst
    dshiftCf = (d >>> (m - 1)) & 1;
    return (w >>> m) & 0xffff;
  }
  const w = (s << 16) | s;
  dshiftCf = 0;
  return (w >>> (m - 16)) & 0xffff;
}

function compileDouble(d: Decoded, left: boolean): Exec {
  const [o0, o1, o2] = d.ops;
  const size = sizeOf(o0);
  const cmask = size === 64 ? 63 : 31;
  if (d.lock) return lockUd(d);
  if (o1.k !== 'reg') throw new Unsupported('shld/shrd source');
  const k = constCount(o2);
  const src = reader(o1, size);
  if (o0.k === 'reg') {
    const i = o0.reg;
    const ih = i + HI;
    const rd = reader(o0, size);
    return (cpu, ins) => {
      const m = k >= 0 ? k & cmask : cpu.r[1] & cmask;
      if (m === 0) {
        if (size === 32) cpu.r[ih] = 0;
        return ins.next ?? linkNext(cpu, ins);
      }
      const dl = rd(cpu);
      const dh = cpu.th;
      const sl = src(cpu);
      const lo = dshift(cpu, left, size, dl, dh, sl, cpu.th, m);
      writeReg(cpu, i, size, false, lo, cpu.th);
      return ins.next ?? linkNext(cpu, ins);
    };
  }
  if (o0.k !== 'mem') throw new Unsupported('shld/shrd destination');
  const ea = compileEa(o0);
  return (cpu, ins) => {
    const m = k >= 0 ? k & cmask : cpu.r[1] & cmask;
    const a = ea(cpu);
    const ah = cpu.eh;
    const dl = memRead(cpu, a, ah, size);
    const dh = size === 64 ? cpu.th : 0;
    if (m === 0) return ins.next ?? linkNext(cpu, ins);
    const sl = src(cpu);
    const lo = dshift(cpu, left, size, dl, dh, sl, cpu.th, m);
    memWrite(cpu, a, ah, size, lo, cpu.th);
    return ins.next ?? linkNext(cpu, ins);
  };
}

export const rows: OpRow[] = [
  { mnemonic: Mnemonic.Shl, compile: (d) => compileShift(d, shl), check: 'oracle' },
  { mnemonic: Mnemonic.Sal, compile: (d) => compileShift(d, shl), check: 'oracle' },
  { mnemonic: Mnemonic.Shr, compile: (d) => compileShift(d, shr), check: 'oracle' },
  { mnemonic: Mnemonic.Sar, compile: (d) => compileShift(d, sar), check: 'oracle' },
  { mnemonic: Mnemonic.Rol, compile: (d) => compileShift(d, rol), check: 'oracle' },
  { mnemonic: Mnemonic.Ror, compile: (d) => compileShift(d, ror), check: 'oracle' },
  { mnemonic: Mnemonic.Rcl, compile: (d) => compileShift(d, rcl), check: 'oracle' },
  { mnemonic: Mnemonic.Rcr, compile: (d) => compileShift(d, rcr), check: 'oracle' },
  { mnemonic: Mnemonic.Shld, compile: (d) => compileDouble(d, true), check: 'oracle' },
  { mnemonic: Mnemonic.Shrd, compile: (d) => compileDouble(d, false), check: 'oracle' },
];
