// stop_machine(): run a function on every CPU at once with interrupts off. Modelled
// (as DESIGN.md says) by an IPI that every other CPU takes: its handler,
// multi_cpu_stop(), runs the function and returns. The caller runs it too, then waits
// until everyone has left it, as stop_machine() returns only after all CPUs exit.
// The counters live in guest memory (stop_machine_state) for reports and debuggers.

import type { HostContext } from '../../emu/host';
import type { KernelContext } from './kernel-context';
import { type Step, read, write, waitUntil, xadd, wrmsr, irqs } from './hostlib';

const ACTIVE = 0n;
const ENTERED = 8n;
const EXITED = 16n;
const MSR_X2APIC_ICR = 0x830;
const SH_ALL_BUT_SELF = 3;

export function* stopMachine(k: KernelContext, cpu: number, fn: (cpu: number) => Step): Step {
  const st = k.L.stopMachine;
  k.stopFn = fn;
  yield* write(st + ENTERED, 8, 0n);
  yield* write(st + EXITED, 8, 0n);
  yield* write(st + ACTIVE, 8, 1n, 'stop_machine active');
  if (k.ncpus > 1) {
    yield* wrmsr(MSR_X2APIC_ICR, BigInt((SH_ALL_BUT_SELF << 18) | k.L.vectors.stopMachine));
  }
  yield* irqs(false);
  yield* fn(cpu);
  const others = BigInt(k.ncpus - 1);
  yield* waitUntil(st + EXITED, 8, (v) => v >= others, 'every CPU to leave stop_machine', () => ({
    cpus: k.m.cpus.map((c) => c.id).filter((c) => c !== cpu),
    text: 'waiting for the other CPUs to leave stop_machine',
  }));
  yield* write(st + ACTIVE, 8, 0n, 'stop_machine done');
  k.stopFn = null;
  yield* irqs(true);
}

/** multi_cpu_stop(): the stop_machine IPI's handler on every other CPU. */
export function* multiCpuStop(k: KernelContext, ctx: HostContext): Step {
  const st = k.L.stopMachine;
  if ((yield* read(st + ACTIVE, 8)) === 0n || !k.stopFn) return;
  ctx.status = 'in stop_machine';
  ctx.label = 'stop_machine';
  yield* xadd(st + ENTERED, 8, 1n);
  yield* k.stopFn(ctx.cpu);
  yield* xadd(st + EXITED, 8, 1n);
}
