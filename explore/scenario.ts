// The explorer on a scenario: boot it, run its own schedule to the start point (a step,
// or the patch's start: text_poke_state.state first leaving its value), snapshot, and
// search every schedule and NMI placement within the bound from there, checking the
// kernel model's assertions (BUG lines, oopses) and the XMC checker at every state and
// deadlocks at the end of each schedule. Counterexamples become replay files that
// `textpoke run <scenario> --replay FILE` reproduces. May import emu/ and kernel-model/.

import { readFileSync, renameSync, writeFileSync, mkdirSync } from 'fs';
import { join } from 'path';
import type { Choice, MemoryModel, RmwMode } from '../emu/machine';
import { loadScenario } from '../kernel-model/scenario/scenario-file';
import { prepareScenario, type ScenarioRun, type RunOverrides } from '../kernel-model/scenario/run';
import { hexBytes } from '../kernel-model/linux/kernel-context';
import { explore, type ExploreOptions, type ExploreResult, type Bug } from './search';

/** Where exploration starts: the patch's start, a machine step, or when an op's site is published in bp_desc. */
export type StartPoint = { step: number } | 'patch' | { site: string };

export interface ScenarioExploreOptions extends Omit<ExploreOptions, 'check' | 'done' | 'atEnd'> {
  from?: StartPoint;
  /**
   * Where each schedule ends: 'patch-end' (default), once the patch request has
   * returned and no CPU is in an NMI, an interrupt or a host routine, with every site
   * checked for its new bytes; 'depth': only at maxDepth (or a deadlock).
   */
  to?: 'patch-end' | 'depth';
  /** Machine options over the scenario's (memoryModel, rmw: `--memory-model`, `--rmw`). */
  overrides?: Pick<RunOverrides, 'memoryModel' | 'rmw'>;
  /** Every IPI sent from the start point stays in flight until an 'ipi' choice delivers it (default: the scenario's `ipiLatency` is set). */
  ipiLatency?: boolean;
}

export interface ReplayFile {
  format: 'textpoke-replay/1';
  scenario: string;
  /** Machine step (under the scenario's schedule) where the explorer's choices start. */
  from: number;
  choices: Choice[];
  /** The machine's memory model and RMW mode the search ran under (absent in older files: the scenario's). */
  memoryModel?: MemoryModel;
  rmw?: RmwMode;
  /** IPIs were in flight until an 'ipi' choice delivered them (explore with IPI latency). */
  ipiChoice?: boolean;
  bug: { kind: string; summary: string; nmis: number; preemptions: number; steps: number };
}

/**
 * Runs a prepared scenario under its schedule to the start point; returns the step
 * reached. With `ipiChoice` (IPI arrivals to be explored), the NMI-mode patch starts
 * where nmi_work is first set, before the self-NMI is sent, if that comes first.
 */
export function runToStart(run: ScenarioRun, from: StartPoint, ipiChoice = false): number {
  const { m, k } = run;
  if (from === 'patch' && k.request?.protocol === 'batch') {
    // text_poke_bp_batch publishes its vector first (bp_desc.refs 0 -> 1).
    stepUntil(run, () => m.mem.readU32(k.L.tpVec.refs) !== 0, 'patch');
  } else if (from === 'patch') {
    const at = k.L.tps.state;
    const first = m.mem.readU32(at);
    const work = m.mem.readU32(k.L.tps.nmiWork);
    stepUntil(run, () => m.mem.readU32(at) !== first || (ipiChoice && m.mem.readU32(k.L.tps.nmiWork) !== work), 'patch');
  } else if ('site' in from) {
    const sites = run.img.sites.filter((x) => x.op === from.site).map((x) => x.address);
    if (sites.length === 0) throw new ReplayFileError(`--from site:${from.site}: no site of that op in ${run.img.path}`);
    stepUntil(run, () => sites.includes(m.mem.readU64(k.L.bpDesc.addr)), `site:${from.site}`);
  } else {
    m.run({ schedule: run.schedule, maxSteps: from.step });
    if (m.steps < from.step) throw new ReplayFileError(`--from ${from.step}: the scenario's run stops at step ${m.steps}, before that step`);
  }
  return m.steps;
}

/**
 * The scenario's schedule, one machine step at a time, until `cond` holds: run()'s own
 * `until` is checked only after each slice, which would start the search up to a
 * quantum late (past the very steps it should choose). A replay reaches the same step
 * with `maxSteps`, since run() continues one schedule across calls.
 */
function stepUntil(run: ScenarioRun, cond: () => boolean, what: string): void {
  const { m } = run;
  while (!cond() && m.steps < run.maxSteps) {
    const r = m.run({ schedule: run.schedule, maxSteps: m.steps + 1 });
    if (r.stop !== 'step-limit') break;
  }
  // A search from wherever the run stopped would explore the wrong thing and could
  // call it clean.
  if (!cond()) throw new ReplayFileError(`--from ${what}: the scenario's run never gets there (it stops at step ${m.steps})`);
}

