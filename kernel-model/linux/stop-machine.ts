// stop_machine(): run a function on every CPU at once with interrupts off, as Linux
// 6.1's kernel/stop_machine.c does it. The caller queues a work item on every CPU's
// stopper and wakes it; each CPU (the caller's own stopper included) runs
// multi_cpu_stop(), a state machine all CPUs walk together: MULTI_STOP_PREPARE ->
// MULTI_STOP_DISABLE_IRQ -> MULTI_STOP_RUN -> MULTI_STOP_EXIT. A CPU acts on each new
// state, then acknowledges it (ack_state): the last CPU to acknowledge moves everyone
// to the next state (set_state). So the function runs only once every CPU has
// interrupts off, and no CPU leaves before every CPU has finished it. The caller
// returns when every stopper has signalled done (cpu_stop_done.nr_todo).
//
// How a CPU gets onto its stopper thread (the preemption model) is the fixture's
// business (entry.inc): it calls the multi_cpu_stop host routine from thread context.
// Everything shared lives in guest memory at stop_machine_state (layout below), so
// reports and debuggers see the same words the CPUs use.

import type { HostContext } from '../../emu/host';
import type { KernelContext } from './kernel-context';
import { type Step, read, write, waitUntil, xadd, wrmsr, irqs, lockOr, lockAnd } from './hostlib';
import { noteModelAccess, modelWord, MODEL_WORDS } from './shared-state';

/** stop_machine_state: stop_cpus_in_progress (u64). */
export const SM_ACTIVE = 0n;
/** struct multi_stop_data.state (u32). */
export const SM_STATE = 8n;
/** struct multi_stop_data.thread_ack (atomic_t). */
export const SM_THREAD_ACK = 12n;
/** struct cpu_stop_done.nr_todo (atomic_t): stoppers that have not finished. */
export const SM_NR_TODO = 16n;
/** struct multi_stop_data.num_threads (u32). */
export const SM_NUM_THREADS = 20n;
/** A bitmap, one bit per CPU: a cpu_stop_work is queued on that CPU's stopper. */
export const SM_QUEUED = 24n;

/** enum multi_stop_state. */
export const MULTI_STOP_NONE = 0;
export const MULTI_STOP_PREPARE = 1;
export const MULTI_STOP_DISABLE_IRQ = 2;
export const MULTI_STOP_RUN = 3;
export const MULTI_STOP_EXIT = 4;
export const MULTI_STOP_NAMES = ['MULTI_STOP_NONE', 'MULTI_STOP_PREPARE', 'MULTI_STOP_DISABLE_IRQ', 'MULTI_STOP_RUN', 'MULTI_STOP_EXIT'];

const MSR_X2APIC_ICR = 0x830;
const SH_ALL_BUT_SELF = 3;

function queuedWord(k: KernelContext, cpu: number): { addr: bigint; bit: bigint } {
  return { addr: k.L.stopMachine + SM_QUEUED + BigInt(8 * (cpu >> 6)), bit: 1n << BigInt(cpu & 63) };
}

/** set_state(): re-arm thread_ack for every thread, then publish the new state. */
export function* setState(k: KernelContext, state: number): Step {
  const st = k.L.stopMachine;
  const n = yield* read(st + SM_NUM_THREADS, 4);
  yield* write(st + SM_THREAD_ACK, 4, n, 'thread_ack = num_threads');
  yield* write(st + SM_STATE, 4, BigInt(state), `msdata.state = ${MULTI_STOP_NAMES[state]}`);
}

/** ack_state(): the last CPU to acknowledge moves everyone on to the next state. */
export function* ackState(k: KernelContext): Step {
  const st = k.L.stopMachine;
  const old = yield* xadd(st + SM_THREAD_ACK, 4, -1n & 0xffffffffn);
  if (old === 1n) {
    const cur = Number(yield* read(st + SM_STATE, 4));
    yield* setState(k, cur + 1);
  }
}

/** cpu_stop_queue_work() on every other CPU, woken through the APIC (the fixture's wake-up vector). */
function* queueStopWork(k: KernelContext, cpu: number): Step {
  for (let w = 0; w * 64 < k.ncpus; w++) {
    let bits = 0n;
    for (let c = w * 64; c < Math.min(k.ncpus, w * 64 + 64); c++) bits |= 1n << BigInt(c & 63);
    yield* lockOr(k.L.stopMachine + SM_QUEUED + BigInt(8 * w), 8, bits);
  }
  if (k.ncpus > 1) yield* wrmsr(MSR_X2APIC_ICR, BigInt((SH_ALL_BUT_SELF << 18) | k.L.vectors.stopMachine));
  void cpu;
}

/**
 * stop_machine(fn) from `cpu`'s thread: set up multi_stop_data, queue the work on
 * every CPU, run this CPU's own stopper, then wait for every stopper to be done.
 */
