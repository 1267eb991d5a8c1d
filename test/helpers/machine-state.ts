// Test helper: a machine's whole observable state as a comparable value (registers,
// flags, event state, host routines, every memory page's hash, the clock), and a probe
// that records which CPU ran which instruction at every step.

import { createHash } from 'crypto';
import type { Machine } from '../../emu/machine';
import type { Probe } from '../../emu/probe';
import { readFlags } from '../../emu/flags';
import { join } from 'path';
import { loadScenario } from '../../kernel-model/scenario/scenario-file';
import { prepareScenario, type ScenarioRun } from '../../kernel-model/scenario/run';

export const SCENARIOS = join(__dirname, '..', '..', '..', 'fixtures', 'scenarios');

export function scenarioRun(name: string): ScenarioRun {
  const file = join(SCENARIOS, name);
  return prepareScenario(loadScenario(file), {}, file);
}

export interface MachineState {
  steps: number;
  cpus: unknown[];
  memory: string;
  xmc: number;
}

export function machineState(m: Machine): MachineState {
  const h = createHash('sha1');
  for (const key of [...m.mem.pages.keys()].sort((a, b) => a - b)) {
    h.update(String(key));
    h.update(m.mem.pages.get(key)!.data);
  }
  return {
    steps: m.steps,
    memory: h.digest('hex'),
    xmc: m.xmc.violations.length,
    cpus: m.cpus.map((c) => ({
      rip: c.rip.toString(16),
      r: Array.from(c.r),
      flags: readFlags(c),
      retired: c.retired,
      nmiPending: c.nmiPending,
      nmiBlocked: c.nmiBlocked,
      halted: c.halted,
      blocked: c.blocked?.detail ?? null,
      contexts: c.contexts.map((x) => x.kind),
      host: c.hostFrames.map((f) => `${f.binding.name}:${f.last}:${f.ctx.status}`),
      serialSeq: c.serialSeq,
    })),
  };
}

/** Records (cpu, rip) of every step; `since` cuts the list (after a restore). */
export class StepRecorder implements Probe {
  readonly steps: string[] = [];
  onStep(cpu: { id: number }, ins: { lo: number }): void {
    this.steps.push(`${cpu.id}:${(ins.lo >>> 0).toString(16)}`);
  }
}
