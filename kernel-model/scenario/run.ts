// Running a scenario: boot the image, arm the patch request and the injections, run
// under the schedule, then explain the outcome — the deadlock and its wait-for cycle,
// or the completed patch with every site's old and new bytes verified — and check
// the workload's invariants.

import type { Machine, FetchMode, MemoryModel, RmwMode, RunResult, IpiLatency } from '../../emu/machine';
import type { Schedule } from '../../emu/scheduler';
import type { Probe } from '../../emu/probe';
import type { XmcViolation } from '../../emu/xmc';
import { loadFixture, type FixtureImage } from '../image/fixture-image';
import { bootFixture, fixturePokingMm } from './boot-fixture';
import type { KernelImage } from '../image/kernel-image';
import { loadVmlinuxImage } from '../image/vmlinux-image';
import { withHarness, bootVmlinux, checkHarnessCpus, KernelWithHarness } from './boot-vmlinux';
import { PvOps } from '../linux/pv-ops';
import type { VmlinuxImage } from '../image/vmlinux-image';
import { cachedDebianKernel, debianKernelName, localKernel } from '../image/named-kernel';
import { existsSync } from 'fs';
import { KernelModel } from '../linux/kernel-model';
import type { ProtocolVariant, KernelEvent } from '../linux/kernel-context';
import { hexBytes } from '../linux/kernel-context';
import { wireInjections, type FiredInjection } from './inject';
import { machineReport, type CpuReport } from './report';
import { type Scenario, type Outcome, type Preemption, PREEMPTION_MODELS } from './scenario-file';
import { requireSymbol, ImageError } from '../image/kernel-image';
import { disasmInline } from '../image/disasm';
import { verifySite, compareSite } from '../linux/verify-site';

export interface RunOverrides {
  /** An image already loaded (instead of loading the scenario's `image`). */
  image?: KernelImage;
  schedule?: Schedule;
  maxSteps?: number;
  fetchMode?: FetchMode;
  memoryModel?: MemoryModel;
  rmw?: RmwMode;
  /** IPI delivery latency (null: none; default: the scenario's `ipiLatency`). */
  ipiLatency?: IpiLatency | null;
  /** Fixture images: boot with page tables and poke through poking_mm (default: the scenario's `paging`). */
  paging?: boolean;
  variant?: ProtocolVariant;
  nmi?: boolean;
  preemption?: Preemption;
  probe?: Probe;
  onProgress?: (steps: number) => void;
}

export interface SiteResult {
  address: bigint;
  op: string;
  old: Uint8Array;
  new: Uint8Array;
  oldAsm: string;
  newAsm: string;
  /** Bytes the alternatives engine generates for the op's pv_ops target now. */
  expected: Uint8Array;
  verified: boolean;
  how: string;
}

export interface Invariant {
  name: string;
  ok: boolean;
  detail: string;
}

export interface RunReport {
  scenario: string;
  outcome: Outcome;
  steps: number;
  stop: RunResult['stop'];
  schedule: Schedule;
  fetchMode: FetchMode;
  memoryModel: MemoryModel;
  rmw: RmwMode;
  protocol: string;
  variant: ProtocolVariant;
  nmi: boolean;
  cpus: CpuReport[];
  cycle: number[] | null;
  cycleText: string[];
  sites: SiteResult[];
  invariants: Invariant[];
  xmc: XmcViolation[];
  injections: FiredInjection[];
  events: KernelEvent[];
  expectation: { ok: boolean; detail: string } | null;
}

const WORKLOADS_WITH_LOCKING = new Set(['workload_locker', 'workload_patcher']);

export interface ScenarioRun {
  m: Machine;
  img: KernelImage;
  k: KernelModel;
  injections: FiredInjection[];
  scenario: Scenario;
  schedule: Schedule;
  maxSteps: number;
}

/**
 * The image a scenario names: a fixture (name or manifest path), "debian-6.1" or
 * "debian-6.12" for the release's pinned kernel in the cache, a vmlinux path (with
 * System.map beside it), or { vmlinux, systemMap } for a local kernel.
 */
