// Privileged and machine-level instructions: interrupts and IRETQ, HLT, CLI/STI,
// PAUSE (with spin detection), CPUID, MSRs, the TSC, control/debug/segment register
// moves, descriptor tables, SWAPGS and FS/GS base access, serializing and fencing
// instructions, cache control, port I/O, and the NOP family. Serializing
// instructions follow the SDM's list (vol. 3, 9.3): the XMC checker depends on it.

import { Mnemonic } from 'iced-x86';
import type { Cpu } from '../cpu';
import { HI, RAX, RCX, RDX } from '../regs';
import { GuestException } from '../fault';
import type { Decoded } from '../decode';
import { type Exec, type Insn, linkNext } from '../insn';
import { IF, AC, ZF, CF, materialize } from '../flags';
import { deliver, iretq, VEC_BP, VEC_DB, VEC_UD } from '../events';
import { cpuid } from '../cpuid';
import { compileEa, reader, writer, Unsupported, getReg, setReg } from '../operands';
import type { OpRow } from '../optable';
import { writeReg } from '../operands';
import { toBig, loOf, hiOf } from '../u64';
import { Prng } from '../scheduler';

const next = (cpu: Cpu, ins: Insn): Insn => ins.next ?? linkNext(cpu, ins);

function nop(): Exec {
  return next;
}

/** A NOP that still serializes (SERIALIZE, INVD, WBINVD, INVLPG, INVPCID…). */
function serializing(): Exec {
  return (cpu, ins) => {
    cpu.serialize();
    return next(cpu, ins);
  };
}

function compileHlt(): Exec {
  return (cpu, ins) => {
    cpu.halted = true;
    cpu.brk = true;
    return next(cpu, ins);
  };
}

function compileCli(): Exec {
  return (cpu, ins) => {
    materialize(cpu);
    cpu.flags &= ~IF;
    return next(cpu, ins);
  };
}

function compileSti(): Exec {
  return (cpu, ins) => {
    materialize(cpu);
    if ((cpu.flags & IF) === 0) {
      cpu.flags |= IF;
      // Interrupts are recognised only after the instruction that follows STI.
      cpu.intShadow = true;
    }
    cpu.brk = true;
    return next(cpu, ins);
  };
}

function compilePause(): Exec {
  return (cpu, ins) => {
    if (cpu.spin && cpu.spin.onPause(ins.lo, ins.hi)) cpu.machine.blockOnSpin(cpu);
    return next(cpu, ins);
  };
}

function compileInt3(): Exec {
  return (cpu, ins) => {
    // A trap: the frame holds the address after the 0xCC.
    deliver(cpu, VEC_BP, null, ins.nlo, ins.nhi, 'soft');
    cpu.brk = true;
    return cpu.insn;
  };
}

function compileInt(d: Decoded): Exec {
  const o = d.ops[0];
  const vector = d.mnemonic === Mnemonic.Int1 ? VEC_DB : o && o.k === 'imm' ? o.lo & 0xff : VEC_UD;
  return (cpu, ins) => {
    deliver(cpu, vector, null, ins.nlo, ins.nhi, 'soft');
    cpu.brk = true;
    return cpu.insn;
  };
}

function compileUd(d: Decoded): Exec {
  return () => {
    throw new GuestException(VEC_UD, null, d.name);
  };
}

function compileIret(d: Decoded): Exec {
  if (d.mnemonic !== Mnemonic.Iretq) throw new Unsupported('only iretq in 64-bit mode');
  return (cpu) => {
    iretq(cpu);
    return cpu.insn;
  };
}

function compileCpuid(): Exec {
  return (cpu, ins) => {
    const r = cpu.r;
    const res = cpuid(cpu, r[RAX], r[RCX]);
    r[RAX] = res.eax;
    r[RAX + HI] = 0;
    r[3] = res.ebx;
    r[3 + HI] = 0;
    r[RCX] = res.ecx;
    r[RCX + HI] = 0;
    r[RDX] = res.edx;
    r[RDX + HI] = 0;
    cpu.serialize();
    return next(cpu, ins);
  };
}

