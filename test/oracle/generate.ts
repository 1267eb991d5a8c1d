// Random instances of the opcode table's 'oracle' rows, for running on the host CPU
// and in the emulator. For each row we enumerate the iced-x86 `Code`s of its mnemonic
// that exist in 64-bit mode with legacy (or VEX, for BMI) encoding and whose operands
// we can generate, then build instances with iced's Encoder: random registers (high-byte
// ones included), memory operands whose registers (and, for %gs: operands, GS base) are
// solved so the linear address lands in the data (or stack) window, immediates and
// register values biased toward edge values, random arithmetic flags and DF.
//
// Beyond one plain instruction per case:
//  - 1 case in 25 aims its memory operand at a guard page: the fault must leave all
//    state as it was;
//  - 1 rep string case in 10 runs off its region: the fault must show exactly the
//    iterations done;
//  - flag readers (jcc, setcc, cmovcc, adc, pushf, ...) also get cases with a flag
//    producer in front, which exercises the emulator's lazy flags across instructions.
//
// Everything comes from a seeded PRNG per mnemonic, so a failure replays from (seed,
// mnemonic, case count) alone.

import { readFileSync } from 'fs';
import {
  Code,
  CpuidFeature,
  Encoder,
  Instruction,
  MemoryOperand,
  Mnemonic,
  OpCodeOperandKind as K,
  Register,
  RepPrefixKind,
} from 'iced-x86';
import { Prng } from '../../emu/scheduler';
import { decodeOne, isDecodeFailure, CODE_NAMES, MNEMONIC_NAMES, type Decoded } from '../../emu/decode';
import { OPTABLE } from '../../emu/optable';
import { rowForms } from '../../emu/forms';
import { ARITH, CF, OF } from '../../emu/flags';
import {
  INSN_ADDR,
  TARGET_BACK,
  TARGET_FWD,
  DATA_BASE,
  STACK_BASE,
  REGION_SIZE,
  DATA_WIN,
  DATA_WIN_SIZE,
  DATA_WIN_OFF,
  STACK_WIN,
  STACK_WIN_SIZE,
  STACK_WIN_OFF,
  INPUT_FLAGS_MASK,
  INPUT_FLAGS_FIXED,
} from './layout';

export interface OracleCase {
  mnemonic: number;
  /** Lower-case mnemonic name (the jest test name). */
  name: string;
  code: number;
  /** iced Code name of the form. */
  form: string;
  /** Case number within its mnemonic (replay: same seed, same mnemonic, same case count). */
  index: number;
  /** The instruction, or a flag producer followed by the instruction (see `form`). */
  bytes: Uint8Array;
  /** All 16 GPRs in ModRM order. */
  regs: bigint[];
  /** Input RFLAGS (CF PF AF ZF SF OF DF chosen; bit 1 and IF set). */
  rflags: number;
  /** GS segment base. */
  gsBase: bigint;
  /** Architectural flags not compared: undefined after the instruction (or the pair). */
  flagsUndefined: number;
  /**
   * Results the SDM leaves undefined for these operand values (not compared): BSF/BSR's
   * destination for a zero source, SHLD/SHRD's 16-bit destination for a count above 16.
   */
  undefinedRegs: number[];
  undefinedMem: { addr: bigint; size: number } | null;
  /**
   * Results where one vendor's CPUs depart from what textpoke models (the SDM's
   * documented behaviour; docs/notes/vendor-differences.md): on a host of that vendor
   * they are not compared. Generation never depends on the host's vendor, so both
   * vendors run the same cases.
   */
  vendorDiffers: VendorDifference | null;
  /** Contents of the data and stack windows. */
  data: Uint8Array;
  stack: Uint8Array;
  /** The explicit memory operand, if any, for reports. */
  mem: { addr: bigint; size: number } | null;
}

/** What a host of the other vendor does differently, and which results to leave out there. */
export interface VendorDifference {
  /** true: Intel hosts differ (AMD and others match the model); false: non-Intel hosts differ. */
  intel: boolean;
  /** Registers whose upper 32 bits are not compared on such a host. */
  upperHalves: number[];
  /** Flags not compared on such a host when the case ends in an exception there. */
  flagsIfFault: number;
}

const M64 = (1n << 64n) - 1n;
const M32 = 0xffffffffn;
const RAX = 0, RCX = 1, RDX = 2, RBX = 3, RSP = 4, RBP = 5, RSI = 6, RDI = 7;

// ---------------------------------------------------------------------------------
// Forms: which Codes of a mnemonic we generate

type Slot =
  | { t: 'reg'; size: number }
  | { t: 'fixreg'; reg: Register }
  | { t: 'rm'; size: number }
  | { t: 'mem'; size: number }
  | { t: 'moffs'; size: number }
  | { t: 'imm'; kind: K }
  | { t: 'branch' };

export interface Form {
  code: number;
  name: string;
  mnemonic: number;
  /** Explicit operands, or null for string instructions and xlat (built by their own creators). */
  slots: Slot[] | null;
  lock: boolean;
  /** Reads arithmetic flags or DF: gets pair cases with a flag producer in front. */
  readsFlags: boolean;
}

export interface FormList {
  forms: Form[];
  /** Codes of the mnemonic left out, and why (for the summary). */
  skipped: { name: string; why: string }[];
}

const REG_KINDS = new Map<K, number>([
  [K.r8_reg, 8], [K.r8_opcode, 8],
  [K.r16_reg, 16], [K.r16_opcode, 16], [K.r16_rm, 16],
  [K.r32_reg, 32], [K.r32_opcode, 32], [K.r32_rm, 32], [K.r32_vvvv, 32],
  [K.r64_reg, 64], [K.r64_opcode, 64], [K.r64_rm, 64], [K.r64_vvvv, 64],
]);
const RM_KINDS = new Map<K, number>([[K.r8_or_mem, 8], [K.r16_or_mem, 16], [K.r32_or_mem, 32], [K.r64_or_mem, 64]]);
const FIXED_KINDS = new Map<K, Register>([
  [K.al, Register.AL], [K.cl, Register.CL], [K.ax, Register.AX], [K.eax, Register.EAX], [K.rax, Register.RAX],
]);
const IMM_KINDS = new Set<K>([
  K.imm8, K.imm8_const_1, K.imm8sex16, K.imm8sex32, K.imm8sex64, K.imm16, K.imm32, K.imm32sex64, K.imm64,
]);
/** Near branches (the 16-bit forms are not forms on the modelled CPU: emu/forms.ts). */
const BRANCH_KINDS = new Set<K>([K.br64_1, K.br64_4, K.br32_1, K.br32_4]);

const STRING_MNEMONICS = new Map<number, number>([
  [Mnemonic.Movsb, 1], [Mnemonic.Movsw, 2], [Mnemonic.Movsd, 4], [Mnemonic.Movsq, 8],
  [Mnemonic.Cmpsb, 1], [Mnemonic.Cmpsw, 2], [Mnemonic.Cmpsd, 4], [Mnemonic.Cmpsq, 8],
  [Mnemonic.Stosb, 1], [Mnemonic.Stosw, 2], [Mnemonic.Stosd, 4], [Mnemonic.Stosq, 8],
  [Mnemonic.Lodsb, 1], [Mnemonic.Lodsw, 2], [Mnemonic.Lodsd, 4], [Mnemonic.Lodsq, 8],
  [Mnemonic.Scasb, 1], [Mnemonic.Scasw, 2], [Mnemonic.Scasd, 4], [Mnemonic.Scasq, 8],
]);
const STRING_KINDS = new Set<K>([K.seg_rSI, K.es_rDI, K.seg_rDI, K.seg_rBX_al]);

// CPUID features: the host must have them, or the host raises #UD where the emulator
// (rightly) does not. Anything not listed here is treated as absent.
const BASE_FEATURES = new Set<number>([
  CpuidFeature.INTEL8086, CpuidFeature.INTEL186, CpuidFeature.INTEL286, CpuidFeature.INTEL386,
  CpuidFeature.INTEL486, CpuidFeature.X64,
]);
const FEATURE_FLAG = new Map<number, string>([
  [CpuidFeature.CMOV, 'cmov'], [CpuidFeature.CX8, 'cx8'], [CpuidFeature.CMPXCHG16B, 'cx16'],
  [CpuidFeature.BMI1, 'bmi1'], [CpuidFeature.BMI2, 'bmi2'], [CpuidFeature.ADX, 'adx'],
  [CpuidFeature.MOVBE, 'movbe'], [CpuidFeature.POPCNT, 'popcnt'], [CpuidFeature.LZCNT, 'abm'],
  [CpuidFeature.SSE4_2, 'sse4_2'], [CpuidFeature.TSC, 'tsc'], [CpuidFeature.RDPID, 'rdpid'],
]);
const FEATURE_NAMES: string[] = [];
for (const [k, v] of Object.entries(CpuidFeature)) if (typeof v === 'number') FEATURE_NAMES[v] = k;

