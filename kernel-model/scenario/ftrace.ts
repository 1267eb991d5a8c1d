// `echo function > current_tracer` and back on the real kernel: every __fentry__ site
// of Debian's .text (or the first `sites` of them) turned from the boot-time NOP into a
// call to the harness's tracer and back, in text_poke_bp_batch batches
// (linux/ftrace.ts), while the other CPUs run _raw_spin_lock/_raw_spin_unlock and the
// irqsave pair through those sites. The workers pace two exact windows by ftrace_state
// (vmlinux-harness.S, workload_ftrace): once every site is on, each round must hit the
// tracer once per watched function; once every site is off, not at all. Around them,
// while batches land, every hit must still come from a real round (never more hits
// than rounds), the machine must see no cross-modifying-code violation, every site must
// hold exactly what was asked, and nothing may oops.

import type { Schedule } from '../../emu/scheduler';
import type { FetchMode, Machine } from '../../emu/machine';
import type { HostContext, HostGen } from '../../emu/host';
import { requireSymbol } from '../image/kernel-image';
import type { VmlinuxImage } from '../image/vmlinux-image';
import { textSites } from '../image/text-sites';
import { KernelModel } from '../linux/kernel-model';
import { PT_REGS } from '../linux/kernel-layout';
import { pokeInt3Emulate } from '../linux/text-poke-bp';
import { ftraceInitWrites, ftraceReplaceCode, ftraceNopReplace, MCOUNT_INSN_SIZE, type FtraceBatchStats } from '../linux/ftrace';
import { type Step, read, write, waitUntil } from '../linux/hostlib';
import { bootVmlinux, withHarness, checkHarnessCpus } from './boot-vmlinux';

/** The functions whose tracer hits are counted one by one, in ftrace_watch order. */
export const FTRACE_WATCHED = ['_raw_spin_lock', '_raw_spin_unlock', '_raw_spin_lock_irqsave', '_raw_spin_unlock_irqrestore'] as const;

const FTRACE_ENABLING = 1n;
const FTRACE_ON = 2n;
const FTRACE_DISABLING = 3n;
const FTRACE_DONE = 4n;

/**
 * Round-robin in slices of 1,000 steps: every CPU runs at the same rate, and a slice is
 * long enough that scheduling costs the host little next to the patching itself.
 */
export const FTRACE_SCHEDULE: Schedule = { kind: 'round-robin', quantum: 1000 };

/** Machine steps between two checks for an oops or a BUG. */
const BROKEN_CHECK_STEPS = 1000;

export interface FtraceOptions {
  cpus: number;
  /** Rounds per exact window on each worker (each round calls the four watched functions once). */
  rounds: number;
  /** Patch only this many sites (the watched ones and the first others in address order); default all of .text. */
  sites?: number;
  schedule?: Schedule;
  fetchMode?: FetchMode;
  maxSteps?: number;
  /**
   * 'batch' (default): text_poke_bp_batch, as the kernel does. 'naive': plain stores of
   * the new bytes with no int3 and no sync (what not to do: the XMC checker says so).
   */
  poke?: 'batch' | 'naive';
  /** Runs after boot and ftrace_init, before any CPU starts (experiments: disturb a site). */
  prepare?: (m: Machine, records: readonly bigint[]) => void;
}

export interface FtraceInvariant {
  name: string;
  ok: boolean;
  detail: string;
}

export interface FtraceReport {
  outcome: 'completed' | 'deadlock' | 'livelock' | 'step-limit' | 'failed';
  stop: string;
  steps: number;
  cpus: number;
  /** __fentry__ sites in .text, and how many were patched each way. */
  mcountSites: number;
  sites: number;
  enable: FtraceBatchStats;
  disable: FtraceBatchStats;
  /** Per worker: rounds run, hits per window per watched function, other hits. */
  workers: { cpu: number; rounds: bigint; hits: bigint[][]; other: bigint }[];
  /** int3s the batches' breakpoints caught on the workers. */
  int3s: number;
  invariants: FtraceInvariant[];
}

