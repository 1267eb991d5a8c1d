// The emulator side: a bare one-CPU machine with the harness's code page, data and
// stack regions at the same addresses, the same registers and flags, run until RIP
// leaves the instruction (a rep string instruction re-executes itself, one iteration
// per step) or the CPU shuts down. No IDT is loaded, so an exception cannot be
// delivered and ends in shutdown with the original vector.

import { Machine } from '../../emu/machine';
import { readFlags, writeFlags } from '../../emu/flags';
import type { OracleCase } from './generate';
import type { MachineResult } from './native';
import {
  CODE_BASE,
  DATA_BASE,
  STACK_BASE,
  REGION_SIZE,
  DATA_WIN,
  DATA_WIN_SIZE,
  STACK_WIN,
  STACK_WIN_SIZE,
  INSN_ADDR,
  codePage,
} from './layout';

/** Enough for any rep the generator makes (one running off its region: ~4400 steps). */
const MAX_STEPS = 10_000;

export function runEmulator(c: OracleCase): MachineResult {
  const m = new Machine({ cpus: 1 });
  m.load(CODE_BASE, codePage(c.bytes), true);
  m.mem.map(DATA_BASE, REGION_SIZE);
  m.mem.writeBytes(DATA_WIN, c.data);
  m.mem.map(STACK_BASE, REGION_SIZE);
  m.mem.writeBytes(STACK_WIN, c.stack);
  const cpu = m.cpu(0);
  c.regs.forEach((v, i) => cpu.setReg(i, v));
  cpu.gsLo = Number(c.gsBase & 0xffffffffn) | 0;
  cpu.gsHi = Number(c.gsBase >> 32n) | 0;
  cpu.setRipBig(INSN_ADDR);
  writeFlags(cpu, c.rflags);
  // As prepareExec does: the loaded code counts as seen, so the XMC checker stays quiet.
  cpu.serialize();
  let error: string | undefined;
  // The code under test occupies [start, end): one instruction, or a flag producer and
  // the instruction. Run one step at a time until RIP is outside it.
  const start = Number(INSN_ADDR);
  const end = start + c.bytes.length;
  const inside = (): boolean => cpu.insn.hi === 0 && cpu.insn.lo >= start && cpu.insn.lo < end;
  try {
    const r = m.run({ schedule: { kind: 'round-robin', quantum: 1 }, maxSteps: MAX_STEPS, onlyCpu: 0, until: () => !inside() });
    if (r.stop === 'step-limit' && inside()) error = `still inside the code under test after ${MAX_STEPS} steps`;
  } catch (e) {
    // A host-side exception is an emulator bug; report it as this case's result.
    error = `emulator threw: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}`;
  }
  const regs: bigint[] = [];
  for (let i = 0; i < 16; i++) regs.push(cpu.getReg(i));
  return {
    vector: cpu.shutdown ? cpu.shutdown.vector : null,
    rip: cpu.shutdown ? cpu.shutdown.rip : cpu.rip,
    regs,
    rflags: readFlags(cpu),
    data: m.mem.readBytes(DATA_WIN, DATA_WIN_SIZE),
    stack: m.mem.readBytes(STACK_WIN, STACK_WIN_SIZE),
    detail: cpu.shutdown?.detail,
    error,
  };
}
