// Probes observe a running machine (tracing, the stepping console, statistics). The
// machine holds at most one; with none installed the step loop has no probe calls at
// all (emu/run.ts keeps a separate probed loop), so observation costs nothing when off.

import type { Cpu } from './cpu';
import type { Insn } from './insn';
import type { EventKind } from './events';

export interface Probe {
  /** After each executed instruction or host-routine step. `hostDepth`: host frames before it ran. */
  onStep(cpu: Cpu, ins: Insn, hostDepth: number): void;
  /** After an exception, NMI or interrupt was delivered (the CPU is at the handler). */
  onEvent?(cpu: Cpu, vector: number, kind: EventKind): void;
  /** An IPI left `from`'s local APIC for `targets` (NMI or fixed mode), before any is delivered. */
  onIpi?(from: number, targets: readonly number[], nmi: boolean, vector: number): void;
}

/** Fans one probe slot out to several probes. */
export class ProbeSet implements Probe {
  constructor(readonly probes: Probe[]) {}
  onStep(cpu: Cpu, ins: Insn, hostDepth: number): void {
    for (const p of this.probes) p.onStep(cpu, ins, hostDepth);
  }
  onEvent(cpu: Cpu, vector: number, kind: EventKind): void {
    for (const p of this.probes) p.onEvent?.(cpu, vector, kind);
  }
  onIpi(from: number, targets: readonly number[], nmi: boolean, vector: number): void {
    for (const p of this.probes) p.onIpi?.(from, targets, nmi, vector);
  }
}