let hostFlagsCache: Set<string> | null = null;
/** The host CPU's feature flags from /proc/cpuinfo. */
export function hostCpuFlags(): Set<string> {
  if (hostFlagsCache) return hostFlagsCache;
  const text = readFileSync('/proc/cpuinfo', 'utf8');
  const line = text.split('\n').find((l) => l.startsWith('flags')) ?? '';
  hostFlagsCache = new Set(line.replace(/^flags\s*:\s*/, '').split(/\s+/));
  return hostFlagsCache;
}

/** The host CPU's vendor string (GenuineIntel, AuthenticAMD, ...) and model name. */
export function hostCpuIdentity(): { vendor: string; model: string } {
  const text = readFileSync('/proc/cpuinfo', 'utf8');
  const field = (k: string): string => (text.split('\n').find((l) => l.startsWith(k)) ?? '').replace(/^[^:]*:\s*/, '').trim();
  return { vendor: field('vendor_id') || 'unknown vendor', model: field('model name') || 'unknown model' };
}

/**
 * The forms of a row the oracle runs on this host: the opcode table's forms of the
 * mnemonic (emu/forms.ts) less the row's declared `oracleSkip`, and less forms needing
 * a CPUID feature the host lacks. A form whose operands the generator cannot build is
 * an error: the row must declare it in `oracleSkip` (with why and where it is tested).
 */
export function formsFor(mnemonic: number, hostFlags: Set<string> = hostCpuFlags()): FormList {
  const row = OPTABLE.get(mnemonic);
  if (!row) throw new Error(`oracle generator: no opcode-table row for ${MNEMONIC_NAMES[mnemonic]}`);
  const forms: Form[] = [];
  const skipped: { name: string; why: string }[] = [];
  for (const f of rowForms(row)) {
    const declared = row.oracleSkip?.[f.name];
    if (declared) {
      skipped.push({ name: f.name, why: declared });
      continue;
    }
    const missing = f.features.filter((x) => !BASE_FEATURES.has(x) && !hostFlags.has(FEATURE_FLAG.get(x) ?? '?'));
    if (missing.length) {
      skipped.push({ name: f.name, why: `host lacks ${missing.map((x) => FEATURE_NAMES[x]).join(', ')}` });
      continue;
    }
    const base = { code: f.code, name: f.name, mnemonic, lock: false, readsFlags: f.readsFlags };
    const kinds = f.operands;
    if (STRING_MNEMONICS.has(mnemonic) || mnemonic === Mnemonic.Xlatb) {
      // Implicit operands ([rSI], [rDI], [rBX+AL]): built by their own creators.
      if (kinds.every((k) => STRING_KINDS.has(k) || FIXED_KINDS.has(k))) {
        forms.push({ ...base, slots: null });
        continue;
      }
    }
    const slots: Slot[] = kinds.map((k) => {
      const rs = REG_KINDS.get(k);
      const rm = RM_KINDS.get(k);
      const fx = FIXED_KINDS.get(k);
      if (rs !== undefined) return { t: 'reg', size: rs };
      if (rm !== undefined) return { t: 'rm', size: rm };
      if (fx !== undefined) return { t: 'fixreg', reg: fx };
      if (k === K.mem) return { t: 'mem', size: f.memorySize };
      if (k === K.mem_offs) return { t: 'moffs', size: f.memorySize };
      if (IMM_KINDS.has(k)) return { t: 'imm', kind: k };
      if (BRANCH_KINDS.has(k)) return { t: 'branch' };
      throw new Error(
        `oracle generator: ${f.name} has an operand of kind ${K[k]} it cannot build; ` +
          `declare it in the row's oracleSkip (emu/ops/*.ts) with why and where it is tested`,
      );
    });
    forms.push({ ...base, slots, lock: f.canLock });
  }
  return { forms, skipped };
}

// ---------------------------------------------------------------------------------
// Random values

function u64(p: Prng): bigint {
  return (BigInt(p.next()) << 32n) | BigInt(p.next());
}
function pick<T>(p: Prng, a: readonly T[]): T {
  return a[p.below(a.length)];
}
function maskOf(bits: number): bigint {
  return (1n << BigInt(bits)) - 1n;
}

/** Edge values of a `bits`-wide quantity (unsigned encoding). */
function edgeOf(p: Prng, bits: number): bigint {
  const m = maskOf(bits);
  const sign = 1n << BigInt(bits - 1);
  switch (p.below(10)) {
    case 0: return 0n;
    case 1: return 1n;
    case 2: return m; // -1
    case 3: return sign - 1n; // max signed
    case 4: return sign; // min signed
    case 5: return sign + 1n;
    case 6: return m - 1n;
    case 7: return BigInt(p.below(70)); // small, and every shift count
    case 8: return (m - BigInt(p.below(70))) & m; // small negative
    default: return 2n;
  }
}

/** A 64-bit register value: uniformly random, or edge values in some width. */
export function value64(p: Prng): bigint {
  switch (p.below(10)) {
    case 8:
      // A zero low half under a nonzero high half (and vice versa): 64-bit results that
      // only one half of an (lo, hi) pair decides.
      return p.below(2) ? u64(p) & ~M32 & M64 : BigInt(p.below(4) + 1) << 32n;
    case 9:
      return p.below(2) ? BigInt(p.next()) : BigInt(pick(p, [1, 2, 0x8000, 0x80000000])) << 32n;
    case 0:
    case 1:
      return u64(p);
    case 2:
      return edgeOf(p, 64);
    case 3:
    case 4: {
      // Edge value in the low 8/16/32 bits, garbage above: narrow operations must ignore it.
      const bits = pick(p, [8, 16, 32]);
      return (u64(p) & ~maskOf(bits)) | edgeOf(p, bits);
    }
    case 5: {
      // A narrow random value, sign- or zero-extended.
      const bits = pick(p, [8, 16, 32]);
      const v = u64(p) & maskOf(bits);
      return p.below(2) && v >> BigInt(bits - 1) ? (v | ~maskOf(bits)) & M64 : v;
    }
    case 6:
      return u64(p) & u64(p) & u64(p); // sparse bits
    default:
      return (u64(p) | u64(p) | u64(p)) & M64; // dense bits
  }
}

/** Shift and rotate counts: the boundaries of every operand size and of the count masks. */
const COUNTS = [0, 1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 128, 129, 255];
function count8(p: Prng): number {
  return p.below(4) === 0 ? p.below(256) : pick(p, COUNTS);
}

function randomBytes(p: Prng, n: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i += 4) {
    const v = p.next();
    b[i] = v & 0xff;
    b[i + 1] = (v >>> 8) & 0xff;
    b[i + 2] = (v >>> 16) & 0xff;
    b[i + 3] = v >>> 24;
  }
  return b;
}

/** Modular inverse of an odd number modulo 2^bits. */
function inverseOdd(k: bigint, bits: number): bigint {
  const m = maskOf(bits);
  let x = k;
  for (let i = 0; i < 7; i++) x = (x * (2n - k * x)) & m;
  return x;
}

// ---------------------------------------------------------------------------------
// A case under construction

type Region = 'data' | 'stack';

interface RegChoice {
  t: 'reg';
  reg: number;
  size: number;
  high8: boolean;
  iced: Register;
}
interface MemChoice {
  t: 'mem';
  addr: bigint | null;
  size: number;
}
interface ImmChoice {
  t: 'imm';
  v: bigint;
}
type Choice = RegChoice | MemChoice | ImmChoice | { t: 'branch'; target: bigint };

function icedGpr(reg: number, size: number, high8: boolean): Register {
  switch (size) {
    case 64: return Register.RAX + reg;
    case 32: return Register.EAX + reg;
    case 16: return Register.AX + reg;
    default:
      if (high8) return Register.AH + reg;
      return reg < 4 ? Register.AL + reg : Register.SPL + (reg - 4);
  }
}

