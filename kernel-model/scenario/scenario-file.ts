// Scenario files: JSON describing a run — the kernel image, the CPUs and what each
// runs, the patch request, NMI and interrupt injections, the schedule, and what is
// expected. Validation names the file and the field ("inject[1].when.state: …")
// and says what was expected.

import { readFileSync } from 'fs';
import { dirname, isAbsolute, join } from 'path';
import type { Schedule } from '../../emu/scheduler';
import { type FetchMode, type MemoryModel, type RmwMode, MEMORY_MODELS, RMW_MODES } from '../../emu/machine';
import type { OpMode } from '../linux/pv-ops';
import type { Protocol, PokeRequest } from '../linux/kernel-model';
import type { ProtocolVariant } from '../linux/kernel-context';
import { PATCH_STATE_NAMES } from '../linux/kernel-layout';
import { KERNEL_FUNCTIONS } from '../linux/text-poke-late';

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
}

export class ScenarioError extends Error {}

type Json = unknown;

class V {
  constructor(readonly file: string) {}
  fail(path: string, msg: string): never {
    throw new ScenarioError(`${this.file}: ${path}: ${msg}`);
  }
  obj(v: Json, path: string): Record<string, Json> {
    if (typeof v !== 'object' || v === null || Array.isArray(v)) this.fail(path, `expected an object, got ${show(v)}`);
    return v as Record<string, Json>;
  }
  str(v: Json, path: string): string {
    if (typeof v !== 'string' || v === '') this.fail(path, `expected a non-empty string, got ${show(v)}`);
    return v;
  }
  int(v: Json, path: string, min: number, max: number): number {
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) this.fail(path, `expected an integer from ${min} to ${max}, got ${show(v)}`);
    return v;
  }
  bool(v: Json, path: string): boolean {
    if (typeof v !== 'boolean') this.fail(path, `expected true or false, got ${show(v)}`);
    return v;
  }
  big(v: Json, path: string): bigint {
    if (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0) return BigInt(v);
    if (typeof v === 'string' && /^(0x[0-9a-fA-F]+|[0-9]+)$/.test(v)) return BigInt(v);
    this.fail(path, `expected a non-negative integer or "0x…" string, got ${show(v)}`);
  }
  oneOf<T extends string>(v: Json, path: string, options: readonly T[]): T {
    if (typeof v !== 'string' || !(options as readonly string[]).includes(v)) {
      this.fail(path, `expected one of ${options.map((o) => `"${o}"`).join(', ')}, got ${show(v)}`);
    }
    return v as T;
  }
  known(o: Record<string, Json>, path: string, keys: string[]): void {
    for (const k of Object.keys(o)) if (!keys.includes(k)) this.fail(`${path}${path ? '.' : ''}${k}`, `unknown field (expected one of: ${keys.join(', ')})`);
  }
}

/**
 * The "image" field: a name or path, or { "vmlinux": path, "systemMap": path } for a
 * local kernel. Relative paths in the object are taken from the scenario file's folder.
 */
function scenarioImageField(v: V, x: Json, file: string): Scenario['image'] {
  if (typeof x === 'string') return v.str(x, 'image');
  const o = v.obj(x, 'image');
  v.known(o, 'image', ['vmlinux', 'systemMap']);
  if (o.vmlinux === undefined) v.fail('image.vmlinux', 'missing (the path of a vmlinux ELF)');
  if (o.systemMap === undefined) v.fail('image.systemMap', 'missing (the path of its System.map)');
  const base = dirname(file);
  const at = (p: string): string => (isAbsolute(p) ? p : join(base, p));
  return { vmlinux: at(v.str(o.vmlinux, 'image.vmlinux')), systemMap: at(v.str(o.systemMap, 'image.systemMap')) };
}

function show(v: Json): string {
  const s = JSON.stringify(v);
  return s === undefined ? 'nothing' : s.length > 40 ? s.slice(0, 40) + '…' : s;
}

