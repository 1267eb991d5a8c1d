// The step loop: runs one CPU for up to a budget of instructions, delivering pending
// events at instruction boundaries. The inner loop is the emulator's hot path: one
// generation compare, one indirect call, one flag test per instruction, or per block
// where hot code was compiled (emu/block.ts) and the budget covers the block. Tracing
// uses a second copy of the loop without blocks, so a machine without a probe pays
// nothing for it.

import type { Cpu } from './cpu';
import { GuestException } from './fault';
import { PageFault } from './memory';
import { revalidate, type Insn } from './insn';
import { deliver, pageFaultCode, VEC_PF } from './events';
import { IF } from './flags';
import { buildBlock, buildSingle } from './block';

/** Runs up to `budget` instructions without looking at events. Returns the count run. */
function execLoop(cpu: Cpu, budget: number): number {
  let ins = cpu.insn;
  const start = cpu.retired;
  const end = start + budget;
  try {
    // cpu.retired counts as it goes, so the TSC and currentStep() are exact mid-slice.
    while (cpu.retired < end) {
      if (ins.xgen !== ins.page.gen) ins = revalidate(cpu, ins);
      const b = ins.block;
      if (b !== null) {
        if (b.gen === ins.page.gen && b.epoch === cpu.icache.blockEpoch) {
          if (b.len <= end - cpu.retired) {
            cpu.insn = ins;
            ins = b.run(cpu, end);
            if (cpu.brk) break;
            continue;
          }
        } else {
          ins.block = null;
          ins.heat = 0;
        }
      } else if (++ins.heat === cpu.icache.blockHot) {
        warm(cpu, ins);
        // Compiled: run it from here.
        if (ins.block !== null) continue;
      }
      cpu.insn = ins;
      ins = ins.exec(cpu, ins);
      cpu.retired++;
      if (cpu.brk) break;
    }
  } catch (e) {
    cpu.retired++;
    raise(cpu, e);
    return cpu.retired - start;
  }
  if (cpu.deferred) {
    // A hook ended the slice in front of the instruction: it did not execute.
    cpu.deferred = false;
    cpu.retired--;
  }
  cpu.insn = ins;
  return cpu.retired - start;
}

/**
 * `ins` became hot: compiles the block starting there and replaces its closure with
 * the compiled single-instruction form where there is one (emu/block.ts).
 */
function warm(cpu: Cpu, ins: Insn): void {
  ins.block = buildBlock(cpu, ins);
  const single = buildSingle(cpu, ins);
  if (single !== null) ins.exec = single;
}

/** The same loop with a probe call after every instruction (tracing, stepping UI). */
function execLoopProbed(cpu: Cpu, budget: number): number {
  const probe = cpu.machine.probe!;
  let ins = cpu.insn;
  let n = 0;
  try {
    while (n < budget) {
      if (ins.xgen !== ins.page.gen) ins = revalidate(cpu, ins);
      cpu.insn = ins;
      const at: Insn = ins;
      const hostFrame = cpu.hostFrames.length;
      ins = ins.exec(cpu, ins);
      if (cpu.deferred) {
        cpu.deferred = false;
        break;
      }
      n++;
      cpu.retired++;
      probe.onStep(cpu, at, hostFrame);
      if (cpu.brk) break;
    }
  } catch (e) {
    n++;
    cpu.retired++;
    probe.onStep(cpu, cpu.insn, cpu.hostFrames.length);
    raise(cpu, e);
    return n;
  }
  cpu.insn = ins;
  return n;
}

/** Turns a thrown guest fault into delivery through the IDT. Host bugs propagate. */
function raise(cpu: Cpu, e: unknown): void {
  const at = cpu.insn;
  if (e instanceof GuestException) {
    deliver(cpu, e.vector, e.errorCode, at.lo, at.hi, 'exception', e.detail);
  } else if (e instanceof PageFault) {
    cpu.cr2Lo = e.lo;
    cpu.cr2Hi = e.hi;
    const where = cpu.machine.symbolize((BigInt(e.hi >>> 0) << 32n) | BigInt(e.lo >>> 0));
    const how = e.fetch ? 'fetch from' : e.write ? 'write to' : 'read from';
    const what = e.detail !== null ? `${how} ${where}: ${e.detail}` : `${how} unmapped ${where}`;
    deliver(cpu, VEC_PF, pageFaultCode(e), at.lo, at.hi, 'exception', what);
  } else {
    throw e;
  }
  cpu.brk = true;
}

