// The machine: CPUs sharing sparse memory, their local APICs, host-routine bindings,
// code hooks, the XMC checker, and the deterministic run loop with deadlock detection.
// Everything the CLI does is reachable from here as a library call.

import { Cpu, type CpuMemoryState } from './cpu';
import { HI, RSP } from './regs';
import { GuestException } from './fault';
import { Memory, splitAddr } from './memory';
import { LocalApic, type Ipi, type IpiBus, APIC_DEFAULT_BASE, DM_NMI, DM_FIXED, DM_LOWEST, SH_NONE, SH_SELF, SH_ALL, SH_OTHERS } from './apic';
import { XmcChecker, type XmcViolation } from './xmc';
import { SpinTracker } from './spin';
import { SymbolTable } from './symbols';
import type { HostBinding, HostOp, HostRoutine } from './host';
import { hostRead } from './host';
import type { CodeHook, HookAction } from './breakpoints';
import { setHooked } from './breakpoints';
import type { Insn } from './insn';
import type { Probe } from './probe';
import type { EventKind } from './events';
import { runSlice, runOne, stepPlain, stepHot, eventDeliverable } from './run';
import { Scheduler, RoundRobin, type Schedule, type SchedulerState } from './scheduler';
import { takeSnapshot, restoreSnapshot, type Snapshot, type SavesState } from './snapshot';
import { toBig } from './u64';
import { PortBus } from './ports';
import { CR0_PG } from './paging';
import { BLOCK_HOT } from './block';

export type FetchMode = 'coherent' | 'stale';

export interface MachineOptions {
  /** Number of CPUs, 1 to 256. */
  cpus: number;
  /** How another CPU's code writes reach a CPU's decoded instructions (DESIGN.md). */
  fetchMode?: FetchMode;
  /** Local APIC mode at reset. */
  apicMode?: 'x2apic' | 'xapic';
  /**
   * Walk page tables (emu/paging.ts) once the guest sets CR0.PG with CR4.PAE and
   * EFER.LME; CPUs then start with CR0.PG clear. Default false: linear = physical, at no cost.
   */
  paging?: boolean;
  /** 'sc' (default): every store is visible at once. 'tso': per-CPU store buffers (x86-TSO). */
  memoryModel?: MemoryModel;
  /** 'atomic' (default): an instruction is one step. 'split': an unlocked read-modify-write is a load step and a store step. */
  rmw?: RmwMode;
  /** Store-buffer entries per CPU under 'tso' before a store forces the oldest out (default 16). */
  storeBufferSize?: number;
  /** Compile hot straight-line code into blocks (emu/block.ts; default true, see setBlocksByDefault). false: step every instruction. */
  blocks?: boolean;
  /** Executions of an instruction before a block is compiled from it (default BLOCK_HOT; tests use 2). */
  blockHot?: number;
  /** IPI delivery latency in run() (default none: an IPI arrives at the ICR write); see setIpiLatency. */
  ipiLatency?: IpiLatency;
}

let blocksByDefault = true;
/** The `blocks` option of machines that do not set it (the CLI's and the bench's --no-blocks). */
export function setBlocksByDefault(on: boolean): void {
  blocksByDefault = on;
}

export const MEMORY_MODELS = ['sc', 'tso'] as const;
export type MemoryModel = (typeof MEMORY_MODELS)[number];
export const RMW_MODES = ['atomic', 'split'] as const;
export type RmwMode = (typeof RMW_MODES)[number];

export interface RunOptions {
  schedule?: Schedule;
  /** Stop after this many machine steps in total (all CPUs). */
  maxSteps?: number;
  /** Stop as soon as any CPU executes HLT (the `exec` command's contract). */
  stopOnHlt?: boolean;
  /** Stop at the first XMC violation. */
  stopOnXmc?: boolean;
  /** Checked after every slice; true ends the run with stop 'until'. */
  until?: () => boolean;
  /** Called after every slice with the steps run so far (progress bars). */
  onProgress?: (steps: number) => void;
  /**
   * Livelock: every CPU that is not waiting or halted has gone round the same PAUSE
   * loop for at least this many of its instructions, none of them a fixed point (each
   * iteration changes something). Default 2,000,000; 0 disables.
   */
  livelockSteps?: number;
  /** Run only this CPU (single-stepping); the others stay where they are. */
  onlyCpu?: number;
}

export type StopReason =
  | 'hlt'
  | 'halted'
  | 'deadlock'
  | 'livelock'
  | 'step-limit'
  | 'breakpoint'
  | 'shutdown'
  | 'xmc-violation'
  | 'until'
  | 'stopped';

export interface RunResult {
  stop: StopReason;
  /** Machine steps (instructions and host-routine steps, all CPUs) when the run ended. */
  steps: number;
  /** The CPU the stop concerns (hlt, breakpoint, shutdown, xmc), if any. */
  cpu: number | null;
}

/**
 * One thing that can happen next (Machine.enabled / Machine.take). `drain`: the oldest
 * store in the CPU's store buffer becomes visible (memoryModel 'tso'). `ipi`: the
 * oldest IPI in flight from CPU `from` to CPU `cpu` arrives (IPI latency as a choice,
 * Machine.setIpiChoice). Drains and IPI arrivals are asynchronous: no CPU runs.
 */
export type Choice =
  | { kind: 'step'; cpu: number }
  | { kind: 'nmi'; cpu: number }
  | { kind: 'drain'; cpu: number }
  | { kind: 'ipi'; cpu: number; from: number };

/**
 * IPI delivery latency in run(): each IPI reaches each target a number of machine
 * steps after the sender's ICR write, drawn from [min, max] by a generator seeded with
 * `seed` (docs/notes/ipi-latency.md). A draw of 0 delivers at once, as with no latency.
 */
export interface IpiLatency {
  min: number;
  max: number;
  seed: number;
}

/** An IPI on its way to one target: sent at the sender's ICR write, not yet arrived. */
export interface IpiInFlight {
  /** Send order (machine-wide), for FIFO order per sender and target. */
  seq: number;
  from: number;
  to: number;
  nmi: boolean;
  vector: number;
  /** The machine step at or after which run() delivers it (not used under setIpiChoice). */
  due: number;
}

export interface BlockInfo {
  reason: 'wait' | 'spin';
  detail: string;
  waitsFor: number[];
}