/** The __fentry__ sites ftrace manages after boot: __mcount_loc entries inside .text (init text is freed). */
export function ftraceRecords(img: VmlinuxImage): bigint[] {
  const start = img.vm.symbol('_text');
  const end = img.vm.symbol('_etext');
  return textSites(img.vm)
    .filter((s) => s.table === 'mcount' && s.address >= start && s.address < end)
    .map((s) => s.address)
    .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

/** The __fentry__ site of a function: the record in its first 16 bytes (after an ENDBR on 6.12). */
function fentrySite(img: VmlinuxImage, records: readonly bigint[], fn: string): bigint {
  const at = img.vm.symbol(fn);
  const r = records.find((x) => x >= at && x < at + 16n);
  if (r === undefined) throw new Error(`${fn} has no __fentry__ record (is it notrace in this kernel?)`);
  return r;
}

export function runFtrace(img: VmlinuxImage, o: FtraceOptions): FtraceReport {
  checkHarnessCpus(o.cpus, img.path);
  if (o.cpus < 2) throw new Error('the ftrace scenario needs a patcher CPU and at least one worker');
  const all = ftraceRecords(img);
  const watched = FTRACE_WATCHED.map((f) => fentrySite(img, all, f));
  let records = all;
  if (o.sites !== undefined && o.sites < all.length) {
    const keep = new Set(watched);
    for (const r of all) if (keep.size < o.sites && !keep.has(r)) keep.add(r);
    records = all.filter((r) => keep.has(r));
  }

  const k = withHarness(img);
  const h = (name: string): bigint => requireSymbol(k.harness, name);
  const work = [{ entry: 'workload_ftrace_patcher' }, ...Array.from({ length: o.cpus - 1 }, () => ({ entry: 'workload_ftrace', arg: BigInt(o.rounds) }))];
  const m = bootVmlinux(k, { cpus: o.cpus, work, fetchMode: o.fetchMode });
  // ftrace_init(): every record in the kernel (init text too) is a NOP before any CPU runs.
  for (const [a, b] of ftraceInitWrites(all)) m.mem.writeBytes(a, b);
  m.mem.writeU64(h('imp__raw_spin_lock_irqsave'), img.vm.symbol('_raw_spin_lock_irqsave'));
  m.mem.writeU64(h('imp__raw_spin_unlock_irqrestore'), img.vm.symbol('_raw_spin_unlock_irqrestore'));
  watched.forEach((w, i) => m.mem.writeU64(h('ftrace_watch') + 8n * BigInt(i), w));

  o.prepare?.(m, records);
  const km = new KernelModel(m, k);
  const tracer = h('ftrace_tracer');
  const state = h('ftrace_state');
  const windowDone = h('ftrace_window_done');
  const enable: FtraceBatchStats = { sites: 0, batches: 0 };
  const disable: FtraceBatchStats = { sites: 0, batches: 0 };
  let int3s = 0;
  let patcherDone = false;
  const workers = o.cpus - 1;

  // Every int3 during this run belongs to a batch: emulate the new instruction.
  m.bindHost(h('poke_int3_handler'), 'poke_int3_handler', (ctx: HostContext): HostGen =>
    (function* (): Step<bigint> {
      const regs = ctx.args[0];
      const ip = (yield* read(regs + BigInt(PT_REGS.rip), 8)) - 1n;
      ctx.status = `#BP at ${m.symbolize(ip)}`;
      const ours = yield* pokeInt3Emulate(km, regs, ip);
      if (ours) int3s++;
      return ours ? 1n : 0n;
    })(),
  );
  m.bindHost(h('textpoke_patch_request'), 'textpoke_patch_request', (ctx: HostContext): HostGen =>
    (function* (): Step {
      ctx.label = 'ftrace';
      yield* write(state, 4, FTRACE_ENABLING, 'ftrace_state = ENABLING');
      if (!(yield* ftraceReplaceCode(km, ctx, records, true, tracer, enable, o.poke))) return;
      yield* write(state, 4, FTRACE_ON, 'ftrace_state = ON');
      ctx.status = 'waiting for every worker to finish its traced window';
      yield* waitFor(windowDone, workers, 'every worker to finish its window with tracing on');
      yield* write(state, 4, FTRACE_DISABLING, 'ftrace_state = DISABLING');
      if (!(yield* ftraceReplaceCode(km, ctx, records, false, tracer, disable, o.poke))) return;
      yield* write(state, 4, FTRACE_DONE, 'ftrace_state = DONE');
      ctx.label = '';
      patcherDone = true;
    })(),
  );

  // An oops or a BUG ends the run: nothing after it would mean anything. The check
  // reads every CPU's oops field, and slices are short while CPUs wait on the
  // patcher, so it runs once per BROKEN_CHECK_STEPS machine steps (an oopsing CPU
  // stops for good, so the others run at most that much longer; the step it ends at
  // is still a function of the schedule alone).
  let nextCheck = 0;
  const broken = (): boolean => {
    if (m.steps < nextCheck) return false;
    nextCheck = m.steps + BROKEN_CHECK_STEPS;
    return km.log.bugs().length > 0 || km.oopses().length > 0;
  };
  const r = m.run({ schedule: o.schedule ?? FTRACE_SCHEDULE, maxSteps: o.maxSteps ?? 500_000_000, until: broken });

  // What the run left.
  const pc = (cpu: number, off: string): bigint => k.percpuBase(cpu) + BigInt(k.constants[off]);
  const nWatch = k.constants.FT_WATCH;
  const nWin = k.constants.FT_WINDOWS;
  const ws: FtraceReport['workers'] = [];
  for (let c = 1; c < o.cpus; c++) {
    const hits: bigint[][] = [];
    for (let w = 0; w < nWin; w++) hits.push(Array.from({ length: nWatch }, (_, f) => m.mem.readU64(pc(c, 'PCPU_FT_HITS') + 8n * BigInt(w * nWatch + f))));
    ws.push({ cpu: c, rounds: m.mem.readU64(pc(c, 'PCPU_FT_ROUNDS')), hits, other: m.mem.readU64(pc(c, 'PCPU_FT_OTHER')) });
  }
  const invariants: FtraceInvariant[] = [];
  const rounds = BigInt(o.rounds);
  const badOn = ws.filter((w) => w.hits[1].some((x) => x !== rounds));
  invariants.push({ name: 'tracing on: every round hits the tracer once per function', ok: badOn.length === 0, detail: badOn.length ? badOn.slice(0, 4).map((w) => `CPU${w.cpu}: ${w.hits[1].join('/')} of ${rounds}`).join('; ') : `${ws.length} CPUs x ${rounds} rounds x ${nWatch} functions` });
  const badOff = ws.filter((w) => w.hits[2].some((x) => x !== 0n));
  invariants.push({ name: 'tracing off: no hit at all', ok: badOff.length === 0, detail: badOff.length ? badOff.slice(0, 4).map((w) => `CPU${w.cpu}: ${w.hits[2].join('/')}`).join('; ') : 'none' });
  const badMore = ws.filter((w) => w.hits.some((win) => win.some((x) => x > w.rounds)));
  invariants.push({ name: 'never more hits than rounds (during the batches too)', ok: badMore.length === 0, detail: badMore.length ? badMore.slice(0, 4).map((w) => `CPU${w.cpu}: ${w.hits.map((x) => x.join('/')).join(' | ')} for ${w.rounds} rounds`).join('; ') : `${ws.reduce((n, w) => n + w.rounds, 0n)} rounds` });
  invariants.push({ name: 'XMC clean', ok: m.xmc.violations.length === 0, detail: `${m.xmc.violations.length} violation(s)` });
  const nop = Buffer.from(ftraceNopReplace());
  const wrong = records.filter((a) => Buffer.compare(Buffer.from(m.mem.readBytes(a, MCOUNT_INSN_SIZE)), nop) !== 0);
  invariants.push({ name: 'every site back to the boot NOP', ok: wrong.length === 0, detail: wrong.length ? `${wrong.length} not: first 0x${wrong[0].toString(16)}` : `${records.length} sites` });
  const oops = km.oopses();
  const bugs = km.log.bugs();
  invariants.push({ name: 'no oops or BUG', ok: oops.length === 0 && bugs.length === 0, detail: [...oops.map((x) => `CPU${x.cpu} oops: vector ${x.vector} at ${m.symbolize(x.rip)}`), ...bugs.slice(0, 4).map((b) => `CPU${b.cpu}: ${b.text}`)].join('; ') || 'none' });
  const written = km.log.events.filter((e) => e.kind === 'site-done').length;
  const allWritten = written === enable.sites + disable.sites && enable.sites === records.length && disable.sites === records.length;
  invariants.push({ name: 'every batch wrote what was queued', ok: allWritten, detail: `${enable.sites} on in ${enable.batches} batches, ${disable.sites} off in ${disable.batches}; ${written} confirmed` });

  const done = m.mem.readU32(h('workers_done'));
  let outcome: FtraceReport['outcome'];
  if (r.stop === 'deadlock') outcome = 'deadlock';
  else if (r.stop === 'livelock') outcome = 'livelock';
  else if (r.stop === 'until') outcome = 'failed';
  else if (r.stop === 'halted' && patcherDone && done >= o.cpus) outcome = invariants.every((i) => i.ok) ? 'completed' : 'failed';
  else outcome = 'step-limit';
  return { outcome, stop: r.stop, steps: r.steps, cpus: o.cpus, mcountSites: all.length, sites: records.length, enable, disable, workers: ws, int3s, invariants };
}

/** Waits until a u32 counter reaches `n` (the workers bump it with lock incl). */
function* waitFor(addr: bigint, n: number, what: string): Step {
  yield* waitUntil(addr, 4, (v: bigint) => v >= BigInt(n), what);
}