/** Bugs the kernel model and the XMC checker report, beyond those already there at the start. */
function checker(run: ScenarioRun): (m: ScenarioRun['m']) => Bug | null {
  const { k } = run;
  const bugs0 = k.log.bugs().length;
  const xmc0 = run.m.xmc.violations.length;
  const oops0 = run.k.oopses().length;
  // The kernel model's list of oopses reads each CPU's oops word as a bigint: at every
  // state that was a twentieth of the search. Its words are looked at directly first.
  const oopsWords = Array.from({ length: k.ncpus }, (_, c) => k.L.pcpu(c, k.L.percpu.oopsVector));
  const anyOops = (m: ScenarioRun['m']): boolean => {
    for (const a of oopsWords) {
      const lo = Number(a & 0xffffffffn) | 0;
      const off = lo & 0xfff;
      const pg = m.mem.pageAt(lo, Number(a >> 32n) | 0);
      if (!pg || off > 0x1000 - 8) return true; // oopses() says (or throws, unmapped)
      const d = pg.data;
      for (let i = 0; i < 8; i++) if (d[off + i] !== 0) return true;
    }
    return false;
  };
  return (m) => {
    const bugs = k.log.bugs();
    if (bugs.length > bugs0) {
      const b = bugs[bugs0];
      return { kind: 'assertion', summary: `CPU${b.cpu}: ${b.text}`, signature: b.text.replace(/0x[0-9a-f]+/g, 'ADDR') };
    }
    if (m.xmc.violations.length > xmc0) {
      const v = m.xmc.violations[xmc0];
      return { kind: 'xmc', summary: `XMC: CPU${v.cpu} ran ${v.mnemonic} at ${m.symbolize(v.address)} with bytes another CPU wrote`, signature: `CPU${v.cpu}@${m.symbolize(v.address)}` };
    }
    const oops = oops0 === 0 && !anyOops(m) ? [] : run.k.oopses();
    if (oops.length > oops0) {
      const o = oops[oops0];
      return { kind: 'assertion', summary: `CPU${o.cpu}: oops, vector ${o.vector} at ${m.symbolize(o.rip)}`, signature: `oops:${o.vector}@${m.symbolize(o.rip)}` };
    }
    return null;
  };
}

/** The patch request has returned and every CPU is back in its own thread (no NMI, interrupt or host routine). */
function patchEnded(run: ScenarioRun): (m: ScenarioRun['m']) => boolean {
  return (m) => run.k.patchDone && m.cpus.every((c) => c.contexts.length === 0 && c.hostFrames.length === 0);
}

/**
 * At the patch's end: every planned site holds its new bytes, and every CPU has
 * serialized since another CPU last wrote any byte of it (the protocol's promise that
 * every CPU now runs the new instruction; the XMC rule of the SDM, vol. 3, 9.1.3,
 * applied to each site as if each CPU executed it next).
 */
function sitesHold(run: ScenarioRun): (m: ScenarioRun['m']) => Bug | null {
  return (m) => {
    for (const p of run.k.plan) {
      const now = m.mem.readBytes(p.address, p.len);
      if (Buffer.compare(Buffer.from(now), Buffer.from(p.new)) !== 0) {
        return { kind: 'invariant', summary: `after the patch, ${p.op} at ${m.symbolize(p.address)} holds ${hexBytes(now)}, expected ${hexBytes(p.new)}`, signature: `site:${p.op}` };
      }
      for (let i = 0; i < p.len; i++) {
        const a = p.address + BigInt(i);
        const lo = Number(a & 0xffffffffn) | 0;
        const pg = m.mem.pageAt(lo, Number(a >> 32n) | 0);
        if (!pg?.writer) continue;
        const writer = pg.writer[lo & 0xfff];
        const seq = pg.seq![lo & 0xfff];
        const late = m.cpus.find((c) => !c.shutdown && c.id !== writer && seq > c.serialSeq);
        if (late) {
          return {
            kind: 'invariant',
            summary: `after the patch, CPU${late.id} has not serialized since CPU${writer} wrote byte ${i} of ${p.op} at ${m.symbolize(p.address)}: it may still run the old bytes`,
            signature: `unserialized:CPU${late.id}`,
          };
        }
      }
    }
    return null;
  };
}

