// Scenario files: JSON describing a run — the kernel image, the CPUs and what each
// runs, the patch request, NMI and interrupt injections, the schedule, and what is
// expected. The shape of a file is scenario.schema.json (JSON Schema, also for
// editors); validation names the file and the field ("inject[1].when.state: …") and
// says what was expected.

import { readFileSync } from 'fs';
import { dirname, isAbsolute, join } from 'path';
import type { Schedule } from '../../emu/scheduler';
import type { FetchMode, MemoryModel, RmwMode, IpiLatency } from '../../emu/machine';
import type { OpMode } from '../linux/pv-ops';
import type { Protocol, PokeRequest } from '../linux/kernel-model';
import type { ProtocolVariant } from '../linux/kernel-context';
import { MUTATIONS, type Mutation, type MutationName } from '../linux/mutations';
import { SchemaChecker, type SchemaObject } from './json-schema';
import scenarioSchemaJson from './scenario.schema.json';

export type Outcome = 'deadlock' | 'livelock' | 'completed' | 'step-limit' | 'xmc-violation' | 'oops';

/** When an injection fires. */
export type Trigger =
  | { step: number }
  | { symbol: string; cpu?: number; offset?: number }
  | { state: string; site?: string }
  /** A CPU enters one of the model's kernel functions (text_poke_sync_site, __text_do_poke, …), optionally only in a given state / at a site. */
  | { function: string; cpu?: number; state?: string; site?: string };

export type Action = { nmi: number } | { irq: { cpu: number; vector: number } };

export interface Injection {
  action: Action;
  when: Trigger;
  /** How many times it may fire (default 1). */
  times: number;
}

/** The kernel's preemption model: where a CPU can switch to its stopper thread. */
export type Preemption = 'none' | 'voluntary' | 'full';
export const PREEMPTION_MODELS: readonly Preemption[] = ['none', 'voluntary', 'full'];

export interface Scenario {
  name: string;
  description: string;
  /**
   * Fixture name or path to a fixture manifest, "debian-6.1"/"debian-6.12" for the
   * downloaded kernel, or a local vmlinux with its System.map (paths relative to the
   * scenario file).
   */
  image: string | { vmlinux: string; systemMap: string };
  cpus: number;
  fetchMode: FetchMode;
  /** Default 'voluntary', Debian 6.1's (PREEMPT_DYNAMIC booted voluntary). */
  preemption: Preemption;
  /** nmiaction symbols on the NMI_LOCAL list at boot, in order (default: the fixture's own list). */
  nmiHandlers: string[] | null;
  /** Memory model ('sc' or x86-TSO store buffers) and whether unlocked RMWs split (docs/notes/x86-tso.md). */
  memoryModel: MemoryModel;
  rmw: RmwMode;
  /** IPI delivery latency in `run` (docs/notes/ipi-latency.md); null: IPIs arrive at the ICR write. */
  ipiLatency?: IpiLatency | null;
  /**
   * Fixture images only: boot with page tables and poke through poking_mm (true), or
   * keep the flat mapping (false, the default; real-kernel runs are always flat).
   */
  paging: boolean;
  /** pv ops set before boot-time patching (a paravirt guest's boot), op -> mode. */
  bootOps: { op: string; mode: OpMode }[];
  work: { entry: string; arg: bigint }[];
  patch: {
    ops: { op: string; mode: OpMode }[];
    protocol: Protocol;
    nmi: boolean;
    variant: ProtocolVariant;
    /** A second text_poke_late right after the first, with these ops (the series' patch 23 runs it twice). */
    again: { op: string; mode: OpMode }[] | null;
    /** Single instructions to text_poke_bp (batch protocol). */
    pokes: PokeRequest[];
  } | null;
  inject: Injection[];
  schedule: Schedule;
  maxSteps: number;
  expect: { outcome?: Outcome; cycle?: number[] } | null;
  /** A seeded protocol bug (kernel-model/linux/mutations.ts), or null. */
  mutate?: MutationName | null;
}

