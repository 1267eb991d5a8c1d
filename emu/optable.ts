// The opcode table: one row per implemented mnemonic, v86-style. The interpreter
// compiles instructions through it, `coverage` reports against it, and the host-CPU
// oracle tests are generated from it, so adding an instruction is one row plus its
// semantics. Rows are grouped by concern in emu/ops/*.ts, Blink-style, and each row
// says how often kernel code runs it.

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

export type Frequency = 'hot' | 'warm' | 'cold';

export interface OpRow {
  /** iced-x86 Mnemonic value. */
  mnemonic: number;
  /** Builds the executable form of one decoded instruction. Throws Unsupported for forms it lacks. */
  compile: (d: Decoded) => Exec;
  /** How often kernel text executes it: hot (loops, locks), warm (common paths), cold. */
  freq: Frequency;
  /**
   * How the row is checked. 'oracle': against the host CPU on random operands.
   * 'sdm': privileged or machine-level, tested against the SDM's semantics in unit tests.
   */
  check: 'oracle' | 'sdm';
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