/** MSRs we accept without modelling: storage with a zero reset value. */
const PLAIN_MSRS = new Set([
  0x3a, 0x48, 0x49, 0x8b, 0x10a, 0x174, 0x175, 0x176, 0x1a0, 0x1d9, 0x277, 0x6e0,
  0xc0000081, 0xc0000082, 0xc0000083, 0xc0000084, 0xc0000103,
]);
export const MSR_TSC = 0x10;
export const MSR_EFER = 0xc0000080;
export const MSR_FS_BASE = 0xc0000100;
export const MSR_GS_BASE = 0xc0000101;
export const MSR_KERNEL_GS_BASE = 0xc0000102;

interface Timer {
  step: number;
  seq: number;
  fn: () => void;
}

const DEFAULT_SCHEDULE: Schedule = { kind: 'round-robin', quantum: 100 };
const LIVELOCK_CHECK_EVERY = 65536;

/** A component state registered with `addStatePart` (store buffers, the kernel model, …). */
interface StatePart {
  part: SavesState<unknown>;
  /** Host routines read it in their bodies: saved when each routine starts (emu/host.ts). */
  readByHostRoutines: boolean;
}

/** The machine's own fields in a snapshot (emu/snapshot.ts holds the rest). */
export interface MachineCoreState {
  steps: number;
  firstFault: [number, { vector: number; detail: string }][];
  exceptionLog: Machine['exceptionLog'];
  droppedNmis: number;
  timers: Timer[];
  timerSeq: number;
  blocks: [number, BlockInfo, { addr: bigint; size: number }[]][];
  schedKey: string | null;
  sched: SchedulerState | null;
  slotCpu: number;
  slotLeft: number;
  nextLivelockCheck: number | null;
  xmcViolations: XmcViolation[];
  xmcSeen: Set<string>;
  inFlight: IpiInFlight[];
  ipiSeq: number;
  ipiRng: number;
}

export class Machine implements IpiBus {
  readonly mem = new Memory();
  readonly cpus: Cpu[] = [];
  readonly xmc = new XmcChecker();
  readonly symbols = new SymbolTable();
  readonly ports = new PortBus();
  fetchMode: FetchMode;
  readonly pagingEnabled: boolean;
  readonly memoryModel: MemoryModel;
  readonly rmw: RmwMode;
  readonly storeBufferSize: number;
  /** Machine clock: steps run by all CPUs together, advanced after each slice. The TSC derives from it. */
  steps = 0;
  /** The running CPU's retired count when its slice began (see currentStep). */
  private sliceRetired = 0;
  private sliceCpu: Cpu | null = null;
  probe: Probe | null = null;
  /** Original exception per CPU while a #DF is being delivered (for the shutdown message). */
  readonly firstFault = new Map<number, { vector: number; detail: string }>();
  /** Exceptions with a diagnostic (#UD of an unimplemented instruction, #PF), most recent last. */
  readonly exceptionLog: { cpu: number; vector: number; detail: string; step: number }[] = [];
  /** NMIs that arrived while one was already latched, and were therefore lost. */
  droppedNmis = 0;
  private readonly hosts = new Map<string, HostBinding>();
  private readonly hooks = new Map<string, CodeHook[]>();
  private readonly watchIds = new Map<number, number[]>();
  private timers: Timer[] = [];
  private timerSeq = 0;
  /** Component states that join snapshots, by name. */
  private readonly parts = new Map<string, StatePart>();
  /**
   * The schedule in force and where it is: the scheduler's position and the slot
   * being run (CPU, steps left). Part of the machine state, so a run that stops (a
   * breakpoint, the step limit, `until`) continues the same schedule from the same
   * point when run again.
   */
  private sched: Scheduler | null = null;
  private schedKey: string | null = null;
  private slotCpu = -1;
  private slotLeft = 0;
  private nextLivelockCheck: number | null = null;
  /** cpu.brk as a breakpoint found it (restored when the run resumes there). */
  private stopBrk = false;
  /** The locations each blocked CPU watches (re-watched after a restore). */
  private readonly blockRanges = new Map<number, { addr: bigint; size: number }[]>();
  private stopRequest: { reason: StopReason; cpu: number | null } | null = null;
  private stopOnXmc = false;
  /** Describes what a blocked CPU waits for (set by blockOnWait / the spin detector). */
  readonly blockInfo = new Map<number, BlockInfo>();
  /** Extra wait-for edges for spinning CPUs (the kernel model knows lock owners). */
  spinWaitsFor: ((cpu: Cpu, reads: { addr: bigint; size: number; value: number }[]) => number[]) | null = null;
  /** IPI latency in run() (null: every IPI arrives at the sender's ICR write). */
  private ipiLatency: IpiLatency | null = null;
  /** IPIs arrive only when an explorer takes an 'ipi' choice. */
  private ipiChoice = false;
  /** IPIs sent and not yet arrived, in send order (entries are never mutated). */
  private inFlight: IpiInFlight[] = [];
  private ipiSeq = 0;
  /** The latency generator's state (xorshift32; never 0). */
  private ipiRng = 1;

