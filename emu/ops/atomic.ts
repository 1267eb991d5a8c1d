// Atomic read-modify-write instructions: cmpxchg, xadd, cmpxchg8b, cmpxchg16b. Every
// instruction is atomic in this emulator (CPUs interleave only between instructions),
// so LOCK changes nothing except where it is not allowed (a register destination: #UD).
//
// Design decision: a memory cmpxchg (and cmpxchg8b/16b) that fails does not store.
// Hardware performs a locked write-back of the unchanged value; in this emulator the
// only observers of such a write would be memory watchers and the PAUSE spin detector,
// which would take a failed trylock for a store and never see the loop as a fixed
// point. Memory is either mapped read-write or unmapped, and the read faults first on
// an unmapped operand, so no fault is lost by skipping the write-back.
//
// Register destinations follow the host CPU (checked on an AMD EPYC): with a 32-bit
// operand, a successful cmpxchg writes only the destination (zero-extending it, RAX
// untouched); a failed one writes only EAX (zeroing RAX's upper half, destination
// untouched). A failed cmpxchg8b loads EDX:EAX, zeroing the upper halves of RDX and
// RAX; a successful one leaves them alone.

import { Code, Mnemonic } from 'iced-x86';
import type { Cpu } from '../cpu';
import { GuestException, HI, RAX, RBX, RCX, RDX } from '../cpu';
import type { Decoded } from '../decode';
import { type Exec, linkNext } from '../insn';
import { materialize, ZF } from '../flags';
import { compileEa, getReg, memRead, memWrite, regReader, setReg, sizeOf, Unsupported } from '../operands';
import type { OpRow } from '../optable';
import { add, sub, lockUd } from './alu';
import { writeReg } from '../operands';

function compileCmpxchg(d: Decoded): Exec {
  const [o0, o1] = d.ops;
  if (o1?.k !== 'reg') throw new Unsupported('operands');
  const size = sizeOf(o0);
  const src = regReader(o1);
  if (o0.k === 'reg') {
    if (d.lock) return lockUd(d);
    const dst = regReader(o0);
    const i = o0.reg;
    const high8 = o0.high8;
    return (cpu, ins) => {
      const a = getReg(cpu, RAX, size);
      const ah = cpu.th;
      const v = dst(cpu);
      const vh = cpu.th;
      // Flags are those of CMP accumulator, destination.
      sub(cpu, size, a, ah, v, vh);
      if (a === v && ah === vh) {
        const s = src(cpu);
        writeReg(cpu, i, size, high8, s, cpu.th);
      } else {
        setReg(cpu, RAX, size, v, vh);
      }
      return ins.next ?? linkNext(cpu, ins);
    };
  }
  if (o0.k !== 'mem') throw new Unsupported('destination');
  const ea = compileEa(o0);
  return (cpu, ins) => {
    const p = ea(cpu);
    const ph = cpu.eh;
    const v = memRead(cpu, p, ph, size);
    const vh = size === 64 ? cpu.th : 0;
    const a = getReg(cpu, RAX, size);
    const ah = cpu.th;
    if (a === v && ah === vh) {
      const s = src(cpu);
      memWrite(cpu, p, ph, size, s, cpu.th);
    } else {
      setReg(cpu, RAX, size, v, vh);
    }
    sub(cpu, size, a, ah, v, vh);
    return ins.next ?? linkNext(cpu, ins);
  };
}

