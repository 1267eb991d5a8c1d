// The `.altinstructions` table of a Linux 6.1 vmlinux: one record per alternative,
// saying "if CPU feature F is present (or absent, when inverted), replace the
// instrlen bytes at instr with the replacementlen bytes at repl (then pad with NOPs)".
//
// Layout (6.1, x86-64), 12 bytes per record, packed, little-endian:
//   0  s32  instr_offset    instr = address of this field + instr_offset
//   4  s32  repl_offset     repl  = address of this field + repl_offset
//   8  u16  cpuid           X86_FEATURE_* / X86_BUG_* bit number; bit 15 inverts the test
//   10 u8   instrlen        length of the original sequence
//   11 u8   replacementlen  length of the replacement (never more than instrlen in 6.1,
//                           whose assembler pads the original to the longest replacement)
// A record that breaks these rules means we are reading some other layout, and is
// refused with a LoadError.

import { LoadError, rangeHolding, type AddrRange } from './elf';

export const ALT_RECORD_SIZE = 12;
/** cpuid bit 15: apply the replacement when the feature is absent. */
export const ALTINSTR_FLAG_INV = 0x8000;
/**
 * Longest original sequence we accept. Alternatives cover instruction sequences, not
 * single instructions (Debian's 6.1 has sequences of up to 31 bytes), so 15 is too
 * strict; a length past 64 has never occurred and points at a misread layout.
 */
export const MAX_ALT_LEN = 64;

export interface AltInstr {
  index: number;
  /** Link address of the original instructions. */
  instr: bigint;
  /** Link address of the replacement. */
  repl: bigint;
  /** The raw cpuid field (feature number plus ALTINSTR_FLAG_INV). */
  cpuid: number;
  /** Feature bit number: word * 32 + bit. */
  feature: number;
  /** Replacement applies when the feature is absent. */
  inverted: boolean;
  instrlen: number;
  replacementlen: number;
  /** Executable section holding the original (.text, .init.text …). */
  section: string;
}

export interface AltParseOptions {
  label?: string;
  /** Link address of the table (offsets are relative to each field's own address). */
  sectionAddr: bigint;
  /** File offset of the table, so errors can name the byte. */
  fileOffset?: number;
  /** Where originals and replacements may lie: the executable sections. */
  code: readonly AddrRange[];
}

function hex(n: number | bigint): string {
  return '0x' + n.toString(16);
}

export function parseAltinstructions(buf: Uint8Array, opts: AltParseOptions): AltInstr[] {
  const label = opts.label ?? 'vmlinux';
  const base = opts.fileOffset ?? 0;
  const where = opts.fileOffset === undefined ? 'table byte' : 'byte';
  if (buf.length % ALT_RECORD_SIZE !== 0) {
    throw new LoadError(`${label}: .altinstructions is ${hex(buf.length)} bytes, not a multiple of the ${ALT_RECORD_SIZE}-byte 6.1 record: unknown layout`);
  }
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const out: AltInstr[] = [];
  for (let o = 0, i = 0; o < buf.length; o += ALT_RECORD_SIZE, i++) {
    const fail = (field: number, what: string): never => {
      throw new LoadError(`${label}: ${where} ${hex(base + o + field)}: .altinstructions record ${i}: ${what}`);
    };
    const recAddr = opts.sectionAddr + BigInt(o);
    const instr = BigInt.asUintN(64, recAddr + BigInt(dv.getInt32(o, true)));
    const repl = BigInt.asUintN(64, recAddr + 4n + BigInt(dv.getInt32(o + 4, true)));
    const cpuid = dv.getUint16(o + 8, true);
    const instrlen = buf[o + 10];
    const replacementlen = buf[o + 11];
    if (instrlen === 0 || instrlen > MAX_ALT_LEN) fail(10, `instrlen ${instrlen} is not in 1..${MAX_ALT_LEN}`);
    if (replacementlen > instrlen) fail(11, `replacementlen ${replacementlen} exceeds instrlen ${instrlen}: unknown record layout`);
    const r = rangeHolding(opts.code, instr, instrlen);
    if (!r) fail(0, `original ${hex(instr)} (+${instrlen}) lies in no executable section`);
    if (replacementlen > 0 && !rangeHolding(opts.code, repl, replacementlen)) {
      fail(4, `replacement ${hex(repl)} (+${replacementlen}) lies in no executable section`);
    }
    out.push({
      index: i, instr, repl, cpuid, feature: cpuid & ~ALTINSTR_FLAG_INV, inverted: (cpuid & ALTINSTR_FLAG_INV) !== 0,
      instrlen, replacementlen, section: r!.name,
    });
  }
  return out;
}