class Builder {
  readonly regs: bigint[] = [];
  /** Registers a memory operand may not use as base/index (their values are set elsewhere). */
  readonly reserved = new Set<number>([RSP]);
  /** Registers a fixup sets: RSP-relative addressing is out if RSP is one. */
  readonly pinned = new Set<number>();
  readonly data: Uint8Array;
  readonly stack: Uint8Array;
  flags: number;
  mem: { addr: bigint; size: number } | null = null;
  /** GS segment base (harness.c sets it with arch_prctl). */
  gsBase = 0n;
  /** Value-dependent undefined flags and results (Profile.undef). */
  undefFlags = 0;
  readonly undefRegs: number[] = [];
  undefMem: { addr: bigint; size: number } | null = null;
  vendor: VendorDifference | null = null;

  constructor(readonly p: Prng) {
    for (let i = 0; i < 16; i++) this.regs.push(value64(p));
    // RSP around the stack window's page boundary: push/pop/enter/leave stay inside.
    const off = 0x180 + p.below(0x100);
    this.regs[RSP] = STACK_WIN + BigInt(p.below(10) === 0 ? off : off & ~7);
    this.data = randomBytes(p, DATA_WIN_SIZE);
    this.stack = randomBytes(p, STACK_WIN_SIZE);
    this.flags = (p.next() & INPUT_FLAGS_MASK) | INPUT_FLAGS_FIXED;
    this.initial = this.regs.slice();
    this.guard = p.below(25) === 0;
  }

  /** Explicit memory operands of this case point into a guard page. */
  readonly guard: boolean;

  /** Register values before setup, operand solving and fixups. */
  readonly initial: bigint[];

  get df(): boolean {
    return (this.flags & 0x400) !== 0;
  }

  readReg(c: RegChoice): bigint {
    const v = this.regs[c.reg];
    return c.high8 ? (v >> 8n) & 0xffn : v & maskOf(c.size);
  }

  writeReg(c: { reg: number; size: number; high8: boolean }, v: bigint): void {
    const old = this.regs[c.reg];
    const m = maskOf(c.size);
    if (c.high8) this.regs[c.reg] = (old & ~0xff00n) | ((v & 0xffn) << 8n);
    else this.regs[c.reg] = (old & ~m & M64) | (v & m);
  }

  private window(addr: bigint, size: number): { buf: Uint8Array; off: number } | null {
    for (const [buf, base] of [[this.data, DATA_WIN], [this.stack, STACK_WIN]] as const) {
      const off = Number(addr - base);
      if (addr >= base && off + size <= buf.length) return { buf, off };
    }
    return null;
  }

  inWindow(addr: bigint, size: number): boolean {
    return this.window(addr, size) !== null;
  }

  /** Memory contents; 0 outside the windows (a guard-page target). */
  readMem(addr: bigint, size: number): bigint {
    const w = this.window(addr, size);
    if (!w) return 0n;
    let v = 0n;
    for (let k = size - 1; k >= 0; k--) v = (v << 8n) | BigInt(w.buf[w.off + k]);
    return v;
  }

  /** Sets memory contents; ignored outside the windows. */
  writeMem(addr: bigint, size: number, v: bigint): void {
    const w = this.window(addr, size);
    if (!w) return;
    for (let k = 0; k < size; k++) w.buf[w.off + k] = Number((v >> BigInt(8 * k)) & 0xffn);
  }

  /** A random address for `size` bytes in a window, sometimes straddling its page boundary. */
  target(region: Region, size: number, align = 0, margin = 0): bigint {
    const p = this.p;
    if (this.guard) {
      // Into the inaccessible page after the region: the access faults, and the
      // instruction must leave everything as it was.
      return (region === 'data' ? DATA_BASE : STACK_BASE) + BigInt(REGION_SIZE + p.below(0xf00));
    }
    const [base, winSize, boundary] =
      region === 'data'
        ? [DATA_WIN, DATA_WIN_SIZE, 0x1000 - DATA_WIN_OFF]
        : [STACK_WIN, STACK_WIN_SIZE, 0x1000 - STACK_WIN_OFF];
    const n = Math.max(size, 1);
    const a = align || (p.below(2) ? n : 1);
    let off: number;
    if (a === 1 && n > 1 && p.below(4) === 0) {
      off = boundary - 1 - p.below(n - 1); // crosses the page boundary
    } else {
      const lo = margin;
      const hi = winSize - n - margin;
      off = lo + p.below(hi - lo + 1);
      off -= off % a;
      if (off < lo) off += a;
    }
    return base + BigInt(off);
  }

  /** Registers usable as base/index. */
  addressRegs(): number[] {
    const out: number[] = [];
    for (let i = 0; i < 16; i++) if (!this.reserved.has(i)) out.push(i);
    return out;
  }
}

function randomDisp(p: Prng): bigint {
  switch (p.below(3)) {
    case 0: return 0n;
    case 1: return BigInt(p.below(256) - 128);
    default: {
      const v = p.below(4) === 0 ? pick(p, [0x7fffffff, -0x80000000, 0x12345678, -0x100]) : p.next() | 0;
      return BigInt(v);
    }
  }
}
/** iced's displacement size hint: 1 when it fits in 8 bits, else 8 (64-bit) or 4 (32-bit addressing). */
function displSize(d: bigint, a32 = false): number {
  if (d === 0n) return 0;
  return d >= -128n && d <= 127n ? 1 : a32 ? 4 : 8;
}
function fitsI32(d: bigint): boolean {
  return d >= -0x80000000n && d <= 0x7fffffffn;
}
const SEG_NOISE = [Register.ES, Register.CS, Register.SS, Register.DS];

/** A GS base Linux lets a process set (ARCH_SET_GS takes user addresses only). */
function randomGsBase(p: Prng): bigint {
  switch (p.below(4)) {
    case 0: return BigInt(p.next()) << 12n; // page-aligned, up to 2^44
    case 1: return BigInt(p.next());
    case 2: return 0x7ff000000000n + (BigInt(p.next()) << 4n);
    default: return u64(p) & 0x7fffffffffffn & ~0xfffn;
  }
}

/**
 * A memory operand whose linear address is `addr` (solved into the base/index registers
 * and, for %gs: operands, the GS base), or, for LEA, arbitrary registers and displacement.
 */