function compileXadd(d: Decoded): Exec {
  const [o0, o1] = d.ops;
  if (o1?.k !== 'reg') throw new Unsupported('operands');
  const size = sizeOf(o0);
  const src = regReader(o1);
  const si = o1.reg;
  const sHigh8 = o1.high8;
  if (o0.k === 'reg') {
    if (d.lock) return lockUd(d);
    const dst = regReader(o0);
    const di = o0.reg;
    const dHigh8 = o0.high8;
    return (cpu, ins) => {
      const v = dst(cpu);
      const vh = cpu.th;
      const s = src(cpu);
      const sum = add(cpu, size, v, vh, s, cpu.th);
      const sumh = cpu.th;
      // SDM order: SRC ← DEST, then DEST ← sum, so `xadd r, r` leaves the sum.
      writeReg(cpu, si, size, sHigh8, v, vh);
      writeReg(cpu, di, size, dHigh8, sum, sumh);
      return ins.next ?? linkNext(cpu, ins);
    };
  }
  if (o0.k !== 'mem') throw new Unsupported('destination');
  const ea = compileEa(o0);
  return (cpu, ins) => {
    const p = ea(cpu);
    const ph = cpu.eh;
    const v = memRead(cpu, p, ph, size);
    const vh = size === 64 ? cpu.th : 0;
    const s = src(cpu);
    const sum = add(cpu, size, v, vh, s, cpu.th);
    memWrite(cpu, p, ph, size, sum, cpu.th);
    writeReg(cpu, si, size, sHigh8, v, vh);
    return ins.next ?? linkNext(cpu, ins);
  };
}

/** Sets or clears ZF alone (cmpxchg8b/16b leave the other flags as they were). */
function setZf(cpu: Cpu, z: boolean): void {
  materialize(cpu);
  cpu.flags = z ? cpu.flags | ZF : cpu.flags & ~ZF;
}

function compileCmpxchg8b(d: Decoded): Exec {
  const o0 = d.ops[0];
  if (d.code !== Code.Cmpxchg8b_m64 || o0.k !== 'mem') throw new Unsupported('operands');
  const ea = compileEa(o0);
  return (cpu, ins) => {
    const r = cpu.r;
    const p = ea(cpu);
    const ph = cpu.eh;
    const lo = cpu.rd64(p, ph);
    const hi = cpu.th;
    const eq = lo === r[RAX] && hi === r[RDX];
    if (eq) {
      cpu.wr64(p, ph, r[RBX], r[RCX]);
    } else {
      r[RAX] = lo;
      r[RAX + HI] = 0;
      r[RDX] = hi;
      r[RDX + HI] = 0;
    }
    setZf(cpu, eq);
    return ins.next ?? linkNext(cpu, ins);
  };
}

function compileCmpxchg16b(d: Decoded): Exec {
  const o0 = d.ops[0];
  if (d.code !== Code.Cmpxchg16b_m128 || o0.k !== 'mem') throw new Unsupported('operands');
  const ea = compileEa(o0);
  return (cpu, ins) => {
    const r = cpu.r;
    const p = ea(cpu);
    const ph = cpu.eh;
    if ((p & 15) !== 0) throw new GuestException(13, 0, 'cmpxchg16b operand not 16-byte aligned');
    // Aligned: both quadwords lie in one page, so neither access can fault after the other.
    const s = (p >>> 0) + 8;
    const p8 = s | 0;
    const p8h = (ph + (s > 0xffffffff ? 1 : 0)) | 0;
    const l0 = cpu.rd64(p, ph);
    const h0 = cpu.th;
    const l1 = cpu.rd64(p8, p8h);
    const h1 = cpu.th;
    const eq = l0 === r[RAX] && h0 === r[RAX + HI] && l1 === r[RDX] && h1 === r[RDX + HI];
    if (eq) {
      cpu.wr64(p, ph, r[RBX], r[RBX + HI]);
      cpu.wr64(p8, p8h, r[RCX], r[RCX + HI]);
    } else {
      r[RAX] = l0;
      r[RAX + HI] = h0;
      r[RDX] = l1;
      r[RDX + HI] = h1;
    }
    setZf(cpu, eq);
    return ins.next ?? linkNext(cpu, ins);
  };
}

export const rows: OpRow[] = [
  { mnemonic: Mnemonic.Cmpxchg, compile: compileCmpxchg, check: 'oracle' },
  { mnemonic: Mnemonic.Xadd, compile: compileXadd, check: 'oracle' },
  { mnemonic: Mnemonic.Cmpxchg8b, compile: compileCmpxchg8b, check: 'oracle' },
  { mnemonic: Mnemonic.Cmpxchg16b, compile: compileCmpxchg16b, check: 'oracle' },
];
