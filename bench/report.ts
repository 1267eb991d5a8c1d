// Turning bench results into the readable tables `npm run bench` prints (and the README
// cites). Pure functions of the result objects, so --json and the tables never disagree.

import type { EmulatorResults, LoopKind, RateFigure } from './emulator';
import type { ScenarioFigure } from './scenarios';
import type { FixturePatchingResults, PatchRow } from './patching';
import type { KernelResults, KernelSkipped } from './kernel';
import type { PeerResults } from './peer';
import { growthExponent } from './util';

/** The speed issue's (13) targets on this 2-core machine, in MIPS per CPU second. */
export const TARGET_REGISTER_MIPS = 300;
export const TARGET_CHECKSUM_MIPS = 150;
export const TARGET_INTERLEAVED_MIPS = 80;

/** For scale, from the emulator issue. */
export const SCALE_NOTE =
  'For scale (from the emulator issue): Unicorn stepping 4 CPUs one instruction at a time ≈ 0.1 MIPS ' +
  '(40 MIPS with 1,000-instruction quanta); Unicorn\'s JIT alone ≈ 2,900 MIPS; the host CPU ≈ 9,700 MIPS.';

export function int(n: number): string {
  return Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : '–';
}

export function fix(n: number | null | undefined, digits = 1): string {
  return n !== null && n !== undefined && Number.isFinite(n) ? n.toFixed(digits) : '–';
}

/**
 * A plain-text table: columns separated by two spaces, numbers right-aligned. `left`
 * says which columns are text (left-aligned): the first `left` ones, or these indices.
 */
export function table(head: string[], rows: string[][], left: number | readonly number[] = 1, indent = '  '): string {
  const isLeft = (i: number): boolean => (typeof left === 'number' ? i < left : left.includes(i));
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]): string =>
    indent + r.map((c, i) => (isLeft(i) ? c.padEnd(w[i]) : c.padStart(w[i]))).join('  ').trimEnd();
  return [line(head), indent + w.map((n) => '-'.repeat(n)).join('  '), ...rows.map(line)].join('\n');
}

function heading(s: string): string {
  return `\n${s}\n${'='.repeat(s.length)}`;
}

function findRate(e: EmulatorResults, cpus: number, quantum: number, loop: string, probe: boolean): RateFigure | undefined {
  return e.rates.find((r) => r.cpus === cpus && r.quantum === quantum && r.loop === loop && r.probe === probe);
}

export function formatEmulator(e: EmulatorResults): string {
  const out = [heading('1. Emulator speed (emulated instructions per CPU second)')];
  out.push(`  checksum loop verified against JS: ${e.checksum.ok ? 'yes' : 'NO'} (${e.checksum.emulated})`);
  out.push(
    table(
      ['figure', 'steps', 'seconds', 'MIPS (median)', 'best', 'wall MIPS', 'trials'],
      e.rates.map((r) => [r.label, int(r.steps), fix(r.seconds, 3), fix(r.mips), fix(r.best), fix(r.wallMips), String(r.trials.length)]),
    ),
  );
  const plain = e.rates.filter((r) => !r.semantics && !r.probe);
  const figure = (loop: LoopKind, cpus: number, quantum?: number): number =>
    plain.find((r) => r.loop === loop && r.cpus === cpus && (quantum === undefined || r.quantum === quantum))?.mips ?? NaN;
  const met = (v: number, t: number): string => `${fix(v)} (${v >= t ? 'met' : 'NOT met'})`;
  out.push(
    `  targets: one CPU register loop ≥ ${TARGET_REGISTER_MIPS} MIPS: ${met(figure('register', 1), TARGET_REGISTER_MIPS)}; ` +
      `checksum ≥ ${TARGET_CHECKSUM_MIPS}: ${met(figure('checksum', 1), TARGET_CHECKSUM_MIPS)}; ` +
      `4 CPUs q=1 register loop ≥ ${TARGET_INTERLEAVED_MIPS}: ${met(figure('register', 4, 1), TARGET_INTERLEAVED_MIPS)}`,
  );
  const probeCost = (cpus: number, q: number): string => {
    const a = findRate(e, cpus, q, 'checksum', false);
    const b = findRate(e, cpus, q, 'checksum', true);
    return a && b ? `${fix((1 - b.mips / a.mips) * 100)}%` : '–';
  };
  out.push(
    `  observation cost (no-op probe, checksum loop; a probe steps every instruction, no blocks): ${probeCost(1, 10_000)} slower on 1 CPU, ${probeCost(4, 1)} on 4 CPUs q=1 ` +
      '(run-to-run noise on this VM is about ±5%)',
  );
  const costs = e.rates
    .filter((r) => r.semantics && r.baseline)
    .map((r) => {
      const b = e.rates.find((x) => x.label === r.baseline);
      return b ? `${r.semantics} ${fix((1 - r.mips / b.mips) * 100)}% (${r.label.replace(/, [^,]*$/, '')})` : null;
    })
    .filter((x): x is string => x !== null);
  if (costs.length) out.push(`  cost of the concurrency semantics (slower than sc+atomic+flat): ${costs.join('; ')}`);
  const d = e.decode;
  out.push(
    `  decode: ${int(d.instructions)} distinct straight-line instructions, first execution ${fix(d.firstPerSecond / 1e6, 2)} M instr/s ` +
      `(${fix(d.compileMicros, 2)} µs to decode and compile each); re-executed from the cache ${fix(d.cachedPerSecond / 1e6)} MIPS`,
  );
  out.push(`  ${SCALE_NOTE}`);
  return out.join('\n');
}