export function* stopMachine(k: KernelContext, cpu: number, fn: (cpu: number) => Step): Step {
  const st = k.L.stopMachine;
  k.stopFn = fn;
  yield* write(st + SM_NUM_THREADS, 4, BigInt(k.ncpus), 'msdata.num_threads');
  yield* write(st + SM_NR_TODO, 4, BigInt(k.ncpus), 'cpu_stop_done.nr_todo');
  yield* setState(k, MULTI_STOP_PREPARE);
  yield* write(st + SM_ACTIVE, 8, 1n, 'stop_cpus_in_progress');
  yield* queueStopWork(k, cpu);
  // The caller sleeps in wait_for_completion(); its CPU switches to its own stopper.
  yield* cpuStopperThread(k, cpu);
  yield* waitUntil(st + SM_NR_TODO, 4, (v) => v === 0n, 'every stopper to finish (cpu_stop_done)', () => ({
    cpus: k.m.cpus.map((c) => c.id).filter((c) => c !== cpu),
    text: 'waiting in stop_machine for the other CPUs\' stoppers to finish multi_cpu_stop',
  }));
  yield* write(st + SM_ACTIVE, 8, 0n, 'stop_machine done');
  k.stopFn = null;
}

/** cpu_stopper_thread(): take this CPU's queued work, if any, and run multi_cpu_stop on it. */
export function* cpuStopperThread(k: KernelContext, cpu: number): Step<boolean> {
  const { addr, bit } = queuedWord(k, cpu);
  const old = yield* lockAnd(addr, 8, ~bit & 0xffffffffffffffffn);
  if ((old & bit) === 0n || !k.stopFn) return false;
  yield* multiCpuStopLoop(k, cpu, k.stopFn);
  yield* xadd(k.L.stopMachine + SM_NR_TODO, 4, -1n & 0xffffffffn);
  return true;
}

/** multi_cpu_stop(): walk the states with every other CPU; run `fn` in MULTI_STOP_RUN. */
export function* multiCpuStopLoop(k: KernelContext, cpu: number, fn: (cpu: number) => Step): Step {
  const st = k.L.stopMachine;
  let cur = MULTI_STOP_NONE;
  setAcked(k, cpu, MULTI_STOP_NONE);
  do {
    const seen = cur;
    const next = Number(
      yield* waitUntil(st + SM_STATE, 4, (v) => Number(v) !== seen, `msdata.state to leave ${MULTI_STOP_NAMES[seen]}`, () => ({
        cpus: laggards(k),
        text: `waiting in multi_cpu_stop (${MULTI_STOP_NAMES[seen]}) for the CPUs that have not acknowledged it`,
      })),
    );
    cur = next;
    if (cur === MULTI_STOP_DISABLE_IRQ) yield* irqs(false); // local_irq_disable(); hard_irq_disable()
    else if (cur === MULTI_STOP_RUN) yield* fn(cpu);
    setAcked(k, cpu, cur);
    yield* ackState(k);
  } while (cur !== MULTI_STOP_EXIT);
  // local_irq_restore(): a stopper thread (and the caller's thread) runs with interrupts on.
  yield* irqs(true);
}

/**
 * The last state each CPU acknowledged (host-side bookkeeping, read only to describe a
 * wait for the wait-for graph). Each CPU writes its own slot and a waiting CPU reads
 * every slot, so each slot is a pseudo-word of the explorer's footprint (shared-state.ts).
 */
const acked = new WeakMap<KernelContext, Int8Array>();

function ackedBy(k: KernelContext): Int8Array {
  let a = acked.get(k);
  if (!a) acked.set(k, (a = new Int8Array(k.ncpus)));
  return a;
}

function setAcked(k: KernelContext, cpu: number, state: number): void {
  noteModelAccess(k.m.mem, modelWord(MODEL_WORDS.stopAcked + cpu), true);
  ackedBy(k)[cpu] = state;
}

/** CPUs that have not acknowledged the current state, for the wait-for graph. */
function laggards(k: KernelContext): number[] {
  // The newest state any CPU acknowledged (no guest read: a replay could not repeat it).
  const a = ackedBy(k);
  for (let c = 0; c < k.ncpus; c++) noteModelAccess(k.m.mem, modelWord(MODEL_WORDS.stopAcked + c), false);
  const cur = Math.max(...a) + 1;
  const out: number[] = [];
  for (let c = 0; c < k.ncpus; c++) if (a[c] < cur) out.push(c);
  return out;
}

/** The multi_cpu_stop host routine: a CPU switched to its stopper thread. */
export function* multiCpuStop(k: KernelContext, ctx: HostContext): Step {
  if ((yield* read(k.L.stopMachine + SM_ACTIVE, 8)) === 0n || !k.stopFn) return;
  ctx.status = 'in stop_machine';
  ctx.label = 'stop_machine';
  yield* cpuStopperThread(k, ctx.cpu);
}