  constructor(opts: MachineOptions) {
    const n = opts.cpus;
    if (!Number.isInteger(n) || n < 1 || n > 256) throw new Error(`cpus must be an integer from 1 to 256 (got ${n})`);
    this.fetchMode = opts.fetchMode ?? 'coherent';
    this.pagingEnabled = opts.paging ?? false;
    this.memoryModel = opts.memoryModel ?? 'sc';
    this.rmw = opts.rmw ?? 'atomic';
    this.storeBufferSize = opts.storeBufferSize ?? 16;
    if (!Number.isInteger(this.storeBufferSize) || this.storeBufferSize < 1) throw new Error(`storeBufferSize must be a positive integer (got ${this.storeBufferSize})`);
    const x2 = (opts.apicMode ?? 'x2apic') === 'x2apic';
    const blockHot = opts.blockHot ?? BLOCK_HOT;
    if (!Number.isInteger(blockHot) || blockHot < 1) throw new Error(`blockHot must be a positive integer (got ${blockHot})`);
    for (let i = 0; i < n; i++) {
      const cpu = new Cpu(i, this, this.mem);
      cpu.apic = new LocalApic(i, i, this, x2);
      cpu.spin = new SpinTracker(cpu);
      cpu.tso = this.memoryModel === 'tso';
      cpu.icache.blockHot = (opts.blocks ?? blocksByDefault) ? blockHot : 0;
      // With paging modelled, the guest turns it on itself (the flat reset state keeps PG set).
      if (this.pagingEnabled) cpu.cr0 &= ~CR0_PG;
      this.cpus.push(cpu);
    }
    // The xAPIC page: each CPU reaches its own APIC at the same address.
    this.mem.mapMmio(APIC_DEFAULT_BASE, {
      read: (cpu, off, size) => this.cpus[cpu].apic.read(cpu, off, size),
      write: (cpu, off, size, v) => this.cpus[cpu].apic.write(cpu, off, size, v),
    });
    this.xmc.onViolation = (v) => this.onXmc(v);
    if (opts.ipiLatency !== undefined) this.setIpiLatency(opts.ipiLatency);
    // TLBs, store buffers and split RMWs in progress join snapshots.
    this.addStatePart('cpu-memory', {
      saveState: () => this.cpus.map((c) => c.saveMemoryState()),
      loadState: (s) => (s as CpuMemoryState[]).forEach((st, i) => this.cpus[i].loadMemoryState(st)),
    });
  }

  cpu(i: number): Cpu {
    const c = this.cpus[i];
    if (!c) throw new Error(`no CPU ${i} (machine has ${this.cpus.length})`);
    return c;
  }

  // ---- Loading ----

  /** Maps and fills memory; marks it as code when `code` (writes to it are then logged). */
  load(addr: bigint, bytes: Uint8Array, code = false): void {
    this.mem.map(addr, bytes.length);
    this.mem.writeBytes(addr, bytes);
    if (code) this.mem.markCode(addr, bytes.length);
  }

  // ---- Symbols ----

  symbolize(addr: bigint): string {
    return this.symbols.format(addr);
  }

  // ---- Host routines and hooks ----

  bindHost(address: bigint, name: string, routine: HostRoutine): void {
    const a = BigInt.asUintN(64, address);
    this.hosts.set(a.toString(), { name, address: a, routine });
    this.forgetDecode(a);
  }

  hostAt(lo: number, hi: number): HostBinding | undefined {
    if (this.hosts.size === 0) return undefined;
    return this.hosts.get(toBig(lo, hi).toString());
  }

  /** Adds a hook run before any CPU executes the instruction at `address`. Returns a remover. */
  addHook(address: bigint, hook: CodeHook): () => void {
    const a = BigInt.asUintN(64, address);
    const k = a.toString();
    const list = this.hooks.get(k) ?? [];
    list.push(hook);
    this.hooks.set(k, list);
    this.syncHooked(a);
    return () => {
      const l = this.hooks.get(k);
      if (!l) return;
      const i = l.indexOf(hook);
      if (i >= 0) l.splice(i, 1);
      if (l.length === 0) {
        this.hooks.delete(k);
        this.syncHooked(a);
      }
    };
  }

  hasBreakpoint(lo: number, hi: number): boolean {
    if (this.hooks.size === 0) return false;
    return this.hooks.has(toBig(lo, hi).toString());
  }

  runHooks(cpu: Cpu, ins: Insn): HookAction {
    const list = this.hooks.get(ins.address.toString());
    if (!list) return 'continue';
    let action: HookAction = 'continue';
    for (const h of list.slice()) {
      const a = h(cpu, ins);
      if (a === 'stop') action = 'stop';
      else if (a === 'boundary' && action === 'continue') action = 'boundary';
    }
    return action;
  }

  /** Wraps or unwraps each CPU's decoded instruction at `a` to match its hooks. */
  private syncHooked(a: bigint): void {
    const [lo, hi] = splitAddr(a);
    const on = this.hasBreakpoint(lo, hi);
    for (const c of this.cpus) {
      // Blocks bake in the exec they were compiled with.
      c.icache.dropBlocks();
      const ins = c.icache.peek(lo, hi);
      if (ins) setHooked(ins, on);
    }
  }

  /** After a restore put decodes back as they were: hooks are not machine state. */
  rehook(restored: Insn[]): void {
    for (const c of this.cpus) c.icache.dropBlocks();
    for (const ins of restored) setHooked(ins, this.hasBreakpoint(ins.lo, ins.hi));
  }

  /** Called by a breakpoint stopping a CPU (emu/breakpoints.ts). */
  noteStopBrk(brk: boolean): void {
    this.stopBrk = brk;
  }

  private forgetDecode(a: bigint): void {
    const [lo, hi] = splitAddr(a);
    for (const c of this.cpus) {
      c.icache.forget(lo, hi);
      c.icache.dropBlocks();
    }
  }

  // ---- Timers (scenario injections at a step) ----

  /** Runs `fn` at the first slice boundary at or after machine step `step`. */
  at(step: number, fn: () => void): void {
    this.timers.push({ step, seq: this.timerSeq++, fn });
    this.timers.sort((a, b) => a.step - b.step || a.seq - b.seq);
  }

  private fireTimers(): void {
    while (this.timers.length && this.timers[0].step <= this.steps) this.timers.shift()!.fn();
  }

  // ---- Events ----

  /** An NMI arrives at `cpu` (from an APIC, or injected by a scenario). */
  nmi(cpu: number): void {
    const c = this.cpu(cpu);
    if (c.nmiPending) {
      // One NMI can be latched while another is being handled; more are lost.
      this.droppedNmis++;
      return;
    }
    c.nmiPending = true;
    c.brk = true;
  }

  /** A fixed-mode interrupt arrives at `cpu`. */
  interrupt(cpu: number, vector: number): void {
    const c = this.cpu(cpu);
    c.apic.acceptFixed(vector);
    c.brk = true;
  }

