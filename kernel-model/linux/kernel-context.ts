// What the kernel model's host routines share: the machine, the layout of kernel
// state in guest memory, the protocol options, the current patch plan, and a log of
// what happened (sites patched, BUGs) for reports.

import type { MutationName } from './mutations';
import type { Machine } from '../../emu/machine';
import type { KernelLayout } from './kernel-layout';
import type { PatchForm } from './paravirt-patch';
import type { Int3Emulation } from './text-poke-loc';
import type { HostOp, HostResult } from '../../emu/host';
import type { PokingMm } from './text-poke-mm';
import type { Memory } from '../../emu/memory';
import { noteModelAccess, modelWord, MODEL_WORDS } from './shared-state';

/**
 * 'rfc': poke_sync in the series' order (write, publish state, clear acks, sync,
 * ack and wait), and text_poke_late leaves sync_ack_map as it was.
 * 'fixed': clear the acks before publishing the state, and start each run with an
 * empty map: the corrected variant offered beside the faithful one.
 */
export type ProtocolVariant = 'rfc' | 'fixed';

export interface PlannedSite {
  address: bigint;
  len: number;
  op: string;
  old: Uint8Array;
  new: Uint8Array;
  form: PatchForm;
  /** For the batch protocol: what poke_int3_handler emulates (text_poke_loc_init). */
  emulate?: Int3Emulation;
}

export interface KernelEvent {
  step: number;
  cpu: number;
  kind: 'site-done' | 'bug' | 'patch-start' | 'patch-done' | 'int3' | 'note';
  text: string;
  address?: bigint;
}

export class KernelLog {
  readonly events: KernelEvent[] = [];
  constructor(private readonly m: Machine) {}
  add(cpu: number, kind: KernelEvent['kind'], text: string, address?: bigint): void {
    const step = cpu >= 0 ? this.m.currentStep(this.m.cpu(cpu)) : this.m.steps;
    this.events.push({ step, cpu, kind, text, address });
  }
  bugs(): KernelEvent[] {
    return this.events.filter((e) => e.kind === 'bug');
  }
}

/**
 * Which kernel functions of the model each CPU is in (outermost first), and who wants
 * to know when a CPU enters one: reports name them, injections fire on them, and a
 * protocol mutation can find each step by its kernel name.
 */
export class KernelCalls {
  private stacks: string[][];
  private readonly listeners: ((cpu: number, fn: string) => void)[] = [];
  /**
   * Set while a snapshot restore replays host routines (their bodies run again, their
   * operations are not performed): entering a function then must not fire anything.
   */
  replaying = false;
  /**
   * `mem`: for the explorer's footprint. Listeners (scenario injections) keep state
   * of their own that any CPU's entry reads and writes (what has fired), so with any
   * registered an entry notes a write of their pseudo-word (shared-state.ts).
   * Each CPU's stack is its own: no other CPU's routine reads it.
   */
  constructor(ncpus: number, private readonly mem: Memory | null = null) {
    this.stacks = Array.from({ length: ncpus }, () => []);
  }
  onEnter(listener: (cpu: number, fn: string) => void): void {
    this.listeners.push(listener);
  }
  enter(cpu: number, fn: string): void {
    this.stacks[cpu].push(fn);
    if (this.listeners.length && this.mem) noteModelAccess(this.mem, modelWord(MODEL_WORDS.callListeners), true);
    // Listeners run on a replay too (their reads must repeat); they act only when not replaying.
    for (const l of this.listeners) l(cpu, fn);
  }
  saveStacks(): string[][] {
    return this.stacks.map((st) => st.slice());
  }
  loadStacks(s: string[][]): void {
    this.stacks = s.map((st) => st.slice());
  }
  leave(cpu: number, fn: string): void {
    const st = this.stacks[cpu];
    const i = st.lastIndexOf(fn);
    if (i >= 0) st.splice(i, 1);
  }
  /** The model functions `cpu` is in now, outermost first (nested contexts included). */
  stack(cpu: number): readonly string[] {
    return this.stacks[cpu];
  }
}

/** Runs `body` as the kernel function `name` on `cpu` (see KernelCalls). */
export function* kfn<T>(k: KernelContext, cpu: number, name: string, body: Generator<HostOp, T, HostResult>): Generator<HostOp, T, HostResult> {
  k.calls.enter(cpu, name);
  try {
    return yield* body;
  } finally {
    k.calls.leave(cpu, name);
  }
}

export interface KernelContext {
  /** The model's kernel functions each CPU is in. */
  readonly calls: KernelCalls;
  readonly m: Machine;
  readonly L: KernelLayout;
  readonly ncpus: number;
  readonly variant: ProtocolVariant;
  /** A seeded protocol bug (mutations.ts), or null. */
  readonly mutation: MutationName | null;
  readonly log: KernelLog;
  /** Sites to patch in the current run (set by the patch request before stop_machine). */
  plan: PlannedSite[];
  /** The function stop_machine() runs on every CPU, while one is in progress. */
  stopFn: ((cpu: number) => Generator<HostOp, void, HostResult>) | null;
  /** poking_mm when the machine has page tables; null: pokes write the text directly (flat). */
  readonly poking: PokingMm | null;
}

/** Reads guest memory without taking a step: for reports and wait-for descriptions only. */
export function peek64(k: KernelContext, addr: bigint): bigint {
  return k.m.mem.readU64(addr);
}

export function hexBytes(b: Uint8Array): string {
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join(' ');
}

/**
 * BUG(): the kernel's report ("kernel BUG at <file>:<function>!"), then the ud2 the
 * kernel executes — the CPU takes #UD into the fixture's oops path and stops there —
 * and the run stops, as an oops in stop_machine context takes the machine down.
 */
export function* kernelBug(k: KernelContext, cpu: number, where: string, text: string): Generator<HostOp, never, HostResult> {
  k.log.add(cpu, 'bug', `kernel BUG at ${where}! ${text}`);
  k.m.requestStop('stopped', cpu);
  const ud2 = k.m.symbols.resolve('kernel_bug_ud2');
  if (ud2 !== undefined) yield { op: 'call', target: ud2, args: [], what: 'BUG(): ud2' };
  for (;;) yield { op: 'note', text: 'dead after BUG()' };
}
