// A run's timeline, recorded by a probe while the machine runs: per CPU the nesting of
// its contexts (thread, stop_machine, NMI, #BP, IRQ) and host routines as spans, the
// stretches it waited, the IPIs and NMIs from sender to receiver, every write to
// kernel text (the pokes), every change of text_poke_state.state, and at the end the
// wait-for edges. The Perfetto export (perfetto.ts) and the SVG picture
// (timeline-svg.ts) both draw from this one record.
//
// Time is the machine step: a change that an instruction (or an event delivery)
// makes is stamped with `Machine.currentStep(cpu)` just after it, so each CPU's stamps
// rise. Recording only observes: watches and the probe change nothing the machine
// computes (emu/probe.ts, emu/memory.ts).

import type { Cpu } from '../emu/cpu';
import type { Probe } from '../emu/probe';
import type { EventKind } from '../emu/events';
import type { ScenarioRun } from '../kernel-model/scenario/run';
import { vectorNamer } from '../kernel-model/scenario/run';
import { machineReport } from '../kernel-model/scenario/report';
import { PATCH_STATE_NAMES } from '../kernel-model/linux/kernel-layout';

export type SpanKind = 'context' | 'host';

export interface TimelineSpan {
  cpu: number;
  /** 0 for the thread, 1 for what runs on top of it, … */
  depth: number;
  name: string;
  kind: SpanKind;
  start: number;
  end: number;
  /** Still open when the run ended (a deadlock leaves them open). */
  open: boolean;
}

export interface TimelineSignal {
  id: number;
  from: number;
  to: number;
  nmi: boolean;
  vector: number;
  sent: number;
  delivered: number;
}

export interface TimelinePoke {
  cpu: number;
  step: number;
  address: bigint;
  symbol: string;
  bytes: Uint8Array;
}

export interface TimelineState {
  step: number;
  cpu: number;
  value: number;
  name: string;
}

export interface TimelineWait {
  cpu: number;
  start: number;
  end: number;
  open: boolean;
  detail: string;
  waitsFor: number[];
}

export interface Timeline {
  name: string;
  cpus: number;
  /** Machine step at the end of the recording. */
  end: number;
  stop: string;
  spans: TimelineSpan[];
  signals: TimelineSignal[];
  pokes: TimelinePoke[];
  states: TimelineState[];
  waits: TimelineWait[];
  /** The wait-for graph at the end: one edge per waiting CPU and CPU it waits for. */
  waitFor: { from: number; to: number; text: string }[];
  cycle: number[] | null;
  /** Each CPU's context stack at the end, for labels. */
  finalContext: string[][];
}

interface Frame {
  name: string;
  kind: SpanKind;
}

export class TimelineRecorder implements Probe {
  private readonly stacks: { frames: Frame[]; spans: TimelineSpan[] }[];
  private readonly openWait: (TimelineWait | null)[];
  private readonly sigKey: string[];
  private readonly spans: TimelineSpan[] = [];
  private readonly signals: TimelineSignal[] = [];
  private readonly pokes: TimelinePoke[] = [];
  private readonly states: TimelineState[] = [];
  private readonly waits: TimelineWait[] = [];
  /** IPIs sent and not yet delivered, per receiver and kind. */
  private readonly inFlight = new Map<string, { from: number; sent: number; vector: number }[]>();
  private nextSignal = 1;
  private readonly unwatch: (() => void)[] = [];
  private readonly namer: (v: number) => string | undefined;

  constructor(private readonly run: ScenarioRun) {
    const { m, k, img } = run;
    this.namer = vectorNamer(k);
    this.stacks = m.cpus.map(() => ({ frames: [], spans: [] }));
    this.openWait = m.cpus.map(() => null);
    this.sigKey = m.cpus.map(() => '');
    // A run may start part-way (run --replay fast-forwards first): spans begin where it stands.
    for (const c of m.cpus) this.sync(c, m.steps);
    // Pokes: every CPU write to kernel text.
    for (const s of img.sections) {
      if (!(s.name === '.text' || s.name.startsWith('.text.') || s.name === '.noinstr.text') || s.size === 0) continue;
      const id = m.mem.watch(s.address, s.size, (cpu, _lo, _hi, size, at) => {
        if (cpu < 0) return;
        // The text address, also when the write went through an alias (poking_mm).
        const address = at;
        this.pokes.push({ cpu, step: m.currentStep(m.cpus[cpu]), address, symbol: m.symbolize(address), bytes: m.mem.readBytes(address, size) });
      });
      this.unwatch.push(() => m.mem.unwatch(id));
    }
    // The protocol's state word.
    const stateAddr = k.L.tps.state;
    let last = m.mem.readU32(stateAddr);
    const id = m.mem.watch(stateAddr, 4, (cpu) => {
      const v = m.mem.readU32(stateAddr);
      if (v === last) return;
      last = v;
      this.states.push({ step: cpu >= 0 ? m.currentStep(m.cpus[cpu]) : m.steps, cpu, value: v, name: PATCH_STATE_NAMES[v] ?? String(v) });
    });
    this.unwatch.push(() => m.mem.unwatch(id));
  }

