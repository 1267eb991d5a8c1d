// The operand forms of the opcode table's rows, as iced-x86 Codes: a row implements
// every form its mnemonic has on the CPU textpoke models (64-bit mode, legacy or VEX
// encoding, decoded as Intel decodes it) except the ones it declares `unimplemented`.
// The host-CPU oracle generates cases from exactly these forms (less the row's
// `oracleSkip`), and `coverage` names a declared reason for a form a row leaves out, so
// the table is the one place that says which forms exist and why some are missing.

import { Code, CpuidFeature, EncodingKind, Instruction, MemorySizeExt, OpCodeOperandKind } from 'iced-x86';
import { CODE_NAMES, icedFlagsToArch } from './decode';
import { ARITH, DF } from './flags';
import type { OpRow } from './optable';

/** One operand form of a row. */
export interface RowForm {
  code: number;
  /** iced Code name, e.g. Add_rm64_r64. */
  name: string;
  mnemonic: number;
  /** iced operand kinds, in order. */
  operands: readonly OpCodeOperandKind[];
  /** Bytes of the memory operand (0: none or not fixed). */
  memorySize: number;
  canLock: boolean;
  /** Reads arithmetic flags or DF. */
  readsFlags: boolean;
  /** CPUID features the form needs (iced CpuidFeature values). */
  features: readonly CpuidFeature[];
}

let codesByMnemonic: Map<number, number[]> | null = null;

/** Every iced Code, by mnemonic (built once). */
function codesOf(mnemonic: number): number[] {
  if (!codesByMnemonic) {
    codesByMnemonic = new Map();
    for (const v of Object.values(Code)) {
      if (typeof v !== 'number') continue;
      const ins = Instruction.create(v);
      const l = codesByMnemonic.get(ins.mnemonic) ?? [];
      l.push(v);
      codesByMnemonic.set(ins.mnemonic, l);
      ins.free();
    }
  }
  return codesByMnemonic.get(mnemonic) ?? [];
}

/**
 * The forms of a mnemonic on the modelled CPU: 64-bit mode instructions in legacy or VEX
 * encoding that Intel decodes as themselves (not the 16-bit branch forms, which Intel
 * decodes as 64-bit ones), needing no decoder option (not KNC, MPX, ...).
 */
export function mnemonicForms(mnemonic: number): RowForm[] {
  const out: RowForm[] = [];
  for (const code of codesOf(mnemonic)) {
    const ins = Instruction.create(code);
    const oc = ins.opCode;
    try {
      if (!oc.mode64 || !oc.isInstruction || !oc.intelDecoder64 || oc.decoderOption !== 0) continue;
      if (oc.encoding !== EncodingKind.Legacy && oc.encoding !== EncodingKind.VEX) continue;
      const operands: OpCodeOperandKind[] = [];
      for (let i = 0; i < oc.opCount; i++) operands.push(oc.opKind(i));
      out.push({
        code,
        name: CODE_NAMES[code] ?? `code${code}`,
        mnemonic,
        operands,
        memorySize: MemorySizeExt.size(oc.memorySize),
        canLock: oc.canUseLockPrefix,
        readsFlags: (icedFlagsToArch(ins.rflagsRead) & (ARITH | DF)) !== 0,
        features: [...ins.cpuidFeatures()],
      });
    } finally {
      oc.free();
      ins.free();
    }
  }
  return out;
}

/** The forms a row implements. */
export function rowForms(row: OpRow): RowForm[] {
  const not = row.unimplemented ?? {};
  return mnemonicForms(row.mnemonic).filter((f) => !(f.name in not));
}

/** Why a row leaves a form out (its declared reason), or null when it implements it. */
export function unimplementedReason(row: OpRow, code: number): string | null {
  return row.unimplemented?.[CODE_NAMES[code] ?? ''] ?? null;
}
