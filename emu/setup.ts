// Building blocks for setting up a machine from the host side (tests, the library
// API): IDT gates, TSS IST slots, stacks. Guest kernels (fixtures) do the same in
// their own boot code; these helpers write the same architectural structures.

import type { Machine } from './machine';
import type { Cpu } from './cpu';
import { splitAddr } from './memory';

export const GATE_INTERRUPT = 0xe;
export const GATE_TRAP = 0xf;
export const KERNEL_CS = 0x10;

/** Writes a 64-bit IDT gate: offset split over three fields, selector, IST, type, present. */
export function writeIdtGate(
  m: Machine,
  idt: bigint,
  vector: number,
  handler: bigint,
  opts: { ist?: number; type?: number; present?: boolean } = {},
): void {
  const g = new Uint8Array(16);
  const v = new DataView(g.buffer);
  const h = BigInt.asUintN(64, handler);
  v.setUint16(0, Number(h & 0xffffn), true);
  v.setUint16(2, KERNEL_CS, true);
  v.setUint8(4, (opts.ist ?? 0) & 7);
  v.setUint8(5, ((opts.present ?? true) ? 0x80 : 0) | ((opts.type ?? GATE_INTERRUPT) & 0xf));
  v.setUint16(6, Number((h >> 16n) & 0xffffn), true);
  v.setUint32(8, Number(h >> 32n), true);
  m.mem.writeBytes(idt + BigInt(vector) * 16n, g);
}

export function loadIdt(cpu: Cpu, base: bigint, limit = 256 * 16 - 1): void {
  const [lo, hi] = splitAddr(base);
  cpu.idtrLo = lo;
  cpu.idtrHi = hi;
  cpu.idtrLimit = limit;
}

/** Points TR at a TSS and fills IST slot `n` (1..7) with a stack top. */
export function setIst(m: Machine, cpu: Cpu, tss: bigint, n: number, stackTop: bigint): void {
  const [lo, hi] = splitAddr(tss);
  cpu.trLo = lo;
  cpu.trHi = hi;
  m.mem.writeU64(tss + 0x24n + BigInt(n - 1) * 8n, stackTop);
}
