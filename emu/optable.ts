// The opcode table: one row per implemented mnemonic, v86-style. The interpreter
// compiles instructions through it, `coverage` reports against it, and the host-CPU
// oracle tests are generated from it, so adding an instruction is one row plus its
// semantics. Rows are grouped by concern in emu/ops/*.ts, Blink-style. How often each
// row runs is measured, not labelled: `npm run profile-ops` writes the executed
// instructions per mnemonic on the project's workloads into emu/op-profile.ts, read
// here by `measuredShare`.

import type { Decoded } from './decode';
import type { Exec } from './insn';
import { rows as alu } from './ops/alu';
import { rows as mov } from './ops/mov';
import { rows as branch } from './ops/branch';
import { rows as stack } from './ops/stack';
import { rows as shift } from './ops/shift';
import { rows as muldiv } from './ops/muldiv';
import { rows as bits } from './ops/bits';
import { rows as string } from './ops/string';
import { rows as flagops } from './ops/flagops';
import { rows as system } from './ops/system';
import { rows as atomic } from './ops/atomic';
import { rows as bmi2 } from './ops/bmi2';
import { OP_PROFILE, OP_PROFILE_TOTAL } from './op-profile';
import { MNEMONIC_NAMES } from './decode';

export interface OpRow {
  /** iced-x86 Mnemonic value. */
  mnemonic: number;
  /** Builds the executable form of one decoded instruction. Throws Unsupported for forms it lacks. */
  compile: (d: Decoded) => Exec;
  /**
   * How the row is checked. 'oracle': against the host CPU on random operands.
   * 'sdm': privileged or machine-level, tested against the SDM's semantics in unit tests.
   */
  check: 'oracle' | 'sdm';
  /**
   * Forms of the mnemonic (iced Code names) the row does not implement, and why: the
   * row implements every other form of its mnemonic on the modelled CPU (emu/forms.ts).
   */
  unimplemented?: Readonly<Record<string, string>>;
  /**
   * Forms it implements that the host-CPU oracle cannot check (privileged, segment
   * registers, results the SDM leaves undefined), and why / where they are tested.
   */
  oracleSkip?: Readonly<Record<string, string>>;
}

export const OP_ROWS: readonly OpRow[] = [
  ...alu, ...mov, ...branch, ...stack, ...shift, ...muldiv, ...bits, ...string, ...flagops, ...system,
  ...atomic, ...bmi2,
];

export const OPTABLE: ReadonlyMap<number, OpRow> = (() => {
  const m = new Map<number, OpRow>();
  for (const row of OP_ROWS) {
    if (m.has(row.mnemonic)) throw new Error(`optable: mnemonic ${row.mnemonic} has two rows`);
    m.set(row.mnemonic, row);
  }
  return m;
})();

/**
 * The measured share (0..1) of executed instructions that are this row's mnemonic on
 * the project's workloads (emu/op-profile.ts; 0: it did not run in any of them).
 */
export function measuredShare(row: OpRow): number {
  return OP_PROFILE_TOTAL ? (OP_PROFILE[MNEMONIC_NAMES[row.mnemonic]] ?? 0) / OP_PROFILE_TOTAL : 0;
}
