// The `.altinstructions` table of a vmlinux: one record per alternative, saying
// "if CPU feature F is present (or absent, when inverted), replace the instrlen bytes
// at instr with the replacementlen bytes at repl (then pad with NOPs)".
//
// The record layout comes from the kernel's BTF (struct alt_instr, btf-layout.ts):
//   6.1  (12 bytes): s32 instr_offset, s32 repl_offset, u16 cpuid (bit 15 inverts),
//                    u8 instrlen, u8 replacementlen
//   6.12 (14 bytes): s32 instr_offset, s32 repl_offset, u16 cpuid, u16 flags
//                    (ALT_FLAG_NOT 1, ALT_FLAG_DIRECT_CALL 2), u8 instrlen, u8 replacementlen
// Offsets are relative to the field's own address. A record that breaks these rules
// means we are reading some other layout, and is refused with a LoadError.

import { LoadError, rangeHolding, type AddrRange } from './elf';
import { readField, type AltInstrLayout } from './btf-layout';

export const ALT_RECORD_SIZE = 12;
/** 6.1: cpuid bit 15: apply the replacement when the feature is absent. */
export const ALTINSTR_FLAG_INV = 0x8000;
/** 6.8+: flags bit 0 (ALT_FLAG_NOT): apply when the feature is absent. */
export const ALT_FLAG_NOT = 1;
/** 6.8+: flags bit 1 (ALT_FLAG_DIRECT_CALL): a pv_ops call site, rewritten by alt_replace_call. */
export const ALT_FLAG_DIRECT_CALL = 2;

const field = (offset: number, size: number, signed = false) => ({ offset, size, bitOffset: offset * 8, bitSize: 0, signed });
/** struct alt_instr of Linux 6.1, for tables read without BTF (tests, hand-made records). */
export const ALT_INSTR_6_1: AltInstrLayout = {
  size: 12, instrOffset: field(0, 4, true), replOffset: field(4, 4, true), cpuid: field(8, 2), flags: null,
  instrlen: field(10, 1), replacementlen: field(11, 1),
};
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
  /** The raw cpuid field (6.1: feature number plus ALTINSTR_FLAG_INV). */
  cpuid: number;
  /** The flags field (6.8+; 0 where the layout has none). */
  flags: number;
  /** ALT_FLAG_DIRECT_CALL: the original is `call *pv_ops[slot](%rip)`, to become a direct call. */
  directCall: boolean;
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
  /** Record layout (from BTF); default Linux 6.1's. */
  layout?: AltInstrLayout;
}

function hex(n: number | bigint): string {
  return '0x' + n.toString(16);
}

export function parseAltinstructions(buf: Uint8Array, opts: AltParseOptions): AltInstr[] {
  const label = opts.label ?? 'vmlinux';
  const base = opts.fileOffset ?? 0;
  const where = opts.fileOffset === undefined ? 'table byte' : 'byte';
  const L = opts.layout ?? ALT_INSTR_6_1;
  const size = L.size;
  if (buf.length % size !== 0) {
    throw new LoadError(`${label}: .altinstructions is ${hex(buf.length)} bytes, not a multiple of the ${size}-byte struct alt_instr: unknown layout`);
  }
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const out: AltInstr[] = [];
  for (let o = 0, i = 0; o < buf.length; o += size, i++) {
    const fail = (f: number, what: string): never => {
      throw new LoadError(`${label}: ${where} ${hex(base + o + f)}: .altinstructions record ${i}: ${what}`);
    };
    const recAddr = opts.sectionAddr + BigInt(o);
    const instr = BigInt.asUintN(64, recAddr + BigInt(L.instrOffset.offset) + BigInt(readField(dv, o, L.instrOffset)));
    const repl = BigInt.asUintN(64, recAddr + BigInt(L.replOffset.offset) + BigInt(readField(dv, o, L.replOffset)));
    const cpuid = readField(dv, o, L.cpuid);
    const flags = L.flags ? readField(dv, o, L.flags) : 0;
    const instrlen = readField(dv, o, L.instrlen);
    const replacementlen = readField(dv, o, L.replacementlen);
    if (instrlen === 0 || instrlen > MAX_ALT_LEN) fail(L.instrlen.offset, `instrlen ${instrlen} is not in 1..${MAX_ALT_LEN}`);
    // 6.1's assembler pads every original to its longest replacement; later kernels pad nested ones per site.
    if (!L.flags && replacementlen > instrlen) fail(L.replacementlen.offset, `replacementlen ${replacementlen} exceeds instrlen ${instrlen}: unknown record layout`);
    if (replacementlen > MAX_ALT_LEN) fail(L.replacementlen.offset, `replacementlen ${replacementlen} is not in 0..${MAX_ALT_LEN}: unknown record layout`);
    if (L.flags && (flags & ~(ALT_FLAG_NOT | ALT_FLAG_DIRECT_CALL)) !== 0) fail(L.flags.offset, `flags 0x${flags.toString(16)} has bits other than ALT_FLAG_NOT and ALT_FLAG_DIRECT_CALL`);
    const r = rangeHolding(opts.code, instr, instrlen);
    if (!r) fail(0, `original ${hex(instr)} (+${instrlen}) lies in no executable section`);
    if (replacementlen > 0 && !rangeHolding(opts.code, repl, replacementlen)) {
      fail(L.replOffset.offset, `replacement ${hex(repl)} (+${replacementlen}) lies in no executable section`);
    }
    const inverted = L.flags ? (flags & ALT_FLAG_NOT) !== 0 : (cpuid & ALTINSTR_FLAG_INV) !== 0;
    out.push({
      index: i, instr, repl, cpuid, flags, directCall: (flags & ALT_FLAG_DIRECT_CALL) !== 0,
      feature: L.flags ? cpuid : cpuid & ~ALTINSTR_FLAG_INV, inverted, instrlen, replacementlen, section: r!.name,
    });
  }
  return out;
}
