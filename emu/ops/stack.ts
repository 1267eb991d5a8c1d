// The stack: push/pop (registers, memory, immediates, FS/GS), pushf/popf, enter/leave.
// Pushes write before they commit RSP, so a faulting push leaves RSP unchanged.

import { Code, Mnemonic } from 'iced-x86';
import type { Cpu } from '../cpu';
import { HI, RSP, RBP } from '../regs';
import type { Decoded } from '../decode';
import { type Exec, linkNext } from '../insn';
import { readFlags, writeFlags, POPF_MASK, IF } from '../flags';
import { compileEa, reader, memWrite, Unsupported } from '../operands';
import type { OpRow } from '../optable';
import { writeReg } from '../operands';

const RSP_HI = RSP + HI;

/** Pushes a 64-bit value. */
export function push64(cpu: Cpu, lo: number, hi: number): void {
  const r = cpu.r;
  const s = (r[RSP] >>> 0) - 8;
  const nlo = s | 0;
  const nhi = (r[RSP_HI] - (s < 0 ? 1 : 0)) | 0;
  cpu.wr64(nlo, nhi, lo, hi);
  r[RSP] = nlo;
  r[RSP_HI] = nhi;
}

/** Pops a 64-bit value: returns lo, hi in cpu.th. */
export function pop64(cpu: Cpu): number {
  const r = cpu.r;
  const lo = cpu.rd64(r[RSP], r[RSP_HI]);
  const hi = cpu.th;
  const s = (r[RSP] >>> 0) + 8;
  r[RSP] = s | 0;
  r[RSP_HI] = (r[RSP_HI] + (s > 0xffffffff ? 1 : 0)) | 0;
  cpu.th = hi;
  return lo;
}

function push16(cpu: Cpu, v: number): void {
  const r = cpu.r;
  const s = (r[RSP] >>> 0) - 2;
  const nlo = s | 0;
  const nhi = (r[RSP_HI] - (s < 0 ? 1 : 0)) | 0;
  cpu.wr16(nlo, nhi, v & 0xffff);
  r[RSP] = nlo;
  r[RSP_HI] = nhi;
}

function pop16(cpu: Cpu): number {
  const r = cpu.r;
  const v = cpu.rd16(r[RSP], r[RSP_HI]);
  const s = (r[RSP] >>> 0) + 2;
  r[RSP] = s | 0;
  r[RSP_HI] = (r[RSP_HI] + (s > 0xffffffff ? 1 : 0)) | 0;
  return v;
}

/** Adds a signed amount to RSP. */
export function adjustRsp(cpu: Cpu, delta: number): void {
  const r = cpu.r;
  const s = (r[RSP] >>> 0) + delta;
  r[RSP] = s | 0;
  r[RSP_HI] = (r[RSP_HI] + Math.floor(s / 4294967296)) | 0;
}

function compilePush(d: Decoded): Exec {
  const o0 = d.ops[0];
  if (o0.k === 'reg' && o0.size === 64) {
    const i = o0.reg;
    const ih = i + HI;
    return (cpu, ins) => {
      push64(cpu, cpu.r[i], cpu.r[ih]);
      return ins.next ?? linkNext(cpu, ins);
    };
  }
  if (o0.k === 'sreg') {
    if (d.code === Code.Pushw_FS || d.code === Code.Pushw_GS) throw new Unsupported('16-bit push of a segment register');
    // push fs/gs: the selector, zero-extended.
    return (cpu, ins) => {
      push64(cpu, o0.seg === 4 ? cpu.fsSel : o0.seg === 5 ? cpu.gsSel : 0, 0);
      return ins.next ?? linkNext(cpu, ins);
    };
  }
  // An immediate push has the operand size of its form: 66 6a/68 pushes a word.
  const size =
    o0.k === 'imm' ? (d.code === Code.Pushw_imm8 || d.code === Code.Push_imm16 ? 16 : 64)
      : o0.k === 'reg' ? o0.size : o0.k === 'mem' ? o0.size * 8 : 0;
  if (size === 16) {
    const src = reader(o0, 16);
    return (cpu, ins) => {
      push16(cpu, src(cpu));
      return ins.next ?? linkNext(cpu, ins);
    };
  }
  if (size !== 64) throw new Unsupported('operand size');
  const src = reader(o0, 64);
  return (cpu, ins) => {
    const lo = src(cpu);
    push64(cpu, lo, cpu.th);
    return ins.next ?? linkNext(cpu, ins);
  };
}