function compileRdmsr(): Exec {
  return (cpu, ins) => {
    const v = cpu.machine.rdmsr(cpu, cpu.r[RCX] >>> 0);
    setReg(cpu, RAX, 32, loOf(v), 0);
    setReg(cpu, RDX, 32, hiOf(v), 0);
    return next(cpu, ins);
  };
}

function compileWrmsr(): Exec {
  return (cpu, ins) => {
    const r = cpu.r;
    const v = toBig(r[RAX], r[RDX]);
    if (cpu.machine.wrmsr(cpu, r[RCX] >>> 0, v)) cpu.serialize();
    return next(cpu, ins);
  };
}

function tsc(cpu: Cpu): bigint {
  cpu.spin?.noteImpure();
  return BigInt.asUintN(64, BigInt(cpu.machine.currentStep(cpu)) + cpu.tscOffset);
}

function compileRdtsc(withAux: boolean): Exec {
  return (cpu, ins) => {
    const t = tsc(cpu);
    setReg(cpu, RAX, 32, loOf(t), 0);
    setReg(cpu, RDX, 32, hiOf(t), 0);
    if (withAux) setReg(cpu, RCX, 32, Number(cpu.msrs.get(0xc0000103) ?? 0n) | 0, 0);
    return next(cpu, ins);
  };
}

function compileRdpid(d: Decoded): Exec {
  const dst = writer(d.ops[0], 64);
  return (cpu, ins) => {
    dst(cpu, Number(cpu.msrs.get(0xc0000103) ?? 0n) | 0, 0);
    return next(cpu, ins);
  };
}

// ---- Control, debug and segment registers ----

function readCr(cpu: Cpu, n: number): [number, number] {
  switch (n) {
    case 0:
      return [cpu.cr0, 0];
    case 2:
      return [cpu.cr2Lo, cpu.cr2Hi];
    case 3:
      return [cpu.cr3Lo, cpu.cr3Hi];
    case 4:
      return [cpu.cr4, 0];
    case 8:
      return [cpu.apic.cr8, 0];
    default:
      throw new GuestException(VEC_UD, null, `mov from cr${n}`);
  }
}

function writeCr(cpu: Cpu, n: number, lo: number, hi: number): void {
  switch (n) {
    case 0:
      cpu.cr0 = lo;
      break;
    case 2:
      cpu.cr2Lo = lo;
      cpu.cr2Hi = hi;
      break;
    case 3:
      cpu.setCr3(lo, hi);
      break;
    case 4:
      cpu.cr4 = lo;
      break;
    case 8:
      cpu.apic.cr8 = lo;
      // A lower task priority may unmask a waiting interrupt.
      cpu.brk = true;
      return; // MOV to CR8 is not serializing
    default:
      throw new GuestException(VEC_UD, null, `mov to cr${n}`);
  }
  cpu.serialize();
}

const SEG_NAMES = ['es', 'cs', 'ss', 'ds', 'fs', 'gs'];

function readSeg(cpu: Cpu, seg: number): number {
  return [cpu.es, cpu.cs, cpu.ss, cpu.ds, cpu.fsSel, cpu.gsSel][seg] ?? 0;
}

function writeSeg(cpu: Cpu, seg: number, v: number): void {
  switch (seg) {
    case 0:
      cpu.es = v;
      return;
    case 2:
      cpu.ss = v;
      // MOV SS inhibits interrupts for one instruction, like STI.
      cpu.intShadow = true;
      cpu.brk = true;
      return;
    case 3:
      cpu.ds = v;
      return;
    case 4:
      cpu.fsSel = v;
      return;
    case 5:
      cpu.gsSel = v;
      return;
    default:
      throw new GuestException(VEC_UD, null, `mov to ${SEG_NAMES[seg] ?? 'segment'}`);
  }
}