function parseSchedule(v: V, x: Json, path: string, ncpus: number): Schedule {
  const o = v.obj(x, path);
  const kind = v.oneOf(o.kind, `${path}.kind`, ['round-robin', 'random', 'list'] as const);
  if (kind === 'round-robin') {
    v.known(o, path, ['kind', 'quantum']);
    return { kind, quantum: o.quantum === undefined ? 1 : v.int(o.quantum, `${path}.quantum`, 1, 1e9) };
  }
  if (kind === 'random') {
    v.known(o, path, ['kind', 'seed', 'maxQuantum']);
    return {
      kind,
      seed: v.int(o.seed, `${path}.seed`, 0, 0xffffffff),
      maxQuantum: o.maxQuantum === undefined ? 1 : v.int(o.maxQuantum, `${path}.maxQuantum`, 1, 1e9),
    };
  }
  v.known(o, path, ['kind', 'slots', 'then']);
  if (!Array.isArray(o.slots)) v.fail(`${path}.slots`, `expected an array of [cpu, steps] pairs, got ${show(o.slots)}`);
  const slots = (o.slots as Json[]).map((s, i) => {
    if (!Array.isArray(s) || s.length !== 2) v.fail(`${path}.slots[${i}]`, `expected [cpu, steps], got ${show(s)}`);
    return { cpu: v.int(s[0], `${path}.slots[${i}][0]`, 0, ncpus - 1), steps: v.int(s[1], `${path}.slots[${i}][1]`, 1, 1e9) };
  });
  const then = o.then === undefined ? ({ kind: 'round-robin', quantum: 1 } as Schedule) : parseSchedule(v, o.then, `${path}.then`, ncpus);
  return { kind: 'list', slots, then };
}

function parseTrigger(v: V, x: Json, path: string, ncpus: number): Trigger {
  const o = v.obj(x, path);
  if ('step' in o) {
    v.known(o, path, ['step']);
    return { step: v.int(o.step, `${path}.step`, 0, Number.MAX_SAFE_INTEGER) };
  }
  if ('symbol' in o) {
    v.known(o, path, ['symbol', 'cpu', 'offset']);
    return {
      symbol: v.str(o.symbol, `${path}.symbol`),
      cpu: o.cpu === undefined ? undefined : v.int(o.cpu, `${path}.cpu`, 0, ncpus - 1),
      offset: o.offset === undefined ? undefined : v.int(o.offset, `${path}.offset`, 0, 1 << 20),
    };
  }
  if ('function' in o) {
    v.known(o, path, ['function', 'cpu', 'state', 'site']);
    return {
      function: v.oneOf(o.function, `${path}.function`, KERNEL_FUNCTIONS),
      cpu: o.cpu === undefined ? undefined : v.int(o.cpu, `${path}.cpu`, 0, ncpus - 1),
      state: o.state === undefined ? undefined : v.oneOf(o.state, `${path}.state`, Object.values(PATCH_STATE_NAMES)),
      site: o.site === undefined ? undefined : v.str(o.site, `${path}.site`),
    };
  }
  if ('state' in o) {
    v.known(o, path, ['state', 'site']);
    const state = v.oneOf(o.state, `${path}.state`, Object.values(PATCH_STATE_NAMES));
    return { state, site: o.site === undefined ? undefined : v.str(o.site, `${path}.site`) };
  }
  v.fail(path, 'expected a trigger: {"step": N}, {"symbol": "name", "cpu"?: N}, {"state": "PATCH_SYNC_0", "site"?: "op or symbol+offset"} or {"function": "text_poke_sync_site", "cpu"?: N, "state"?: …, "site"?: …}');
}