  sendIpi(ipi: Ipi): void {
    const targets = this.ipiTargets(ipi);
    this.probe?.onIpi?.(ipi.from, targets, ipi.mode === DM_NMI, ipi.vector);
    // SMI, INIT and SIPI are not modelled.
    if (ipi.mode !== DM_NMI && ipi.mode !== DM_FIXED && ipi.mode !== DM_LOWEST) return;
    const nmi = ipi.mode === DM_NMI;
    if (this.ipiLatency === null && !this.ipiChoice) {
      for (const t of targets) this.arrive(t, nmi, ipi.vector);
      return;
    }
    // The ICR write is a device access: its step commutes with no other (currentStep says so).
    const now = this.currentStep(this.cpus[ipi.from]);
    for (const to of targets) {
      const delay = this.ipiChoice ? 0 : this.drawIpiDelay();
      if (!this.ipiChoice && delay === 0) {
        this.arrive(to, nmi, ipi.vector);
        continue;
      }
      this.inFlight.push({ seq: this.ipiSeq++, from: ipi.from, to, nmi, vector: ipi.vector, due: now + delay });
      if (!this.ipiChoice) this.at(now + delay, () => this.deliverDue());
    }
  }

  /** The CPUs an IPI's destination (shorthand, physical or logical) names. */
  private ipiTargets(ipi: Ipi): number[] {
    const targets: number[] = [];
    for (const c of this.cpus) {
      let hit: boolean;
      switch (ipi.shorthand) {
        case SH_SELF:
          hit = c.id === ipi.from;
          break;
        case SH_ALL:
          hit = true;
          break;
        case SH_OTHERS:
          hit = c.id !== ipi.from;
          break;
        default:
          hit = ipi.shorthand === SH_NONE && c.apic.matches(ipi.dest, ipi.logical, ipi.x2apic);
      }
      if (hit) targets.push(c.id);
    }
    if (ipi.mode === DM_LOWEST && targets.length > 1) targets.length = 1;
    return targets;
  }

  /** An IPI reaches its target's local APIC. */
  private arrive(to: number, nmi: boolean, vector: number): void {
    if (nmi) this.nmi(to);
    else this.interrupt(to, vector);
  }

  /**
   * IPI delivery latency in run(): each IPI sent from now on stays in flight for a
   * seeded number of steps (null: none, the default). Deterministic: the same seed and
   * schedule give the same delays.
   */
  setIpiLatency(l: IpiLatency | null): void {
    if (l !== null && !(Number.isInteger(l.min) && Number.isInteger(l.max) && l.min >= 0 && l.max >= l.min && Number.isInteger(l.seed))) {
      throw new Error(`ipiLatency: expected integers 0 <= min <= max and a seed (got ${JSON.stringify(l)})`);
    }
    this.ipiLatency = l === null ? null : { ...l };
    // xorshift32 must not start at 0.
    if (l !== null) this.ipiRng = (l.seed >>> 0) === 0 ? 0x9e3779b9 | 0 : l.seed | 0;
  }

  /**
   * IPI latency as a choice (the explorer): from now on every IPI stays in flight until
   * take({ kind: 'ipi' }) delivers it, and run() delivers none. Turning it off hands
   * the IPIs still in flight back to run(), which delivers each at its due step (or at
   * once if that has passed).
   */
  setIpiChoice(on: boolean): void {
    this.ipiChoice = on;
    if (!on) for (const e of this.inFlight) this.at(Math.max(e.due, this.steps), () => this.deliverDue());
  }

  /** IPIs sent and not yet arrived, oldest first. */
  get ipisInFlight(): readonly IpiInFlight[] {
    return this.inFlight;
  }

  /** ICR delivery status (xAPIC): an IPI this CPU sent has not reached every target yet. */
  sendPending(from: number): boolean {
    return this.inFlight.some((e) => e.from === from);
  }

  private drawIpiDelay(): number {
    const l = this.ipiLatency!;
    let x = this.ipiRng;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.ipiRng = x;
    return l.min + ((x >>> 0) % (l.max - l.min + 1));
  }

  /** run()'s delivery: every IPI whose delay has passed arrives, in send order. */
  private deliverDue(): void {
    if (this.ipiChoice) return;
    while (this.inFlight.length) {
      const i = this.inFlight.findIndex((e) => e.due <= this.steps);
      if (i < 0) return;
      this.deliverInFlight(i);
    }
  }

  private deliverInFlight(i: number): void {
    const e = this.inFlight[i];
    this.inFlight = this.inFlight.filter((_, j) => j !== i);
    this.arrive(e.to, e.nmi, e.vector);
    // The sender may be spinning on the xAPIC delivery-status bit: an MMIO read no
    // memory watch sees change, so its spin block ends here.
    const s = this.cpus[e.from];
    if (!s.apic.x2apic && s.blocked?.reason === 'spin' && !this.sendPending(e.from)) this.unblock(s);
  }

  onDeliver(cpu: Cpu, vector: number, kind: EventKind): void {
    cpu.spin?.reset();
    cpu.spin?.endLoop();
    this.probe?.onEvent?.(cpu, vector, kind);
  }

  noteException(cpu: Cpu, vector: number, detail: string): void {
    this.exceptionLog.push({ cpu: cpu.id, vector, detail, step: this.steps });
    if (this.exceptionLog.length > 1000) this.exceptionLog.shift();
  }

  private onXmc(v: XmcViolation): void {
    if (this.stopOnXmc) this.stopRequest = { reason: 'xmc-violation', cpu: v.cpu };
  }

  /** Ends the current run at the next slice boundary (hooks, host routines, the console). */
  requestStop(reason: StopReason = 'stopped', cpu: number | null = null): void {
    this.stopRequest = { reason, cpu };
  }

  // ---- MSRs ----

  rdmsr(cpu: Cpu, msr: number): bigint {
    const a = cpu.apic.readMsr(msr);
    if (a === 'gp') throw new GuestException(13, 0, `rdmsr 0x${msr.toString(16)}: x2APIC MSR in xAPIC mode`);
    if (a !== undefined) return a;
    switch (msr >>> 0) {
      case MSR_TSC:
        return BigInt.asUintN(64, BigInt(this.currentStep(cpu)) + cpu.tscOffset);
      case MSR_EFER:
        return BigInt(cpu.efer);
      case MSR_FS_BASE:
        return toBig(cpu.fsLo, cpu.fsHi);
      case MSR_GS_BASE:
        return toBig(cpu.gsLo, cpu.gsHi);
      case MSR_KERNEL_GS_BASE:
        return toBig(cpu.kgsLo, cpu.kgsHi);
    }
    const v = cpu.msrs.get(msr >>> 0);
    if (v !== undefined) return v;
    if (PLAIN_MSRS.has(msr >>> 0)) return 0n;
    throw new GuestException(13, 0, `rdmsr of unmodelled MSR 0x${(msr >>> 0).toString(16)}`);
  }