function buildMem(b: Builder, size: number, opts: { lea?: boolean; moffs?: boolean; align?: number }): {
  mo: MemoryOperand;
  addr: bigint | null;
} {
  const p = b.p;
  const scale = pick(p, [1, 2, 4, 8]);
  const sc = BigInt(scale);
  // %gs: as in per-CPU kernel code, 1 time in 6; otherwise now and then an ignored
  // segment override.
  const gs = p.below(6) === 0;
  const seg = gs ? Register.GS : p.below(20) === 0 ? pick(p, SEG_NOISE) : Register.None;
  if (gs) b.gsBase = randomGsBase(p);
  const regs = b.addressRegs();
  if (opts.lea) {
    // No access: any registers (RSP as base included), any displacement, both address
    // sizes; a segment (GS with a nonzero base included) must not change the result.
    const a32 = p.below(5) === 0;
    const g = (r: number): Register => (a32 ? Register.EAX : Register.RAX) + r;
    const base = p.below(8) === 0 ? Register.None : g(p.below(16));
    const idxReg = p.below(16);
    const index = p.below(3) === 0 || idxReg === RSP ? Register.None : g(idxReg);
    let d = randomDisp(p);
    if (base === Register.None && index === Register.None && d === 0n) d = 0x40n;
    const ds = base === Register.None && index === Register.None && !a32 ? 8 : displSize(d, a32);
    return { mo: new MemoryOperand(base, index, index === Register.None ? 1 : scale, d, ds, false, seg), addr: null };
  }
  if (opts.moffs) {
    const addr = b.target('data', size, opts.align);
    return { mo: new MemoryOperand(Register.None, Register.None, 1, BigInt.asIntN(64, addr - b.gsBase), 8, false, seg), addr };
  }
  const mode = p.below(100);
  if (mode < 10 || regs.length === 0) {
    // [disp32]: absolute (sign-extended disp32, no base or index). With GS the base
    // makes up the difference (and must stay a user address: disp <= addr).
    const addr = b.target('data', size, opts.align);
    let d = addr;
    if (gs) {
      d = BigInt(p.next() | 0);
      if (d > addr) d = addr - (d & 0xfffffn);
      b.gsBase = addr - d;
    }
    return { mo: new MemoryOperand(Register.None, Register.None, 1, d, 8, false, seg), addr };
  }
  if (mode < 20) {
    // RIP-relative. With GS, the RIP-relative offset points somewhere near the code.
    const addr = b.target('data', size, opts.align);
    let x = addr;
    if (gs) {
      x = INSN_ADDR - 0x8000000n + BigInt(p.below(0x10000000));
      b.gsBase = addr - x;
    }
    return { mo: new MemoryOperand(Register.RIP, Register.None, 1, x, 8, false, seg), addr };
  }
  if (mode < 30 && !gs && !b.pinned.has(RSP)) {
    // RSP as base, aimed at the stack window (RSP keeps its stack value).
    const addr = b.target('stack', size, opts.align);
    const rsp = b.regs[RSP];
    if (p.below(2)) {
      const x = pick(p, regs);
      let d = BigInt(p.below(256) - 128);
      const diff = (addr - rsp - d) & M64;
      d += diff % sc;
      const q = ((addr - rsp - d) & M64) / sc;
      b.regs[x] = (q + BigInt(p.below(scale)) * ((1n << 64n) / sc)) & M64;
      return { mo: new MemoryOperand(Register.RSP, Register.RAX + x, scale, d, displSize(d), false, seg), addr };
    }
    const d = addr - rsp;
    return { mo: new MemoryOperand(Register.RSP, Register.None, 1, d, displSize(d), false, seg), addr };
  }
  const addr = b.target('data', size, opts.align);
  if (mode < 40) {
    // [index*scale + disp32], no base.
    const t = (addr - b.gsBase) & M64;
    const x = pick(p, regs);
    let d = BigInt(p.next() | 0);
    d += ((t - d) & M64) % sc; // t - d becomes a multiple of the scale
    if (!fitsI32(d)) d += sc * (d < 0n ? 1n : -1n);
    const q = ((t - d) & M64) / sc;
    b.regs[x] = (q + BigInt(p.below(scale)) * ((1n << 64n) / sc)) & M64;
    return { mo: new MemoryOperand(Register.None, Register.RAX + x, scale, d, 8, false, seg), addr };
  }
  if (mode < 52) {
    // 32-bit addressing (0x67): the upper halves of base and index must not matter.
    // With GS, the 32-bit offset is random and the base makes up the difference.
    const t = gs ? BigInt(p.next()) % (addr + 1n) : addr;
    if (gs) b.gsBase = addr - t;
    const bs = pick(p, regs);
    const withIndex = p.below(2) === 1;
    const x = withIndex ? pick(p, regs) : -1;
    const d = BigInt(p.below(3) === 0 ? 0 : p.below(2) ? p.below(256) - 128 : p.next() | 0);
    const junk = (): bigint => u64(p) & ~M32 & M64;
    if (x === bs) {
      const k = 1n + sc;
      let dd = d;
      let v: bigint;
      if (k & 1n) v = (((t - dd) & M32) * inverseOdd(k, 32)) & M32;
      else {
        if ((t - dd) & 1n) dd -= 1n;
        v = (((t - dd) & M32) >> 1n) | (BigInt(p.below(2)) << 31n);
      }
      b.regs[bs] = junk() | v;
      return { mo: new MemoryOperand(Register.EAX + bs, Register.EAX + x, scale, dd, displSize(dd, true), false, seg), addr };
    }
    if (x >= 0) b.regs[x] = value64(p);
    const xv = x >= 0 ? (b.regs[x] & M32) * sc : 0n;
    b.regs[bs] = junk() | ((t - d - xv) & M32);
    const index = x >= 0 ? Register.EAX + x : Register.None;
    return { mo: new MemoryOperand(Register.EAX + bs, index, x >= 0 ? scale : 1, d, displSize(d, true), false, seg), addr };
  }
  // [base (+ index*scale) (+ disp)], 64-bit.
  const t = (addr - b.gsBase) & M64;
  const bs = pick(p, regs);
  let d = randomDisp(p);
  if (mode < 70) {
    b.regs[bs] = (t - d) & M64;
    return { mo: new MemoryOperand(Register.RAX + bs, Register.None, 1, d, displSize(d), false, seg), addr };
  }
  const x = p.below(6) === 0 ? bs : pick(p, regs);
  if (x === bs) {
    const k = 1n + sc;
    if (k & 1n) {
      b.regs[bs] = (((t - d) & M64) * inverseOdd(k, 64)) & M64;
    } else {
      if ((t - d) & 1n) d += d > 0n ? -1n : 1n;
      b.regs[bs] = (((t - d) & M64) >> 1n) | (BigInt(p.below(2)) << 63n);
    }
  } else {
    b.regs[x] = value64(p);
    b.regs[bs] = (t - d - b.regs[x] * sc) & M64;
  }
  return { mo: new MemoryOperand(Register.RAX + bs, Register.RAX + x, scale, d, displSize(d), false, seg), addr };
}

// ---------------------------------------------------------------------------------
// Per-mnemonic constraints

interface Profile {
  /** Registers a memory operand must not use as base/index (set by setup or fixup). */
  reserved?: number[];
  /** Register operands are reserved too (bt*: the bit offset is fixed up later). */
  reserveRegOperands?: boolean;
  /** Runs before operands are chosen. */
  setup?: (b: Builder) => void;
  /** Runs after the instruction is built: adjusts reserved registers and memory. */
  fixup?: (b: Builder, ops: Choice[]) => void;
  /** Memory alignment: used with probability 7/8 (cmpxchg16b faults when misaligned). */
  align?: number;
  /** Biases for immediates. */
  imm?: 'count' | 'enter';
  /** Flags and results left undefined for the operand values chosen (iced cannot know them). */
  undef?: (b: Builder, ops: Choice[]) => void;
}

const SHIFTS = [
  Mnemonic.Shl, Mnemonic.Sal, Mnemonic.Shr, Mnemonic.Sar, Mnemonic.Rol, Mnemonic.Ror, Mnemonic.Rcl, Mnemonic.Rcr,
  Mnemonic.Shld, Mnemonic.Shrd,
];
const BT = [Mnemonic.Bt, Mnemonic.Bts, Mnemonic.Btr, Mnemonic.Btc];
const RCX_BRANCHES = [Mnemonic.Loop, Mnemonic.Loope, Mnemonic.Loopne, Mnemonic.Jrcxz, Mnemonic.Jecxz];

const setCountInCl = (b: Builder): void => {
  b.regs[RCX] = (u64(b.p) & ~0xffn) | BigInt(count8(b.p));
};

function accOf(size: number): RegChoice {
  return { t: 'reg', reg: RAX, size, high8: false, iced: icedGpr(RAX, size, false) };
}

function operandValue(b: Builder, c: Choice, size: number): bigint {
  if (c.t === 'reg') return b.readReg(c);
  if (c.t === 'mem' && c.addr !== null) return b.readMem(c.addr, size / 8);
  return 0n;
}