/** MOV forms whose operand is a control, debug or segment register. */
export function compileMovSystem(d: Decoded): Exec {
  const [o0, o1] = d.ops;
  if (o0.k === 'reg' && o1.k === 'cr') {
    const n = o1.n;
    return (cpu, ins) => {
      const [lo, hi] = readCr(cpu, n);
      writeReg(cpu, o0.reg, 64, false, lo, hi);
      return next(cpu, ins);
    };
  }
  if (o0.k === 'cr' && o1.k === 'reg') {
    const n = o0.n;
    const i = o1.reg;
    return (cpu, ins) => {
      writeCr(cpu, n, cpu.r[i], cpu.r[i + HI]);
      return next(cpu, ins);
    };
  }
  if (o0.k === 'reg' && o1.k === 'dr') {
    const n = o1.n;
    return (cpu, ins) => {
      const v = cpu.msrs.get(0x100000 + n) ?? (n === 6 ? 0xffff0ff0n : n === 7 ? 0x400n : 0n);
      writeReg(cpu, o0.reg, 64, false, loOf(v), hiOf(v));
      return next(cpu, ins);
    };
  }
  if (o0.k === 'dr' && o1.k === 'reg') {
    const n = o0.n;
    const i = o1.reg;
    return (cpu, ins) => {
      // Debug registers are kept but breakpoints through them are not modelled.
      cpu.msrs.set(0x100000 + n, toBig(cpu.r[i], cpu.r[i + HI]));
      cpu.serialize();
      return next(cpu, ins);
    };
  }
  if (o1.k === 'sreg') {
    const seg = o1.seg;
    const size = o0.k === 'reg' ? o0.size : 16;
    const dst = writer(o0, size);
    return (cpu, ins) => {
      dst(cpu, readSeg(cpu, seg), 0);
      return next(cpu, ins);
    };
  }
  if (o0.k === 'sreg') {
    const seg = o0.seg;
    const src = reader(o1, 16);
    return (cpu, ins) => {
      writeSeg(cpu, seg, src(cpu) & 0xffff);
      return next(cpu, ins);
    };
  }
  throw new Unsupported('system register operands');
}

// ---- Descriptor tables ----

function compileLoadDt(d: Decoded, which: 'gdt' | 'idt'): Exec {
  const o = d.ops[0];
  if (o.k !== 'mem') throw new Unsupported('operand');
  const ea = compileEa(o);
  return (cpu, ins) => {
    const a = ea(cpu);
    const ah = cpu.eh;
    const limit = cpu.rd16(a, ah);
    const s = (a >>> 0) + 2;
    const blo = cpu.rd64(s | 0, (ah + (s > 0xffffffff ? 1 : 0)) | 0);
    const bhi = cpu.th;
    if (which === 'gdt') {
      cpu.gdtrLo = blo;
      cpu.gdtrHi = bhi;
      cpu.gdtrLimit = limit;
    } else {
      cpu.idtrLo = blo;
      cpu.idtrHi = bhi;
      cpu.idtrLimit = limit;
    }
    cpu.serialize();
    return next(cpu, ins);
  };
}

function compileStoreDt(d: Decoded, which: 'gdt' | 'idt'): Exec {
  const o = d.ops[0];
  if (o.k !== 'mem') throw new Unsupported('operand');
  const ea = compileEa(o);
  return (cpu, ins) => {
    const a = ea(cpu);
    const ah = cpu.eh;
    cpu.probeWrite(a, ah, 10);
    const g = which === 'gdt';
    cpu.wr16(a, ah, g ? cpu.gdtrLimit : cpu.idtrLimit);
    const s = (a >>> 0) + 2;
    cpu.wr64(s | 0, (ah + (s > 0xffffffff ? 1 : 0)) | 0, g ? cpu.gdtrLo : cpu.idtrLo, g ? cpu.gdtrHi : cpu.idtrHi);
    return next(cpu, ins);
  };
}

