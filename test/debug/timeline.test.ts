// The recorded timeline and its two renderings: the Perfetto trace obeys the Trace
// Event Format on every scenario and says what happened (contexts, pokes, IPIs, the
// state counter, the wait-for edges); the SVG is well-formed with a lane per CPU; and
// recording does not change the run.

import { readdirSync, readFileSync } from 'fs';
import { join } from 'path';
import { loadScenario } from '../../kernel-model/scenario/scenario-file';
import { runScenario } from '../../kernel-model/scenario/run';
import { recordScenario } from '../../debug/record-run';
import { perfettoTrace, type TraceEvent } from '../../debug/perfetto';
import { timelineSvg } from '../../debug/timeline-svg';
import { traceEventErrors, xmlErrors } from './format-check';
import { SCENARIOS } from './gdb-driver';
import { textpoke, tempDir, removeTempDirs, expectUserError } from '../cli/textpoke';

afterAll(removeTempDirs);

const files = readdirSync(SCENARIOS).filter((f) => f.endsWith('.json')).map((f) => join(SCENARIOS, f));

describe('format checkers', () => {
  it('reject what breaks the rules', () => {
    const ev = (e: Partial<TraceEvent>): TraceEvent => ({ name: 'x', ph: 'i', pid: 1, tid: 1, ts: 0, ...e });
    expect(traceEventErrors({ traceEvents: [ev({ ph: 'B', name: 'a' }), ev({ ph: 'E', name: 'b', ts: 1 })] })).toEqual([expect.stringMatching(/closes B a/)]);
    expect(traceEventErrors({ traceEvents: [ev({ ph: 'B' })] })).toEqual([expect.stringMatching(/B without E/)]);
    expect(traceEventErrors({ traceEvents: [ev({ ts: 5 }), ev({ ts: 4 })] })).toEqual([expect.stringMatching(/goes back/)]);
    expect(traceEventErrors({ traceEvents: [ev({ ph: 's', id: 1 })] })).toEqual([expect.stringMatching(/1 start\(s\), 0 finish/)]);
    expect(xmlErrors('<svg><g></svg>')).not.toEqual([]);
    expect(xmlErrors('<svg a="1" a="2"/>')).not.toEqual([]);
    expect(xmlErrors('<svg>a & b</svg>')).not.toEqual([]);
    expect(xmlErrors('<?xml version="1.0"?><svg><text x="1">a &amp; b</text></svg>')).toEqual([]);
  });
});

describe.each(files)('%s', (file) => {
  const s = loadScenario(file);
  const { report, timeline } = recordScenario(s, {}, file);

  it('recording changes nothing: the same outcome at the same step as a plain run', () => {
    const plain = runScenario(s, {}, file);
    expect({ outcome: report.outcome, steps: report.steps, cycle: report.cycle }).toEqual({ outcome: plain.outcome, steps: plain.steps, cycle: plain.cycle });
  });

  it('the Perfetto trace keeps the Trace Event rules and has a track per CPU', () => {
    const doc = perfettoTrace(timeline);
    expect(traceEventErrors(JSON.parse(JSON.stringify(doc)))).toEqual([]);
    const names = doc.traceEvents.filter((e) => e.name === 'thread_name').map((e) => e.args!.name);
    expect(names).toEqual(Array.from({ length: s.cpus }, (_, c) => `CPU${c}`));
    // Every CPU runs its thread context from the first step.
    for (let c = 0; c < s.cpus; c++) expect(doc.traceEvents.some((e) => e.ph === 'B' && e.name === 'thread' && e.tid === c + 1)).toBe(true);
    // The counter follows text_poke_state.state through the same values the kernel model wrote.
    const counter = doc.traceEvents.filter((e) => e.ph === 'C').map((e) => e.args!.state);
    expect(counter.slice(1)).toEqual(timeline.states.map((x) => x.value));
  });

  it('the SVG is well-formed XML with one lane per CPU', () => {
    const svg = timelineSvg(timeline);
    expect(xmlErrors(svg)).toEqual([]);
    expect([...svg.matchAll(/class="lane" data-cpu="(\d+)"/g)].map((m) => Number(m[1]))).toEqual(Array.from({ length: s.cpus }, (_, c) => c));
  });
});

