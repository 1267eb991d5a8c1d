// Runtime patching of an image on N emulated CPUs, as a library call: the machine
// boots, CPU0 requests the patch with the chosen protocol while the other CPUs run
// the lock workload, and the text and pv_ops as they stand afterwards are returned
// as writes to apply to the image (the `patch` command writes them out).

import type { Schedule } from '../../emu/scheduler';
import type { FetchMode, MemoryModel, RmwMode } from '../../emu/machine';
import type { KernelImage } from '../image/kernel-image';
import type { OpChange, Protocol } from '../linux/kernel-model';
import type { ProtocolVariant } from '../linux/kernel-context';
import type { Scenario } from './scenario-file';
import { prepareScenario, explain, type RunReport } from './run';

export interface RuntimePatchOptions {
  ops: OpChange[];
  protocol: Protocol;
  nmi?: boolean;
  cpus?: number;
  variant?: ProtocolVariant;
  schedule?: Schedule;
  fetchMode?: FetchMode;
  memoryModel?: MemoryModel;
  rmw?: RmwMode;
  maxSteps?: number;
  /** Lock iterations per CPU around the patch. */
  iterations?: number;
  /** pv ops set before boot patching (a paravirt guest's boot). */
  bootOps?: OpChange[];
  onProgress?: (steps: number) => void;
}

export interface RuntimePatchResult {
  report: RunReport;
  /** address -> bytes: every paravirt site and pv_ops slot as they are after the run. */
  writes: Map<bigint, Uint8Array>;
}

export class RuntimePatchError extends Error {}

export function runtimePatch(img: KernelImage, o: RuntimePatchOptions): RuntimePatchResult {
  const cpus = o.cpus ?? 2;
  const iters = BigInt(o.iterations ?? 20);
  const s: Scenario = {
    name: 'runtime-patch',
    description: '',
    image: img.path,
    cpus,
    fetchMode: o.fetchMode ?? 'coherent',
    preemption: 'voluntary',
    nmiHandlers: null,
    paging: false,
    memoryModel: o.memoryModel ?? 'sc',
    rmw: o.rmw ?? 'atomic',
    bootOps: o.bootOps ?? [],
    work: [{ entry: 'workload_patcher', arg: iters }, ...Array.from({ length: cpus - 1 }, () => ({ entry: 'workload_locker', arg: iters }))],
    patch: { ops: o.ops, protocol: o.protocol, nmi: o.nmi ?? false, variant: o.variant ?? 'fixed', again: null, pokes: [] },
    inject: [],
    schedule: o.schedule ?? { kind: 'round-robin', quantum: 50 },
    maxSteps: o.maxSteps ?? 20_000_000,
    expect: null,
  };
  const run = prepareScenario(s, { image: img }, img.path);
  const r = run.m.run({ schedule: run.schedule, maxSteps: run.maxSteps, onProgress: o.onProgress });
  const report = explain(run, r);
  if (report.outcome !== 'completed') {
    throw new RuntimePatchError(`runtime patch did not complete: ${report.outcome}${report.cycleText.length ? ` (${report.cycleText.join('; ')})` : ''}`);
  }
  const writes = new Map<bigint, Uint8Array>();
  for (const site of img.sites) writes.set(site.address, run.m.mem.readBytes(site.address, site.len));
  const slots = img.pvOps.slots.length;
  writes.set(img.pvOps.address, run.m.mem.readBytes(img.pvOps.address, 8 * slots));
  return { report, writes };
}
