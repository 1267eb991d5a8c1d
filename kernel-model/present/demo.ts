// The demo and run reports as text for a kernel developer: the deadlock (each CPU's
// context stack, RIP as symbol+offset, locks held, what it waits for, the wait-for
// cycle) and the completed patch (each site's old and new bytes with disassembly,
// verified against pv_ops), ending in one verdict. Text is a function of the
// reports only; colour comes in through a Style so the library stays terminal-free.

import { join } from 'path';
import { FIXTURES_DIR } from '../image/fixture-image';
import { loadScenario, type Scenario } from '../scenario/scenario-file';
import { runScenario, type RunReport, type SiteResult, type RunOverrides } from '../scenario/run';
import type { CpuReport } from '../scenario/report';
import { hexBytes } from '../linux/kernel-context';

export interface Style {
  bold(s: string): string;
  dim(s: string): string;
  red(s: string): string;
  green(s: string): string;
  yellow(s: string): string;
  cyan(s: string): string;
}

const id = (s: string): string => s;
export const PLAIN_STYLE: Style = { bold: id, dim: id, red: id, green: id, yellow: id, cyan: id };

const n = (x: number): string => x.toLocaleString('en-US');

function outcomeText(r: RunReport, st: Style): string {
  const word = r.outcome.toUpperCase();
  return r.outcome === 'completed' ? st.green(st.bold(word)) : st.red(st.bold(word));
}

/** One block per CPU: context stack and RIP, then what it holds and waits for. */
export function formatCpus(cpus: readonly CpuReport[], st: Style, indent = '  '): string[] {
  const out: string[] = [];
  const ctxW = Math.max(...cpus.map((c) => c.context.join(' > ').length));
  for (const c of cpus) {
    out.push(`${indent}${st.bold(`CPU${c.cpu}`)}  ${c.context.join(' > ').padEnd(ctxW)}  at ${st.cyan(c.symbol)}  (${c.state})`);
    const bits: string[] = [];
    if (c.holds.length) bits.push(`holds ${c.holds.join(', ')}`);
    if (c.waiting) bits.push(`${c.state === 'spinning' || c.state === 'waiting' ? 'waits: ' : ''}${c.waiting}`);
    if (c.waitsFor.length) bits.push(`-> waits for ${c.waitsFor.map((w) => `CPU${w}`).join(', ')}`);
    if (c.status && !c.waiting) bits.push(c.status);
    if (bits.length) out.push(`${indent}      ${bits.join('; ')}`);
  }
  return out;
}

export function formatCycle(r: RunReport, st: Style, indent = '  '): string[] {
  if (!r.cycle) return [];
  const chain = [...r.cycle, r.cycle[0]].map((c) => `CPU${c}`).join(' -> ');
  return [`${indent}${st.red('wait-for cycle')}: ${chain}`, ...r.cycleText.map((t) => `${indent}  ${t}`)];
}

/** Each site: op and address, old and new bytes with disassembly, the verdict. */
export function formatSites(sites: readonly SiteResult[], st: Style, indent = '  '): string[] {
  const out: string[] = [];
  const bw = Math.max(...sites.map((s) => Math.max(s.old.length, s.new.length) * 3), 6);
  for (const s of sites) {
    const v = s.verified ? st.green(`verified (${s.how})`) : st.red(`NOT verified: ${s.how}`);
    out.push(`${indent}${st.bold(s.op)} at 0x${s.address.toString(16)}: ${v}`);
    out.push(`${indent}  old  ${hexBytes(s.old).padEnd(bw)}  ${s.oldAsm}`);
    out.push(`${indent}  new  ${hexBytes(s.new).padEnd(bw)}  ${s.newAsm}`);
  }
  return out;
}

export interface FormatRunOptions {
  /** Changed sites to list (default 10; 0: all). */
  maxSites?: number;
}

