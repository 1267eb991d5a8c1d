// iced-x86 decodes; this file turns its WebAssembly-backed Instruction into a plain
// `Decoded` record once, so instruction semantics never cross into WebAssembly and
// every iced object is freed right after use.

import {
  Decoder,
  DecoderOptions,
  DecoderError,
  Instruction,
  Mnemonic,
  MemorySizeExt,
  OpKind,
  Register,
  RflagsBits,
  Code,
  Formatter,
  FormatterSyntax,
} from 'iced-x86';
import { CF, PF, AF, ZF, SF, OF, DF, IF, AC } from './flags';

export type Operand =
  | { k: 'reg'; reg: number; size: number; high8: boolean }
  | { k: 'mem'; size: number; base: number; index: number; scale: number; dispLo: number; dispHi: number; seg: 'fs' | 'gs' | null; addr32: boolean; ripRel: boolean }
  | { k: 'imm'; lo: number; hi: number; size: number }
  | { k: 'branch'; lo: number; hi: number }
  | { k: 'sreg'; seg: number }
  | { k: 'cr'; n: number }
  | { k: 'dr'; n: number }
  | { k: 'other'; reg: number };

export interface Decoded {
  code: number;
  mnemonic: number;
  /** Lower-case mnemonic, for diagnostics and tables. */
  name: string;
  len: number;
  lo: number;
  hi: number;
  nlo: number;
  nhi: number;
  ops: Operand[];
  lock: boolean;
  rep: boolean;
  repe: boolean;
  repne: boolean;
  /** iced-x86 ConditionCode (0 none, 1 o … 16 g). */
  cc: number;
  /** Architectural RFLAGS bits the instruction leaves undefined. */
  flagsUndefined: number;
  flagsWritten: number;
  flagsRead: number;
  /** Address size of string and memory operands, in bits. */
  addrSize: number;
  /** Segment override prefix, if FS or GS (the only ones with a base in 64-bit mode). */
  seg: 'fs' | 'gs' | null;
}

/** The result of decoding bytes that do not form a valid instruction. */
export interface DecodeFailure {
  error: 'invalid' | 'truncated';
  len: number;
}

export const MNEMONIC_NAMES: string[] = [];
for (const [k, v] of Object.entries(Mnemonic)) {
  if (typeof v === 'number') MNEMONIC_NAMES[v] = k.toLowerCase();
}
export const CODE_NAMES: string[] = [];
for (const [k, v] of Object.entries(Code)) {
  if (typeof v === 'number') CODE_NAMES[v] = k;
}

/** iced-x86's RflagsBits to architectural RFLAGS bits. */
export function icedFlagsToArch(f: number): number {
  let a = 0;
  if (f & RflagsBits.OF) a |= OF;
  if (f & RflagsBits.SF) a |= SF;
  if (f & RflagsBits.ZF) a |= ZF;
  if (f & RflagsBits.AF) a |= AF;
  if (f & RflagsBits.CF) a |= CF;
  if (f & RflagsBits.PF) a |= PF;
  if (f & RflagsBits.DF) a |= DF;
  if (f & RflagsBits.IF) a |= IF;
  if (f & RflagsBits.AC) a |= AC;
  return a;
}

/** GPR number and width for an iced register, or null if it is not a GPR. */
export function gprOf(r: Register): { reg: number; size: number; high8: boolean } | null {
  if (r >= Register.AL && r <= Register.R15L) {
    if (r >= Register.AH && r <= Register.BH) return { reg: r - Register.AH, size: 8, high8: true };
    const n = r <= Register.BL ? r - Register.AL : r - Register.SPL + 4;
    return { reg: n, size: 8, high8: false };
  }
  if (r >= Register.AX && r <= Register.R15W) return { reg: r - Register.AX, size: 16, high8: false };
  if (r >= Register.EAX && r <= Register.R15D) return { reg: r - Register.EAX, size: 32, high8: false };
  if (r >= Register.RAX && r <= Register.R15) return { reg: r - Register.RAX, size: 64, high8: false };
  return null;
}

function splitBig(v: bigint): [number, number] {
  const a = BigInt.asUintN(64, v);
  return [Number(a & 0xffffffffn) | 0, Number(a >> 32n) | 0];
}

function segOf(r: Register): 'fs' | 'gs' | null {
  return r === Register.FS ? 'fs' : r === Register.GS ? 'gs' : null;
}