function compilePop(d: Decoded): Exec {
  const o0 = d.ops[0];
  if (o0.k === 'reg' && o0.size === 64) {
    const i = o0.reg;
    const ih = i + HI;
    return (cpu, ins) => {
      const lo = pop64(cpu);
      cpu.r[i] = lo;
      cpu.r[ih] = cpu.th;
      return ins.next ?? linkNext(cpu, ins);
    };
  }
  if (o0.k === 'reg' && o0.size === 16) {
    return (cpu, ins) => {
      writeReg(cpu, o0.reg, 16, false, pop16(cpu), 0);
      return ins.next ?? linkNext(cpu, ins);
    };
  }
  if (o0.k === 'sreg') {
    if (d.code === Code.Popw_FS || d.code === Code.Popw_GS) throw new Unsupported('16-bit pop of a segment register');
    return (cpu, ins) => {
      const v = pop64(cpu) & 0xffff;
      if (o0.seg === 4) cpu.fsSel = v;
      else if (o0.seg === 5) cpu.gsSel = v;
      return ins.next ?? linkNext(cpu, ins);
    };
  }
  if (o0.k === 'mem') {
    const size = o0.size * 8;
    // pop to memory: the address is computed after RSP is incremented (SDM: "POP").
    const ea = compileEa(o0);
    return (cpu, ins) => {
      const r = cpu.r;
      const oldLo = r[RSP];
      const oldHi = r[RSP_HI];
      const lo = size === 64 ? pop64(cpu) : pop16(cpu);
      const hi = size === 64 ? cpu.th : 0;
      try {
        const a = ea(cpu);
        memWrite(cpu, a, cpu.eh, size, lo, hi);
      } catch (e) {
        r[RSP] = oldLo;
        r[RSP_HI] = oldHi;
        throw e;
      }
      return ins.next ?? linkNext(cpu, ins);
    };
  }
  throw new Unsupported('operand');
}

function compilePushf(d: Decoded): Exec {
  const size = d.mnemonic === Mnemonic.Pushf ? 16 : 64;
  return (cpu, ins) => {
    // VM and RF are cleared in the pushed image.
    const f = readFlags(cpu) & ~0x30000;
    if (size === 16) push16(cpu, f);
    else push64(cpu, f, 0);
    return ins.next ?? linkNext(cpu, ins);
  };
}

function compilePopf(d: Decoded): Exec {
  const size = d.mnemonic === Mnemonic.Popf ? 16 : 64; // 66 9d is popf with a 16-bit operand
  return (cpu, ins) => {
    const v = size === 16 ? pop16(cpu) : pop64(cpu);
    const mask = size === 16 ? POPF_MASK & 0xffff : POPF_MASK;
    const old = readFlags(cpu);
    writeFlags(cpu, (old & ~mask) | (v & mask));
    // Interrupts enabled by POPF are recognised at the next boundary.
    if ((cpu.flags & IF) !== 0 && (old & IF) === 0) cpu.brk = true;
    return ins.next ?? linkNext(cpu, ins);
  };
}

function compileLeave(d: Decoded): Exec {
  const size = d.code === Code.Leavew ? 16 : 64;
  return (cpu, ins) => {
    const r = cpu.r;
    if (size === 16) {
      r[RSP] = (r[RSP] & ~0xffff) | (r[RBP] & 0xffff);
      writeReg(cpu, RBP, 16, false, pop16(cpu), 0);
    } else {
      const sl = r[RSP];
      const sh = r[RSP_HI];
      r[RSP] = r[RBP];
      r[RSP_HI] = r[RBP + HI];
      try {
        const lo = pop64(cpu);
        r[RBP] = lo;
        r[RBP + HI] = cpu.th;
      } catch (e) {
        r[RSP] = sl;
        r[RSP_HI] = sh;
        throw e;
      }
    }
    return ins.next ?? linkNext(cpu, ins);
  };
}