function parseAction(v: V, o: Record<string, Json>, path: string, ncpus: number): Action {
  if ('nmi' in o) return { nmi: v.int(o.nmi, `${path}.nmi`, 0, ncpus - 1) };
  if ('irq' in o) {
    const i = v.obj(o.irq, `${path}.irq`);
    v.known(i, `${path}.irq`, ['cpu', 'vector']);
    return { irq: { cpu: v.int(i.cpu, `${path}.irq.cpu`, 0, ncpus - 1), vector: v.int(i.vector, `${path}.irq.vector`, 16, 255) } };
  }
  v.fail(path, 'expected an action: "nmi": <cpu> or "irq": {"cpu": N, "vector": N}');
}

/** Validates parsed JSON into a Scenario. `file` names the source in errors. */
export function parseScenario(json: Json, file: string): Scenario {
  const v = new V(file);
  const o = v.obj(json, '(top level)');
  v.known(o, '', ['name', 'description', 'image', 'cpus', 'fetchMode', 'preemption', 'nmiHandlers', 'memoryModel', 'rmw', 'paging', 'bootOps', 'work', 'patch', 'inject', 'schedule', 'maxSteps', 'expect']);
  const cpus = v.int(o.cpus, 'cpus', 1, 256);
  if (!Array.isArray(o.work)) v.fail('work', `expected an array with one {"entry", "arg"} per CPU, got ${show(o.work)}`);
  const workIn = o.work as Json[];
  // One entry per CPU, no fewer: a CPU without an entry would boot to nothing the
  // file says, and a missing entry is far more often a typo than a wish for an idle CPU
  // (say so with {"entry": "workload_idle"}).
  if (workIn.length !== cpus) v.fail('work', `has ${workIn.length} entries for ${cpus} CPUs (expected one per CPU; an idle CPU is {"entry": "workload_idle"})`);
  const work = workIn.map((w, i) => {
    const wo = v.obj(w, `work[${i}]`);
    v.known(wo, `work[${i}]`, ['entry', 'arg']);
    return { entry: v.str(wo.entry, `work[${i}].entry`), arg: wo.arg === undefined ? 0n : v.big(wo.arg, `work[${i}].arg`) };
  });
  const bootOps = o.bootOps === undefined ? [] : Object.entries(v.obj(o.bootOps, 'bootOps')).map(([op, mode]) => ({
    op,
    mode: v.oneOf(mode, `bootOps.${op}`, ['native', 'paravirt'] as const),
  }));
  let patch: Scenario['patch'] = null;
  if (o.patch !== undefined) {
    const p = v.obj(o.patch, 'patch');
    v.known(p, 'patch', ['ops', 'protocol', 'nmi', 'variant', 'again', 'pokes']);
    const pokes: PokeRequest[] = p.pokes === undefined
      ? []
      : Array.isArray(p.pokes)
        ? (p.pokes as Json[]).map((x, i) => {
          const q = v.obj(x, `patch.pokes[${i}]`);
          v.known(q, `patch.pokes[${i}]`, ['at', 'insn', 'len']);
          return { at: v.str(q.at, `patch.pokes[${i}].at`), insn: v.str(q.insn, `patch.pokes[${i}].insn`), len: q.len === undefined ? undefined : v.int(q.len, `patch.pokes[${i}].len`, 1, 15) };
        })
        : v.fail('patch.pokes', `expected an array of {"at", "insn", "len"?}, got ${show(p.pokes)}`);
    const opList = (x: Json, path: string, empty: boolean): { op: string; mode: OpMode }[] => {
      const list = Object.entries(v.obj(x, path)).map(([op, mode]) => ({ op, mode: v.oneOf(mode, `${path}.${op}`, ['native', 'paravirt'] as const) }));
      if (list.length === 0 && !empty) v.fail(path, 'names no op');
      return list;
    };
    const ops = p.ops === undefined && pokes.length ? [] : opList(p.ops, 'patch.ops', pokes.length > 0);
    patch = {
      ops,
      protocol: v.oneOf(p.protocol, 'patch.protocol', ['batch', 'stop-machine', 'naive'] as const),
      nmi: p.nmi === undefined ? false : v.bool(p.nmi, 'patch.nmi'),
      variant: p.variant === undefined ? 'rfc' : v.oneOf(p.variant, 'patch.variant', ['rfc', 'fixed'] as const),
      again: p.again === undefined ? null : opList(p.again, 'patch.again', false),
      pokes,
    };
    if (pokes.length && patch.protocol !== 'batch') v.fail('patch.pokes', 'single-instruction pokes exist only for the batch protocol (text_poke_bp)');
    if (patch.again && patch.protocol !== 'stop-machine') v.fail('patch.again', 'a second run exists only for the stop-machine protocol (text_poke_late)');
    if (patch.nmi && patch.protocol !== 'stop-machine') v.fail('patch.nmi', 'NMI mode exists only for the stop-machine protocol');
  }
  const inject: Injection[] = [];
  if (o.inject !== undefined) {
    if (!Array.isArray(o.inject)) v.fail('inject', `expected an array, got ${show(o.inject)}`);
    (o.inject as Json[]).forEach((x, i) => {
      const path = `inject[${i}]`;
      const io = v.obj(x, path);
      v.known(io, path, ['nmi', 'irq', 'when', 'times']);
      inject.push({
        action: parseAction(v, io, path, cpus),
        when: parseTrigger(v, io.when, `${path}.when`, cpus),
        times: io.times === undefined ? 1 : v.int(io.times, `${path}.times`, 1, 1e9),
      });
    });
  }
  let expect: Scenario['expect'] = null;
  if (o.expect !== undefined) {
    const e = v.obj(o.expect, 'expect');
    v.known(e, 'expect', ['outcome', 'cycle']);
    expect = {
      outcome: e.outcome === undefined ? undefined : v.oneOf(e.outcome, 'expect.outcome', ['deadlock', 'livelock', 'completed', 'step-limit', 'xmc-violation', 'oops'] as const),
      cycle: e.cycle === undefined ? undefined : (Array.isArray(e.cycle) ? (e.cycle as Json[]).map((c, i) => v.int(c, `expect.cycle[${i}]`, 0, cpus - 1)) : v.fail('expect.cycle', 'expected an array of CPU numbers')),
    };
  }
  return {
    name: o.name === undefined ? file.replace(/^.*\//, '').replace(/\.json$/, '') : v.str(o.name, 'name'),
    description: o.description === undefined ? '' : v.str(o.description, 'description'),
    image: o.image === undefined ? 'minikernel' : scenarioImageField(v, o.image, file),
    cpus,
    fetchMode: o.fetchMode === undefined ? 'coherent' : v.oneOf(o.fetchMode, 'fetchMode', ['coherent', 'stale'] as const),
    nmiHandlers: o.nmiHandlers === undefined
      ? null
      : Array.isArray(o.nmiHandlers)
        ? (o.nmiHandlers as Json[]).map((x, i) => v.str(x, `nmiHandlers[${i}]`))
        : v.fail('nmiHandlers', `expected an array of nmiaction symbols (e.g. ["nmi_lock_action"]), got ${show(o.nmiHandlers)}`),
    preemption: o.preemption === undefined ? 'voluntary' : v.oneOf(o.preemption, 'preemption', PREEMPTION_MODELS),
    memoryModel: o.memoryModel === undefined ? 'sc' : v.oneOf(o.memoryModel, 'memoryModel', MEMORY_MODELS),
    rmw: o.rmw === undefined ? 'atomic' : v.oneOf(o.rmw, 'rmw', RMW_MODES),
    paging: o.paging === undefined ? false : v.bool(o.paging, 'paging'),
    bootOps,
    work,
    patch,
    inject,
    schedule: o.schedule === undefined ? { kind: 'round-robin', quantum: 1 } : parseSchedule(v, o.schedule, 'schedule', cpus),
    maxSteps: o.maxSteps === undefined ? 2_000_000 : v.int(o.maxSteps, 'maxSteps', 1, Number.MAX_SAFE_INTEGER),
    expect,
  };
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