function operand(ins: Instruction, i: number): Operand {
  const kind = ins.opKind(i);
  switch (kind) {
    case OpKind.Register: {
      const r = ins.opRegister(i);
      const g = gprOf(r);
      if (g) return { k: 'reg', ...g };
      if (r >= Register.ES && r <= Register.GS) return { k: 'sreg', seg: r - Register.ES };
      if (r >= Register.CR0 && r < Register.CR0 + 16) return { k: 'cr', n: r - Register.CR0 };
      if (r >= Register.DR0 && r < Register.DR0 + 16) return { k: 'dr', n: r - Register.DR0 };
      return { k: 'other', reg: r };
    }
    case OpKind.NearBranch16:
    case OpKind.NearBranch32:
    case OpKind.NearBranch64: {
      const [lo, hi] = splitBig(ins.nearBranchTarget);
      return { k: 'branch', lo, hi };
    }
    case OpKind.Immediate8:
    case OpKind.Immediate8_2nd:
    case OpKind.Immediate16:
    case OpKind.Immediate32:
    case OpKind.Immediate64:
    case OpKind.Immediate8to16:
    case OpKind.Immediate8to32:
    case OpKind.Immediate8to64:
    case OpKind.Immediate32to64: {
      const [lo, hi] = splitBig(ins.immediate(i));
      const size =
        kind === OpKind.Immediate8 || kind === OpKind.Immediate8_2nd ? 8 : kind === OpKind.Immediate16 ? 16 : 64;
      return { k: 'imm', lo, hi, size };
    }
    case OpKind.Memory: {
      const size = MemorySizeExt.size(ins.memorySize);
      const base = ins.memoryBase;
      const index = ins.memoryIndex;
      const ripRel = base === Register.RIP || base === Register.EIP;
      const addr32 = base === Register.EIP || (base >= Register.EAX && base <= Register.R15D) ||
        (index >= Register.EAX && index <= Register.R15D);
      const [dLo, dHi] = splitBig(ripRel ? ins.ipRelMemoryAddress : ins.memoryDisplacementU64);
      const b = ripRel ? -1 : base === Register.None ? -1 : gprOf(base)!.reg;
      const x = index === Register.None ? -1 : gprOf(index)!.reg;
      return {
        k: 'mem', size, base: b, index: x, scale: ins.memoryIndexScale, dispLo: dLo, dispHi: dHi,
        seg: segOf(ins.memorySegment), addr32, ripRel,
      };
    }
    case OpKind.MemorySegSI:
    case OpKind.MemorySegESI:
    case OpKind.MemorySegRSI:
    case OpKind.MemorySegDI:
    case OpKind.MemorySegEDI:
    case OpKind.MemorySegRDI:
    case OpKind.MemoryESDI:
    case OpKind.MemoryESEDI:
    case OpKind.MemoryESRDI: {
      // String operands are implied by the instruction; semantics use rsi/rdi directly.
      const size = MemorySizeExt.size(ins.memorySize);
      const isSi = kind <= OpKind.MemorySegRSI;
      return {
        k: 'mem', size, base: isSi ? 6 : 7, index: -1, scale: 1, dispLo: 0, dispHi: 0,
        seg: isSi ? segOf(ins.memorySegment) : null, addr32: false, ripRel: false,
      };
    }
    default:
      return { k: 'other', reg: 0 };
  }
}

function addrSizeOf(ins: Instruction, ops: Operand[], bytes: Uint8Array): number {
  // A 0x67 prefix before the opcode selects 32-bit addressing.
  for (let k = 0; k < ins.length; k++) {
    const b = bytes[k];
    if (b === 0x67) return 32;
    if (!(b === 0x66 || b === 0xf2 || b === 0xf3 || b === 0xf0 || b === 0x2e || b === 0x36 ||
      b === 0x3e || b === 0x26 || b === 0x64 || b === 0x65)) break;
  }
  return ops.some((o) => o.k === 'mem' && o.addr32) ? 32 : 64;
}

/** Decodes one instruction at address (lo, hi) from `bytes`. */
export function decodeOne(bytes: Uint8Array, lo: number, hi: number): Decoded | DecodeFailure {
  const dec = new Decoder(64, bytes, DecoderOptions.None);
  try {
    dec.ip = (BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0);
    const ins = dec.decode();
    try {
      if (ins.isInvalid) {
        const truncated = dec.lastError === DecoderError.NoMoreBytes;
        return { error: truncated ? 'truncated' : 'invalid', len: ins.length };
      }
      const ops: Operand[] = [];
      for (let i = 0; i < ins.opCount; i++) ops.push(operand(ins, i));
      const [nlo, nhi] = splitBig(ins.nextIP);
      const mnemonic = ins.mnemonic;
      return {
        code: ins.code,
        mnemonic,
        name: MNEMONIC_NAMES[mnemonic] ?? `mnemonic${mnemonic}`,
        len: ins.length,
        lo,
        hi,
        nlo,
        nhi,
        ops,
        lock: ins.hasLockPrefix,
        rep: ins.hasRepPrefix,
        repe: ins.hasRepePrefix,
        repne: ins.hasRepnePrefix,
        cc: ins.conditionCode,
        flagsUndefined: icedFlagsToArch(ins.rflagsUndefined),
        flagsWritten: icedFlagsToArch(ins.rflagsModified),
        flagsRead: icedFlagsToArch(ins.rflagsRead),
        addrSize: addrSizeOf(ins, ops, bytes),
        seg: segOf(ins.segmentPrefix),
      };
    } finally {
      ins.free();
    }
  } finally {
    dec.free();
  }
}

export function isDecodeFailure(d: Decoded | DecodeFailure): d is DecodeFailure {
  return (d as DecodeFailure).error !== undefined;
}

/** objdump-like output: lower-case hex, branch targets without leading zeros. */
function lowerHex(f: Formatter): Formatter {
  f.uppercaseHex = false;
  f.branchLeadingZeros = false;
  return f;
}

let gasFormatter: Formatter | null = null;
let intelFormatter: Formatter | null = null;

/** Disassembles one instruction (for traces and listings). */
export function disassemble(bytes: Uint8Array, address: bigint, syntax: 'gas' | 'intel' = 'gas'): { text: string; len: number } {
  const dec = new Decoder(64, bytes, DecoderOptions.None);
  try {
    dec.ip = BigInt.asUintN(64, address);
    const ins = dec.decode();
    try {
      if (ins.isInvalid) return { text: '(bad)', len: Math.max(1, ins.length) };
      let f: Formatter;
      if (syntax === 'gas') {
        gasFormatter ??= lowerHex(new Formatter(FormatterSyntax.Gas));
        f = gasFormatter;
      } else {
        intelFormatter ??= lowerHex(new Formatter(FormatterSyntax.Intel));
        f = intelFormatter;
      }
      return { text: f.format(ins), len: ins.length };
    } finally {
      ins.free();
    }
  } finally {
    dec.free();
  }
}