  /** The CPU's context and host-routine nesting, outermost first. */
  private framesOf(cpu: Cpu): Frame[] {
    const out: Frame[] = [{ name: 'thread', kind: 'context' }];
    for (let i = 0; i <= cpu.contexts.length; i++) {
      for (const f of cpu.hostFrames) {
        if (f.depth !== i) continue;
        if (f.ctx.label && out[out.length - 1].name !== f.ctx.label) out.push({ name: f.ctx.label, kind: 'context' });
        out.push({ name: f.binding.name, kind: 'host' });
      }
      if (i < cpu.contexts.length) {
        const c = cpu.contexts[i];
        out.push({ name: this.namer(c.vector) ?? c.kind, kind: 'context' });
      }
    }
    return out;
  }

  /** A cheap signature of the nesting: recompute the frames only when it moved. */
  private signature(cpu: Cpu): string {
    const top = cpu.hostFrames[cpu.hostFrames.length - 1];
    return `${cpu.contexts.length}/${cpu.hostFrames.length}/${top ? top.ctx.label + top.binding.name + top.depth : ''}`;
  }

  private sync(cpu: Cpu, at: number): void {
    const sig = this.signature(cpu);
    if (sig === this.sigKey[cpu.id]) return;
    this.sigKey[cpu.id] = sig;
    const st = this.stacks[cpu.id];
    const now = this.framesOf(cpu);
    let same = 0;
    while (same < st.frames.length && same < now.length && st.frames[same].name === now[same].name && st.frames[same].kind === now[same].kind) same++;
    while (st.spans.length > same) {
      const s = st.spans.pop()!;
      s.end = at;
      s.open = false;
    }
    for (let d = same; d < now.length; d++) {
      const s: TimelineSpan = { cpu: cpu.id, depth: d, name: now[d].name, kind: now[d].kind, start: at, end: at, open: true };
      st.spans.push(s);
      this.spans.push(s);
    }
    st.frames = now;
  }

  private syncWait(cpu: Cpu, at: number): void {
    const w = this.openWait[cpu.id];
    if (cpu.blocked && !w) {
      const info = this.run.m.blockInfo.get(cpu.id);
      const nw: TimelineWait = { cpu: cpu.id, start: at, end: at, open: true, detail: info?.detail ?? cpu.blocked.detail, waitsFor: info?.waitsFor.slice() ?? [] };
      this.openWait[cpu.id] = nw;
      this.waits.push(nw);
    } else if (!cpu.blocked && w) {
      w.end = at;
      w.open = false;
      this.openWait[cpu.id] = null;
    }
  }

  onStep(cpu: Cpu): void {
    const at = this.run.m.currentStep(cpu);
    // A CPU that runs again has stopped waiting (it resumed at the step before this one).
    if (this.openWait[cpu.id] && !cpu.blocked) this.syncWait(cpu, at - 1);
    this.sync(cpu, at);
    if (cpu.blocked) this.syncWait(cpu, at);
  }

  onEvent(cpu: Cpu, vector: number, kind: EventKind): void {
    const at = this.run.m.currentStep(cpu);
    this.syncWait(cpu, at);
    this.sync(cpu, at);
    if (kind !== 'nmi' && kind !== 'irq') return;
    const q = this.inFlight.get(`${cpu.id}/${kind}`);
    const sent = q?.shift();
    if (sent) this.signals.push({ id: this.nextSignal++, from: sent.from, to: cpu.id, nmi: kind === 'nmi', vector: kind === 'nmi' ? 2 : vector, sent: sent.sent, delivered: at });
  }

  onIpi(from: number, targets: readonly number[], nmi: boolean, vector: number): void {
    const m = this.run.m;
    const at = m.currentStep(m.cpus[from]);
    for (const t of targets) {
      const key = `${t}/${nmi ? 'nmi' : 'irq'}`;
      const q = this.inFlight.get(key) ?? [];
      q.push({ from, sent: at, vector });
      this.inFlight.set(key, q);
    }
  }

  /** Ends the recording: open spans and waits end at the last step; the wait-for graph is taken now. */
  finish(stop: string): Timeline {
    const { m, k } = this.run;
    for (const u of this.unwatch) u();
    const end = m.steps;
    for (const s of this.spans) if (s.open) s.end = end;
    for (const w of this.waits) if (w.open) w.end = end;
    const rep = machineReport(m, k.locks, this.namer);
    const waitFor = rep.cpus.flatMap((c) => c.waitsFor.map((to) => ({ from: c.cpu, to, text: c.waiting })));
    return {
      name: this.run.scenario.name,
      cpus: m.cpus.length,
      end,
      stop,
      spans: this.spans,
      signals: this.signals,
      pokes: this.pokes,
      states: this.states,
      waits: this.waits,
      waitFor,
      cycle: rep.cycle,
      finalContext: rep.cpus.map((c) => c.context),
    };
  }
}