/** LTR: loads TR from a 16-byte TSS descriptor in the GDT (base bits 15:0, 23:16, 31:24, 63:32). */
function compileLtr(d: Decoded): Exec {
  const src = reader(d.ops[0], 16);
  return (cpu, ins) => {
    const sel = src(cpu) & 0xffff;
    const off = sel & ~7;
    if (off + 15 > cpu.gdtrLimit || off === 0) throw new GuestException(13, sel, `ltr: selector 0x${sel.toString(16)} outside the GDT`);
    const s = (cpu.gdtrLo >>> 0) + off;
    const dlo = s | 0;
    const dhi = (cpu.gdtrHi + (s > 0xffffffff ? 1 : 0)) | 0;
    const w0 = cpu.rd32(dlo, dhi);
    const w1 = cpu.rd32((s + 4) | 0, dhi);
    const w2 = cpu.rd32((s + 8) | 0, dhi);
    const type = (w1 >>> 8) & 0xf;
    if (type !== 9 && type !== 0xb) throw new GuestException(13, sel, `ltr: descriptor type ${type} is not a TSS`);
    cpu.trSel = sel;
    cpu.trLo = ((w0 >>> 16) & 0xffff) | ((w1 & 0xff) << 16) | (w1 & 0xff000000);
    cpu.trHi = w2;
    // Mark the TSS busy, as hardware does.
    cpu.wr32((s + 4) | 0, dhi, w1 | 0x200);
    cpu.serialize();
    return next(cpu, ins);
  };
}

function compileStr(d: Decoded): Exec {
  const o = d.ops[0];
  const dst = writer(o, o.k === 'reg' ? o.size : 16);
  return (cpu, ins) => {
    dst(cpu, cpu.trSel, 0);
    return next(cpu, ins);
  };
}

// ---- GS/FS bases ----

function compileSwapgs(): Exec {
  return (cpu, ins) => {
    const lo = cpu.gsLo;
    const hi = cpu.gsHi;
    cpu.gsLo = cpu.kgsLo;
    cpu.gsHi = cpu.kgsHi;
    cpu.kgsLo = lo;
    cpu.kgsHi = hi;
    return next(cpu, ins);
  };
}

function compileSegBase(d: Decoded, seg: 'fs' | 'gs', write: boolean): Exec {
  const o = d.ops[0];
  if (o.k !== 'reg') throw new Unsupported('operand');
  const size = o.size;
  return (cpu, ins) => {
    if (write) {
      const lo = getReg(cpu, o.reg, size);
      const hi = cpu.th;
      if (seg === 'fs') {
        cpu.fsLo = lo;
        cpu.fsHi = hi;
      } else {
        cpu.gsLo = lo;
        cpu.gsHi = hi;
      }
    } else {
      const lo = seg === 'fs' ? cpu.fsLo : cpu.gsLo;
      const hi = seg === 'fs' ? cpu.fsHi : cpu.gsHi;
      writeReg(cpu, o.reg, size, false, lo, size === 64 ? hi : 0);
    }
    return next(cpu, ins);
  };
}

// ---- Flags-only system instructions ----

function compileAc(set: boolean): Exec {
  return (cpu, ins) => {
    materialize(cpu);
    if (set) cpu.flags |= AC;
    else cpu.flags &= ~AC;
    return next(cpu, ins);
  };
}

/** VERW sets ZF when the selector names a writable data segment (Linux's __KERNEL_DS / __USER_DS). */
function compileVerw(d: Decoded): Exec {
  const src = reader(d.ops[0], 16);
  return (cpu, ins) => {
    const sel = src(cpu) & 0xfff8;
    materialize(cpu);
    if (sel === 0x18 || sel === 0x28) cpu.flags |= ZF;
    else cpu.flags &= ~ZF;
    return next(cpu, ins);
  };
}

function compileClts(): Exec {
  return (cpu, ins) => {
    cpu.cr0 &= ~8;
    return next(cpu, ins);
  };
}

function compileXgetbv(): Exec {
  return (cpu, ins) => {
    if ((cpu.r[RCX] >>> 0) !== 0) throw new GuestException(13, 0, 'xgetbv: only XCR0 exists');
    setReg(cpu, RAX, 32, 3, 0); // x87 and SSE state
    setReg(cpu, RDX, 32, 0, 0);
    return next(cpu, ins);
  };
}