const PROFILES = new Map<number, Profile>();
for (const m of SHIFTS) PROFILES.set(m, { setup: setCountInCl, imm: 'count' });
for (const m of RCX_BRANCHES) {
  PROFILES.set(m, {
    setup: (b) => {
      // Counts where the 32-bit (67h) and 64-bit forms disagree, and 0/1 (the boundaries).
      if (b.p.below(2)) b.regs[RCX] = pick(b.p, [0n, 0n, 1n, 2n, 0x100000000n, 0x100000001n, M32, M64, 0xffffffff00000000n]);
    },
  });
}
for (const m of [Mnemonic.Div, Mnemonic.Idiv]) {
  const signed = m === Mnemonic.Idiv;
  PROFILES.set(m, {
    reserved: [RAX, RDX],
    fixup: (b, ops) => {
      // Mostly dividends whose quotient fits (random ones nearly always raise #DE).
      if (b.p.below(8) === 0) return;
      const c = ops[0];
      const size = c.t === 'reg' ? c.size : (b.mem?.size ?? 8) * 8;
      const divisor = operandValue(b, c, size);
      const bits = BigInt(size);
      const hiReg = size === 8 ? { reg: RAX, size: 8, high8: true } : { reg: RDX, size, high8: false };
      if (!signed) {
        if (divisor !== 0n) b.writeReg(hiReg, value64(b.p) % divisor);
      } else {
        const lo = size === 8 ? b.regs[RAX] & 0xffn : b.regs[RAX] & maskOf(size);
        const neg = (lo >> (bits - 1n)) & 1n;
        b.writeReg(hiReg, neg ? maskOf(size) : 0n);
      }
    },
  });
}
PROFILES.set(Mnemonic.Cmpxchg, {
  reserved: [RAX],
  fixup: (b, ops) => {
    if (b.p.below(2)) return;
    const size = ops[0].t === 'reg' ? ops[0].size : ops[1].t === 'reg' ? ops[1].size : 64;
    b.writeReg(accOf(size), operandValue(b, ops[0], size));
  },
});
for (const [m, n] of [[Mnemonic.Cmpxchg8b, 8], [Mnemonic.Cmpxchg16b, 16]] as const) {
  PROFILES.set(m, {
    reserved: [RAX, RDX],
    align: n,
    fixup: (b) => {
      if (b.p.below(2) || !b.mem) return;
      const half = n / 2;
      const lo = b.readMem(b.mem.addr, half);
      const hi = b.readMem(b.mem.addr + BigInt(half), half);
      b.writeReg({ reg: RAX, size: half * 8, high8: false }, lo);
      b.writeReg({ reg: RDX, size: half * 8, high8: false }, hi);
    },
  });
}
for (const m of BT) {
  PROFILES.set(m, {
    reserveRegOperands: true,
    fixup: (b, ops) => {
      // With a register bit offset, a memory operand is a bit string: keep the byte
      // actually accessed inside the window.
      const [c0, c1] = ops;
      if (c0.t !== 'mem' || c0.addr === null || c1.t !== 'reg') return;
      const bytes = c1.size / 8;
      if (!b.inWindow(c0.addr, c0.size)) {
        // A guard-page target: an offset inside the operand keeps the access there.
        b.writeReg(c1, BigInt(b.p.below(bytes * 8)));
        return;
      }
      const [base, len] = c0.addr >= STACK_WIN ? [STACK_WIN, STACK_WIN_SIZE] : [DATA_WIN, DATA_WIN_SIZE];
      const lo = Number(base - c0.addr);
      const hi = Number(base + BigInt(len - bytes) - c0.addr);
      const kmin = Math.ceil(lo / bytes);
      const kmax = Math.floor(hi / bytes);
      const k = kmin + b.p.below(kmax - kmin + 1);
      const off = BigInt(k * bytes * 8 + b.p.below(bytes * 8));
      b.writeReg(c1, off & maskOf(c1.size));
    },
  });
}
/** The shift count an instruction will use (before masking). */
function countOf(b: Builder, c: Choice | undefined): bigint {
  if (!c) return 1n; // the "shift by 1" forms have no count operand in some encodings
  if (c.t === 'imm') return c.v & 0xffn;
  if (c.t === 'reg') return b.readReg(c);
  return 0n;
}
function sizeBits(b: Builder, c: Choice): number {
  return c.t === 'reg' ? c.size : (b.mem?.size ?? 8) * 8;
}
for (const m of [Mnemonic.Shl, Mnemonic.Sal, Mnemonic.Shr, Mnemonic.Sar, Mnemonic.Rol, Mnemonic.Ror, Mnemonic.Rcl, Mnemonic.Rcr]) {
  PROFILES.get(m)!.undef = (b, ops) => {
    const size = sizeBits(b, ops[0]);
    const n = Number(countOf(b, ops[1]) & (size === 64 ? 0x3fn : 0x1fn));
    // SDM: OF is defined only for 1-bit shifts and rotates (a masked count of 0 changes
    // no flags). iced-x86 cannot tell from the form alone; CPU vendors differ here.
    if (n > 1) b.undefFlags |= OF;
    // SDM: for SHL/SHR with a count >= the operand size (8/16-bit forms), CF is undefined.
    if ((m === Mnemonic.Shl || m === Mnemonic.Sal || m === Mnemonic.Shr) && n >= size) b.undefFlags |= CF;
  };
}
for (const m of [Mnemonic.Shld, Mnemonic.Shrd]) {
  PROFILES.get(m)!.undef = (b, ops) => {
    // SDM: a count above the operand size (16-bit forms) leaves result and flags undefined.
    const size = sizeBits(b, ops[0]);
    const n = Number(countOf(b, ops[2]) & (size === 64 ? 0x3fn : 0x1fn));
    if (n <= size) return;
    b.undefFlags |= ARITH;
    if (ops[0].t === 'reg') b.undefRegs.push(ops[0].reg);
    else if (b.mem) b.undefMem = b.mem;
  };
}
for (const m of [Mnemonic.Bsf, Mnemonic.Bsr]) {
  PROFILES.set(m, {
    undef: (b, ops) => {
      // SDM: the destination is undefined for a zero source (AMD: unchanged; Intel:
      // unchanged but a 32-bit destination's upper half cleared).
      const src = ops[1];
      const v = src.t === 'reg' ? b.readReg(src) : src.t === 'mem' && src.addr !== null ? b.readMem(src.addr, src.size) : 1n;
      if (v === 0n && ops[0].t === 'reg') b.undefRegs.push(ops[0].reg);
    },
  });
}
PROFILES.set(Mnemonic.Enter, {
  imm: 'enter',
  setup: (b) => {
    // ENTER with a nesting level reads frame pointers below RBP.
    b.regs[RBP] = (STACK_WIN + BigInt(0x100 + b.p.below(0x2f0))) & ~(b.p.below(8) ? 7n : 0n);
  },
});
PROFILES.set(Mnemonic.Leave, {
  setup: (b) => {
    b.regs[RBP] = (STACK_WIN + BigInt(b.p.below(STACK_WIN_SIZE - 16))) & ~(b.p.below(8) ? 7n : 0n);
  },
});

// ---------------------------------------------------------------------------------
// Instruction construction

function immValue(p: Prng, kind: K, bias: Profile['imm'], second: boolean): { v: bigint; signed: boolean } {
  switch (kind) {
    case K.imm8_const_1:
      return { v: 1n, signed: false };
    case K.imm8:
      if (bias === 'count') return { v: BigInt(count8(p)), signed: false };
      if (bias === 'enter' && second) return { v: BigInt(pick(p, [0, 1, 2, 3, 7, 31, 32, 33, 0x80, 0xff, p.below(256)])), signed: false };
      return { v: edgeOf(p, 8), signed: false };
    case K.imm8sex16:
    case K.imm8sex32:
    case K.imm8sex64:
      return { v: BigInt.asIntN(8, edgeOf(p, 8)), signed: true };
    case K.imm16:
      // Frame sizes: mostly inside the stack region; now and then so large that the new
      // RSP is unmapped (the CPU checks it and faults before changing anything).
      if (bias === 'enter') {
        const big = p.below(8) === 0;
        return { v: BigInt(big ? pick(p, [0x7fff, 0x8000, 0xffff, p.below(0x10000)]) : pick(p, [0, 1, 8, 0x10, 0x18, 0x100, p.below(0x800)])), signed: false };
      }
      return { v: edgeOf(p, 16), signed: false };
    case K.imm32:
      return { v: edgeOf(p, 32), signed: false };
    case K.imm32sex64:
      return { v: BigInt.asIntN(32, p.below(3) ? edgeOf(p, 32) : BigInt(p.next())), signed: true };
    default:
      return { v: p.below(2) ? value64(p) : edgeOf(p, 64), signed: false };
  }
}

type Arg = { t: 'r'; reg: Register } | { t: 'm'; mo: MemoryOperand } | { t: 'i'; v: bigint; signed: boolean } | { t: 'b'; target: bigint };

