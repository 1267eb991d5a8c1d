// Data movement: mov (all forms; moves to/from control and debug registers are
// delegated to system.ts), movzx/movsx/movsxd, lea, xchg, cmovcc, setcc, bswap, and
// the accumulator sign extensions cbw/cwde/cdqe and cwd/cdq/cqo, and xlatb (a table
// lookup: AL = [seg:rBX + AL]).

import { Mnemonic } from 'iced-x86';
import { HI, RAX, RBX } from '../regs';
import type { Decoded, Operand } from '../decode';
import { type Exec, linkNext } from '../insn';
import { testCondition } from '../flags';
import { compileEa, memRead, memWrite, reader, writer, sizeOf, Unsupported } from '../operands';
import type { OpRow } from '../optable';
import { lockUd } from './alu';
import { writeReg } from '../operands';
import { compileMovSystem } from './system';

function compileMov(d: Decoded): Exec {
  const [o0, o1] = d.ops;
  if (o0.k === 'cr' || o1.k === 'cr' || o0.k === 'dr' || o1.k === 'dr' || o0.k === 'sreg' || o1.k === 'sreg') {
    return compileMovSystem(d);
  }
  const size = sizeOf(o0);
  if (o0.k === 'reg' && !o0.high8) {
    const dl = o0.reg;
    const dh = dl + HI;
    if (o1.k === 'reg' && !o1.high8 && size >= 32) {
      const sl = o1.reg;
      const sh = sl + HI;
      if (size === 64) {
        return (cpu, ins) => {
          const r = cpu.r;
          r[dl] = r[sl];
          r[dh] = r[sh];
          return ins.next ?? linkNext(cpu, ins);
        };
      }
      return (cpu, ins) => {
        const r = cpu.r;
        r[dl] = r[sl];
        r[dh] = 0;
        return ins.next ?? linkNext(cpu, ins);
      };
    }
    if (o1.k === 'imm' && size >= 32) {
      const il = o1.lo | 0;
      const ih = size === 64 ? o1.hi | 0 : 0;
      return (cpu, ins) => {
        cpu.r[dl] = il;
        cpu.r[dh] = ih;
        return ins.next ?? linkNext(cpu, ins);
      };
    }
    if (o1.k === 'mem' && size >= 32) {
      const ea = compileEa(o1);
      if (size === 64) {
        return (cpu, ins) => {
          const a = ea(cpu);
          const lo = cpu.rd64(a, cpu.eh);
          cpu.r[dl] = lo;
          cpu.r[dh] = cpu.th;
          return ins.next ?? linkNext(cpu, ins);
        };
      }
      return (cpu, ins) => {
        const a = ea(cpu);
        cpu.r[dl] = cpu.rd32(a, cpu.eh);
        cpu.r[dh] = 0;
        return ins.next ?? linkNext(cpu, ins);
      };
    }
  }
  if (o0.k === 'mem' && o1.k === 'reg' && !o1.high8 && size >= 32) {
    const ea = compileEa(o0);
    const sl = o1.reg;
    const sh = sl + HI;
    if (size === 64) {
      return (cpu, ins) => {
        const a = ea(cpu);
        cpu.wr64(a, cpu.eh, cpu.r[sl], cpu.r[sh]);
        return ins.next ?? linkNext(cpu, ins);
      };
    }
    return (cpu, ins) => {
      const a = ea(cpu);
      cpu.wr32(a, cpu.eh, cpu.r[sl]);
      return ins.next ?? linkNext(cpu, ins);
    };
  }
  const src = reader(o1, size);
  const dst = writer(o0, size);
  return (cpu, ins) => {
    const lo = src(cpu);
    dst(cpu, lo, cpu.th);
    return ins.next ?? linkNext(cpu, ins);
  };
}