/** RDRAND/RDSEED: deterministic, from a per-machine PRNG, so runs replay. */
const rng = new WeakMap<object, Prng>();
function compileRdrand(d: Decoded): Exec {
  const o = d.ops[0];
  if (o.k !== 'reg') throw new Unsupported('operand');
  const size = o.size;
  return (cpu, ins) => {
    let p = rng.get(cpu.machine);
    if (!p) rng.set(cpu.machine, (p = new Prng(0x7e47)));
    const lo = p.next() | 0;
    const hi = p.next() | 0;
    writeReg(cpu, o.reg, size, false, size === 16 ? lo & 0xffff : lo, size === 64 ? hi : 0);
    materialize(cpu);
    cpu.flags = (cpu.flags & ~0x8d5) | CF;
    return next(cpu, ins);
  };
}

// ---- Port I/O ----

function compileIn(d: Decoded): Exec {
  const [o0, o1] = d.ops;
  if (o0.k !== 'reg') throw new Unsupported('operand');
  const size = o0.size;
  const port = o1.k === 'imm' ? reader(o1, 8) : reader(o1, 16);
  return (cpu, ins) => {
    cpu.spin?.noteImpure();
    const v = cpu.machine.ports.in(port(cpu), size / 8);
    writeReg(cpu, RAX, size, false, v, 0);
    return next(cpu, ins);
  };
}

function compileOut(d: Decoded): Exec {
  const [o0, o1] = d.ops;
  if (o1.k !== 'reg') throw new Unsupported('operand');
  const size = o1.size;
  const port = o0.k === 'imm' ? reader(o0, 8) : reader(o0, 16);
  const val = reader(o1, size);
  return (cpu, ins) => {
    cpu.machine.ports.out(port(cpu), size / 8, val(cpu));
    return next(cpu, ins);
  };
}

const NOPS = [
  Mnemonic.Nop, Mnemonic.Endbr64, Mnemonic.Endbr32, Mnemonic.Prefetch, Mnemonic.Prefetchw, Mnemonic.Prefetchnta,
  Mnemonic.Prefetcht0, Mnemonic.Prefetcht1, Mnemonic.Prefetcht2, Mnemonic.Lfence, Mnemonic.Sfence,
  Mnemonic.Clflush, Mnemonic.Clflushopt, Mnemonic.Clwb, Mnemonic.Monitor, Mnemonic.Mwait,
];
// WBINVD/INVD: caches are not modelled (memory is always coherent), so only the serialization remains.
const SERIALIZING = [Mnemonic.Serialize, Mnemonic.Invd, Mnemonic.Wbinvd, Mnemonic.Invpcid];

/** MFENCE: every earlier store is globally visible before any later load or store (x86-TSO: drain). */
function compileMfence(): Exec {
  return (cpu, ins) => {
    if (cpu.stores.length !== 0) cpu.drainAll();
    return next(cpu, ins);
  };
}

/** INVLPG m: drops the TLB entries for the page holding m (SDM 4.10.4.1); serializing. */
function compileInvlpg(d: Decoded): Exec {
  const o = d.ops[0];
  if (o?.k !== 'mem') throw new Unsupported('operand');
  const ea = compileEa(o);
  return (cpu, ins) => {
    const lo = ea(cpu);
    cpu.invlpg(lo, cpu.eh);
    cpu.serialize();
    return next(cpu, ins);
  };
}