/** Calls the iced `Instruction.create*` that fits the operand pattern. */
function create(code: number, args: Arg[]): Instruction {
  const sig = args.map((a) => a.t).join('');
  const r = (i: number): Register => (args[i] as { reg: Register }).reg;
  const m = (i: number): MemoryOperand => (args[i] as { mo: MemoryOperand }).mo;
  const imm = args.find((a): a is Extract<Arg, { t: 'i' }> => a.t === 'i');
  const s = imm?.signed ?? false;
  const n = imm ? Number(imm.v) : 0;
  switch (sig) {
    case '': return Instruction.create(code);
    case 'r': return Instruction.createReg(code, r(0));
    case 'm': return Instruction.createMem(code, m(0));
    case 'i': return s ? Instruction.createI32(code, n) : Instruction.createU32(code, n);
    case 'b': return Instruction.createBranch(code, (args[0] as { target: bigint }).target);
    case 'rr': return Instruction.createRegReg(code, r(0), r(1));
    case 'rm': return Instruction.createRegMem(code, r(0), m(1));
    case 'mr': return Instruction.createMemReg(code, m(0), r(1));
    case 'ri':
      if (imm && (imm.v > 0xffffffffn || imm.v < -0x80000000n)) return Instruction.createRegU64(code, r(0), imm.v);
      return s ? Instruction.createRegI32(code, r(0), n) : Instruction.createRegU32(code, r(0), n);
    case 'mi': return s ? Instruction.createMemI32(code, m(0), n) : Instruction.createMemU32(code, m(0), n);
    case 'ii': return Instruction.createU32U32(code, Number((args[0] as { v: bigint }).v), Number((args[1] as { v: bigint }).v));
    case 'rrr': return Instruction.createRegRegReg(code, r(0), r(1), r(2));
    case 'rrm': return Instruction.createRegRegMem(code, r(0), r(1), m(2));
    case 'rmr': return Instruction.createRegMemReg(code, r(0), m(1), r(2));
    case 'mrr': return Instruction.createMemRegReg(code, m(0), r(1), r(2));
    case 'rri': return s ? Instruction.createRegRegI32(code, r(0), r(1), n) : Instruction.createRegRegU32(code, r(0), r(1), n);
    case 'rmi': return s ? Instruction.createRegMemI32(code, r(0), m(1), n) : Instruction.createRegMemU32(code, r(0), m(1), n);
    case 'mri': return s ? Instruction.createMemRegI32(code, m(0), r(1), n) : Instruction.createMemRegU32(code, m(0), r(1), n);
    default:
      throw new Error(`oracle generator: no Instruction.create* for operand pattern '${sig}' (${CODE_NAMES[code]})`);
  }
}

function pickReg(p: Prng, size: number): RegChoice {
  const reg = p.below(16);
  const high8 = size === 8 && reg < 4 && p.below(3) === 0;
  return { t: 'reg', reg, size, high8, iced: icedGpr(reg, size, high8) };
}

function fixedChoice(r: Register): RegChoice {
  const [reg, size] =
    r === Register.AL ? [RAX, 8] : r === Register.CL ? [RCX, 8] : r === Register.AX ? [RAX, 16] : r === Register.EAX ? [RAX, 32] : [RAX, 64];
  return { t: 'reg', reg, size, high8: false, iced: r };
}

/** Builds the instruction for an operand form; returns it with the operand choices. */
function buildExplicit(b: Builder, form: Form, prof: Profile): { ins: Instruction; ops: Choice[] } {
  const p = b.p;
  const slots = form.slots!;
  // At most one memory operand: an r/m slot becomes memory 2 times in 5.
  const rmSlots = slots.map((s, i) => (s.t === 'rm' ? i : -1)).filter((i) => i >= 0);
  const hasMemSlot = slots.some((s) => s.t === 'mem' || s.t === 'moffs');
  const memRm = !hasMemSlot && rmSlots.length > 0 && p.below(5) < 2 ? rmSlots[0] : -1;
  const ops: (Choice | null)[] = slots.map(() => null);
  slots.forEach((s, i) => {
    if (s.t === 'reg' || (s.t === 'rm' && i !== memRm)) ops[i] = pickReg(p, s.size);
    else if (s.t === 'fixreg') ops[i] = fixedChoice(s.reg);
  });
  if (prof.reserveRegOperands) {
    for (const c of ops) {
      if (c && c.t === 'reg') {
        b.reserved.add(c.reg);
        b.pinned.add(c.reg);
      }
    }
  }
  const memos: MemoryOperand[] = [];
  const args: Arg[] = [];
  let immCount = 0;
  try {
    slots.forEach((s, i) => {
      const c = ops[i];
      if (c && c.t === 'reg') {
        args.push({ t: 'r', reg: c.iced });
        return;
      }
      if (s.t === 'rm' || s.t === 'mem' || s.t === 'moffs') {
        const size = s.t === 'rm' ? s.size / 8 : s.size;
        const align = prof.align && p.below(8) ? prof.align : 0;
        const { mo, addr } = buildMem(b, size, { lea: form.mnemonic === Mnemonic.Lea, moffs: s.t === 'moffs', align });
        memos.push(mo);
        if (addr !== null) {
          b.mem = { addr, size };
          // Half the time, an edge value in memory too.
          if (size <= 8 && p.below(2)) b.writeMem(addr, size, edgeOf(p, size * 8));
        }
        ops[i] = { t: 'mem', addr, size };
        args.push({ t: 'm', mo });
        return;
      }
      if (s.t === 'imm') {
        const { v, signed } = immValue(p, s.kind, prof.imm, immCount++ > 0);
        ops[i] = { t: 'imm', v };
        args.push({ t: 'i', v, signed });
        return;
      }
      if (s.t === 'branch') {
        const target = p.below(2) ? TARGET_FWD : TARGET_BACK;
        ops[i] = { t: 'branch', target };
        args.push({ t: 'b', target });
        return;
      }
      throw new Error(`oracle generator: unhandled slot ${JSON.stringify(s)}`);
    });
    // create* takes ownership of the MemoryOperands (wasm-bindgen moves them): only
    // the ones never handed over are freed here.
    memos.length = 0;
    const ins = create(form.code, args);
    if (form.lock && ops[0]?.t === 'mem' && p.below(2)) ins.hasLockPrefix = true;
    return { ins, ops: ops as Choice[] };
  } finally {
    for (const mo of memos) mo.free();
  }
}

/** movs/cmps/stos/lods/scas: RSI/RDI/RCX inside the data window for the whole run. */
function buildString(b: Builder, form: Form): Instruction {
  const p = b.p;
  const mn = form.mnemonic;
  const e = STRING_MNEMONICS.get(mn)!;
  const name = MNEMONIC_NAMES[mn];
  const kind = name.slice(0, 4);
  const a32 = p.below(5) === 0;
  const cond = kind === 'cmps' || kind === 'scas';
  const rep = p.below(3) === 0 ? RepPrefixKind.None : cond && p.below(2) ? RepPrefixKind.Repne : RepPrefixKind.Repe;
  // 1 rep in 10 runs off its region into the guard page: the fault must come with
  // RCX/RSI/RDI (and memory) showing exactly the iterations done.
  const runOff = rep !== RepPrefixKind.None && p.below(10) === 0;
  const count = rep === RepPrefixKind.None ? 1 : pick(p, [0, 1, 2, 3, p.below(17), p.below(17), p.below(17)]);
  const junk = (): bigint => (a32 ? u64(p) & ~M32 & M64 : 0n);
  if (rep !== RepPrefixKind.None) b.regs[RCX] = junk() | BigInt(count);
  if (runOff) b.regs[RCX] = a32 ? junk() | M32 : pick(p, [0x10000n, M64]);
  const n = runOff ? 1 : Math.max(count, 1);
  // First element address such that all `n` elements stay in the window in direction DF.
  const place = (): bigint => {
    const span = n * e;
    const room = DATA_WIN_SIZE - span;
    const first = p.below(room + 1) + (b.df ? span - e : 0);
    return DATA_WIN + BigInt(first);
  };
  const src = place();
  const dst = place();
  b.regs[RSI] = junk() | src;
  b.regs[RDI] = junk() | dst;
  const step = BigInt(b.df ? -e : e);
  if (cond && rep !== RepPrefixKind.None && !runOff) {
    // Make the first j elements compare equal (repe runs past them, repne stops at j).
    const j = p.below(n + 1);
    const acc = b.regs[RAX] & maskOf(e * 8);
    for (let k = 0; k < n; k++) {
      const da = dst + step * BigInt(k);
      const equal = rep === RepPrefixKind.Repe ? k < j : k === j;
      if (!equal) continue;
      if (kind === 'scas') b.writeMem(da, e, acc);
      else b.writeMem(da, e, b.readMem(src + step * BigInt(k), e));
    }
  }
  if (a32 && rep !== RepPrefixKind.None && (b.regs[RCX] & M32) === 0n) {
    // ECX=0 with 32-bit addressing: no iteration, nothing written (SDM); Intel CPUs clear
    // RCX's upper half anyway, and for movs/stos those of the pointers they advance.
    const ptrs = kind === 'movs' ? [RSI, RDI] : kind === 'stos' ? [RDI] : [];
    b.vendor = { intel: true, upperHalves: [RCX, ...ptrs], flagsIfFault: 0 };
  }
  if (cond && runOff) {
    // A fault part-way through repe/repne cmps/scas restores RFLAGS to its value before
    // the instruction (SDM, as textpoke does); AMD hosts keep the last iteration's.
    b.vendor = { intel: false, upperHalves: [], flagsIfFault: ARITH };
  }
  const asz = a32 ? 32 : 64;
  switch (mn) {
    case Mnemonic.Movsb: return Instruction.createMovsb(asz, Register.None, rep);
    case Mnemonic.Movsw: return Instruction.createMovsw(asz, Register.None, rep);
    case Mnemonic.Movsd: return Instruction.createMovsd(asz, Register.None, rep);
    case Mnemonic.Movsq: return Instruction.createMovsq(asz, Register.None, rep);
    case Mnemonic.Cmpsb: return Instruction.createCmpsb(asz, Register.None, rep);
    case Mnemonic.Cmpsw: return Instruction.createCmpsw(asz, Register.None, rep);
    case Mnemonic.Cmpsd: return Instruction.createCmpsd(asz, Register.None, rep);
    case Mnemonic.Cmpsq: return Instruction.createCmpsq(asz, Register.None, rep);
    case Mnemonic.Lodsb: return Instruction.createLodsb(asz, Register.None, rep);
    case Mnemonic.Lodsw: return Instruction.createLodsw(asz, Register.None, rep);
    case Mnemonic.Lodsd: return Instruction.createLodsd(asz, Register.None, rep);
    case Mnemonic.Lodsq: return Instruction.createLodsq(asz, Register.None, rep);
    case Mnemonic.Stosb: return Instruction.createStosb(asz, rep);
    case Mnemonic.Stosw: return Instruction.createStosw(asz, rep);
    case Mnemonic.Stosd: return Instruction.createStosd(asz, rep);
    case Mnemonic.Stosq: return Instruction.createStosq(asz, rep);
    case Mnemonic.Scasb: return Instruction.createScasb(asz, rep);
    case Mnemonic.Scasw: return Instruction.createScasw(asz, rep);
    case Mnemonic.Scasd: return Instruction.createScasd(asz, rep);
    default: return Instruction.createScasq(asz, rep);
  }
}