export function formatScenarios(s: ScenarioFigure[]): string {
  return [heading('2. Scenario throughput (fixtures/scenarios, medians)'), scenarioTable(s)].join('\n');
}

export function scenarioTable(s: ScenarioFigure[]): string {
  return table(
    ['scenario', 'CPUs', 'schedule', 'outcome', 'as expected', 'steps', 'setup ms', 'run ms', 'total ms', 'steps/s', 'runs'],
    s.map((f) => [
      f.name, String(f.cpus), f.schedule, f.outcome, f.expected === null ? '–' : f.expected ? 'yes' : 'NO',
      int(f.steps), fix(f.setupMs), fix(f.runMs), fix(f.totalMs), int(f.stepsPerSecond), String(f.runs),
    ]),
    [0, 2, 3],
  );
}

function ratio(n: number | null): string {
  return n === null || !Number.isFinite(n) ? '' : `×${n.toFixed(2)}`;
}

/** Rows without figures, one line per distinct reason (errors can be long; the table only says 'failed'). */
function rowNotes(rows: PatchRow[]): string[] {
  const seen = new Map<string, string[]>();
  for (const r of rows) {
    if (!r.error) continue;
    const where = `${r.config}, ${r.opSet}, ${r.cpus} CPUs`;
    const l = seen.get(r.error);
    if (l) l.push(where);
    else seen.set(r.error, [where]);
  }
  return [...seen].map(([err, where]) => `  ${places(where)}: ${err}`);
}

function places(where: string[]): string {
  return where.length > 2 ? `${where[0]} and ${where.length - 1} more` : where.join('; ');
}

/** Patching as CPUs grow: one table, rows grouped by protocol, with per-doubling ratios and fitted exponents. */
export function formatByCpus(rows: PatchRow[]): string {
  return [
    table(
      ['protocol', 'CPUs', 'sites', 'run ms', 'patch ms', '/2×CPUs', 'machine steps', 'patch steps', '/2×CPUs', 'outcome'],
      rows.map((r) => [
        r.config, String(r.cpus), String(r.sites), fix(r.ms), fix(r.patchMs, 2), ratio(r.patchMsPerDoubling), r.error ? '' : int(r.steps),
        r.patchSteps === null ? '–' : int(r.patchSteps), ratio(r.patchStepsPerDoubling), r.outcome,
      ]),
      [0, 9],
    ),
    ...growthLines(rows),
    ...rowNotes(rows),
  ].join('\n');
}