export class ScenarioError extends Error {}

/** The JSON Schema of scenario files (kernel-model/scenario/scenario.schema.json). */
export const SCENARIO_SCHEMA = scenarioSchemaJson as SchemaObject;
const checker = new SchemaChecker(SCENARIO_SCHEMA);

type Json = unknown;
type Obj = Record<string, Json>;

/**
 * Validates parsed JSON into a Scenario. `file` names the source in errors. The schema
 * decides the shape; what follows only converts, fills defaults, and checks what one
 * field says about another (CPU numbers against `cpus`, protocol-specific fields).
 */
export function parseScenario(json: Json, file: string): Scenario {
  const fail = (path: string, msg: string): never => {
    throw new ScenarioError(`${file}: ${path}: ${msg}`);
  };
  const bad = checker.check(json);
  if (bad) fail(bad.path, bad.message);
  const o = json as Obj;
  const cpus = o.cpus as number;
  const cpuAt = (n: number, path: string): number => (n < cpus ? n : fail(path, `expected an integer from 0 to ${cpus - 1} (the scenario has ${cpus} CPUs), got ${n}`));
  const workIn = o.work as Obj[];
  // One entry per CPU, no fewer: a CPU without an entry would boot to nothing the
  // file says, and a missing entry is far more often a typo than a wish for an idle CPU
  // (say so with {"entry": "workload_idle"}).
  if (workIn.length !== cpus) fail('work', `has ${workIn.length} entries for ${cpus} CPUs (expected one per CPU; an idle CPU is {"entry": "workload_idle"})`);
  const work = workIn.map((w) => ({ entry: w.entry as string, arg: w.arg === undefined ? 0n : BigInt(w.arg as number | string) }));
  const opModes = (x: Json): { op: string; mode: OpMode }[] => Object.entries((x ?? {}) as Obj).map(([op, mode]) => ({ op, mode: mode as OpMode }));
  let patch: Scenario['patch'] = null;
  if (o.patch !== undefined) {
    const p = o.patch as Obj;
    const pokes = ((p.pokes ?? []) as Obj[]).map((q) => ({ at: q.at as string, insn: q.insn as string, len: q.len as number | undefined }));
    const ops = opModes(p.ops);
    if (ops.length === 0 && pokes.length === 0) fail('patch.ops', 'names no op (and there are no pokes)');
    patch = {
      ops,
      protocol: p.protocol as Protocol,
      nmi: (p.nmi ?? false) as boolean,
      variant: (p.variant ?? 'rfc') as ProtocolVariant,
      again: p.again === undefined ? null : opModes(p.again),
      pokes,
    };
    if (pokes.length && patch.protocol !== 'batch') fail('patch.pokes', 'single-instruction pokes exist only for the batch protocol (text_poke_bp)');
    if (patch.again && patch.protocol !== 'stop-machine') fail('patch.again', 'a second run exists only for the stop-machine protocol (text_poke_late)');
    if (patch.nmi && patch.protocol !== 'stop-machine') fail('patch.nmi', 'NMI mode exists only for the stop-machine protocol');
  }
  const inject = ((o.inject ?? []) as Obj[]).map((io, i): Injection => {
    const path = `inject[${i}]`;
    const irq = io.irq as { cpu: number; vector: number } | undefined;
    const action: Action = io.nmi !== undefined
      ? { nmi: cpuAt(io.nmi as number, `${path}.nmi`) }
      : { irq: { cpu: cpuAt(irq!.cpu, `${path}.irq.cpu`), vector: irq!.vector } };
    const w = io.when as Obj;
    if (w.cpu !== undefined) cpuAt(w.cpu as number, `${path}.when.cpu`);
    return { action, when: w as Trigger, times: (io.times ?? 1) as number };
  });
  let mutate: MutationName | null = null;
  if (o.mutate !== undefined) {
    mutate = o.mutate as MutationName;
    const mu: Mutation = MUTATIONS[mutate];
    if (patch?.protocol !== mu.protocol) fail('mutate', `'${mutate}' is a bug in the ${mu.protocol} protocol: patch.protocol must be "${mu.protocol}"`);
    if (mu.nmi !== undefined && patch!.nmi !== mu.nmi) fail('mutate', `'${mutate}' shows only with patch.nmi ${mu.nmi}`);
  }
  let ipiLatency: IpiLatency | null = null;
  if (o.ipiLatency !== undefined) {
    const l = o.ipiLatency as Obj;
    ipiLatency = { min: (l.min ?? 0) as number, max: l.max as number, seed: (l.seed ?? 1) as number };
    if (ipiLatency.max < ipiLatency.min) fail('ipiLatency.max', `expected at least ipiLatency.min (${ipiLatency.min}), got ${ipiLatency.max}`);
  }
  let expect: Scenario['expect'] = null;
  if (o.expect !== undefined) {
    const e = o.expect as Obj;
    const cycle = e.cycle as number[] | undefined;
    cycle?.forEach((c, i) => cpuAt(c, `expect.cycle[${i}]`));
    expect = { outcome: e.outcome as Outcome | undefined, cycle };
  }
  return {
    name: (o.name ?? file.replace(/^.*\//, '').replace(/\.json$/, '')) as string,
    description: (o.description ?? '') as string,
    image: o.image === undefined ? 'minikernel' : scenarioImageField(o.image as string | Obj, file),
    cpus,
    fetchMode: (o.fetchMode ?? 'coherent') as FetchMode,
    nmiHandlers: (o.nmiHandlers ?? null) as string[] | null,
    preemption: (o.preemption ?? 'voluntary') as Preemption,
    memoryModel: (o.memoryModel ?? 'sc') as MemoryModel,
    rmw: (o.rmw ?? 'atomic') as RmwMode,
    ipiLatency,
    paging: (o.paging ?? false) as boolean,
    bootOps: opModes(o.bootOps),
    work,
    patch,
    inject,
    schedule: o.schedule === undefined ? { kind: 'round-robin', quantum: 1 } : scheduleField(o.schedule as Obj, 'schedule', cpuAt),
    maxSteps: (o.maxSteps ?? 2_000_000) as number,
    expect,
    mutate,
  };
}

/**
 * The "image" field: a name or path, or { "vmlinux": path, "systemMap": path } for a
 * local kernel. Relative paths in the object are taken from the scenario file's folder.
 */
function scenarioImageField(x: string | Obj, file: string): Scenario['image'] {
  if (typeof x === 'string') return x;
  const at = (p: string): string => (isAbsolute(p) ? p : join(dirname(file), p));
  return { vmlinux: at(x.vmlinux as string), systemMap: at(x.systemMap as string) };
}

function scheduleField(o: Obj, path: string, cpuAt: (n: number, path: string) => number): Schedule {
  if (o.kind === 'round-robin') return { kind: 'round-robin', quantum: (o.quantum ?? 1) as number };
  if (o.kind === 'random') return { kind: 'random', seed: o.seed as number, maxQuantum: (o.maxQuantum ?? 1) as number };
  const slots = (o.slots as [number, number][]).map(([cpu, steps], i) => ({ cpu: cpuAt(cpu, `${path}.slots[${i}][0]`), steps }));
  const then: Schedule = o.then === undefined ? { kind: 'round-robin', quantum: 1 } : scheduleField(o.then as Obj, `${path}.then`, cpuAt);
  return { kind: 'list', slots, then };
}

export function loadScenario(path: string): Scenario {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new ScenarioError(`${path}: cannot read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  let json: Json;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new ScenarioError(`${path}: not valid JSON (${(e as Error).message})`);
  }
  return parseScenario(json, path);
}
