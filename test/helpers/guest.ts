// Test helper: assemble AT&T guest code at kernel addresses and set up a machine
// with per-CPU stacks, an IDT and a TSS written from the host side.

import { assemble } from '../../scripts/gas';
import { Machine, type MachineOptions } from '../../emu/machine';
import { loadIdt, setIst, writeIdtGate, GATE_INTERRUPT } from '../../emu/setup';

export const TEXT = 0xffffffff81000000n;
export const DATA = 0xffffffff82000000n;
export const IDT = 0xffffffff83000000n;
export const TSS = 0xffffffff83001000n;
export const STACKS = 0xffffffff84000000n;
const STACK = 0x4000n;

export interface Guest {
  m: Machine;
  sym(name: string): bigint;
  stackTop(cpu: number): bigint;
  istTop(cpu: number): bigint;
}

const SCRIPT = `
SECTIONS {
  . = 0x${TEXT.toString(16)};
  .text : { *(.text) }
  . = 0x${DATA.toString(16)};
  .data : { *(.data) *(.bss) }
}
`;

/**
 * Builds a machine running `source` (AT&T). Handlers named in `gates` get IDT entries
 * ({vector: [symbol, ist]}); every CPU starts at `entry` with its own stack.
 */
export function guest(
  source: string,
  opts: Partial<MachineOptions> & { entry?: string; gates?: Record<number, [string, number?, number?]> } = {},
): Guest {
  const a = assemble(source, { linkerScript: SCRIPT });
  const m = new Machine({
    cpus: opts.cpus ?? 1, fetchMode: opts.fetchMode, apicMode: opts.apicMode,
    memoryModel: opts.memoryModel, rmw: opts.rmw, storeBufferSize: opts.storeBufferSize,
  });
  for (const s of a.sections) {
    m.mem.map(s.address, Math.max(s.size, 1));
    if (s.loaded && s.size > 0) {
      const off = Number(s.address - a.base);
      m.mem.writeBytes(s.address, a.bytes.subarray(off, off + s.size));
    }
  }
  const text = a.sections.find((s) => s.name === '.text');
  if (text) m.mem.markCode(text.address, text.size);
  for (const [name, addr] of a.symbols) m.symbols.add(name, addr);
  const sym = (name: string): bigint => {
    const v = a.symbols.get(name);
    if (v === undefined) throw new Error(`no symbol ${name}`);
    return v;
  };
  m.mem.map(IDT, 0x1000);
  m.mem.map(TSS, 0x1000 * m.cpus.length);
  m.mem.map(STACKS, Number(STACK) * 2 * m.cpus.length);
  const stackTop = (c: number): bigint => STACKS + STACK * BigInt(2 * c + 1) - 16n;
  const istTop = (c: number): bigint => STACKS + STACK * BigInt(2 * c + 2) - 16n;
  for (const [v, [name, ist, type]] of Object.entries(opts.gates ?? {})) {
    writeIdtGate(m, IDT, Number(v), sym(name), { ist: ist ?? 0, type: type ?? GATE_INTERRUPT });
  }
  for (const cpu of m.cpus) {
    loadIdt(cpu, IDT);
    setIst(m, cpu, TSS + 0x1000n * BigInt(cpu.id), 1, istTop(cpu.id));
    cpu.setReg(4, stackTop(cpu.id));
    const entry = a.symbols.get(opts.entry ?? '_start');
    if (entry !== undefined) cpu.setRipBig(entry);
    cpu.serialize();
  }
  return { m, sym, stackTop, istTop };
}
