// Control transfer: jmp, jcc, call, ret, loop/loope/loopne, jrcxz. Direct targets
// are linked once (Insn.target); indirect ones are looked up per execution.

import { Mnemonic } from 'iced-x86';
import type { Cpu } from '../cpu';
import { HI, RCX } from '../regs';
import { GuestException } from '../fault';
import type { Decoded } from '../decode';
import { type Exec, type Insn, linkNext, linkTarget } from '../insn';
import { testCondition, ZF, LZ_NONE, getZF } from '../flags';
import { reader, Unsupported } from '../operands';
import type { OpRow } from '../optable';
import { push64, pop64, adjustRsp } from './stack';

/** Branching to a non-canonical address raises #GP(0) at the branch. */
function checkCanonical(hi: number): void {
  const top = hi >> 15;
  if (top !== 0 && top !== -1) throw new GuestException(13, 0, 'non-canonical branch target');
}

function branchTarget(d: Decoded): { lo: number; hi: number } {
  const o = d.ops[0];
  if (o.k !== 'branch') throw new Unsupported('branch operand');
  return { lo: o.lo, hi: o.hi };
}

function compileJmp(d: Decoded): Exec {
  const o = d.ops[0];
  if (o.k === 'branch') {
    const { lo, hi } = o;
    return (cpu, ins) => ins.target ?? linkTarget(cpu, ins, lo, hi);
  }
  if (o.k !== 'reg' && o.k !== 'mem') throw new Unsupported('far jmp');
  const src = reader(o, 64);
  return (cpu) => {
    const lo = src(cpu);
    const hi = cpu.th;
    checkCanonical(hi);
    return cpu.icache.at(lo, hi);
  };
}

function compileJcc(d: Decoded): Exec {
  const { lo, hi } = branchTarget(d);
  const cc = d.cc;
  // jz/jnz are most of all conditional branches: test the lazy result directly.
  if (cc === 5) {
    return (cpu, ins) =>
      (cpu.lzOp !== LZ_NONE ? (cpu.rLo | cpu.rHi) === 0 : (cpu.flags & ZF) !== 0)
        ? ins.target ?? linkTarget(cpu, ins, lo, hi)
        : ins.next ?? linkNext(cpu, ins);
  }
  if (cc === 6) {
    return (cpu, ins) =>
      (cpu.lzOp !== LZ_NONE ? (cpu.rLo | cpu.rHi) !== 0 : (cpu.flags & ZF) === 0)
        ? ins.target ?? linkTarget(cpu, ins, lo, hi)
        : ins.next ?? linkNext(cpu, ins);
  }
  return (cpu, ins) =>
    testCondition(cpu, cc) ? ins.target ?? linkTarget(cpu, ins, lo, hi) : ins.next ?? linkNext(cpu, ins);
}

function compileCall(d: Decoded): Exec {
  const o = d.ops[0];
  if (o.k === 'branch') {
    const { lo, hi } = o;
    return (cpu, ins) => {
      push64(cpu, ins.nlo, ins.nhi);
      return ins.target ?? linkTarget(cpu, ins, lo, hi);
    };
  }
  if (o.k !== 'reg' && o.k !== 'mem') throw new Unsupported('far call');
  const src = reader(o, 64);
  return (cpu, ins) => {
    // The target is read before the push (call *8(%rsp) reads the old stack).
    const lo = src(cpu);
    const hi = cpu.th;
    checkCanonical(hi);
    push64(cpu, ins.nlo, ins.nhi);
    return cpu.icache.at(lo, hi);
  };
}

function compileRet(d: Decoded): Exec {
  const o = d.ops[0];
  const extra = o && o.k === 'imm' ? o.lo & 0xffff : 0;
  return (cpu: Cpu): Insn => {
    const lo = pop64(cpu);
    const hi = cpu.th;
    if (extra) adjustRsp(cpu, extra);
    checkCanonical(hi);
    return cpu.icache.at(lo, hi);
  };
}

/** loop/loope/loopne/jrcxz: rCX-based branches, flags untouched. */
function compileLoop(d: Decoded, kind: 'loop' | 'loope' | 'loopne' | 'jrcxz'): Exec {
  const { lo, hi } = branchTarget(d);
  const use32 = d.addrSize === 32;
  return (cpu, ins) => {
    const r = cpu.r;
    let taken: boolean;
    if (kind === 'jrcxz') {
      taken = use32 ? r[RCX] === 0 : (r[RCX] | r[RCX + HI]) === 0;
    } else {
      if (use32) {
        r[RCX] = (r[RCX] - 1) | 0;
        r[RCX + HI] = 0;
      } else {
        const s = (r[RCX] >>> 0) - 1;
        r[RCX] = s | 0;
        r[RCX + HI] = (r[RCX + HI] - (s < 0 ? 1 : 0)) | 0;
      }
      const nz = use32 ? r[RCX] !== 0 : (r[RCX] | r[RCX + HI]) !== 0;
      taken = kind === 'loop' ? nz : kind === 'loope' ? nz && getZF(cpu) : nz && !getZF(cpu);
    }
    return taken ? ins.target ?? linkTarget(cpu, ins, lo, hi) : ins.next ?? linkNext(cpu, ins);
  };
}

const JCCS = [
  Mnemonic.Jo, Mnemonic.Jno, Mnemonic.Jb, Mnemonic.Jae, Mnemonic.Je, Mnemonic.Jne, Mnemonic.Jbe, Mnemonic.Ja,
  Mnemonic.Js, Mnemonic.Jns, Mnemonic.Jp, Mnemonic.Jnp, Mnemonic.Jl, Mnemonic.Jge, Mnemonic.Jle, Mnemonic.Jg,
];

export const rows: OpRow[] = [
  { mnemonic: Mnemonic.Jmp, compile: compileJmp, check: 'sdm' },
  { mnemonic: Mnemonic.Call, compile: compileCall, check: 'sdm' },
  { mnemonic: Mnemonic.Ret, compile: compileRet, check: 'sdm' },
  ...JCCS.map((m): OpRow => ({ mnemonic: m, compile: compileJcc, check: 'oracle' })),
  { mnemonic: Mnemonic.Loop, compile: (d) => compileLoop(d, 'loop'), check: 'oracle' },
  { mnemonic: Mnemonic.Loope, compile: (d) => compileLoop(d, 'loope'), check: 'oracle' },
  { mnemonic: Mnemonic.Loopne, compile: (d) => compileLoop(d, 'loopne'), check: 'oracle' },
  { mnemonic: Mnemonic.Jrcxz, compile: (d) => compileLoop(d, 'jrcxz'), check: 'oracle' },
  { mnemonic: Mnemonic.Jecxz, compile: (d) => compileLoop(d, 'jrcxz'), check: 'oracle' },
];
