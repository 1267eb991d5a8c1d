// RFLAGS with lazy arithmetic flags. An ALU instruction records its operation, operand
// size, operands and result; CF/PF/AF/ZF/SF/OF are computed only when something reads
// them (a jcc reads one or two, most results are never inspected). Operations whose
// flags are awkward to derive later (shifts, multiplies, bit tests) compute them eagerly
// and leave the lazy state empty.

export const CF = 0x1;
export const PF = 0x4;
export const AF = 0x10;
export const ZF = 0x40;
export const SF = 0x80;
export const TF = 0x100;
export const IF = 0x200;
export const DF = 0x400;
export const OF = 0x800;
export const IOPL = 0x3000;
export const NT = 0x4000;
export const RF = 0x10000;
export const VM = 0x20000;
export const AC = 0x40000;
export const VIF = 0x80000;
export const VIP = 0x100000;
export const ID = 0x200000;

export const ARITH = CF | PF | AF | ZF | SF | OF;
/** Bits POPF may change at CPL 0 in 64-bit mode (VM, VIP, VIF and RF are not writable by POPF). */
export const POPF_MASK = ARITH | TF | IF | DF | IOPL | NT | AC | ID;
/** Bit 1 of RFLAGS always reads as 1. */
export const FIXED1 = 0x2;

/** Lazy operation kinds. NONE: the arithmetic flags are in `flags` already. */
export const LZ_NONE = 0;
export const LZ_ADD = 1;
export const LZ_SUB = 2;
export const LZ_LOGIC = 3;
export const LZ_INC = 4;
export const LZ_DEC = 5;
export const LZ_ADC = 6;
export const LZ_SBB = 7;
/**
 * A 64-bit two/three-operand IMUL: the result is truncated, CF=OF say whether the
 * signed product overflowed, computed from the operands only if read (emu/ops/muldiv.ts).
 * SF/ZF/PF follow the 64-bit result and AF is clear, as the eager multiplies model them.
 */
export const LZ_IMUL64 = 8;

/** Whether the signed 128-bit product of two 64-bit values differs from its truncation (set by muldiv). */
let imulOverflow: (aLo: number, aHi: number, bLo: number, bHi: number) => boolean = () => {
  throw new Error('internal: emu/ops/muldiv.ts not loaded');
};
export function setImulOverflow(fn: typeof imulOverflow): void {
  imulOverflow = fn;
}

/** The slice of CPU state this module works on. */
export interface FlagState {
  flags: number;
  lzOp: number;
  /** Operand size in bits: 8, 16, 32 or 64. */
  lzSize: number;
  rLo: number;
  rHi: number;
  aLo: number;
  aHi: number;
  bLo: number;
  bHi: number;
  /** Carry-in for ADC/SBB, or the preserved CF for INC/DEC. */
  lzC: number;
}

const PARITY = new Uint8Array(256);
for (let i = 0; i < 256; i++) {
  let b = i;
  b ^= b >> 4;
  b ^= b >> 2;
  b ^= b >> 1;
  PARITY[i] = (b & 1) === 0 ? PF : 0;
}
export function parityFlag(v: number): number {
  return PARITY[v & 0xff];
}

/** Sign bit of a value of `size` bits held as (lo, hi). */
export function signBit(lo: number, hi: number, size: number): number {
  switch (size) {
    case 64:
      return hi >>> 31;
    case 32:
      return lo >>> 31;
    case 16:
      return (lo >>> 15) & 1;
    default:
      return (lo >>> 7) & 1;
  }
}

/** Unsigned a < b for values held as (lo, hi), already truncated to the operand size. */
function ult(aLo: number, aHi: number, bLo: number, bHi: number): boolean {
  const ah = aHi >>> 0;
  const bh = bHi >>> 0;
  return ah < bh || (ah === bh && aLo >>> 0 < bLo >>> 0);
}

export function getCF(s: FlagState): number {
  switch (s.lzOp) {
    case LZ_NONE:
      return s.flags & CF;
    case LZ_ADD:
      return ult(s.rLo, s.rHi, s.aLo, s.aHi) ? 1 : 0;
    case LZ_SUB:
      return ult(s.aLo, s.aHi, s.bLo, s.bHi) ? 1 : 0;
    case LZ_ADC:
      return ult(s.rLo, s.rHi, s.aLo, s.aHi) || (s.lzC !== 0 && s.rLo === s.aLo && s.rHi === s.aHi)
        ? 1
        : 0;
    case LZ_SBB:
      return ult(s.aLo, s.aHi, s.bLo, s.bHi) || (s.lzC !== 0 && s.aLo === s.bLo && s.aHi === s.bHi)
        ? 1
        : 0;
    case LZ_INC:
    case LZ_DEC:
      return s.lzC;
    case LZ_IMUL64:
      return imulOverflow(s.aLo, s.aHi, s.bLo, s.bHi) ? 1 : 0;
    default:
      return 0;
  }
}