/** Whether an event could be delivered to this CPU right now. */
export function eventDeliverable(cpu: Cpu): boolean {
  if (cpu.nmiPending && !cpu.nmiBlocked) return true;
  return (cpu.flags & IF) !== 0 && !cpu.intShadow && cpu.apic.deliverable() >= 0;
}

/** Delivers at most one pending event (NMI first, then the APIC's best vector). */
export function checkEvents(cpu: Cpu): void {
  // Between the load and store steps of a split RMW is not an instruction boundary;
  // the store step sets brk again (emu/ordering.ts).
  if (cpu.rmw !== null) return;
  if (cpu.nmiPending && !cpu.nmiBlocked) {
    cpu.nmiPending = false;
    wakeForEvent(cpu);
    deliver(cpu, 2, null, cpu.insn.lo, cpu.insn.hi, 'nmi');
    return;
  }
  if ((cpu.flags & IF) !== 0 && !cpu.intShadow) {
    const v = cpu.apic.deliverable();
    if (v >= 0) {
      cpu.apic.ack(v);
      wakeForEvent(cpu);
      deliver(cpu, v, null, cpu.insn.lo, cpu.insn.hi, 'irq');
    }
  }
}

function wakeForEvent(cpu: Cpu): void {
  cpu.halted = false;
  if (cpu.blocked) cpu.machine.unblock(cpu);
  cpu.spin?.reset();
}

/**
 * `runSlice(cpu, 1)` for the quantum-1 scheduler: when nothing is pending at the
 * boundary (no event, shadow, halt, probe) it is one pass of the step loop, without
 * the slice loop around it.
 */
export function runOne(cpu: Cpu): number {
  if (cpu.brk || cpu.intShadow || cpu.halted || cpu.blocked !== null || cpu.shutdown !== null || cpu.machine.probe !== null) return runSlice(cpu, 1);
  return stepPlain(cpu);
}

/**
 * runOne's step, for a caller that has checked its conditions (no brk, shadow, halt,
 * block, shutdown or probe): execLoop(cpu, 1), unrolled.
 */
export function stepPlain(cpu: Cpu): number {
  return stepHot(cpu, cpu.icache.blockHot);
}

/** stepPlain with the CPU's `icache.blockHot` given (the batch loop reads it once for all its CPUs). */
export function stepHot(cpu: Cpu, hot: number): number {
  // (revalidate brings the instruction up to date in place: cpu.insn stays it.)
  let ins = cpu.insn;
  try {
    if (ins.xgen !== ins.page.gen) revalidate(cpu, ins);
    // Blocks never fit a slice of one, but the hot instruction's compiled form does.
    // (A block exists only where heat reached blockHot: execLoop counts while there is none.)
    if (ins.heat < hot && ++ins.heat === hot && ins.block === null) warm(cpu, ins);
    ins = ins.exec(cpu, ins);
  } catch (e) {
    cpu.retired++;
    raise(cpu, e);
    return 1;
  }
  cpu.retired++;
  // (A hook that defers the instruction sets brk too.)
  if (!cpu.brk || !cpu.deferred) {
    cpu.insn = ins;
    return 1;
  }
  // A hook ended the slice in front of the instruction: the slice goes on as runSlice would.
  cpu.deferred = false;
  cpu.retired--;
  cpu.insn = ins;
  return cpu.stoppedAt !== null ? 0 : runSlice(cpu, 1);
}

/**
 * Runs one CPU for up to `budget` steps: delivers events at boundaries, honours the
 * one-instruction interrupt shadow after STI, stops early when the CPU halts, blocks,
 * shuts down or hits a breakpoint. Returns the steps run.
 */
export function runSlice(cpu: Cpu, budget: number): number {
  let n = 0;
  const probed = cpu.machine.probe !== null;
  while (n < budget && cpu.shutdown === null) {
    if (cpu.brk) {
      cpu.brk = false;
      if (cpu.stoppedAt !== null) break;
      checkEvents(cpu);
    }
    if (cpu.halted || cpu.blocked) break;
    if (cpu.intShadow) {
      n += probed ? execLoopProbed(cpu, 1) : execLoop(cpu, 1);
      cpu.intShadow = false;
      cpu.brk = true;
      continue;
    }
    n += probed ? execLoopProbed(cpu, budget - n) : execLoop(cpu, budget - n);
    if (cpu.stoppedAt !== null) break;
  }
  return n;
}