  /** Returns whether the write serializes (x2APIC MSR writes do not). */
  wrmsr(cpu: Cpu, msr: number, value: bigint): boolean {
    const v = BigInt.asUintN(64, value);
    const a = cpu.apic.writeMsr(msr, v);
    if (a === 'gp') throw new GuestException(13, 0, `wrmsr 0x${msr.toString(16)}: not writable in this APIC mode`);
    if (a === true) return !(msr >= 0x800 && msr <= 0x8ff);
    const [lo, hi] = splitAddr(v);
    switch (msr >>> 0) {
      case MSR_TSC:
        cpu.tscOffset = v - BigInt(this.currentStep(cpu));
        return true;
      case MSR_EFER:
        cpu.efer = lo;
        return true;
      case MSR_FS_BASE:
        cpu.fsLo = lo;
        cpu.fsHi = hi;
        return true;
      case MSR_GS_BASE:
        cpu.gsLo = lo;
        cpu.gsHi = hi;
        return true;
      case MSR_KERNEL_GS_BASE:
        cpu.kgsLo = lo;
        cpu.kgsHi = hi;
        return true;
    }
    if (PLAIN_MSRS.has(msr >>> 0) || cpu.msrs.has(msr >>> 0)) {
      cpu.msrs.set(msr >>> 0, v);
      return true;
    }
    throw new GuestException(13, 0, `wrmsr of unmodelled MSR 0x${(msr >>> 0).toString(16)}`);
  }

  // ---- Blocking (host waits, PAUSE spins) ----

  blockOnWait(cpu: Cpu, w: Extract<HostOp, { op: 'wait' }>): void {
    const info = w.waitsFor?.();
    this.block(cpu, { reason: 'wait', detail: w.what, waitsFor: info?.cpus ?? [] }, [{ addr: w.addr, size: w.size }, ...(w.also ?? [])]);
  }

  blockOnSpin(cpu: Cpu): void {
    const tr = cpu.spin!;
    const reads = tr.reads.map((r) => ({ addr: toBig(r.lo, r.hi), size: r.size, value: r.value }));
    const waitsFor = this.spinWaitsFor ? this.spinWaitsFor(cpu, reads) : [];
    const detail = `spinning with PAUSE on ${tr.describe((a) => this.symbolize(a))}`;
    this.block(cpu, { reason: 'spin', detail, waitsFor }, reads);
  }

  private block(cpu: Cpu, info: BlockInfo, ranges: { addr: bigint; size: number }[]): void {
    cpu.blocked = { reason: info.reason, detail: info.detail };
    this.blockInfo.set(cpu.id, info);
    cpu.brk = true;
    const wake = (): void => this.unblock(cpu);
    // Watches are on physical memory: with paging on, the CPU's TLB says where.
    this.watchIds.set(cpu.id, ranges.map((r) => this.mem.watch(cpu.physical(r.addr), r.size, wake)));
    this.blockRanges.set(cpu.id, ranges);
  }

  unblock(cpu: Cpu): void {
    if (!cpu.blocked) return;
    cpu.blocked = null;
    this.blockInfo.delete(cpu.id);
    this.unwatchBlock(cpu.id);
    cpu.spin?.reset();
  }

  private unwatchBlock(id: number): void {
    for (const w of this.watchIds.get(id) ?? []) this.mem.unwatch(w);
    this.watchIds.delete(id);
    this.blockRanges.delete(id);
  }

  /** Whether the scheduler may give `cpu` a slice now. */
  runnable(cpu: Cpu): boolean {
    if (cpu.shutdown) return false;
    if (cpu.halted || cpu.blocked) return eventDeliverable(cpu);
    return true;
  }

  // ---- Running ----

  /** Runs one CPU for up to `n` steps, whatever the others do. */
  step(cpuId: number, n = 1): RunResult {
    this.cpu(cpuId);
    return this.run({ schedule: { kind: 'round-robin', quantum: n }, maxSteps: this.steps + n, onlyCpu: cpuId });
  }

  /**
   * Runs the machine under a schedule until something stops it. The schedule's
   * position is kept in the machine: running again with the same schedule (or none)
   * continues where the last run stopped, mid-slot included, so stopping and resuming
   * changes nothing the machine computes. A different schedule starts afresh.
   */
  run(opts: RunOptions = {}): RunResult {
    const only = opts.onlyCpu;
    // Single-stepping one CPU is the caller's own schedule: the machine's stays put.
    const sched = only === undefined ? this.useSchedule(opts.schedule) : Scheduler.create(opts.schedule ?? DEFAULT_SCHEDULE);
    const maxSteps = opts.maxSteps ?? Number.MAX_SAFE_INTEGER;
    this.stopOnXmc = opts.stopOnXmc ?? false;
    this.stopRequest = null;
    const n = this.cpus.length;
    const runnable = (i: number): boolean => (only === undefined || i === only) && this.runnable(this.cpus[i]);
    const livelockSteps = opts.livelockSteps ?? 2_000_000;
    if (this.nextLivelockCheck === null) this.nextLivelockCheck = this.steps + LIVELOCK_CHECK_EVERY;
    const fast = only === undefined && this.memoryModel !== 'tso' && sched instanceof RoundRobin ? sched : null;
    for (;;) {
      if (fast !== null) {
        const r = this.runRoundRobin(fast, maxSteps, livelockSteps, opts);
        if (r !== null) return r;
      }
      this.fireTimers();
      const req = this.pendingStop();
      if (req) return this.finish(req.reason, req.cpu);
      if (this.steps >= maxSteps) return this.finish('step-limit', null);
      if (this.memoryModel === 'tso' && !(only === undefined && this.slotLeft > 0 && runnable(this.slotCpu))) {
        // Between slots, a store-buffer drain is a step of its own, chosen by the schedule (x86-TSO).
        const drainable = (i: number): boolean => (only === undefined || i === only) && this.cpus[i].drainable > 0;
        const d = sched.drain(n, drainable, runnable);
        if (d >= 0) {
          this.cpus[d].drainOne();
          this.steps++;
          continue;
        }
      }
      let cpuId: number;
      let left: number;
      if (only === undefined && this.slotLeft > 0 && runnable(this.slotCpu)) {
        cpuId = this.slotCpu;
        left = this.slotLeft;
      } else {
        const slot = sched.next(n, runnable);
        if (!slot) {
          if (this.timers.length) {
            // Every CPU waits: time passes until the next timed injection.
            this.steps = Math.min(maxSteps, Math.max(this.steps, this.timers[0].step));
            continue;
          }
          return this.finish(this.idleReason(only), null);
        }
        cpuId = slot.cpu;
        left = slot.quantum;
        if (this.timers.length) left = Math.max(1, Math.min(left, this.timers[0].step - this.steps));
      }
      const q = Math.min(left, maxSteps - this.steps);
      const cpu = this.cpus[cpuId];
      this.sliceCpu = cpu;
      this.sliceRetired = cpu.retired;
      const ran = runSlice(cpu, q);
      this.sliceCpu = null;
      this.steps += ran;
      if (only === undefined) {
        // The slot goes on after a stop in its middle (a breakpoint, the step limit);
        // it ends early only when the CPU itself ended it (halted, blocked, …).
        const rest = left - ran;
        const cut = cpu.stoppedAt !== null || (ran === q && q < left);
        this.slotCpu = cpuId;
        this.slotLeft = cut && rest > 0 ? rest : 0;
      }
      const end = this.afterSlice(cpu, opts, livelockSteps, only);
      if (end !== null) return end;
    }
  }