export function scenarioImage(name: Scenario['image']): { kind: 'fixture'; img: FixtureImage } | { kind: 'vmlinux'; path: string; systemMap: string } {
  if (typeof name !== 'string') {
    const k = localKernel(name.vmlinux, name.systemMap);
    return { kind: 'vmlinux', path: k.vmlinux, systemMap: k.systemMap };
  }
  const release = debianKernelName(name);
  if (release) {
    const k = cachedDebianKernel(release);
    return { kind: 'vmlinux', path: k.vmlinux, systemMap: k.systemMap };
  }
  if (existsSync(name) && !name.endsWith('.json') && !name.endsWith('.bin')) {
    const k = localKernel(name);
    return { kind: 'vmlinux', path: k.vmlinux, systemMap: k.systemMap };
  }
  return { kind: 'fixture', img: loadFixture(name) };
}

/** Sets up a scenario's machine without running it (the stepping console starts here). */
export function prepareScenario(s: Scenario, o: RunOverrides = {}, file = s.name): ScenarioRun {
  const fetchMode = o.fetchMode ?? s.fetchMode;
  const memoryModel = o.memoryModel ?? s.memoryModel;
  const rmw = o.rmw ?? s.rmw;
  const bootSlotsFor = (im: KernelImage): Map<string, bigint> => {
    const pv = new PvOps(im);
    return new Map(s.bootOps.map((b) => [b.op, pv.target(b.op, b.mode)]));
  };
  let source: KernelImage;
  if (o.image) source = o.image;
  else {
    const which = scenarioImage(s.image);
    if (which.kind === 'vmlinux') checkHarnessCpus(s.cpus, which.path);
    source = which.kind === 'fixture' ? which.img : loadVmlinuxImage(which.path, which.systemMap);
  }
  let img: KernelImage;
  let m: Machine;
  if (source.kind === 'vmlinux') {
    const k = source instanceof KernelWithHarness ? source : withHarness(source as VmlinuxImage);
    for (const w of s.work) requireSymbol(k.harness, w.entry);
    // Page tables are built for fixture kernels only; a real kernel runs flat-mapped.
    if (o.paging ?? s.paging) throw new ImageError(`${s.name}: paging: page tables are built for fixture kernels only; ${k.path} runs flat-mapped (pokes write the text directly)`);
    img = k;
    m = bootVmlinux(k, { cpus: s.cpus, work: s.work, fetchMode, memoryModel, rmw, bootSlots: bootSlotsFor(k) });
  } else {
    const fx = source as FixtureImage;
    for (const w of s.work) requireSymbol(fx, w.entry);
    img = fx;
    m = bootFixture(fx, { cpus: s.cpus, work: s.work, fetchMode, memoryModel, rmw, bootSlots: bootSlotsFor(fx), paging: o.paging ?? s.paging });
  }
  // From the end of boot: the boot's own IPIs keep their timing whatever the scenario asks.
  m.setIpiLatency(o.ipiLatency !== undefined ? o.ipiLatency : (s.ipiLatency ?? null));
  // Nothing behind System Control Port B: the NMI reason (SERR, IOCHK) reads as 0.
  m.ports.claim(NMI_REASON_PORT, { in: () => 0, out: () => undefined });
  if (s.nmiHandlers) linkNmiHandlers(m, img, s.nmiHandlers, file);
  // The loader's word on the preemption model (fixtures/include/sched.inc).
  m.mem.writeU32(requireSymbol(img, 'preempt_model'), PREEMPTION_MODELS.indexOf(o.preemption ?? s.preemption));
  const k = new KernelModel(m, img, { variant: o.variant ?? s.patch?.variant ?? 'rfc', mutate: s.mutate ?? null, poking: fixturePokingMm(m) });
  if (s.patch) {
    k.request = { ops: s.patch.ops, protocol: s.patch.protocol, nmi: o.nmi ?? s.patch.nmi, again: s.patch.again, pokes: s.patch.pokes };
    k.check(k.request);
  }
  const injections = wireInjections(m, img, k.L, s.inject, file, k.calls);
  if (o.probe) m.probe = o.probe;
  return { m, img, k, injections, scenario: s, schedule: o.schedule ?? s.schedule, maxSteps: o.maxSteps ?? s.maxSteps };
}