export function exploreScenario(file: string, o: ScenarioExploreOptions): { result: ExploreResult; from: number; ipiChoice: boolean; machine: { memoryModel: MemoryModel; rmw: RmwMode } } {
  const s = loadScenario(file);
  const outside = (o.nmiCpus ?? []).find((c) => c >= s.cpus);
  if (outside !== undefined) throw new ReplayFileError(`--cpus-nmi: CPU ${outside} is not in ${file} (CPUs 0 to ${s.cpus - 1})`);
  if (o.nmisPerCpu !== undefined && s.cpus > 8) throw new ReplayFileError(`--nmis-per-cpu: counts NMIs per CPU for at most 8 CPUs; ${file} has ${s.cpus}`);
  const run = prepareScenario(s, o.overrides ?? {}, file);
  const ipiChoice = o.ipiLatency ?? s.ipiLatency != null;
  const from = runToStart(run, o.from ?? 'patch', ipiChoice);
  if (ipiChoice) run.m.setIpiChoice(true);
  // The kernel model's BUG log is checker state: a step that adds to it is not private.
  const end = (o.to ?? 'patch-end') === 'patch-end';
  const result = explore(run.m, {
    ...o, check: checker(run), observe: () => run.k.log.bugs().length,
    done: end ? patchEnded(run) : undefined, atEnd: end ? sitesHold(run) : undefined, exactDepth: !end,
  });
  return { result, from, ipiChoice, machine: { memoryModel: run.m.memoryModel, rmw: run.m.rmw } };
}

/** Writes one replay file per bug into `dir` (each through a temporary file); returns their paths. */
export function writeReplays(dir: string, scenario: string, from: number, r: ExploreResult, ipiChoice = false, machine?: { memoryModel: MemoryModel; rmw: RmwMode }): string[] {
  mkdirSync(dir, { recursive: true });
  return r.bugs.map((b, i) => {
    const f: ReplayFile = {
      format: 'textpoke-replay/1', scenario, from, choices: b.choices, ...(ipiChoice ? { ipiChoice } : {}), ...(machine ?? {}),
      bug: { kind: b.kind, summary: b.summary, nmis: b.nmis, preemptions: b.preemptions, steps: b.steps },
    };
    const path = join(dir, `bug-${i + 1}-${b.kind}.json`);
    writeFileSync(`${path}.tmp`, JSON.stringify(f, null, 1) + '\n');
    renameSync(`${path}.tmp`, path);
    return path;
  });
}

export class ReplayFileError extends Error {}

/** Reads and checks a replay file (one-line errors naming the file and field). */
export function readReplay(path: string): ReplayFile {
  let j: unknown;
  try {
    j = JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    throw new ReplayFileError(`${path}: not a JSON file (${e instanceof Error ? e.message : String(e)})`);
  }
  const o = j as Partial<ReplayFile>;
  if (o?.format !== 'textpoke-replay/1') throw new ReplayFileError(`${path}: format: expected "textpoke-replay/1"`);
  if (!Number.isInteger(o.from) || (o.from as number) < 0) throw new ReplayFileError(`${path}: from: expected a step number`);
  if (!Array.isArray(o.choices)) throw new ReplayFileError(`${path}: choices: expected an array`);
  o.choices.forEach((c, i) => {
    if (!c || !['step', 'nmi', 'drain', 'ipi'].includes(c.kind) || !Number.isInteger(c.cpu) || (c.kind === 'ipi' && !Number.isInteger(c.from))) {
      throw new ReplayFileError(`${path}: choices[${i}]: expected {"kind": "step"|"nmi"|"drain", "cpu": n} or {"kind": "ipi", "cpu": n, "from": n}`);
    }
  });
  return o as ReplayFile;
}

/** Puts a prepared scenario where the replay's bug is: its schedule to `from`, then the choices. */
export function applyReplay(run: ScenarioRun, f: ReplayFile): void {
  const { m } = run;
  m.run({ schedule: run.schedule, maxSteps: f.from });
  for (const [i, c] of f.choices.entries()) {
    if (c.cpu >= m.cpus.length) throw new ReplayFileError(`choices[${i}]: no CPU ${c.cpu} (the scenario has ${m.cpus.length})`);
  }
  for (const [field, was, now] of [['memoryModel', f.memoryModel, m.memoryModel], ['rmw', f.rmw, m.rmw]] as const) {
    if (was !== undefined && was !== now) throw new ReplayFileError(`${field}: the replay was found under ${was}, this run is ${now} (run with --${field === 'rmw' ? 'rmw' : 'memory-model'} ${was})`);
  }
  if (f.ipiChoice) m.setIpiChoice(true);
  if (m.steps !== f.from) throw new ReplayFileError(`from: the scenario's run stops at step ${m.steps}, before step ${f.from} (a replay written for another scenario?)`);
  // Each choice must be one the machine offers at that point, as it was when the
  // explorer took it; otherwise the file belongs to another scenario or build, and
  // running on would show something the explorer never saw.
  for (const [i, c] of f.choices.entries()) {
    const offered = m.enabled(c.kind === 'nmi' ? [c.cpu] : []);
    if (!offered.some((o) => o.kind === c.kind && o.cpu === c.cpu && (o.kind !== 'ipi' || c.kind !== 'ipi' || o.from === c.from))) {
      throw new ReplayFileError(`choices[${i}]: ${c.kind} ${c.kind === 'ipi' ? `from CPU ${c.from} ` : ''}to CPU ${c.cpu} is not possible there (a replay written for another scenario?)`);
    }
    m.take(c);
  }
  // What follows the replay is run()'s: IPIs still in flight arrive at their due steps.
  if (f.ipiChoice) m.setIpiChoice(false);
}