function buildXlat(b: Builder): Instruction {
  const p = b.p;
  const a32 = p.below(5) === 0;
  const addr = b.target('data', 1);
  const al = b.regs[RAX] & 0xffn;
  b.regs[RBX] = a32 ? (u64(p) & ~M32 & M64) | ((addr - al) & M32) : (addr - al) & M64;
  b.mem = { addr, size: 1 };
  // createMem takes ownership of the MemoryOperand.
  return Instruction.createMem(Code.Xlat_m8, new MemoryOperand(a32 ? Register.EBX : Register.RBX, Register.AL, 1, 0n, 0, false, Register.None));
}

let encoder: Encoder | null = null;

/** Encodes at `rip`; null when iced refuses (the encoder is then replaced: it may keep partial bytes). */
function encodeAt(ins: Instruction, rip: bigint, what: string): Uint8Array | null {
  try {
    encoder ??= new Encoder(64);
    encoder.encode(ins, rip);
    return encoder.takeBuffer();
  } catch (e) {
    // AH..BH with a REX prefix, and the like.
    if (process.env.ORACLE_DEBUG) console.log(`encode ${what}: ${String(e)}`);
    encoder?.free();
    encoder = null;
    return null;
  }
}

/** Decodes `bytes` at `rip`; null unless it is one whole instruction of `mnemonic`. */
function decodeAs(bytes: Uint8Array, rip: bigint, mnemonic: number): Decoded | null {
  const d = decodeOne(bytes, Number(rip & M32) | 0, Number(rip >> 32n) | 0);
  // The bytes must decode back to the row's mnemonic (xchg eax,eax is nop, for one).
  if (isDecodeFailure(d) || d.mnemonic !== mnemonic || d.len !== bytes.length) return null;
  return d;
}

/** The consumer side of a case: its builder and its (not yet encoded) instruction. */
function buildConsumer(p: Prng, form: Form): { b: Builder; ins: Instruction; ops: Choice[]; prof: Profile } | null {
  const prof = PROFILES.get(form.mnemonic) ?? {};
  const b = new Builder(p);
  for (const r of prof.reserved ?? []) b.reserved.add(r);
  prof.setup?.(b);
  try {
    if (form.slots === null) {
      return { b, ins: form.mnemonic === Mnemonic.Xlatb ? buildXlat(b) : buildString(b, form), ops: [], prof };
    }
    return { b, ...buildExplicit(b, form, prof), prof };
  } catch (e) {
    if (String(e).includes('no Instruction.create*')) throw e;
    if (process.env.ORACLE_DEBUG) console.log(`create ${form.name}: ${String(e)}`);
    return null; // e.g. an immediate iced rejects for this form
  }
}

function finish(form: Form, index: number, b: Builder, bytes: Uint8Array, flagsUndefined: number, producer: string | null): OracleCase {
  return {
    mnemonic: form.mnemonic,
    name: MNEMONIC_NAMES[form.mnemonic],
    code: form.code,
    form: producer ? `${form.name} after ${producer}` : form.name,
    index,
    bytes,
    regs: b.regs,
    rflags: b.flags,
    gsBase: b.gsBase,
    data: b.data,
    stack: b.stack,
    mem: b.mem,
    flagsUndefined: flagsUndefined | b.undefFlags,
    undefinedRegs: b.undefRegs,
    undefinedMem: b.undefMem,
    vendorDiffers: b.vendor,
  };
}

/** One case of `form`; null when this attempt did not encode (retry with new choices). */
function tryCase(p: Prng, form: Form, index: number): OracleCase | null {
  const c = buildConsumer(p, form);
  if (!c) return null;
  const bytes = encodeAt(c.ins, INSN_ADDR, form.name);
  c.ins.free();
  if (!bytes) return null;
  const d = decodeAs(bytes, INSN_ADDR, form.mnemonic);
  if (!d) return null;
  c.prof.fixup?.(c.b, c.ops);
  c.prof.undef?.(c.b, c.ops);
  return finish(form, index, c.b, bytes, d.flagsUndefined, null);
}

/**
 * Flag producers for pair cases: register-only forms whose only register writes are
 * their first operand (xadd: both), so they cannot disturb what the consumer relies on.
 */
const PRODUCERS = new Set<number>([
  Mnemonic.Add, Mnemonic.Or, Mnemonic.Adc, Mnemonic.Sbb, Mnemonic.And, Mnemonic.Sub, Mnemonic.Xor, Mnemonic.Cmp,
  Mnemonic.Test, Mnemonic.Inc, Mnemonic.Dec, Mnemonic.Neg, Mnemonic.Shl, Mnemonic.Sal, Mnemonic.Shr, Mnemonic.Sar,
  Mnemonic.Rol, Mnemonic.Ror, Mnemonic.Rcl, Mnemonic.Rcr, Mnemonic.Shld, Mnemonic.Shrd, Mnemonic.Imul, Mnemonic.Bt,
  Mnemonic.Bts, Mnemonic.Btr, Mnemonic.Btc, Mnemonic.Bsf, Mnemonic.Bsr, Mnemonic.Popcnt, Mnemonic.Lzcnt,
  Mnemonic.Tzcnt, Mnemonic.Andn, Mnemonic.Blsi, Mnemonic.Blsmsk, Mnemonic.Blsr, Mnemonic.Bextr, Mnemonic.Xadd,
  Mnemonic.Stc, Mnemonic.Clc, Mnemonic.Cmc, Mnemonic.Std, Mnemonic.Cld, Mnemonic.Sahf,
]);

const LAZY_PRODUCERS = new Set<number>([
  Mnemonic.Add, Mnemonic.Or, Mnemonic.Adc, Mnemonic.Sbb, Mnemonic.And, Mnemonic.Sub, Mnemonic.Xor, Mnemonic.Cmp,
  Mnemonic.Test, Mnemonic.Inc, Mnemonic.Dec, Mnemonic.Neg,
]);