/** x86_platform.get_nmi_reason() reads NMI_REASON_PORT (System Control Port B). */
const NMI_REASON_PORT = 0x61;

/** The boot-time NMI_LOCAL list: these nmiaction records, in order ({next, handler} each). */
function linkNmiHandlers(m: Machine, img: KernelImage, names: string[], file: string): void {
  const actions = names.map((n, i) => {
    const a = img.symbols.resolve(n);
    if (a === undefined) throw new ImageError(`${file}: nmiHandlers[${i}]: unknown nmiaction symbol '${n}' in ${img.path}`);
    return a;
  });
  actions.forEach((a, i) => m.mem.writeU64(a, i + 1 < actions.length ? actions[i + 1] : 0n));
  m.mem.writeU64(requireSymbol(img, 'nmi_list_head'), actions[0] ?? 0n);
}

export function vectorNamer(k: KernelModel): (v: number) => string | undefined {
  return (v) => (v === k.L.vectors.stopMachine ? 'stop_machine' : v === k.L.vectors.callFunction ? 'IPI call_function' : undefined);
}

export function runScenario(s: Scenario, o: RunOverrides = {}, file = s.name): RunReport {
  const run = prepareScenario(s, o, file);
  const r = run.m.run({ schedule: run.schedule, maxSteps: run.maxSteps, onProgress: o.onProgress });
  return explain(run, r);
}

/** Builds the report for a run that has stopped. */
export function explain(run: ScenarioRun, r: RunResult): RunReport {
  const { m, img, k, scenario: s } = run;
  const rep = machineReport(m, k.locks, vectorNamer(k), (cpu) => k.calls.stack(cpu));
  // A real kernel's own rules (6.1's ALTERNATIVEs) say what its sites should hold;
  // the fixture kernels follow the series' templates (verifySite).
  const ops = [...new Set(k.plan.map((p) => p.op).filter((op) => img.pvOps.slots.includes(op)))];
  const kernelBytes = img.generateSites ? img.generateSites(new Map(ops.map((op) => [op, k.pv.read(m, op)])), (op) => k.pv.read(m, op)) : null;
  const sites = k.plan.map((p): SiteResult => {
    const now = m.mem.readBytes(p.address, p.len);
    const site = img.sites.find((x) => x.address === p.address);
    // A single-instruction poke has no pv op: it must hold exactly the bytes asked for.
    const choice = site ? k.pv.choice(p.op, k.pv.read(m, p.op)) : null;
    const own = site && kernelBytes?.get(p.address);
    const v = site && choice
      ? own ? compareSite(site, now, own, choice) : verifySite(site, now, choice)
      : { ok: hexBytes(now) === hexBytes(p.new), expected: p.new, how: hexBytes(now) === hexBytes(p.new) ? 'exact (poked bytes)' : `expected ${hexBytes(p.new)}` };
    return {
      address: p.address,
      op: p.op,
      old: p.old,
      new: now,
      oldAsm: disasmInline(p.old, p.address, m.symbols),
      newAsm: disasmInline(now, p.address, m.symbols),
      expected: v.expected,
      verified: v.ok,
      how: v.how,
    };
  });
  const invariants = checkInvariants(run, sites);
  const workers = s.work.filter((w) => w.entry !== '').length;
  const done = m.mem.readU32(requireSymbol(img, 'workers_done'));
  const bugs = k.log.bugs().length + k.oopses().length;
  let outcome: Outcome;
  if (r.stop === 'deadlock') outcome = 'deadlock';
  else if (r.stop === 'livelock') outcome = 'livelock';
  else if (m.xmc.violations.length > 0) outcome = 'xmc-violation';
  else if (bugs > 0) outcome = 'oops';
  else if ((r.stop === 'halted' || r.stop === 'until') && (!s.patch || k.patchDone) && done >= workers) outcome = 'completed';
  else outcome = 'step-limit';
  let expectation: RunReport['expectation'] = null;
  if (s.expect) {
    const problems: string[] = [];
    if (s.expect.outcome && s.expect.outcome !== outcome) problems.push(`expected outcome ${s.expect.outcome}, got ${outcome}`);
    if (s.expect.cycle && JSON.stringify(s.expect.cycle) !== JSON.stringify(rep.cycle)) {
      problems.push(`expected cycle ${JSON.stringify(s.expect.cycle)}, got ${JSON.stringify(rep.cycle)}`);
    }
    if (outcome === 'completed') for (const i of invariants) if (!i.ok) problems.push(`invariant ${i.name}: ${i.detail}`);
    expectation = { ok: problems.length === 0, detail: problems.length ? problems.join('; ') : 'as expected' };
  }
  return {
    scenario: s.name,
    outcome,
    steps: r.steps,
    stop: r.stop,
    schedule: run.schedule,
    fetchMode: m.fetchMode,
    memoryModel: m.memoryModel,
    rmw: m.rmw,
    protocol: s.patch?.protocol ?? 'none',
    variant: k.variant,
    nmi: k.request?.nmi ?? false,
    cpus: rep.cpus,
    cycle: rep.cycle,
    cycleText: rep.cycleText,
    sites,
    invariants,
    xmc: m.xmc.violations.slice(),
    injections: run.injections,
    events: k.log.events.slice(),
    expectation,
  };
}