function compileEnter(d: Decoded): Exec {
  const [o0, o1] = d.ops;
  if (o0.k !== 'imm' || o1.k !== 'imm') throw new Unsupported('operands');
  const alloc = o0.lo & 0xffff;
  const level = o1.lo & 31;
  // 66 c8 (enterw) pushes and copies 16-bit frame pointers; the stack stays 64-bit.
  const word = d.code === Code.Enterw_imm16_imm8;
  if (!word && d.code !== Code.Enterq_imm16_imm8) throw new Unsupported('32-bit enter');
  const w = word ? 2 : 8;
  return (cpu, ins) => {
    const r = cpu.r;
    // The pushes reach memory first; then the final stack location is checked. A
    // fault there leaves RSP and RBP as they were (the host CPU does the same).
    const saveLo = r[RSP];
    const saveHi = r[RSP_HI];
    const bpLo0 = r[RBP];
    const bpHi0 = r[RBP + HI];
    try {
      if (word) push16(cpu, r[RBP]);
      else push64(cpu, r[RBP], r[RBP + HI]);
      const ftLo = r[RSP];
      const ftHi = r[RSP_HI];
      if (level > 0) {
        let bpLo = bpLo0;
        let bpHi = bpHi0;
        for (let k = 1; k < level; k++) {
          const s = (bpLo >>> 0) - w;
          bpLo = s | 0;
          bpHi = (bpHi - (s < 0 ? 1 : 0)) | 0;
          if (word) push16(cpu, cpu.rd16(bpLo, bpHi));
          else {
            const v = cpu.rd64(bpLo, bpHi);
            push64(cpu, v, cpu.th);
          }
        }
        if (word) push16(cpu, ftLo);
        else push64(cpu, ftLo, ftHi);
      }
      if (word) r[RBP] = (r[RBP] & ~0xffff) | (ftLo & 0xffff);
      else {
        r[RBP] = ftLo;
        r[RBP + HI] = ftHi;
      }
      adjustRsp(cpu, -alloc);
      cpu.probeWrite(r[RSP], r[RSP_HI], 1);
    } catch (e) {
      r[RSP] = saveLo;
      r[RSP_HI] = saveHi;
      r[RBP] = bpLo0;
      r[RBP + HI] = bpHi0;
      throw e;
    }
    return ins.next ?? linkNext(cpu, ins);
  };
}

const SEG16 = '16-bit push/pop of a segment register (no kernel code uses it)';
const SEG_ORACLE = 'segment register: the host harness cannot load FS/GS selectors (no unit test yet)';

export const rows: OpRow[] = [
  {
    mnemonic: Mnemonic.Push, compile: compilePush, check: 'oracle',
    unimplemented: { Pushw_FS: SEG16, Pushw_GS: SEG16 },
    oracleSkip: { Pushq_FS: SEG_ORACLE, Pushq_GS: SEG_ORACLE },
  },
  {
    mnemonic: Mnemonic.Pop, compile: compilePop, check: 'oracle',
    unimplemented: { Popw_FS: SEG16, Popw_GS: SEG16 },
    oracleSkip: { Popq_FS: SEG_ORACLE, Popq_GS: SEG_ORACLE },
  },
  { mnemonic: Mnemonic.Pushfq, compile: compilePushf, check: 'oracle' },
  { mnemonic: Mnemonic.Pushf, compile: compilePushf, check: 'oracle' },
  { mnemonic: Mnemonic.Popfq, compile: compilePopf, check: 'sdm' },
  { mnemonic: Mnemonic.Popf, compile: compilePopf, check: 'sdm' },
  { mnemonic: Mnemonic.Leave, compile: compileLeave, check: 'oracle' },
  { mnemonic: Mnemonic.Enter, compile: compileEnter, check: 'oracle' },
];
