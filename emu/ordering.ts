// Memory-ordering wrappers put around an instruction's Exec when it is compiled, so
// that the machine options cost nothing to machines that do not use them:
// - x86-TSO ('tso'): a locked instruction (LOCK prefix, or XCHG with memory, locked
//   implicitly) drains the store buffer before it and after it, so its stores reach
//   memory at once and nothing earlier is still buffered (SDM vol. 3, 9.2.2: "locked
//   instructions have a total order"; "reads or writes cannot be reordered with I/O
//   instructions, locked instructions, or serializing instructions").
// - Split read-modify-write ('split'): an unlocked instruction with a memory operand
//   runs with `Cpu.rmw` set; if it read memory and then stored, its stores are held
//   and it returns a one-off "store step" instead of its successor. That step is the
//   instruction's second machine step: other CPUs may run between the two.
//   Interrupts are not delivered between them (an instruction boundary is not there).

import type { Cpu } from './cpu';
import type { Decoded } from './decode';
import { Insn, type Exec } from './insn';
import type { Machine } from './machine';
import { Mnemonic } from 'iced-x86';
import type { Page } from './memory';

/** XCHG with a memory operand is locked whatever its prefixes (SDM XCHG). */
function locked(d: Decoded): boolean {
  return d.lock || (d.mnemonic === Mnemonic.Xchg && d.ops.some((o) => o.k === 'mem'));
}

export function orderedExec(m: Machine, d: Decoded, exec: Exec): Exec {
  if (locked(d)) return m.memoryModel === 'tso' ? fenced(exec) : exec;
  if (m.rmw === 'split' && d.ops.some((o) => o.k === 'mem')) return split(exec);
  return exec;
}

function fenced(exec: Exec): Exec {
  return (cpu, ins) => {
    if (cpu.stores.length !== 0) cpu.drainAll();
    const n = exec(cpu, ins);
    if (cpu.stores.length !== 0) cpu.drainAll();
    return n;
  };
}

/** A page whose generation never moves, so the store step never revalidates. */
const STEP_PAGE: Page = { gen: 0 } as Page;

function split(exec: Exec): Exec {
  return (cpu, ins) => {
    const st = { reads: 0, held: 0 };
    cpu.rmw = st;
    cpu.updateSlow();
    let n: Insn;
    try {
      n = exec(cpu, ins);
    } catch (e) {
      // A fault: the instruction did not happen, its held stores neither.
      cpu.stores.length -= st.held;
      cpu.rmw = null;
      cpu.updateSlow();
      throw e;
    }
    if (st.held === 0) {
      cpu.rmw = null;
      cpu.updateSlow();
      return n;
    }
    return storeStep(ins, n);
  };
}

/** The second step of a split RMW at `ins`: releases its held stores, then goes on to `n`. */
function storeStep(ins: Insn, n: Insn): Insn {
  const s = new Insn(ins.lo, ins.hi);
  s.len = ins.len;
  s.name = `${ins.name} (store)`;
  s.page = STEP_PAGE;
  s.xgen = 0;
  s.exec = (cpu: Cpu) => {
    const held = cpu.rmw!.held;
    cpu.rmw = null;
    if (!cpu.tso) {
      const out = cpu.stores.splice(cpu.stores.length - held, held);
      for (const w of out) cpu.commit(w);
    } else {
      // The stores join the store buffer; a full buffer pushes its oldest out.
      while (cpu.stores.length > cpu.machine.storeBufferSize) cpu.drainOne();
    }
    cpu.updateSlow();
    // Events that arrived between the two steps are delivered at the boundary now.
    cpu.brk = true;
    return n;
  };
  return s;
}