/** The whole report of one run, as `textpoke run` prints it. */
export function formatRunReport(r: RunReport, st: Style = PLAIN_STYLE, o: FormatRunOptions = {}): string {
  const out: string[] = [];
  const patch = r.protocol === 'none' ? 'no patch' : `protocol ${r.protocol}${r.protocol === 'stop-machine' ? `, nmi=${r.nmi}` : ''}, variant ${r.variant}`;
  out.push(`${st.bold(r.scenario)}: ${outcomeText(r, st)} after ${n(r.steps)} steps (${patch}, ${r.fetchMode} fetch, ${r.memoryModel}${r.rmw === 'split' ? ', split RMW' : ''}, schedule ${scheduleText(r.schedule)})`);
  for (const i of r.injections) out.push(`  injected at step ${n(i.step)}: ${i.action} (${i.trigger})`);
  if (r.outcome !== 'completed') {
    out.push('CPUs:');
    out.push(...formatCpus(r.cpus, st));
    out.push(...formatCycle(r, st));
  }
  for (const x of r.xmc.slice(0, 5)) {
    out.push(`  ${st.red('XMC violation')}: CPU${x.cpu} executed ${x.mnemonic} at 0x${x.address.toString(16)} (step ${n(x.step)}) with byte(s) ${x.bytes.map((b) => `+${b.offset} by CPU${b.writer}`).join(', ')} changed since it last serialized`);
  }
  if (r.xmc.length > 5) out.push(`  … ${r.xmc.length - 5} more XMC violations`);
  if (r.sites.length) {
    const ok = r.sites.filter((x) => x.verified).length;
    // Sites the patch has not reached yet still hold their old bytes: count them, list the rest.
    const touched = r.sites.filter((x) => hexBytes(x.old) !== hexBytes(x.new));
    const untouched = r.sites.length - touched.length;
    out.push(`sites: ${r.sites.length} planned, ${ok} verified against pv_ops${untouched ? `, ${untouched} not reached (bytes unchanged)` : ''}`);
    const limit = o.maxSites ?? 10;
    const shown = limit > 0 ? touched.slice(0, limit) : touched;
    out.push(...formatSites(shown, st));
    if (shown.length < touched.length) {
      const rest = touched.slice(shown.length);
      const bad = rest.filter((x) => !x.verified).length;
      out.push(`  … ${rest.length} more changed site(s)${bad ? `, ${bad} not verified` : ', all verified'}`);
    }
  }
  if (r.outcome === 'completed' || r.outcome === 'oops') {
    const bad = r.invariants.filter((i) => !i.ok);
    out.push(bad.length ? `invariants: ${st.red(`${bad.length} of ${r.invariants.length} fail`)}` : `invariants: all ${r.invariants.length} hold`);
    for (const i of r.invariants) if (!i.ok) out.push(`  ${st.red('FAIL')} ${i.name}: ${i.detail}`);
  }
  if (r.expectation) out.push(`expectation: ${r.expectation.ok ? st.green('met') : st.red('NOT met')} (${r.expectation.detail})`);
  return out.join('\n');
}

function scheduleText(s: RunReport['schedule']): string {
  switch (s.kind) {
    case 'round-robin':
      return `rr:${s.quantum}`;
    case 'random':
      return `random:${s.seed}:${s.maxQuantum}`;
    case 'list':
      return `list of ${s.slots.length} slots then ${scheduleText(s.then)}`;
  }
}

// ---- The demo ----

export type DemoPair = 'primary' | 'secondaries';

export interface DemoResult {
  /** Which of the seed's two schedules ran. */
  pair: DemoPair;
  scenarioFile: string;
  scenario: Scenario;
  /** nmi=false: the seed's deadlock. */
  deadlock: RunReport;
  /** nmi=true: the NMI-safe protocol on the same schedule and NMIs. */
  safe: RunReport;
  /** The deadlock reproduced with a cycle, and the NMI-safe run completed with every site verified. */
  ok: boolean;
}

export function demoScenarioFile(pair: DemoPair): string {
  return join(FIXTURES_DIR, 'scenarios', `nmi-deadlock-${pair}.json`);
}