/** Reads `from` bits and extends them to `to` bits (zero or sign). */
function compileExtend(d: Decoded, signed: boolean): Exec {
  const [o0, o1] = d.ops;
  if (o0.k !== 'reg') throw new Unsupported('destination');
  const to = o0.size;
  const from = sizeOf(o1);
  const src = reader(o1, from);
  const i = o0.reg;
  const high8 = o0.high8;
  return (cpu, ins) => {
    let v = src(cpu);
    let hi = 0;
    if (signed && from < 64) {
      // Sign-extend to 32 bits first, then into the high half.
      if (from === 8) v = (v << 24) >> 24;
      else if (from === 16) v = (v << 16) >> 16;
      hi = v >> 31;
    }
    let lo = v;
    if (to === 16) lo = v & 0xffff;
    else if (to === 32) lo = v | 0;
    writeReg(cpu, i, to, high8, lo, to === 64 ? hi : 0);
    return ins.next ?? linkNext(cpu, ins);
  };
}

function compileLea(d: Decoded): Exec {
  const [o0, o1] = d.ops;
  if (o0.k !== 'reg' || o1.k !== 'mem') throw new Unsupported('operands');
  // LEA takes the address without its segment base.
  const ea = compileEa({ ...o1, seg: null });
  const size = o0.size;
  const i = o0.reg;
  if (size === 64) {
    const ih = i + HI;
    return (cpu, ins) => {
      cpu.r[i] = ea(cpu);
      cpu.r[ih] = cpu.eh;
      return ins.next ?? linkNext(cpu, ins);
    };
  }
  return (cpu, ins) => {
    const lo = ea(cpu);
    writeReg(cpu, i, size, false, size === 16 ? lo & 0xffff : lo, 0);
    return ins.next ?? linkNext(cpu, ins);
  };
}

function compileXchg(d: Decoded): Exec {
  const [o0, o1] = d.ops;
  const size = sizeOf(o0);
  if (d.lock && o0.k !== 'mem' && o1.k !== 'mem') return lockUd(d);
  // XCHG with memory is always locked; in this emulator every instruction is atomic.
  const mem = o0.k === 'mem' ? o0 : o1.k === 'mem' ? o1 : null;
  const reg = (o0.k === 'reg' ? o0 : o1) as Extract<Operand, { k: 'reg' }>;
  if (mem) {
    const ea = compileEa(mem);
    return (cpu, ins) => {
      const a = ea(cpu);
      const ah = cpu.eh;
      const v = memRead(cpu, a, ah, size);
      const vh = size === 64 ? cpu.th : 0;
      const rv = reader(reg, size)(cpu);
      memWrite(cpu, a, ah, size, rv, cpu.th);
      writeReg(cpu, reg.reg, size, reg.high8, v, vh);
      return ins.next ?? linkNext(cpu, ins);
    };
  }
  if (o0.k !== 'reg' || o1.k !== 'reg') throw new Unsupported('operands');
  const r0 = reader(o0, size);
  const r1 = reader(o1, size);
  return (cpu, ins) => {
    const a = r0(cpu);
    const ah = cpu.th;
    const b = r1(cpu);
    const bh = cpu.th;
    writeReg(cpu, o0.reg, size, o0.high8, b, bh);
    writeReg(cpu, o1.reg, size, o1.high8, a, ah);
    return ins.next ?? linkNext(cpu, ins);
  };
}

function compileCmov(d: Decoded): Exec {
  const [o0, o1] = d.ops;
  if (o0.k !== 'reg') throw new Unsupported('destination');
  const size = o0.size;
  const src = reader(o1, size);
  const cc = d.cc;
  const i = o0.reg;
  return (cpu, ins) => {
    // The source is read (and may fault) whether or not the condition holds.
    const v = src(cpu);
    const vh = cpu.th;
    if (testCondition(cpu, cc)) writeReg(cpu, i, size, false, v, vh);
    else if (size === 32) cpu.r[i + HI] = 0; // a 32-bit cmov zero-extends even when not taken
    return ins.next ?? linkNext(cpu, ins);
  };
}