export const rows: OpRow[] = [
  ...NOPS.map((m): OpRow => ({ mnemonic: m, compile: nop, check: 'sdm' })),
  ...SERIALIZING.map((m): OpRow => ({ mnemonic: m, compile: serializing, check: 'sdm' })),
  { mnemonic: Mnemonic.Mfence, compile: compileMfence, check: 'sdm' },
  { mnemonic: Mnemonic.Invlpg, compile: compileInvlpg, check: 'sdm' },
  { mnemonic: Mnemonic.Hlt, compile: compileHlt, check: 'sdm' },
  { mnemonic: Mnemonic.Cli, compile: compileCli, check: 'sdm' },
  { mnemonic: Mnemonic.Sti, compile: compileSti, check: 'sdm' },
  { mnemonic: Mnemonic.Pause, compile: compilePause, check: 'sdm' },
  { mnemonic: Mnemonic.Int3, compile: compileInt3, check: 'sdm' },
  { mnemonic: Mnemonic.Int, compile: compileInt, check: 'sdm' },
  { mnemonic: Mnemonic.Int1, compile: compileInt, check: 'sdm' },
  { mnemonic: Mnemonic.Ud0, compile: compileUd, check: 'sdm' },
  { mnemonic: Mnemonic.Ud1, compile: compileUd, check: 'sdm' },
  { mnemonic: Mnemonic.Ud2, compile: compileUd, check: 'sdm' },
  { mnemonic: Mnemonic.Iretq, compile: compileIret, check: 'sdm' },
  { mnemonic: Mnemonic.Iret, compile: compileIret, check: 'sdm' },
  { mnemonic: Mnemonic.Iretd, compile: compileIret, check: 'sdm' },
  { mnemonic: Mnemonic.Cpuid, compile: compileCpuid, check: 'sdm' },
  { mnemonic: Mnemonic.Rdmsr, compile: compileRdmsr, check: 'sdm' },
  { mnemonic: Mnemonic.Wrmsr, compile: compileWrmsr, check: 'sdm' },
  { mnemonic: Mnemonic.Rdtsc, compile: () => compileRdtsc(false), check: 'sdm' },
  { mnemonic: Mnemonic.Rdtscp, compile: () => compileRdtsc(true), check: 'sdm' },
  { mnemonic: Mnemonic.Rdpid, compile: compileRdpid, check: 'sdm' },
  { mnemonic: Mnemonic.Swapgs, compile: compileSwapgs, check: 'sdm' },
  { mnemonic: Mnemonic.Rdgsbase, compile: (d) => compileSegBase(d, 'gs', false), check: 'sdm' },
  { mnemonic: Mnemonic.Wrgsbase, compile: (d) => compileSegBase(d, 'gs', true), check: 'sdm' },
  { mnemonic: Mnemonic.Rdfsbase, compile: (d) => compileSegBase(d, 'fs', false), check: 'sdm' },
  { mnemonic: Mnemonic.Wrfsbase, compile: (d) => compileSegBase(d, 'fs', true), check: 'sdm' },
  { mnemonic: Mnemonic.Lgdt, compile: (d) => compileLoadDt(d, 'gdt'), check: 'sdm' },
  { mnemonic: Mnemonic.Lidt, compile: (d) => compileLoadDt(d, 'idt'), check: 'sdm' },
  { mnemonic: Mnemonic.Sgdt, compile: (d) => compileStoreDt(d, 'gdt'), check: 'sdm' },
  { mnemonic: Mnemonic.Sidt, compile: (d) => compileStoreDt(d, 'idt'), check: 'sdm' },
  { mnemonic: Mnemonic.Ltr, compile: compileLtr, check: 'sdm' },
  { mnemonic: Mnemonic.Str, compile: compileStr, check: 'sdm' },
  { mnemonic: Mnemonic.Stac, compile: () => compileAc(true), check: 'sdm' },
  { mnemonic: Mnemonic.Clac, compile: () => compileAc(false), check: 'sdm' },
  { mnemonic: Mnemonic.Verw, compile: compileVerw, check: 'sdm' },
  { mnemonic: Mnemonic.Clts, compile: compileClts, check: 'sdm' },
  { mnemonic: Mnemonic.Xgetbv, compile: compileXgetbv, check: 'sdm' },
  { mnemonic: Mnemonic.Rdrand, compile: compileRdrand, check: 'sdm' },
  { mnemonic: Mnemonic.Rdseed, compile: compileRdrand, check: 'sdm' },
  { mnemonic: Mnemonic.In, compile: compileIn, check: 'sdm' },
  { mnemonic: Mnemonic.Out, compile: compileOut, check: 'sdm' },
];
