// BMI2's flag-less shifts and rotate: shlx, shrx, sarx (count in a register) and
// rorx (immediate count). They change no flags, which is why compilers use them.
// The other BMI2 instructions (mulx, pdep, pext, bzhi) are not implemented, and
// CPUID does not advertise BMI2.

import { Mnemonic } from 'iced-x86';
import type { Decoded } from '../decode';
import { type Exec, linkNext } from '../insn';
import { reader, Unsupported } from '../operands';
import type { OpRow } from '../optable';
import { writeReg } from '../operands';

type Kind = 'shl' | 'shr' | 'sar' | 'ror';

let outHi = 0;

/** A `size`-bit (32 or 64) shift or rotate of (lo, hi) by n (already masked); hi in outHi. */
function apply(kind: Kind, size: number, lo: number, hi: number, n: number): number {
  if (n === 0) {
    outHi = size === 64 ? hi : 0;
    return lo;
  }
  if (size === 32) {
    outHi = 0;
    switch (kind) {
      case 'shl':
        return lo << n;
      case 'shr':
        return lo >>> n;
      case 'sar':
        return lo >> n;
      default:
        return (lo >>> n) | (lo << (32 - n));
    }
  }
  switch (kind) {
    case 'shl':
      if (n >= 32) {
        outHi = lo << (n - 32);
        return 0;
      }
      outHi = (hi << n) | (lo >>> (32 - n));
      return lo << n;
    case 'shr':
      if (n >= 32) {
        outHi = 0;
        return hi >>> (n - 32);
      }
      outHi = hi >>> n;
      return (lo >>> n) | (hi << (32 - n));
    case 'sar':
      if (n >= 32) {
        outHi = hi >> 31;
        return hi >> (n - 32);
      }
      outHi = hi >> n;
      return (lo >>> n) | (hi << (32 - n));
    default: {
      // ror by n: swap halves for n >= 32, then rotate by n mod 32.
      let l = lo;
      let h = hi;
      let k = n;
      if (k >= 32) {
        l = hi;
        h = lo;
        k -= 32;
      }
      if (k === 0) {
        outHi = h;
        return l;
      }
      outHi = (h >>> k) | (l << (32 - k));
      return (l >>> k) | (h << (32 - k));
    }
  }
}

function compile(d: Decoded, kind: Kind): Exec {
  const [o0, o1, o2] = d.ops;
  if (o0.k !== 'reg' || (o0.size !== 32 && o0.size !== 64)) throw new Unsupported('destination');
  const size = o0.size;
  const mask = size === 64 ? 63 : 31;
  const src = reader(o1, size);
  const count = reader(o2, o2.k === 'imm' ? 8 : size);
  const i = o0.reg;
  return (cpu, ins) => {
    const lo = src(cpu);
    const hi = size === 64 ? cpu.th : 0;
    const n = count(cpu) & mask;
    const r = apply(kind, size, lo, hi, n);
    writeReg(cpu, i, size, false, r, outHi);
    return ins.next ?? linkNext(cpu, ins);
  };
}

export const rows: OpRow[] = [
  { mnemonic: Mnemonic.Shlx, compile: (d) => compile(d, 'shl'), check: 'oracle' },
  { mnemonic: Mnemonic.Shrx, compile: (d) => compile(d, 'shr'), check: 'oracle' },
  { mnemonic: Mnemonic.Sarx, compile: (d) => compile(d, 'sar'), check: 'oracle' },
  { mnemonic: Mnemonic.Rorx, compile: (d) => compile(d, 'ror'), check: 'oracle' },
];