function compileSetcc(d: Decoded): Exec {
  const o0 = d.ops[0];
  const dst = writer(o0, 8);
  const cc = d.cc;
  return (cpu, ins) => {
    dst(cpu, testCondition(cpu, cc) ? 1 : 0, 0);
    return ins.next ?? linkNext(cpu, ins);
  };
}

function bswap32(v: number): number {
  return ((v & 0xff) << 24) | ((v & 0xff00) << 8) | ((v >>> 8) & 0xff00) | (v >>> 24);
}

function compileBswap(d: Decoded): Exec {
  const o0 = d.ops[0];
  if (o0.k !== 'reg') throw new Unsupported('operand');
  const i = o0.reg;
  const ih = i + HI;
  if (o0.size === 64) {
    return (cpu, ins) => {
      const r = cpu.r;
      const lo = r[i];
      r[i] = bswap32(r[ih]);
      r[ih] = bswap32(lo);
      return ins.next ?? linkNext(cpu, ins);
    };
  }
  if (o0.size === 16) {
    // BSWAP of a 16-bit register is undefined; the host CPU (and we) clear the low word.
    return (cpu, ins) => {
      cpu.r[i] &= ~0xffff;
      return ins.next ?? linkNext(cpu, ins);
    };
  }
  return (cpu, ins) => {
    cpu.r[i] = bswap32(cpu.r[i]);
    cpu.r[ih] = 0;
    return ins.next ?? linkNext(cpu, ins);
  };
}

/** cbw/cwde/cdqe: sign-extend the lower half of rAX into its whole width. */
function signExtendAcc(to: number): Exec {
  return (cpu, ins) => {
    const r = cpu.r;
    if (to === 16) r[0] = (r[0] & ~0xffff) | (((r[0] << 24) >> 24) & 0xffff);
    else if (to === 32) {
      r[0] = (r[0] << 16) >> 16;
      r[HI] = 0;
    } else r[HI] = r[0] >> 31;
    return ins.next ?? linkNext(cpu, ins);
  };
}

/** cwd/cdq/cqo: fill rDX with the sign of rAX. */
function signFillDx(size: number): Exec {
  return (cpu, ins) => {
    const r = cpu.r;
    if (size === 16) r[2] = (r[2] & ~0xffff) | (((r[0] << 16) >> 31) & 0xffff);
    else if (size === 32) {
      r[2] = r[0] >> 31;
      r[2 + HI] = 0;
    } else {
      r[2] = r[HI] >> 31;
      r[2 + HI] = r[HI] >> 31;
    }
    return ins.next ?? linkNext(cpu, ins);
  };
}

const CMOVS = [
  Mnemonic.Cmovo, Mnemonic.Cmovno, Mnemonic.Cmovb, Mnemonic.Cmovae, Mnemonic.Cmove, Mnemonic.Cmovne,
  Mnemonic.Cmovbe, Mnemonic.Cmova, Mnemonic.Cmovs, Mnemonic.Cmovns, Mnemonic.Cmovp, Mnemonic.Cmovnp,
  Mnemonic.Cmovl, Mnemonic.Cmovge, Mnemonic.Cmovle, Mnemonic.Cmovg,
];
const SETS = [
  Mnemonic.Seto, Mnemonic.Setno, Mnemonic.Setb, Mnemonic.Setae, Mnemonic.Sete, Mnemonic.Setne,
  Mnemonic.Setbe, Mnemonic.Seta, Mnemonic.Sets, Mnemonic.Setns, Mnemonic.Setp, Mnemonic.Setnp,
  Mnemonic.Setl, Mnemonic.Setge, Mnemonic.Setle, Mnemonic.Setg,
];

/**
 * XLATB: AL = [seg:rBX + zero-extended AL]. With 0x67 the sum is taken mod 2^32 (EBX +
 * AL) before a segment base is added; DS (base 0) unless FS/GS overrides it.
 */