/** Per protocol: patch time and patch steps as CPUs^k, fitted through the smallest and largest CPU count. */
export function growthLines(rows: PatchRow[]): string[] {
  const out: string[] = [];
  for (const cfg of [...new Set(rows.map((r) => r.config))]) {
    const ok = rows.filter((r) => r.config === cfg && !r.error);
    if (ok.length < 2) continue;
    const kMs = growthExponent(ok.map((r) => ({ x: r.cpus, y: r.patchMs })));
    const kSteps = growthExponent(ok.filter((r) => r.patchSteps !== null).map((r) => ({ x: r.cpus, y: r.patchSteps! })));
    out.push(
      `  ${cfg}: ${ok[0].cpus} → ${ok[ok.length - 1].cpus} CPUs: patch time ∝ CPUs^${fix(kMs, 2)} (×${fix(Math.pow(2, kMs), 2)} per doubling), ` +
        `patch steps ∝ CPUs^${fix(kSteps, 2)} (×${fix(Math.pow(2, kSteps), 2)} per doubling)`,
    );
  }
  return out;
}

/** Patching as sites × CPUs grow: cost per site·CPU, and how the larger op set compares to the one-op rows. */
export function formatBySites(rows: PatchRow[]): string {
  const firstSet = rows[0]?.opSet;
  const baseOf = (r: PatchRow): PatchRow | undefined =>
    rows.find((b) => b.opSet === firstSet && b.config === r.config && b.cpus === r.cpus && !b.error);
  return [
    table(
      ['protocol', 'ops', 'sites', 'CPUs', 'run ms', 'patch ms', 'patch steps', 'steps/(site·CPU)', 'patch µs/(site·CPU)', 'vs one op: sites → steps, time', 'outcome'],
      rows.map((r) => {
        const b = r.opSet !== firstSet ? baseOf(r) : undefined;
        const vs =
          b && !r.error && b.patchSteps && r.patchSteps !== null && b.sites > 0
            ? `×${fix(r.sites / b.sites, 2)} → ×${fix(r.patchSteps / b.patchSteps, 2)}, ×${fix(r.patchMs / b.patchMs, 2)}`
            : '';
        const sc = r.sites * r.cpus;
        return [
          r.config, r.opSet, String(r.sites), String(r.cpus), fix(r.ms), fix(r.patchMs, 2), r.patchSteps === null ? '–' : int(r.patchSteps),
          r.patchSteps === null || sc === 0 ? '–' : fix(r.patchSteps / sc, 1), sc === 0 || r.error ? '–' : fix((r.patchMs * 1e3) / sc, 2),
          vs, r.outcome,
        ];
      }),
      [0, 1, 10],
    ),
    ...rowNotes(rows),
  ].join('\n');
}

export function formatPatching(p: FixturePatchingResults): string {
  return [
    heading(`3. Patching time as CPUs grow (fixture kernel ${p.image.replace(/^.*\//, '')}, all five lock ops to native)`),
    '  run ms: a whole run (boot, lock workload on every CPU, the patch); patch ms / patch steps: wall time / machine steps from patch-start to patch-done',
    formatByCpus(p.byCpus),
    '',
    '  as sites × CPUs grow (fixture: one site per lock op)',
    formatBySites(p.bySites),
  ].join('\n');
}

