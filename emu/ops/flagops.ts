// Direct flag manipulation: clc, stc, cmc, cld, std, lahf, sahf.
//
// DF is not an arithmetic flag, so cld/std edit it without folding the lazy state;
// the others touch CF (or the low byte of RFLAGS) and materialize first.

import { Mnemonic } from 'iced-x86';
import type { Decoded } from '../decode';
import { type Exec, linkNext } from '../insn';
import { CF, PF, AF, ZF, SF, DF, FIXED1, materialize } from '../flags';
import type { OpRow } from '../optable';
import { lockUd } from './alu';

const RAX = 0;
/** The flags lahf/sahf transfer through AH. */
const AH_FLAGS = SF | ZF | AF | PF | CF;

function simple(d: Decoded, exec: Exec): Exec {
  return d.lock ? lockUd(d) : exec;
}

const clc: Exec = (cpu, ins) => {
  materialize(cpu);
  cpu.flags &= ~CF;
  return ins.next ?? linkNext(cpu, ins);
};

const stc: Exec = (cpu, ins) => {
  materialize(cpu);
  cpu.flags |= CF;
  return ins.next ?? linkNext(cpu, ins);
};

const cmc: Exec = (cpu, ins) => {
  materialize(cpu);
  cpu.flags ^= CF;
  return ins.next ?? linkNext(cpu, ins);
};

const cld: Exec = (cpu, ins) => {
  cpu.flags &= ~DF;
  return ins.next ?? linkNext(cpu, ins);
};

const std: Exec = (cpu, ins) => {
  cpu.flags |= DF;
  return ins.next ?? linkNext(cpu, ins);
};

const lahf: Exec = (cpu, ins) => {
  materialize(cpu);
  const ah = (cpu.flags & AH_FLAGS) | FIXED1;
  cpu.r[RAX] = (cpu.r[RAX] & ~0xff00) | (ah << 8);
  return ins.next ?? linkNext(cpu, ins);
};

const sahf: Exec = (cpu, ins) => {
  materialize(cpu);
  const ah = (cpu.r[RAX] >> 8) & 0xff;
  cpu.flags = (cpu.flags & ~AH_FLAGS) | (ah & AH_FLAGS);
  return ins.next ?? linkNext(cpu, ins);
};


export const rows: OpRow[] = [
  { mnemonic: Mnemonic.Clc, compile: (d) => simple(d, clc), check: 'oracle' },
  { mnemonic: Mnemonic.Stc, compile: (d) => simple(d, stc), check: 'oracle' },
  { mnemonic: Mnemonic.Cmc, compile: (d) => simple(d, cmc), check: 'oracle' },
  { mnemonic: Mnemonic.Cld, compile: (d) => simple(d, cld), check: 'oracle' },
  { mnemonic: Mnemonic.Std, compile: (d) => simple(d, std), check: 'oracle' },
  { mnemonic: Mnemonic.Lahf, compile: (d) => simple(d, lahf), check: 'oracle' },
  { mnemonic: Mnemonic.Sahf, compile: (d) => simple(d, sahf), check: 'oracle' },
];