/** Runs the seed's deadlock scenario with nmi=false and with nmi=true. */
export function runDemo(pair: DemoPair = 'primary', o: Omit<RunOverrides, 'nmi'> = {}): DemoResult {
  const file = demoScenarioFile(pair);
  const scenario = loadScenario(file);
  const deadlock = runScenario(scenario, { ...o, nmi: false }, file);
  const safe = runScenario(scenario, { ...o, nmi: true }, file);
  const ok =
    deadlock.outcome === 'deadlock' &&
    deadlock.cycle !== null &&
    safe.outcome === 'completed' &&
    safe.sites.length > 0 &&
    safe.sites.every((s) => s.verified) &&
    safe.invariants.every((i) => i.ok);
  return { pair, scenarioFile: file, scenario, deadlock, safe, ok };
}

/** `picture`: where the deadlock's timeline was drawn, named above the verdict. */
export function formatDemo(d: DemoResult, st: Style = PLAIN_STYLE, picture?: string): string {
  const out: string[] = [];
  const s = d.scenario;
  const ops = s.patch ? s.patch.ops.map((o) => `${o.op}=${o.mode}`).join(', ') : 'nothing';
  out.push(st.bold('textpoke demo: runtime paravirt patching while NMIs arrive'));
  out.push(`${s.cpus} CPUs run the lock workload on the minikernel fixture; CPU0 patches ${ops}`);
  out.push(`with the stop_machine protocol (text_poke_late). The NMI handler takes nmi_lock and releases it through a`);
  out.push(`pv queued_spin_unlock site, so the op being patched is used in the NMI path. Scenario: ${d.scenarioFile}`);
  out.push('');

  const a = d.deadlock;
  out.push(`${st.bold('1. nmi=false')} (the worker runs in thread context): ${outcomeText(a, st)} after ${n(a.steps)} steps`);
  for (const i of a.injections) out.push(`   step ${n(i.step)}: ${i.action}, because ${i.trigger}`);
  out.push(...formatCpus(a.cpus, st, '   '));
  out.push(...formatCycle(a, st, '   '));
  out.push('');

  const b = d.safe;
  out.push(`${st.bold('2. nmi=true')} (the RFC's NMI-safe patching: the primary patches from an NMI it sends itself): ${outcomeText(b, st)} after ${n(b.steps)} steps`);
  for (const i of b.injections) out.push(`   step ${n(i.step)}: ${i.action}, because ${i.trigger}`);
  const ok = b.sites.filter((x) => x.verified).length;
  out.push(`   ${b.sites.length} site(s) patched, ${ok} verified against what the alternatives engine generates for pv_ops:`);
  out.push(...formatSites(b.sites, st, '   '));
  const bad = b.invariants.filter((i) => !i.ok);
  out.push(bad.length ? `   invariants: ${st.red(bad.map((i) => `${i.name}: ${i.detail}`).join('; '))}` : `   invariants: all ${b.invariants.length} hold (${b.invariants.map((i) => i.name).join(', ')})`);
  out.push('');

  if (picture) {
    out.push(`Timeline of the deadlock (a lane per CPU, NMIs as arrows, the wait-for cycle): ${picture}`);
    out.push('');
  }
  if (d.ok) {
    const cyc = [...a.cycle!, a.cycle![0]].map((c) => `CPU${c}`).join(' -> ');
    out.push(
      `${st.green(st.bold('Verdict:'))} patching ops that the NMI path uses deadlocks in thread context (${cyc}); ` +
        `with the NMI-safe protocol the same schedule and NMIs complete and all ${b.sites.length} sites verify.`,
    );
  } else {
    const why: string[] = [];
    if (a.outcome !== 'deadlock') why.push(`nmi=false ended in ${a.outcome}, not a deadlock`);
    if (b.outcome !== 'completed') why.push(`nmi=true ended in ${b.outcome}`);
    if (b.sites.some((x) => !x.verified)) why.push('some patched sites do not verify');
    if (bad.length) why.push('invariants fail');
    out.push(`${st.red(st.bold('Verdict: unexpected'))}: ${why.join('; ') || 'see above'}.`);
  }
  return out.join('\n');
}