function compileXlat(d: Decoded): Exec {
  if (d.lock) return lockUd(d);
  const a32 = d.addrSize === 32;
  const seg = d.seg;
  return (cpu, ins) => {
    const r = cpu.r;
    const al = r[RAX] & 0xff;
    let lo: number;
    let hi: number;
    if (a32) {
      lo = (r[RBX] + al) | 0;
      hi = 0;
    } else {
      const s = (r[RBX] >>> 0) + al;
      lo = s | 0;
      hi = (r[RBX + HI] + (s > 0xffffffff ? 1 : 0)) | 0;
    }
    if (seg !== null) {
      const s = (lo >>> 0) + ((seg === 'gs' ? cpu.gsLo : cpu.fsLo) >>> 0);
      hi = (hi + (seg === 'gs' ? cpu.gsHi : cpu.fsHi) + (s > 0xffffffff ? 1 : 0)) | 0;
      lo = s | 0;
    }
    const v = memRead(cpu, lo, hi, 8);
    r[RAX] = (r[RAX] & ~0xff) | (v & 0xff);
    return ins.next ?? linkNext(cpu, ins);
  };
}

export const rows: OpRow[] = [
  {
    mnemonic: Mnemonic.Mov, compile: compileMov, check: 'oracle',
    // Moves to and from system registers are privileged or segment state, which a
    // user-mode harness on the host cannot run.
    oracleSkip: {
      ...Object.fromEntries(['Mov_rm16_Sreg', 'Mov_r32m16_Sreg', 'Mov_r64m16_Sreg', 'Mov_Sreg_rm16', 'Mov_Sreg_r32m16', 'Mov_Sreg_r64m16']
        .map((n) => [n, 'segment register: the host harness cannot load selectors (no unit test yet)'])),
      Mov_r64_cr: 'privileged: test/system.test.ts', Mov_cr_r64: 'privileged: test/system.test.ts',
      Mov_r64_dr: 'privileged (no unit test yet)', Mov_dr_r64: 'privileged (no unit test yet)',
    },
  },
  // A non-temporal store is an ordinary store to the emulator: there is no cache to bypass.
  { mnemonic: Mnemonic.Movnti, compile: compileMov, check: 'sdm' },
  { mnemonic: Mnemonic.Movzx, compile: (d) => compileExtend(d, false), check: 'oracle' },
  { mnemonic: Mnemonic.Movsx, compile: (d) => compileExtend(d, true), check: 'oracle' },
  { mnemonic: Mnemonic.Movsxd, compile: (d) => compileExtend(d, true), check: 'oracle' },
  { mnemonic: Mnemonic.Lea, compile: compileLea, check: 'oracle' },
  { mnemonic: Mnemonic.Xchg, compile: compileXchg, check: 'oracle' },
  { mnemonic: Mnemonic.Bswap, compile: compileBswap, check: 'oracle', oracleSkip: { Bswap_r16: 'result undefined (SDM, BSWAP)' } },
  { mnemonic: Mnemonic.Cbw, compile: () => signExtendAcc(16), check: 'oracle' },
  { mnemonic: Mnemonic.Cwde, compile: () => signExtendAcc(32), check: 'oracle' },
  { mnemonic: Mnemonic.Cdqe, compile: () => signExtendAcc(64), check: 'oracle' },
  { mnemonic: Mnemonic.Cwd, compile: () => signFillDx(16), check: 'oracle' },
  { mnemonic: Mnemonic.Cdq, compile: () => signFillDx(32), check: 'oracle' },
  { mnemonic: Mnemonic.Cqo, compile: () => signFillDx(64), check: 'oracle' },
  { mnemonic: Mnemonic.Xlatb, compile: compileXlat, check: 'oracle' },
  ...CMOVS.map((m): OpRow => ({ mnemonic: m, compile: compileCmov, check: 'oracle' })),
  ...SETS.map((m): OpRow => ({ mnemonic: m, compile: compileSetcc, check: 'oracle' })),
];
