// Operand accessors, specialised at decode time. A value of `size` bits travels as
// (lo, hi) int32 halves with every bit above `size` zero: 8- and 16-bit values are
// non-negative, 32- and 64-bit halves are signed int32 bit patterns. 64-bit readers
// return lo and leave hi in `cpu.th`; effective-address functions return lo and leave
// hi in `cpu.eh`.

import type { Cpu } from './cpu';
import { HI } from './regs';
import type { Operand } from './decode';

export type Ea = (cpu: Cpu) => number;
export type Reader = (cpu: Cpu) => number;
export type Writer = (cpu: Cpu, lo: number, hi: number) => void;

export type MemOperand = Extract<Operand, { k: 'mem' }>;
export type RegOperand = Extract<Operand, { k: 'reg' }>;
export type ImmOperand = Extract<Operand, { k: 'imm' }>;

/** An instruction form we decode but do not implement; compiled into a #UD that says so. */
export class Unsupported extends Error {}

export function maskOf(size: number): number {
  return size === 8 ? 0xff : size === 16 ? 0xffff : -1;
}

/** Truncates (lo, hi) to `size` bits; returns lo, hi via the out array. */
export function trunc(lo: number, hi: number, size: number): [number, number] {
  if (size === 64) return [lo | 0, hi | 0];
  if (size === 32) return [lo | 0, 0];
  return [lo & maskOf(size), 0];
}

// ---- Effective addresses ----

export function compileEa(m: MemOperand): Ea {
  const { base, index, scale, seg } = m;
  const dU = m.dispLo >>> 0;
  const dHi = m.dispHi | 0;
  if (m.addr32) return ea32(m);
  if (seg === null) {
    if (base < 0 && index < 0) {
      const lo = m.dispLo | 0;
      return (cpu) => {
        cpu.eh = dHi;
        return lo;
      };
    }
    if (index < 0) {
      const bh = base + HI;
      if (dU === 0 && dHi === 0) {
        return (cpu) => {
          cpu.eh = cpu.r[bh];
          return cpu.r[base];
        };
      }
      return (cpu) => {
        const r = cpu.r;
        const s = (r[base] >>> 0) + dU;
        cpu.eh = (r[bh] + dHi + (s > 0xffffffff ? 1 : 0)) | 0;
        return s | 0;
      };
    }
    if (base >= 0) {
      const bh = base + HI;
      const xh = index + HI;
      return (cpu) => {
        const r = cpu.r;
        const s = (r[base] >>> 0) + (r[index] >>> 0) * scale + dU;
        cpu.eh = (r[bh] + Math.imul(r[xh], scale) + dHi + Math.floor(s / 4294967296)) | 0;
        return s | 0;
      };
    }
    const xh = index + HI;
    return (cpu) => {
      const r = cpu.r;
      const s = (r[index] >>> 0) * scale + dU;
      cpu.eh = (Math.imul(r[xh], scale) + dHi + Math.floor(s / 4294967296)) | 0;
      return s | 0;
    };
  }
  // FS/GS: per-CPU data (%gs:) and TLS. Absolute %gs:disp is the common kernel form.
  const useGs = seg === 'gs';
  if (base < 0 && index < 0) {
    return (cpu) => {
      const sl = useGs ? cpu.gsLo : cpu.fsLo;
      const sh = useGs ? cpu.gsHi : cpu.fsHi;
      const s = (sl >>> 0) + dU;
      cpu.eh = (sh + dHi + (s > 0xffffffff ? 1 : 0)) | 0;
      return s | 0;
    };
  }
  const bh = base + HI;
  const xh = index + HI;
  return (cpu) => {
    const r = cpu.r;
    const sl = useGs ? cpu.gsLo : cpu.fsLo;
    const sh = useGs ? cpu.gsHi : cpu.fsHi;
    let s = (sl >>> 0) + dU;
    let h = sh + dHi;
    if (base >= 0) {
      s += r[base] >>> 0;
      h += r[bh];
    }
    if (index >= 0) {
      s += (r[index] >>> 0) * scale;
      h += Math.imul(r[xh], scale);
    }
    cpu.eh = (h + Math.floor(s / 4294967296)) | 0;
    return s | 0;
  };
}

/** 32-bit addressing (0x67 prefix): computed mod 2^32, then the segment base added. */
function ea32(m: MemOperand): Ea {
  const { base, index, scale, seg } = m;
  const d = m.dispLo | 0;
  return (cpu) => {
    const r = cpu.r;
    let a = d;
    if (base >= 0) a = (a + r[base]) | 0;
    if (index >= 0) a = (a + Math.imul(r[index], scale)) | 0;
    if (seg === null) {
      cpu.eh = 0;
      return a;
    }
    const sl = seg === 'gs' ? cpu.gsLo : cpu.fsLo;
    const sh = seg === 'gs' ? cpu.gsHi : cpu.fsHi;
    const s = (sl >>> 0) + (a >>> 0);
    cpu.eh = (sh + (s > 0xffffffff ? 1 : 0)) | 0;
    return s | 0;
  };
}

// ---- Memory at a computed address ----

/** Reads `size` bits at (lo, hi); 64-bit leaves the high half in cpu.th. */
export function memRead(cpu: Cpu, lo: number, hi: number, size: number): number {
  switch (size) {
    case 64:
      return cpu.rd64(lo, hi);
    case 32:
      return cpu.rd32(lo, hi);
    case 16:
      return cpu.rd16(lo, hi);
    default:
      return cpu.rd8(lo, hi);
  }
}