/** The producer forms among `forms` (of one producer mnemonic). */
export function producerForms(forms: Form[]): Form[] {
  return forms.filter(
    (f) =>
      PRODUCERS.has(f.mnemonic) &&
      f.slots !== null &&
      f.slots.every((s) => s.t === 'reg' || s.t === 'rm' || s.t === 'imm' || s.t === 'fixreg') &&
      // One-operand imul writes RDX:RAX.
      !(f.mnemonic === Mnemonic.Imul && f.slots.length === 1),
  );
}

/** A producer instance writing none of the `keep` registers; its instruction (not encoded) and operands. */
function buildProducer(p: Prng, form: Form, keep: Set<number>, regs: bigint[]): { ins: Instruction; ops: Choice[] } | null {
  const slots = form.slots!;
  const chosen: (RegChoice | null)[] = [];
  const written = form.mnemonic === Mnemonic.Xadd ? 2 : 1;
  const prof = PROFILES.get(form.mnemonic) ?? {};
  const free: number[] = [];
  for (let i = 0; i < 16; i++) if (!keep.has(i)) free.push(i);
  const args: Arg[] = [];
  const ops: Choice[] = [];
  let immCount = 0;
  for (let i = 0; i < slots.length; i++) {
    const s = slots[i];
    chosen.push(null);
    if (s.t === 'imm') {
      const { v, signed } = immValue(p, s.kind, prof.imm, immCount++ > 0);
      args.push({ t: 'i', v, signed });
      ops.push({ t: 'imm', v });
    } else if (s.t === 'fixreg') {
      if (i < written && keep.has(fixedChoice(s.reg).reg)) return null;
      args.push({ t: 'r', reg: s.reg });
      ops.push(fixedChoice(s.reg));
    } else if (s.t === 'reg' || s.t === 'rm') {
      let c = pickReg(p, s.size);
      if (i < written && form.mnemonic !== Mnemonic.Cmp && form.mnemonic !== Mnemonic.Test && form.mnemonic !== Mnemonic.Bt) {
        if (free.length === 0) return null;
        const reg = pick(p, free);
        const high8 = s.size === 8 && reg < 4 && p.below(3) === 0;
        c = { t: 'reg', reg, size: s.size, high8, iced: icedGpr(reg, s.size, high8) };
      }
      args.push({ t: 'r', reg: c.iced });
      ops.push(c);
      chosen[i] = c;
    } else {
      return null;
    }
  }
  // Half the time, relate the first operand to the second so the 64-bit result
  // has a zero low half (equal, complementary or opposite low halves for sub/cmp/xor,
  // and/test, add): flags that depend on both halves of the emulator's (lo, hi) result.
  const [d, src] = chosen;
  if (d && src && d.size === 64 && src.size === 64 && d.reg !== src.reg && !keep.has(d.reg) && p.below(2) === 0) {
    const lo = regs[src.reg] & M32;
    const low = pick(p, [lo, ~lo & M32, (-lo) & M32]);
    regs[d.reg] = (u64(p) & ~M32 & M64) | low;
  }
  try {
    return { ins: create(form.code, args), ops };
  } catch {
    return null;
  }
}

/**
 * The flags a producer leaves undefined for its operand values (a shift or rotate by
 * more than one and OF, a large count and CF, a 16-bit shld/shrd by more than 16 and
 * everything), which iced-x86 cannot report; null when its result is undefined too
 * (the consumer might read that register). The producer's operands are all registers,
 * and the case's registers are its inputs.
 */
function producerUndefined(b: Builder, form: Form, ops: Choice[]): number | null {
  const undef = PROFILES.get(form.mnemonic)?.undef;
  if (!undef) return 0;
  const [flags, nregs] = [b.undefFlags, b.undefRegs.length];
  b.undefFlags = 0;
  undef(b, ops);
  const produced = b.undefFlags;
  b.undefFlags = flags;
  if (b.undefRegs.length !== nregs) {
    b.undefRegs.length = nregs;
    return null;
  }
  return produced;
}

/**
 * A case of `form` (a flag reader) preceded by a flag producer from `producers`: lazy
 * flags are computed by the producer and consumed by the next instruction, which a
 * single instruction never shows. The producer writes no register the consumer's setup
 * chose, and leaves no flag the consumer reads undefined.
 */
function tryPairCase(p: Prng, form: Form, producers: Form[], index: number): OracleCase | null {
  const c = buildConsumer(p, form);
  if (!c) return null;
  try {
    c.prof.fixup?.(c.b, c.ops);
    c.prof.undef?.(c.b, c.ops);
    // Registers the consumer's case depends on: anything set on purpose (changed from
    // the random initial values), RSP, the reserved/pinned ones and its operands.
    const keep = new Set<number>([RSP, ...c.b.reserved, ...c.b.pinned]);
    for (const o of c.ops) if (o.t === 'reg') keep.add(o.reg);
    c.b.regs.forEach((v, i) => {
      if (v !== c.b.initial[i]) keep.add(i);
    });
    // Half the producers are the lazily-flagged ALU operations (emu/flags.ts LZ_*), half
    // of those in their 64-bit two-register forms (where the result's halves matter).
    const lazy = producers.filter((f) => LAZY_PRODUCERS.has(f.mnemonic));
    const lazy64 = lazy.filter((f) => f.slots!.length === 2 && f.slots!.every((s) => (s.t === 'reg' || s.t === 'rm') && s.size === 64));
    for (let attempt = 0; attempt < 20; attempt++) {
      const r = p.below(4);
      const pf = pick(p, r === 0 && lazy64.length ? lazy64 : r === 1 && lazy.length ? lazy : producers);
      const built = buildProducer(p, pf, keep, c.b.regs);
      if (!built) continue;
      const pb = encodeAt(built.ins, INSN_ADDR, pf.name);
      built.ins.free();
      if (!pb) continue;
      const pd = decodeAs(pb, INSN_ADDR, pf.mnemonic);
      if (!pd) continue;
      const at = INSN_ADDR + BigInt(pb.length);
      const cb = encodeAt(c.ins, at, form.name);
      if (!cb) return null;
      const cd = decodeAs(cb, at, form.mnemonic);
      if (!cd) return null;
      // A flag the producer leaves undefined must not decide the consumer's result,
      // including flags only its operand values leave undefined.
      const valueUndefined = producerUndefined(c.b, pf, built.ops);
      if (valueUndefined === null) continue;
      const produced = pd.flagsUndefined | valueUndefined;
      if (produced & cd.flagsRead) continue;
      const bytes = new Uint8Array(pb.length + cb.length);
      bytes.set(pb, 0);
      bytes.set(cb, pb.length);
      return finish(form, index, c.b, bytes, produced | cd.flagsUndefined, pd.name);
    }
    return null;
  } finally {
    c.ins.free();
  }
}

/** A 32-bit seed for one mnemonic, from the run's seed and the mnemonic's name. */
export function mnemonicSeed(seed: number, name: string): number {
  let h = (seed ^ 0x9e3779b9) >>> 0;
  for (let i = 0; i < name.length; i++) {
    h = Math.imul(h ^ name.charCodeAt(i), 0x01000193) >>> 0;
  }
  return h;
}

/**
 * `n` cases of a mnemonic spread round-robin over its forms, then, if it reads flags,
 * `pairs` cases of its flag-reading forms each preceded by a flag producer.
 */
export function generateCases(mnemonic: number, forms: Form[], n: number, seed: number, producers: Form[] = [], pairs = 0): OracleCase[] {
  const name = MNEMONIC_NAMES[mnemonic];
  const p = new Prng(mnemonicSeed(seed, name));
  const out: OracleCase[] = [];
  if (forms.length === 0) return out;
  for (let k = 0; k < n; k++) {
    const form = forms[k % forms.length];
    let c: OracleCase | null = null;
    for (let attempt = 0; attempt < 100 && !c; attempt++) c = tryCase(p, form, k);
    if (!c) throw new Error(`oracle generator: could not encode any instance of ${form.name}`);
    out.push(c);
  }
  const readers = forms.filter((f) => f.readsFlags);
  if (readers.length === 0 || producers.length === 0) return out;
  for (let k = 0; k < pairs; k++) {
    const form = readers[k % readers.length];
    let c: OracleCase | null = null;
    for (let attempt = 0; attempt < 100 && !c; attempt++) c = tryPairCase(p, form, producers, n + k);
    if (!c) throw new Error(`oracle generator: could not build a flag producer for ${form.name}`);
    out.push(c);
  }
  return out;
}

export { RAX, RCX, RDX, RBX, RSP, RBP, RSI, RDI };
