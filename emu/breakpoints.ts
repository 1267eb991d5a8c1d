// Code hooks: breakpoints and "when a CPU reaches this address" triggers (scenario
// injections). A hook is compiled into the instruction at its address, so addresses
// without hooks pay nothing. A hook runs before the instruction; it may let the
// instruction run, or stop the CPU at the boundary in front of it (a breakpoint, or an
// injected NMI that must be taken before the instruction). When the CPU comes back to
// the same instruction in the same context, the hooks are skipped once, so execution
// can continue past a breakpoint.
//
// Adding or removing a hook wraps or unwraps the decoded instruction in place: the
// decode itself (bytes, fetch epoch, XMC bookkeeping) is left alone, so setting a
// breakpoint changes nothing the machine computes (a stale-mode CPU keeps its stale
// instruction under a breakpoint too).

import type { Cpu } from './cpu';
import type { Exec, Insn } from './insn';

/**
 * What a hook asks for: run the instruction; end the CPU's slice in front of it so
 * pending events are taken first ('boundary'); or stop the run there ('stop').
 */
export type HookAction = 'continue' | 'boundary' | 'stop';
export type CodeHook = (cpu: Cpu, ins: Insn) => HookAction;

/** Wrapped exec -> the exec it wraps. */
const wrapped = new WeakMap<Exec, Exec>();

export function breakpointExec(inner: Exec): Exec {
  const exec: Exec = (cpu, ins) => {
    if (cpu.continuing === ins) {
      cpu.continuing = null;
      return inner(cpu, ins);
    }
    const skip = cpu.hookSkip;
    if (skip && skip.ins === ins && skip.depth === cpu.contexts.length) {
      cpu.hookSkip = null;
      return inner(cpu, ins);
    }
    const action = cpu.machine.runHooks(cpu, ins);
    if (action !== 'continue') {
      cpu.hookSkip = { ins, depth: cpu.contexts.length };
      // A stop must leave the CPU as it was in front of the instruction: remember
      // whether anything (a hook's event) asked for a boundary, for the resume.
      if (action === 'stop') {
        cpu.machine.noteStopBrk(cpu.brk);
        cpu.stoppedAt = ins;
      }
      cpu.brk = true;
      cpu.deferred = true;
      return ins;
    }
    return inner(cpu, ins);
  };
  wrapped.set(exec, inner);
  return exec;
}

/** Whether a decoded instruction runs its address's hooks. */
export function isHooked(ins: Insn): boolean {
  return wrapped.has(ins.exec);
}

/** Makes a decoded instruction run (or stop running) hooks, leaving its decode as it is. */
export function setHooked(ins: Insn, on: boolean): void {
  if (ins.len === 0 || isHooked(ins) === on) return;
  ins.exec = on ? breakpointExec(ins.exec) : wrapped.get(ins.exec)!;
}