export function memWrite(cpu: Cpu, lo: number, hi: number, size: number, vlo: number, vhi: number): void {
  switch (size) {
    case 64:
      cpu.wr64(lo, hi, vlo, vhi);
      return;
    case 32:
      cpu.wr32(lo, hi, vlo);
      return;
    case 16:
      cpu.wr16(lo, hi, vlo);
      return;
    default:
      cpu.wr8(lo, hi, vlo);
  }
}

// ---- Registers ----

export function regReader(op: RegOperand): Reader {
  const i = op.reg;
  const ih = i + HI;
  switch (op.size) {
    case 64:
      return (cpu) => {
        cpu.th = cpu.r[ih];
        return cpu.r[i];
      };
    case 32:
      return (cpu) => {
        cpu.th = 0;
        return cpu.r[i];
      };
    case 16:
      return (cpu) => {
        cpu.th = 0;
        return cpu.r[i] & 0xffff;
      };
    default:
      if (op.high8) {
        return (cpu) => {
          cpu.th = 0;
          return (cpu.r[i] >> 8) & 0xff;
        };
      }
      return (cpu) => {
        cpu.th = 0;
        return cpu.r[i] & 0xff;
      };
  }
}

export function regWriter(op: RegOperand): Writer {
  const i = op.reg;
  const ih = i + HI;
  switch (op.size) {
    case 64:
      return (cpu, lo, hi) => {
        cpu.r[i] = lo;
        cpu.r[ih] = hi;
      };
    case 32:
      // A 32-bit register write zero-extends into the upper half.
      return (cpu, lo) => {
        cpu.r[i] = lo;
        cpu.r[ih] = 0;
      };
    case 16:
      return (cpu, lo) => {
        cpu.r[i] = (cpu.r[i] & ~0xffff) | (lo & 0xffff);
      };
    default:
      if (op.high8) {
        return (cpu, lo) => {
          cpu.r[i] = (cpu.r[i] & ~0xff00) | ((lo & 0xff) << 8);
        };
      }
      return (cpu, lo) => {
        cpu.r[i] = (cpu.r[i] & ~0xff) | (lo & 0xff);
      };
  }
}

/**
 * Writes a register of `size` bits: a 32-bit write zero-extends into the upper half,
 * 8/16-bit writes merge, `high8` selects AH..BH.
 */
export function writeReg(cpu: Cpu, i: number, size: number, high8: boolean, lo: number, hi: number): void {
  const r = cpu.r;
  switch (size) {
    case 64:
      r[i] = lo;
      r[i + HI] = hi;
      return;
    case 32:
      r[i] = lo;
      r[i + HI] = 0;
      return;
    case 16:
      r[i] = (r[i] & ~0xffff) | (lo & 0xffff);
      return;
    default:
      if (high8) r[i] = (r[i] & ~0xff00) | ((lo & 0xff) << 8);
      else r[i] = (r[i] & ~0xff) | (lo & 0xff);
  }
}

/** Writes a register of `size` bits directly (for implicit operands such as rax/rdx). */
export function setReg(cpu: Cpu, i: number, size: number, lo: number, hi: number): void {
  writeReg(cpu, i, size, false, lo, hi);
}

/** Reads a register of `size` bits directly; hi left in cpu.th. */
export function getReg(cpu: Cpu, i: number, size: number): number {
  const r = cpu.r;
  switch (size) {
    case 64:
      cpu.th = r[i + HI];
      return r[i];
    case 32:
      cpu.th = 0;
      return r[i];
    case 16:
      cpu.th = 0;
      return r[i] & 0xffff;
    default:
      cpu.th = 0;
      return r[i] & 0xff;
  }
}

// ---- Generic operands ----

/** Reader for any operand kind (register, memory, immediate), truncated to `size`. */
export function reader(op: Operand, size: number): Reader {
  switch (op.k) {
    case 'reg':
      return regReader(op);
    case 'imm': {
      const [lo, hi] = trunc(op.lo, op.hi, size);
      return (cpu) => {
        cpu.th = hi;
        return lo;
      };
    }
    case 'mem': {
      const ea = compileEa(op);
      switch (size) {
        case 64:
          return (cpu) => {
            const lo = ea(cpu);
            return cpu.rd64(lo, cpu.eh);
          };
        case 32:
          return (cpu) => {
            const lo = ea(cpu);
            cpu.th = 0;
            return cpu.rd32(lo, cpu.eh);
          };
        case 16:
          return (cpu) => {
            const lo = ea(cpu);
            cpu.th = 0;
            return cpu.rd16(lo, cpu.eh);
          };
        default:
          return (cpu) => {
            const lo = ea(cpu);
            cpu.th = 0;
            return cpu.rd8(lo, cpu.eh);
          };
      }
    }
    default:
      throw new Unsupported(`operand kind ${op.k}`);
  }
}

export function writer(op: Operand, size: number): Writer {
  switch (op.k) {
    case 'reg':
      return regWriter(op);
    case 'mem': {
      const ea = compileEa(op);
      return (cpu, lo, hi) => {
        const a = ea(cpu);
        memWrite(cpu, a, cpu.eh, size, lo, hi);
      };
    }
    default:
      throw new Unsupported(`cannot write operand kind ${op.k}`);
  }
}

/** Operand size in bits of a register or memory operand. */
export function sizeOf(op: Operand): number {
  if (op.k === 'reg') return op.size;
  if (op.k === 'mem') return op.size * 8;
  if (op.k === 'imm') return op.size;
  throw new Unsupported(`operand kind ${op.k} has no size`);
}