export function formatKernel(k: KernelResults | KernelSkipped): string {
  const out = [heading('4. Real kernel (Debian 6.1)')];
  if (k.skipped) {
    out.push(`  skipped: ${k.reason}`);
    return out.join('\n');
  }
  out.push(
    `  ${k.version}: vmlinux ${fix(k.vmlinuxBytes / 1e6)} MB, .text ${fix(k.textBytes / 1e6)} MB, ${int(k.sites)} paravirt sites; ` +
      `lock sites: ${Object.entries(k.lockSites).map(([op, n]) => `${op.replace(/^lock\./, '')} ${n}`).join(', ')}` +
      (k.fetched ? ` (downloaded in ${fix(k.fetchMs / 1e3)} s)` : ' (cached)'),
  );
  out.push(table(['step', 'ms', 'runs', 'detail'], k.steps.map((s) => [s.name, fix(s.ms), String(s.runs), s.detail]), [0, 3]));
  if (k.scenarios.length) {
    out.push('');
    out.push('  scenarios on Debian\'s text (fixtures/scenarios/kernel; setup includes loading the vmlinux and booting the harness):');
    out.push(scenarioTable(k.scenarios));
  }
  out.push('');
  out.push('  runtime patching of the lock sites on N CPUs:');
  if (!k.runtime.available) out.push(`  ${k.runtime.note}`);
  else {
    out.push(`  (${k.runtime.note}; booted as a paravirt guest for unlock and vcpu_is_preempted, then patched to native; the slow path, wait and kick are native from boot, with nothing to patch)`);
    out.push(formatBySites(k.runtime.rows));
    // Growth with CPUs, on the largest op set.
    const last = k.runtime.rows[k.runtime.rows.length - 1]?.opSet;
    out.push(...growthLines(k.runtime.rows.filter((r) => r.opSet === last)).map((l) => `${l} [${last}]`));
  }
  out.push('');
  out.push('  resident memory: the runtime patch (stop-machine, the two booted-paravirt ops) on N CPUs, each in a child process:');
  const mib = (b: number): string => fix(b / 2 ** 20);
  out.push(table(['CPUs', 'peak RSS MiB', 'V8 heap MiB', 'guest pages MiB', 'steps', 'CPU s'], k.memory.map((m) =>
    'error' in m ? [String(m.cpus), `failed: ${m.error}`, '', '', '', ''] : [String(m.cpus), mib(m.maxRss), mib(m.heapUsed), mib(m.arrayBuffers), int(m.steps), fix(m.seconds)]), [0]));
  const g = k.groundTruth;
  out.push('');
  out.push(`  ground truth: the kernel booted in QEMU (TCG, -smp 2) to the root-mount panic, .text read back through QMP${g.qemu ? ` (${g.qemu})` : ''}:`);
  if (g.bootError) out.push(`  boot failed: ${g.bootError}`);
  else out.push(table(['-cpu', 'boot s', 'guest s', 'dump s', 'total s'], g.boots.map((b) => [b.cpu, fix(b.bootSeconds), fix(b.guestSeconds), fix(b.dumpSeconds), fix(b.totalSeconds)]), [0]));
  out.push('');
  for (const e of g.ftraceErrors) out.push(`  ftrace: failed: ${e}`);
  if (g.ftrace.length) out.push('  ftrace (echo function > current_tracer, then nop; every run timed with its harness boot and ftrace_init):');
  for (const f of g.ftrace) {
    out.push(
      `    ${f.release} (${f.kernel}): ${int(f.sites)} of ${int(f.mcountSites)} __fentry__ sites on ${f.cpus} CPUs, ${int(f.batches)} text_poke_bp_batch calls, ` +
        `${int(Number(f.rounds))} worker rounds, ${int(f.int3s)} int3s emulated, ${int(f.steps)} steps: ${fix(f.seconds)} s (${f.outcome}${f.failed.length ? `: ${f.failed.join('; ')}` : ''})`,
    );
  }
  return out.join('\n');
}

export function formatPeer(p: PeerResults): string {
  const head = heading(`Side by side with ${p.peer ?? 'a peer'}`);
  const note = `  ${p.note}`;
  const spread = (xs: number[] | null): string => (xs === null || xs.length < 2 ? '' : ` (${fix(Math.min(...xs))}–${fix(Math.max(...xs))})`);
  const rows = p.rows.map((r) => [
    r.label,
    fix(r.textpokeMips) + spread(r.textpokeTrials),
    fix(r.peerMips) + spread(r.peerTrials),
    r.ratio === null ? '–' : r.ratio >= 1 ? `peer ${fix(r.ratio)}× faster` : `textpoke ${fix(1 / r.ratio)}× faster`,
    r.agree === null ? '–' : r.agree ? 'same registers' : 'REGISTERS DIFFER',
  ]);
  const foot = '  MIPS: median of the timed trials (lowest–highest); textpoke runs untimed trials first until V8 has optimised its compiled blocks.';
  return [head, note, table(['workload', 'textpoke MIPS', 'peer MIPS', 'ratio', 'check'], rows, [0, 3, 4]), foot].join('\n');
}