function checkInvariants(run: ScenarioRun, sites: SiteResult[]): Invariant[] {
  const { m, img, k, scenario: s } = run;
  const out: Invariant[] = [];
  let expected = 0n;
  const perCpu: string[] = [];
  let perCpuOk = true;
  s.work.forEach((w, c) => {
    if (!WORKLOADS_WITH_LOCKING.has(w.entry)) return;
    expected += w.arg;
    const got = m.mem.readU64(k.L.pcpu(c, k.L.percpu.locks));
    if (got !== w.arg) {
      perCpuOk = false;
      perCpu.push(`CPU${c} took shared_lock ${got} times, expected ${w.arg}`);
    }
  });
  const counter = m.mem.readU64(requireSymbol(img, 'shared_counter'));
  out.push({ name: 'shared_counter exact', ok: counter === expected, detail: `shared_counter = ${counter}, expected ${expected}` });
  out.push({ name: 'per-CPU acquisitions', ok: perCpuOk, detail: perCpuOk ? 'every CPU took shared_lock as often as asked' : perCpu.join('; ') });
  for (const l of k.locks.locks) {
    const ok = l.acquisitions === l.releases && l.owner === null;
    out.push({
      name: `${l.name} balanced`,
      ok,
      detail: `${l.acquisitions} acquisitions, ${l.releases} releases${l.owner !== null ? `, held by CPU${l.owner}` : ''}`,
    });
  }
  out.push({ name: 'XMC clean', ok: m.xmc.violations.length === 0, detail: `${m.xmc.violations.length} violation(s)` });
  const bad = sites.filter((x) => !x.verified);
  out.push({ name: 'sites verified', ok: bad.length === 0, detail: bad.length ? bad.map((x) => `0x${x.address.toString(16)} ${x.op}: ${x.how}`).join('; ') : `${sites.length} site(s) match pv_ops` });
  const oops = k.oopses();
  const bugs = k.log.bugs();
  out.push({
    name: 'no oops or BUG',
    ok: oops.length === 0 && bugs.length === 0,
    detail: [...oops.map((o) => `CPU${o.cpu} oops: vector ${o.vector} at ${m.symbolize(o.rip)}`), ...bugs.map((b) => `CPU${b.cpu}: ${b.text}`)].join('; ') || 'none',
  });
  return out;
}

/** Hex of bytes, for JSON. */
export function bytesHex(b: Uint8Array): string {
  return hexBytes(b);
}