  /** What ends a run after a slice of `cpu`: a breakpoint, shutdown, HLT, `until`, livelock; null to go on. */
  private afterSlice(cpu: Cpu, opts: RunOptions, livelockSteps: number, only: number | undefined): RunResult | null {
    if (opts.onProgress !== undefined) opts.onProgress(this.steps);
    if (cpu.stoppedAt !== null) {
      cpu.stoppedAt = null;
      cpu.brk = this.stopBrk;
      return this.finish('breakpoint', cpu.id);
    }
    if (cpu.shutdown) return this.finish('shutdown', cpu.id);
    if (cpu.halted && opts.stopOnHlt) return this.finish('hlt', cpu.id);
    if (opts.until !== undefined && opts.until()) return this.finish('until', null);
    if (livelockSteps > 0 && this.steps >= this.nextLivelockCheck!) {
      this.nextLivelockCheck = this.steps + LIVELOCK_CHECK_EVERY;
      if (this.livelocked(livelockSteps, only)) return this.finish('livelock', null);
    }
    return null;
  }

  /**
   * run()'s fast path for round-robin schedules (the quantum-1 interleaving above all):
   * the same slots, in the same order, as the general loop, with what it checks before
   * a slot (timers, stop requests, the slot in progress, idle CPUs) reduced to a few
   * compares and no allocation. Returns null as soon as anything needs the general
   * loop, which then does one iteration; a result when the run ends.
   */
  private runRoundRobin(rr: RoundRobin, maxSteps: number, livelockSteps: number, opts: RunOptions): RunResult | null {
    const cpus = this.cpus;
    const n = cpus.length;
    const q = rr.quantum;
    // Nothing looks at single slices: quantum-1 slots run in a batch (runBatch).
    const batch = q === 1 && opts.onProgress === undefined && opts.until === undefined;
    for (;;) {
      if (this.stopRequest !== null || this.slotLeft > 0 || this.steps + q > maxSteps) return null;
      if (this.timers.length !== 0 && this.steps + q > this.timers[0].step) return null;
      if (batch) {
        const end = this.runBatch(rr, maxSteps, livelockSteps, opts);
        if (end !== undefined) return end;
      }
      // RoundRobin.next without the Slot: the first runnable CPU from the cursor.
      let c = rr.cursor;
      let cpu = cpus[c];
      let k = 0;
      while (!(cpu.shutdown === null && !cpu.halted && cpu.blocked === null) && !this.runnable(cpu)) {
        if (++k === n) return null;
        c = c + 1 === n ? 0 : c + 1;
        cpu = cpus[c];
      }
      rr.cursor = c + 1 === n ? 0 : c + 1;
      this.sliceCpu = cpu;
      this.sliceRetired = cpu.retired;
      const ran = q === 1 ? runOne(cpu) : runSlice(cpu, q);
      this.sliceCpu = null;
      this.steps += ran;
      this.slotCpu = c;
      this.slotLeft = cpu.stoppedAt !== null && ran < q ? q - ran : 0;
      const end = this.afterSlice(cpu, opts, livelockSteps, undefined);
      if (end !== null) return end;
    }
  }

  /**
   * Quantum-1 round-robin slots back to back while every CPU in turn is plainly
   * runnable (no boundary work pending: brk, shadow, halt, block, shutdown) and no
   * general check is due: the step limit, the next timer and the next livelock check
   * are turned into one bound beforehand, and a step that sets `brk` or requests a
   * stop ends the batch with the general after-slice checks for its slot. The slots,
   * their order and the machine's step count are those runRoundRobin's loop gives
   * (`steps` is exact during each step, which is all currentStep() needs: a slot of
   * one instruction reads the clock before it retires). Returns a result if the run
   * ended, null if it must return to run()'s loop, undefined to go on in runRoundRobin.
   */
  private runBatch(rr: RoundRobin, maxSteps: number, livelockSteps: number, opts: RunOptions): RunResult | null | undefined {
    if (this.probe !== null) return undefined;
    const cpus = this.cpus;
    const n = cpus.length;
    let lim = maxSteps;
    if (this.timers.length !== 0 && this.timers[0].step < lim) lim = this.timers[0].step;
    // The last step before a livelock check goes through the general slot, which checks.
    if (livelockSteps > 0 && this.nextLivelockCheck! < lim) lim = this.nextLivelockCheck!;
    const from = this.steps;
    const r = this.batchLoop(cpus, rr.cursor, lim - 1);
    if (r < 0) {
      // A slot ended the batch: the general after-slice checks for it.
      const at = (-1 - r) >> 1;
      const ran = (-1 - r) & 1;
      const cpu = cpus[at];
      rr.cursor = at + 1 === n ? 0 : at + 1;
      this.slotCpu = at;
      this.slotLeft = cpu.stoppedAt !== null && ran < 1 ? 1 - ran : 0;
      const end = this.afterSlice(cpu, opts, livelockSteps, undefined);
      if (end !== null) return end;
      return this.stopRequest !== null || this.slotLeft > 0 ? null : undefined;
    }
    if (r !== rr.cursor || this.steps !== from) {
      rr.cursor = r;
      this.slotCpu = r === 0 ? n - 1 : r - 1;
      this.slotLeft = 0;
    }
    return undefined;
  }

