// Explaining a machine state to a kernel developer: per CPU its context stack
// (thread / stop_machine / NMI / #BP / IRQ), RIP as symbol+offset, the locks it
// holds, what it waits for and on whom; and the wait-for cycle when there is one.

import type { Machine } from '../../emu/machine';
import type { Cpu } from '../../emu/cpu';
import type { LockTracker } from '../linux/lock-tracker';

export interface CpuReport {
  cpu: number;
  context: string[];
  rip: bigint;
  symbol: string;
  state: 'running' | 'waiting' | 'spinning' | 'halted' | 'shutdown';
  /** The host routine's status line, if the CPU is in one. */
  status: string;
  holds: string[];
  waiting: string;
  waitsFor: number[];
  /** The kernel model's functions this CPU is in, outermost first, across its contexts. */
  kernel: string[];
}

export interface MachineReport {
  cpus: CpuReport[];
  cycle: number[] | null;
  /** One line per edge of the cycle. */
  cycleText: string[];
}

/** The kernel model's functions a CPU is in (KernelCalls.stack). */
export type KernelStack = (cpu: number) => readonly string[];

/** Names for interrupt vectors in context stacks. */
export type VectorNamer = (vector: number) => string | undefined;

export function contextStack(cpu: Cpu, vectorName: VectorNamer): string[] {
  const out = ['thread'];
  const pushHost = (depth: number): void => {
    for (const f of cpu.hostFrames) if (f.depth === depth && f.ctx.label && out[out.length - 1] !== f.ctx.label) out.push(f.ctx.label);
  };
  for (let i = 0; i <= cpu.contexts.length; i++) {
    pushHost(i);
    if (i < cpu.contexts.length) {
      const c = cpu.contexts[i];
      out.push(vectorName(c.vector) ?? c.kind);
    }
  }
  return out;
}

function stateOf(cpu: Cpu): CpuReport['state'] {
  if (cpu.shutdown) return 'shutdown';
  if (cpu.blocked) return cpu.blocked.reason === 'spin' ? 'spinning' : 'waiting';
  if (cpu.halted) return 'halted';
  return 'running';
}

export function cpuReport(m: Machine, cpu: Cpu, locks: LockTracker | null, vectorName: VectorNamer, kernel: KernelStack = () => []): CpuReport {
  const info = m.blockInfo.get(cpu.id);
  const top = cpu.hostFrames[cpu.hostFrames.length - 1];
  let waiting = info?.detail ?? '';
  if (cpu.halted && !cpu.blocked) waiting = (cpu.flags & 0x200) !== 0 ? 'halted, waiting for an interrupt' : 'halted with interrupts off';
  if (cpu.shutdown) waiting = cpu.shutdown.detail;
  return {
    cpu: cpu.id,
    context: contextStack(cpu, vectorName),
    rip: cpu.rip,
    symbol: m.symbolize(cpu.rip),
    state: stateOf(cpu),
    status: top ? top.ctx.status || top.last : '',
    holds: locks ? locks.heldBy(cpu.id) : [],
    waiting,
    waitsFor: info?.waitsFor ?? [],
    kernel: [...kernel(cpu.id)],
  };
}

/** The first wait-for cycle, starting from the lowest CPU that is on one. */
export function findCycle(reports: CpuReport[]): number[] | null {
  const waits = new Map(reports.filter((r) => r.state === 'waiting' || r.state === 'spinning').map((r) => [r.cpu, r.waitsFor]));
  for (const start of [...waits.keys()].sort((a, b) => a - b)) {
    const path: number[] = [];
    const onPath = new Set<number>();
    const dfs = (c: number): number[] | null => {
      if (onPath.has(c)) return path.slice(path.indexOf(c));
      const next = waits.get(c);
      if (!next) return null;
      path.push(c);
      onPath.add(c);
      for (const n of [...next].sort((a, b) => a - b)) {
        const found = dfs(n);
        if (found) return found;
      }
      path.pop();
      onPath.delete(c);
      return null;
    };
    const cyc = dfs(start);
    if (cyc) {
      // Rotate so the lowest CPU comes first.
      const k = cyc.indexOf(Math.min(...cyc));
      return [...cyc.slice(k), ...cyc.slice(0, k)];
    }
  }
  return null;
}

export function machineReport(m: Machine, locks: LockTracker | null, vectorName: VectorNamer, kernel: KernelStack = () => []): MachineReport {
  const cpus = m.cpus.map((c) => cpuReport(m, c, locks, vectorName, kernel));
  const cycle = findCycle(cpus);
  const cycleText: string[] = [];
  if (cycle) {
    for (let i = 0; i < cycle.length; i++) {
      const r = cpus[cycle[i]];
      const next = cycle[(i + 1) % cycle.length];
      const held = cpus[next].holds.length ? ` (CPU${next} holds ${cpus[next].holds.join(', ')})` : '';
      cycleText.push(`CPU${r.cpu} [${r.context.join(' > ')}] waits for CPU${next}: ${r.waiting}${held}`);
    }
  }
  return { cpus, cycle, cycleText };
}