export function getZF(s: FlagState): boolean {
  return s.lzOp === LZ_NONE ? (s.flags & ZF) !== 0 : (s.rLo | s.rHi) === 0;
}

export function getSF(s: FlagState): boolean {
  return s.lzOp === LZ_NONE ? (s.flags & SF) !== 0 : signBit(s.rLo, s.rHi, s.lzSize) !== 0;
}

export function getOF(s: FlagState): boolean {
  const z = s.lzSize;
  switch (s.lzOp) {
    case LZ_NONE:
      return (s.flags & OF) !== 0;
    case LZ_ADD:
    case LZ_ADC:
    case LZ_INC:
      return signBit((s.aLo ^ s.rLo) & (s.bLo ^ s.rLo), (s.aHi ^ s.rHi) & (s.bHi ^ s.rHi), z) !== 0;
    case LZ_SUB:
    case LZ_SBB:
    case LZ_DEC:
      return signBit((s.aLo ^ s.bLo) & (s.aLo ^ s.rLo), (s.aHi ^ s.bHi) & (s.aHi ^ s.rHi), z) !== 0;
    case LZ_IMUL64:
      return imulOverflow(s.aLo, s.aHi, s.bLo, s.bHi);
    default:
      return false;
  }
}

export function getPF(s: FlagState): boolean {
  return s.lzOp === LZ_NONE ? (s.flags & PF) !== 0 : PARITY[s.rLo & 0xff] !== 0;
}

export function getAF(s: FlagState): boolean {
  if (s.lzOp === LZ_NONE) return (s.flags & AF) !== 0;
  if (s.lzOp === LZ_LOGIC || s.lzOp === LZ_IMUL64) return false;
  return ((s.aLo ^ s.bLo ^ s.rLo) & 0x10) !== 0;
}

/** The architectural RFLAGS value. */
export function readFlags(s: FlagState): number {
  if (s.lzOp === LZ_NONE) return s.flags | FIXED1;
  let f = s.flags & ~ARITH;
  if (getCF(s)) f |= CF;
  if (getPF(s)) f |= PF;
  if (getAF(s)) f |= AF;
  if (getZF(s)) f |= ZF;
  if (getSF(s)) f |= SF;
  if (getOF(s)) f |= OF;
  return f | FIXED1;
}

/** Folds the lazy state into `flags`; afterwards flags can be edited bit by bit. */
export function materialize(s: FlagState): void {
  if (s.lzOp === LZ_NONE) return;
  s.flags = readFlags(s);
  s.lzOp = LZ_NONE;
}

/**
 * Folds the lazy state into `flags` except CF and OF, for an instruction that writes
 * those two and keeps the other four (rotates): the costly part of most lazy
 * operations, the carry and overflow, is never computed.
 */
export function materializeKeepingSzap(s: FlagState): void {
  if (s.lzOp === LZ_NONE) return;
  let f = s.flags & ~ARITH;
  f |= PARITY[s.rLo & 0xff];
  if (getAF(s)) f |= AF;
  if ((s.rLo | s.rHi) === 0) f |= ZF;
  if (signBit(s.rLo, s.rHi, s.lzSize) !== 0) f |= SF;
  s.flags = f;
  s.lzOp = LZ_NONE;
}

export function writeFlags(s: FlagState, v: number): void {
  s.flags = (v & ~0x28) | FIXED1; // bits 3 and 5 are reserved zero
  s.lzOp = LZ_NONE;
}

/** Condition codes in iced-x86's ConditionCode numbering (o=1 … g=16; 0 = none). */
export function testCondition(s: FlagState, cc: number): boolean {
  switch (cc) {
    case 1:
      return getOF(s);
    case 2:
      return !getOF(s);
    case 3:
      return getCF(s) !== 0;
    case 4:
      return getCF(s) === 0;
    case 5:
      return getZF(s);
    case 6:
      return !getZF(s);
    case 7:
      return getCF(s) !== 0 || getZF(s);
    case 8:
      return getCF(s) === 0 && !getZF(s);
    case 9:
      return getSF(s);
    case 10:
      return !getSF(s);
    case 11:
      return getPF(s);
    case 12:
      return !getPF(s);
    case 13:
      return getSF(s) !== getOF(s);
    case 14:
      return getSF(s) === getOF(s);
    case 15:
      return getZF(s) || getSF(s) !== getOF(s);
    case 16:
      return !getZF(s) && getSF(s) === getOF(s);
    default:
      return true;
  }
}