  /**
   * runBatch's loop, from the CPU at cursor `c` while the step count is below `last`.
   * Returns the cursor after the last slot run, or -1-(2c+ran) when the slot of CPU c,
   * which ran `ran` (0 or 1) steps, ended the batch (it set brk, ran no step, or a stop
   * was requested). Only a number leaves the
   * loop: V8 compiles it on stack replacement, and code after a long loop would have no
   * type feedback there (and deoptimize on every exit).
   */
  private batchLoop(cpus: readonly Cpu[], c: number, last: number): number {
    const n = cpus.length;
    // The first CPU in slot order that is not plainly runnable (shadow, halt, block,
    // shutdown, brk), or -1: the batch ends at its slot. The others stay plain unless
    // brk is set: a step of their own that changes any of these sets it (and ends the
    // batch), and what another CPU does to them (an IPI, a wake-up) sets it too.
    let stop = -1;
    // Their blockHot, if all have the same (else one no heat reaches: every step reads its CPU's).
    let hot = cpus[c].icache.blockHot;
    for (let k = 0, i = c; k < n; k++, i = i + 1 === n ? 0 : i + 1) {
      const x = cpus[i];
      if (x.icache.blockHot !== hot) hot = Number.POSITIVE_INFINITY;
      if (stop < 0 && (x.brk || x.intShadow || x.halted || x.blocked !== null || x.shutdown !== null)) stop = i;
    }
    // The step count in a local, stored after each step (currentStep reads it during the next).
    let steps = this.steps;
    while (steps < last) {
      if (c === stop) return c;
      const cpu = cpus[c];
      if (cpu.brk) return c;
      const ran = hot === Number.POSITIVE_INFINITY ? stepPlain(cpu) : stepHot(cpu, hot);
      this.steps = steps += ran;
      if (cpu.brk || ran !== 1 || this.stopRequest !== null) return -1 - (2 * c + ran);
      c = c + 1 === n ? 0 : c + 1;
    }
    return c;
  }

  /** The machine's scheduler for `s`: the one in force if `s` is the same schedule (or absent). */
  private useSchedule(s: Schedule | undefined): Scheduler {
    if (this.sched && (s === undefined || JSON.stringify(s) === this.schedKey)) return this.sched;
    this.setSchedule(s ?? DEFAULT_SCHEDULE);
    return this.sched!;
  }

  /** Starts schedule `s` afresh (its first slot next). */
  setSchedule(s: Schedule): void {
    this.sched = Scheduler.create(s);
    this.schedKey = JSON.stringify(s);
    this.slotCpu = -1;
    this.slotLeft = 0;
  }

  // ---- Choice points (the explorer's interface; run() does not use them) ----

  /**
   * What can happen next: a step of each CPU the scheduler could run now, a drain of
   * each CPU's oldest buffered store (memoryModel 'tso'), the arrival of each IPI in
   * flight (oldest per sender and target; setIpiChoice), and an NMI
   * to each CPU in `nmiCpus` that has none latched (it is then taken at that CPU's next
   * instruction boundary, i.e. its next step).
   */
  enabled(nmiCpus: readonly number[] = []): Choice[] {
    this.fireTimers();
    const out: Choice[] = [];
    for (const c of this.cpus) if (this.runnable(c)) out.push({ kind: 'step', cpu: c.id });
    for (const c of this.cpus) if (c.drainable > 0) out.push({ kind: 'drain', cpu: c.id });
    // One arrival per sender and target: the oldest (FIFO per pair, see docs/notes/ipi-latency.md).
    const pairs = new Set<string>();
    for (const e of this.inFlight) {
      const key = `${e.from}>${e.to}`;
      if (pairs.has(key)) continue;
      pairs.add(key);
      out.push({ kind: 'ipi', cpu: e.to, from: e.from });
    }
    for (const i of nmiCpus) {
      const c = this.cpus[i];
      if (c && !c.shutdown && !c.nmiPending) out.push({ kind: 'nmi', cpu: i });
    }
    return out;
  }

  /** Takes one choice: one step of a CPU (an event delivery and one instruction or host step), or an NMI. */
  take(c: Choice): void {
    if (c.kind === 'nmi') {
      this.nmi(c.cpu);
      return;
    }
    if (c.kind === 'drain') {
      this.cpus[c.cpu].drainOne();
      this.steps++;
      return;
    }
    if (c.kind === 'ipi') {
      const i = this.inFlight.findIndex((e) => e.from === c.from && e.to === c.cpu);
      if (i < 0) throw new Error(`take: no IPI in flight from CPU ${c.from} to CPU ${c.cpu}`);
      this.deliverInFlight(i);
      this.steps++;
      return;
    }
    const cpu = this.cpus[c.cpu];
    this.sliceCpu = cpu;
    this.sliceRetired = cpu.retired;
    const ran = runSlice(cpu, 1);
    this.sliceCpu = null;
    this.steps += ran;
    if (cpu.stoppedAt !== null) {
      cpu.stoppedAt = null;
      cpu.brk = this.stopBrk;
    }
  }

  /**
   * What is on its way and not yet seen, as numbers (for a search's state hash): each
   * CPU's buffered stores (address, size, value) and the IPIs in flight.
   */
  pendingWords(): number[] {
    const out: number[] = [];
    for (const c of this.cpus) {
      out.push(c.stores.length);
      for (const st of c.stores) out.push(st.lo, st.hi, st.size, st.vlo, st.vhi);
    }
    out.push(this.inFlight.length);
    // run()'s delivery is timed: steps left until due, unless the explorer chooses arrivals.
    for (const e of this.inFlight) out.push(e.from, e.to, e.nmi ? 1 : 0, e.vector, this.ipiChoice ? 0 : e.due - this.steps);
    return out;
  }

  /** The slot in progress: CPU and steps left (steps left 0: the next run picks a new slot). */
  get slot(): { cpu: number; left: number } {
    return { cpu: this.slotCpu, left: this.slotLeft };
  }