describe('the deadlock as a trace', () => {
  const file = join(SCENARIOS, 'nmi-deadlock-primary.json');
  const { report, timeline } = recordScenario(loadScenario(file), {}, file);
  const doc = perfettoTrace(timeline);

  it('shows CPU1 in #BP inside an NMI inside stop_machine, the int3 poke at the unlock site, and the stop_machine IPI as a flow', () => {
    const opened = (tid: number): string[] => doc.traceEvents.filter((e) => e.ph === 'B' && e.tid === tid).map((e) => e.name);
    expect(opened(2)).toEqual(expect.arrayContaining(['thread', 'stop_machine', 'NMI', '#BP', 'poke_int3_handler']));
    const site = report.sites.find((x) => x.op === 'lock.queued_spin_unlock')!;
    const int3 = doc.traceEvents.find((e) => e.ph === 'i' && e.name === 'poke int3' && e.args!.address === '0x' + site.address.toString(16));
    expect(int3?.args!.bytes).toBe('cc');
    const flows = doc.traceEvents.filter((e) => e.ph === 's' && e.cat === 'ipi');
    expect(flows.length).toBeGreaterThan(0);
  });

  it('ends with the wait-for edges of the cycle', () => {
    const edges = doc.traceEvents.filter((e) => e.ph === 'i' && e.cat === 'wait-for').map((e) => `${e.tid! - 1}->${e.name}`);
    expect(edges).toEqual(['0->waits for CPU1', '1->waits for CPU0']);
    expect(doc.otherData.cycle).toBe('CPU0 -> CPU1');
  });
});

describe('textpoke run --perfetto --svg', () => {
  it('writes both files and says where', () => {
    const dir = tempDir();
    const r = textpoke(['run', join(SCENARIOS, 'nmi-safe-primary.json'), '--perfetto', join(dir, 't.json'), '--svg', join(dir, 't.svg')]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/perfetto: .*t\.json/);
    expect(traceEventErrors(JSON.parse(readFileSync(join(dir, 't.json'), 'utf8')))).toEqual([]);
    expect(xmlErrors(readFileSync(join(dir, 't.svg'), 'utf8'))).toEqual([]);
  });

  it('refuses an output in a missing directory before running, writing nothing', () => {
    expectUserError(textpoke(['run', join(SCENARIOS, 'nmi-safe-primary.json'), '--perfetto', '/nonexistent/dir/t.json']), /--perfetto .*does not exist/);
    expectUserError(textpoke(['run', join(SCENARIOS, 'nmi-safe-primary.json'), '--svg', '/nonexistent/dir/t.svg']), /--svg .*does not exist/);
  });
});

describe('textpoke run --replay --perfetto --svg (an explorer counterexample as a trace)', () => {
  it('draws the replayed deadlock: the Trace Event rules hold and the wait-for edges close the trace', () => {
    const dir = tempDir();
    const scenario = join(SCENARIOS, 'explore', 'deadlock-primary.json');
    const ex = textpoke(['explore', scenario, '--preemptions', '1', '--max-depth', '60', '--json', '-o', dir]);
    const bug = (JSON.parse(ex.stdout) as { bugs: { kind: string; replay: string }[] }).bugs.find((b) => b.kind === 'deadlock')!;
    const r = textpoke(['run', scenario, '--replay', bug.replay, '--perfetto', join(dir, 'r.json'), '--svg', join(dir, 'r.svg')]);
    expect(r.stdout).toMatch(/deadlock/);
    const doc = JSON.parse(readFileSync(join(dir, 'r.json'), 'utf8')) as { traceEvents: TraceEvent[] };
    expect(traceEventErrors(doc)).toEqual([]);
    expect(doc.traceEvents.filter((e) => e.cat === 'wait-for' && e.ph === 'i').length).toBeGreaterThanOrEqual(2);
    expect(xmlErrors(readFileSync(join(dir, 'r.svg'), 'utf8'))).toEqual([]);
  });
});
