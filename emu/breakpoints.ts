// Code hooks: breakpoints and "when a CPU reaches this address" triggers (scenario
// injections). A hook is compiled into the instruction at its address, so addresses
// without hooks pay nothing. A hook runs before the instruction; it may let the
// instruction run, or stop the CPU at the boundary in front of it (a breakpoint, or an
// injected NMI that must be taken before the instruction). When the CPU comes back to
// the same instruction in the same context, the hooks are skipped once, so execution
// can continue past a breakpoint.

import type { Cpu } from './cpu';
import type { Exec, Insn } from './insn';

/**
 * What a hook asks for: run the instruction; end the CPU's slice in front of it so
 * pending events are taken first ('boundary'); or stop the run there ('stop').
 */
export type HookAction = 'continue' | 'boundary' | 'stop';
export type CodeHook = (cpu: Cpu, ins: Insn) => HookAction;

export function breakpointExec(inner: Exec): Exec {
  return (cpu, ins) => {
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
      cpu.brk = true;
      cpu.deferred = true;
      if (action === 'stop') cpu.stoppedAt = ins;
      return ins;
    }
    return inner(cpu, ins);
  };
}
