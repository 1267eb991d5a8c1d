// Deterministic scheduling. A run is a function of the machine, the scenario and the
// schedule: round-robin with a quantum, seeded random (which CPU, and for how many
// steps), or an explicit list of (CPU, steps) slots followed by a fallback policy.
// Only runnable CPUs are picked; a waiting CPU is skipped, which changes nothing it
// would have computed (see emu/spin.ts) and saves the host the spinning.

export type Schedule =
  | { kind: 'round-robin'; quantum: number }
  | { kind: 'random'; seed: number; maxQuantum: number }
  | { kind: 'list'; slots: ListSlot[]; then: Schedule };

/** `drain: true`: drain one store-buffer entry of `cpu` instead of running it (x86-TSO; `steps` ignored). */
export interface ListSlot {
  cpu: number;
  steps: number;
  drain?: boolean;
}

/** Where a scheduler is in its schedule (machine snapshots save it). */
export type SchedulerState = number | { rng: number } | { pos: number; then: SchedulerState };

export interface Slot {
  cpu: number;
  quantum: number;
}

/** mulberry32: a small, fast, well-mixed 32-bit PRNG; the seed fixes the sequence. */
export class Prng {
  private s: number;
  constructor(seed: number) {
    this.s = seed >>> 0;
  }
  get state(): number {
    return this.s;
  }
  set state(v: number) {
    this.s = v;
  }
  next(): number {
    let t = (this.s = (this.s + 0x6d2b79f5) | 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }
  /** Uniform integer in [0, n). */
  below(n: number): number {
    return this.next() % n;
  }
}

export abstract class Scheduler {
  /** The next slot among CPUs for which `runnable` holds, or null if none is. */
  abstract next(ncpus: number, runnable: (cpu: number) => boolean): Slot | null;
  abstract saveState(): SchedulerState;
  abstract loadState(s: SchedulerState): void;

  /**
   * Under x86-TSO, before each slot: the CPU whose oldest buffered store drains now, or
   * -1 to run a slot. When no CPU is runnable a drain is forced (a store buffer
   * always empties eventually). The default drains eagerly: stores are delayed only
   * within the slice that made them.
   */
  drain(ncpus: number, drainable: (cpu: number) => boolean, _runnable: (cpu: number) => boolean): number {
    for (let k = 0; k < ncpus; k++) if (drainable(k)) return k;
    return -1;
  }

  static create(s: Schedule): Scheduler {
    switch (s.kind) {
      case 'round-robin':
        return new RoundRobin(s.quantum);
      case 'random':
        return new RandomSchedule(s.seed, s.maxQuantum);
      case 'list':
        return new ListSchedule(s.slots, Scheduler.create(s.then));
    }
  }
}

export class RoundRobin extends Scheduler {
  /** The CPU the next slot starts looking from (Machine.run's fast path advances it itself). */
  cursor = 0;
  constructor(readonly quantum: number) {
    super();
    if (!(quantum >= 1)) throw new Error('round-robin quantum must be at least 1');
  }
  next(ncpus: number, runnable: (cpu: number) => boolean): Slot | null {
    for (let k = 0; k < ncpus; k++) {
      const c = (this.cursor + k) % ncpus;
      if (runnable(c)) {
        this.cursor = (c + 1) % ncpus;
        return { cpu: c, quantum: this.quantum };
      }
    }
    return null;
  }
  saveState(): SchedulerState {
    return this.cursor;
  }
  loadState(s: SchedulerState): void {
    this.cursor = s as number;
  }
}

class RandomSchedule extends Scheduler {
  private readonly rng: Prng;
  private readonly scratch: number[] = [];
  constructor(
    seed: number,
    private readonly maxQuantum: number,
  ) {
    super();
    this.rng = new Prng(seed);
    if (!(maxQuantum >= 1)) throw new Error('random schedule maxQuantum must be at least 1');
  }
  next(ncpus: number, runnable: (cpu: number) => boolean): Slot | null {
    const c = this.scratch;
    c.length = 0;
    for (let k = 0; k < ncpus; k++) if (runnable(k)) c.push(k);
    if (c.length === 0) return null;
    const cpu = c[this.rng.below(c.length)];
    return { cpu, quantum: 1 + this.rng.below(this.maxQuantum) };
  }

  /** Drains with probability 1/2 when any store is buffered, from a CPU picked uniformly. */
  override drain(ncpus: number, drainable: (cpu: number) => boolean, runnable: (cpu: number) => boolean): number {
    const c = this.scratch;
    c.length = 0;
    for (let k = 0; k < ncpus; k++) if (drainable(k)) c.push(k);
    if (c.length === 0) return -1;
    let any = false;
    for (let k = 0; k < ncpus && !any; k++) any = runnable(k);
    if (any && this.rng.below(2) === 0) return -1;
    return c[this.rng.below(c.length)];
  }

  saveState(): SchedulerState {
    return { rng: this.rng.state };
  }
  loadState(s: SchedulerState): void {
    this.rng.state = (s as { rng: number }).rng;
  }
}

class ListSchedule extends Scheduler {
  private pos = 0;
  constructor(
    private readonly slots: ListSlot[],
    private readonly then: Scheduler,
  ) {
    super();
  }
  next(ncpus: number, runnable: (cpu: number) => boolean): Slot | null {
    while (this.pos < this.slots.length) {
      const s = this.slots[this.pos++];
      if (s.drain) continue;
      if (s.cpu < ncpus && runnable(s.cpu)) return { cpu: s.cpu, quantum: s.steps };
    }
    return this.then.next(ncpus, runnable);
  }
  /** Listed drains happen where they are listed; between listed runs nothing drains; after the list, `then` decides. */
  override drain(ncpus: number, drainable: (cpu: number) => boolean, runnable: (cpu: number) => boolean): number {
    if (this.pos < this.slots.length) {
      const s = this.slots[this.pos];
      if (!s.drain) {
        let any = false;
        for (let k = 0; k < ncpus && !any; k++) any = runnable(k);
        if (any) return -1;
        for (let k = 0; k < ncpus; k++) if (drainable(k)) return k;
        return -1;
      }
      this.pos++;
      return s.cpu < ncpus && drainable(s.cpu) ? s.cpu : this.drain(ncpus, drainable, runnable);
    }
    return this.then.drain(ncpus, drainable, runnable);
  }
  saveState(): SchedulerState {
    return { pos: this.pos, then: this.then.saveState() };
  }
  loadState(s: SchedulerState): void {
    const l = s as { pos: number; then: SchedulerState };
    this.pos = l.pos;
    this.then.loadState(l.then);
  }
}
