// A run's timeline as Trace Event Format JSON, the format Perfetto (ui.perfetto.dev)
// and chrome://tracing load ("Trace Event Format", Google, the JSON object form with
// `traceEvents`). One process for the machine, one thread track per CPU:
//
// - duration events (B/E) for each context and host routine, nested as they were,
//   and for each wait (innermost);
// - instant events (i) for each write to kernel text, with its address and bytes;
// - flow events (s/f) from the CPU that sent an IPI or NMI to the CPU that took it;
// - a counter (C) for text_poke_state.state;
// - at the end, the wait-for edges as instants on the waiting CPU and flows to the
//   CPU waited for.
//
// Time: one machine step is one microsecond (`ts` is in µs). Spans that begin and
// end at the same step are left out (they have no extent to draw). Events are sorted
// by time; at one instant, ends come before beginnings, deeper ends first, so every
// track's B/E pairs nest.

import { writeFileViaTemp } from './output-file';
import type { Timeline } from './timeline';

export interface TraceEvent {
  name: string;
  ph: 'B' | 'E' | 'i' | 's' | 'f' | 'C' | 'M';
  ts?: number;
  pid: number;
  tid?: number;
  cat?: string;
  id?: number;
  bp?: 'e';
  s?: 't' | 'p' | 'g';
  args?: Record<string, unknown>;
}

const PID = 1;
const tid = (cpu: number): number => cpu + 1;
/** Depth given to waits: innermost on their track. */
const WAIT_DEPTH = 1 << 20;

interface Keyed {
  ev: TraceEvent;
  /** Order at one timestamp: ends (deepest first), then the rest, then beginnings (outermost first). */
  rank: number;
  seq: number;
}

export function perfettoTrace(t: Timeline): { traceEvents: TraceEvent[]; displayTimeUnit: 'ms'; otherData: Record<string, unknown> } {
  const out: Keyed[] = [];
  let seq = 0;
  const add = (ev: TraceEvent, rank = 0): void => {
    out.push({ ev, rank, seq: seq++ });
  };
  for (const s of t.spans) {
    if (s.end <= s.start) continue;
    const cat = s.kind === 'host' ? 'host routine' : 'context';
    add({ name: s.name, ph: 'B', ts: s.start, pid: PID, tid: tid(s.cpu), cat }, 2e6 + s.depth);
    add({ name: s.name, ph: 'E', ts: s.end, pid: PID, tid: tid(s.cpu), cat }, -2e6 - s.depth);
  }
  for (const w of t.waits) {
    if (w.end <= w.start) continue;
    const name = `wait: ${w.detail}`;
    add({ name, ph: 'B', ts: w.start, pid: PID, tid: tid(w.cpu), cat: 'wait', args: { waitsFor: w.waitsFor.map((c) => `CPU${c}`) } }, 2e6 + WAIT_DEPTH);
    add({ name, ph: 'E', ts: w.end, pid: PID, tid: tid(w.cpu), cat: 'wait' }, -2e6 - WAIT_DEPTH);
  }
  for (const p of t.pokes) {
    add({
      name: p.bytes.length === 1 && p.bytes[0] === 0xcc ? 'poke int3' : 'poke',
      ph: 'i',
      s: 't',
      ts: p.step,
      pid: PID,
      tid: tid(p.cpu),
      cat: 'poke',
      args: { address: '0x' + p.address.toString(16), symbol: p.symbol, bytes: [...p.bytes].map((b) => b.toString(16).padStart(2, '0')).join(' ') },
    });
  }
  let flowId = 1;
  for (const s of t.signals) {
    const name = s.nmi ? 'NMI' : `IPI vector ${s.vector}`;
    const id = flowId++;
    add({ name, ph: 's', ts: s.sent, pid: PID, tid: tid(s.from), cat: 'ipi', id });
    add({ name, ph: 'f', bp: 'e', ts: s.delivered, pid: PID, tid: tid(s.to), cat: 'ipi', id });
  }
  add({ name: 'text_poke_state.state', ph: 'C', ts: 0, pid: PID, args: { state: 0 } });
  for (const s of t.states) add({ name: 'text_poke_state.state', ph: 'C', ts: s.step, pid: PID, args: { state: s.value } });
  // The wait-for graph, just before the end so the flows land inside the open slices.
  const last = Math.max(0, t.end - 0.5);
  for (const e of t.waitFor) {
    const id = flowId++;
    add({ name: `waits for CPU${e.to}`, ph: 'i', s: 't', ts: last, pid: PID, tid: tid(e.from), cat: 'wait-for', args: { waiting: e.text, cycle: t.cycle?.includes(e.from) && t.cycle.includes(e.to) ? 'yes' : 'no' } });
    add({ name: 'wait-for', ph: 's', ts: last, pid: PID, tid: tid(e.from), cat: 'wait-for', id });
    add({ name: 'wait-for', ph: 'f', bp: 'e', ts: last, pid: PID, tid: tid(e.to), cat: 'wait-for', id });
  }
  out.sort((a, b) => (a.ev.ts ?? 0) - (b.ev.ts ?? 0) || a.rank - b.rank || a.seq - b.seq);
  const meta: TraceEvent[] = [{ name: 'process_name', ph: 'M', pid: PID, args: { name: `textpoke ${t.name}` } }];
  for (let c = 0; c < t.cpus; c++) {
    meta.push({ name: 'thread_name', ph: 'M', pid: PID, tid: tid(c), args: { name: `CPU${c}` } });
    meta.push({ name: 'thread_sort_index', ph: 'M', pid: PID, tid: tid(c), args: { sort_index: c } });
  }
  return {
    traceEvents: [...meta, ...out.map((k) => k.ev)],
    displayTimeUnit: 'ms',
    otherData: { scenario: t.name, stop: t.stop, steps: t.end, timeUnit: '1 us = 1 machine step', cycle: t.cycle ? t.cycle.map((c) => `CPU${c}`).join(' -> ') : 'none' },
  };
}

/** Writes the trace through a temporary file renamed into place. */
export function writePerfetto(path: string, t: Timeline): void {
  writeFileViaTemp(path, JSON.stringify(perfettoTrace(t)));
}