  /** Every live CPU spins in one PAUSE loop for `steps` or more, or waits; at least one spins. */
  private livelocked(steps: number, only: number | undefined): boolean {
    let spinning = 0;
    for (const c of this.cpus) {
      if (only !== undefined && c.id !== only) continue;
      if (c.shutdown) continue;
      if ((c.blocked || c.halted) && !eventDeliverable(c)) continue;
      if ((c.spin?.loopLength() ?? 0) < steps) return false;
      spinning++;
    }
    return spinning > 0;
  }

  private pendingStop(): { reason: StopReason; cpu: number | null } | null {
    return this.stopRequest;
  }

  idleReason(only?: number): StopReason {
    const live = this.cpus.filter((c) => !c.shutdown && (only === undefined || c.id === only));
    if (live.length === 0) return 'shutdown';
    return live.every((c) => c.halted && !c.blocked) ? 'halted' : 'deadlock';
  }

  private finish(stop: StopReason, cpu: number | null): RunResult {
    this.stopRequest = null;
    return { stop, steps: this.steps, cpu };
  }

  // ---- Snapshots (emu/snapshot.ts) ----

  /**
   * Registers a component whose state joins snapshots (store buffers, TLBs, the kernel
   * model's bookkeeping). `readByHostRoutines`: host routine bodies read it directly, so
   * it is also saved when each routine starts, to re-create routines after a restore.
   */
  addStatePart(name: string, part: SavesState<unknown>, opts: { readByHostRoutines?: boolean } = {}): void {
    if (this.parts.has(name)) throw new Error(`state part '${name}' is already registered`);
    this.parts.set(name, { part, readByHostRoutines: opts.readByHostRoutines ?? false });
  }

  /** Saves every registered part (or only those host routines read). */
  saveParts(onlyHostRead = false): Map<string, unknown> {
    const out = new Map<string, unknown>();
    for (const [name, p] of this.parts) if (!onlyHostRead || p.readByHostRoutines) out.set(name, p.part.saveState());
    return out;
  }

  loadParts(states: Map<string, unknown>): void {
    for (const [name, st] of states) this.parts.get(name)?.part.loadState(st);
  }

  /** Whether a part that host routines read is registered (routine starts then save them). */
  get hasHostReadParts(): boolean {
    for (const p of this.parts.values()) if (p.readByHostRoutines) return true;
    return false;
  }

  /** The whole machine state at this instruction boundary; cheap (copy on write). */
  snapshot(): Snapshot {
    return takeSnapshot(this);
  }

  /** Puts the machine back as it was at `s` (taken in its past: see emu/snapshot.ts). */
  restore(s: Snapshot): void {
    restoreSnapshot(this, s);
  }

  /** @internal The machine's own fields, for emu/snapshot.ts. */
  saveCore(): MachineCoreState {
    return {
      steps: this.steps,
      firstFault: [...this.firstFault],
      exceptionLog: this.exceptionLog.slice(),
      droppedNmis: this.droppedNmis,
      timers: this.timers.slice(),
      timerSeq: this.timerSeq,
      blocks: [...this.blockInfo].map(([id, info]) => [id, info, this.blockRanges.get(id) ?? []]),
      schedKey: this.schedKey,
      sched: this.sched ? this.sched.saveState() : null,
      slotCpu: this.slotCpu,
      slotLeft: this.slotLeft,
      nextLivelockCheck: this.nextLivelockCheck,
      xmcViolations: this.xmc.violations.slice(),
      xmcSeen: this.xmc.seenKeys(),
      inFlight: this.inFlight.slice(),
      ipiSeq: this.ipiSeq,
      ipiRng: this.ipiRng,
    };
  }

  /** @internal Loads the machine's own fields; CPU fields (cpu.blocked) are loaded first. */
  loadCore(s: MachineCoreState): void {
    this.steps = s.steps;
    this.firstFault.clear();
    for (const [k, v] of s.firstFault) this.firstFault.set(k, v);
    this.exceptionLog.length = 0;
    this.exceptionLog.push(...s.exceptionLog);
    this.droppedNmis = s.droppedNmis;
    this.timers = s.timers.slice();
    this.timerSeq = s.timerSeq;
    for (const id of [...this.watchIds.keys()]) this.unwatchBlock(id);
    this.blockInfo.clear();
    for (const [id, info, ranges] of s.blocks) {
      const cpu = this.cpus[id];
      this.blockInfo.set(id, info);
      const wake = (): void => this.unblock(cpu);
      this.watchIds.set(id, ranges.map((r) => this.mem.watch(r.addr, r.size, wake)));
      this.blockRanges.set(id, ranges);
    }
    if (s.schedKey === null) {
      this.sched = null;
      this.schedKey = null;
    } else {
      if (this.schedKey !== s.schedKey || !this.sched) {
        this.sched = Scheduler.create(JSON.parse(s.schedKey) as Schedule);
        this.schedKey = s.schedKey;
      }
      this.sched.loadState(s.sched!);
    }
    this.slotCpu = s.slotCpu;
    this.slotLeft = s.slotLeft;
    this.nextLivelockCheck = s.nextLivelockCheck;
    this.xmc.loadState(s.xmcViolations, s.xmcSeen);
    this.inFlight = s.inFlight.slice();
    this.ipiSeq = s.ipiSeq;
    this.ipiRng = s.ipiRng;
    this.stopRequest = null;
    this.sliceCpu = null;
  }

  // ---- Convenience for host code and tests ----

  readGuest(cpu: number, addr: bigint, size: number): bigint {
    return hostRead(this.cpu(cpu), addr, size);
  }

  /** The machine step at which `cpu` is now, inside its slice (the step loop counts as it goes). */
  currentStep(cpu: Cpu): number {
    // The clock depends on every CPU's steps: a step that reads it commutes with none.
    if (this.mem.footprint !== null) this.mem.footprint.global = true;
    return cpu === this.sliceCpu ? this.steps + (cpu.retired - this.sliceRetired) : this.steps;
  }

  /** RSP of a CPU as a bigint. */
  rsp(cpu: number): bigint {
    const c = this.cpu(cpu);
    return toBig(c.r[RSP], c.r[RSP + HI]);
  }
}
