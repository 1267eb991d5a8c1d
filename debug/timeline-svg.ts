// A picture of a run's last stretch, as SVG: a lane per CPU with its contexts as
// coloured bands (thread at the top, each nested context or host routine one band
// lower), waits as hatched bars with what they wait for, NMIs and IPIs as arrows from
// sender to receiver (an NMI a scenario injected has no sender: a marker), writes to
// kernel text as ticks, text_poke_state.state as a strip above the lanes, and, at the
// right, the wait-for graph at the end with its cycle.
//
// The window starts a little before the patching began or the outermost context still
// open at the end (for a deadlock: the patch that never finished).

import type { Timeline, TimelineSpan } from './timeline';
import { writeFileViaTemp } from './output-file';

const W = 1280;
const LEFT = 120;
const RIGHT = 330;
const BAND = 17;
const LANE_GAP = 26;
const TOP = 92;

const COLOURS: Record<string, string> = {
  thread: '#d9dde3',
  stop_machine: '#7aa6d8',
  NMI: '#e0645c',
  '#BP': '#f2a541',
  'IPI call_function': '#a98bd4',
};

function colour(s: TimelineSpan): string {
  if (s.kind === 'host') return '#9ccf9a';
  if (COLOURS[s.name]) return COLOURS[s.name];
  if (s.name.startsWith('IRQ')) return '#a98bd4';
  return '#c7b9e8';
}

const esc = (t: string): string => t.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

/** Breaks text into lines of at most `n` characters at spaces. */
function wrap(t: string, n: number): string[] {
  const out: string[] = [];
  let line = '';
  for (const w of t.split(' ')) {
    if (line && line.length + 1 + w.length > n) {
      out.push(line);
      line = w;
    } else line = line ? `${line} ${w}` : w;
  }
  if (line) out.push(line);
  return out;
}

/**
 * The stretch of steps the picture shows: from a little before the patching began (the
 * first write to text or change of text_poke_state) or the outermost context still
 * open at the end, whichever is earlier, to the end; the last 5,000 steps otherwise.
 */
export function timelineWindow(t: Timeline): { from: number; to: number } {
  const to = Math.max(1, t.end);
  const starts = [
    ...t.spans.filter((s) => s.open && s.depth > 0).map((s) => s.start),
    ...(t.states.length ? [t.states[0].step] : []),
    ...(t.pokes.length ? [t.pokes[0].step] : []),
  ];
  let from = starts.length ? Math.min(...starts) : to - 5000;
  from = Math.max(0, Math.floor(from - (to - from) * 0.04));
  if (to - from < 50) from = Math.max(0, to - 50);
  return { from, to };
}

export function timelineSvg(t: Timeline): string {
  const { from, to } = timelineWindow(t);
  const plotW = W - LEFT - RIGHT;
  const x = (step: number): number => LEFT + ((Math.min(Math.max(step, from), to) - from) / (to - from)) * plotW;
  const depthOf = new Array<number>(t.cpus).fill(0);
  for (const s of t.spans) if (s.end > from || s.open) depthOf[s.cpu] = Math.max(depthOf[s.cpu], s.depth + 1);
  // Lanes: bands for the deepest nesting seen, a row for waits, and a row naming the
  // wait the CPU is still in at the end.
  const stillWaiting = new Array<boolean>(t.cpus).fill(false);
  for (const w of t.waits) if (w.open) stillWaiting[w.cpu] = true;
  const laneH = (c: number): number => (Math.max(depthOf[c], 1) + 1 + (stillWaiting[c] ? 1 : 0)) * BAND;
  const laneTop: number[] = [];
  let y = TOP;
  for (let c = 0; c < t.cpus; c++) {
    laneTop.push(y);
    y += laneH(c) + LANE_GAP;
  }
  const plotBottom = y - LANE_GAP + 8;
  const panel = waitForPanel(t, W - RIGHT + 18, TOP - 30, RIGHT - 30);
  const H = Math.max(plotBottom + 70, panel.bottom + 20);
  const o: string[] = [];
  o.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif" font-size="11">`);
  o.push('<defs>');
  o.push('<pattern id="hatch" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)"><rect width="6" height="6" fill="#fff3c4"/><line x1="0" y1="0" x2="0" y2="6" stroke="#b08900" stroke-width="2"/></pattern>');
  o.push('<marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#b3261e"/></marker>');
  o.push('<marker id="arrow-ipi" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#5b3fa0"/></marker>');
  o.push('<marker id="arrow-wait" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="8" markerHeight="8" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#333"/></marker>');
  o.push('</defs>');
  o.push(`<rect width="${W}" height="${H}" fill="#ffffff"/>`);
  o.push(`<text x="16" y="24" font-size="16" font-weight="bold">${esc(`textpoke: ${t.name}`)}</text>`);
  o.push(`<text x="16" y="42" fill="#444">${esc(`${t.stop} at machine step ${t.end.toLocaleString('en-US')}; steps ${from.toLocaleString('en-US')} to ${to.toLocaleString('en-US')} shown`)}</text>`);
  // text_poke_state.state strip.
  const sy = TOP - 30;
  o.push(`<text x="${LEFT - 8}" y="${sy + 12}" text-anchor="end" fill="#444">text_poke_state</text>`);
  let prevStep = 0;
  let prevName = '(not set)';
  const segs: { a: number; b: number; name: string }[] = [];
  for (const s of t.states) {
    segs.push({ a: prevStep, b: s.step, name: prevName });
    prevStep = s.step;
    prevName = s.name;
  }
  segs.push({ a: prevStep, b: to, name: prevName });
  segs.forEach((s, i) => {
    if (s.b < from) return;
    const x0 = x(s.a);
    const x1 = x(s.b);
    o.push(`<rect x="${x0.toFixed(1)}" y="${sy}" width="${Math.max(0.5, x1 - x0).toFixed(1)}" height="16" fill="${i % 2 ? '#eef3f8' : '#e1e9f2'}" stroke="#9fb3c8" stroke-width="0.5"><title>${esc(`${s.name}: steps ${s.a}–${s.b}`)}</title></rect>`);
    if (x1 - x0 > s.name.length * 6.2) o.push(`<text x="${(x0 + 3).toFixed(1)}" y="${sy + 12}" fill="#234">${esc(s.name)}</text>`);
  });
  // Lanes.
  for (let c = 0; c < t.cpus; c++) {
    const top = laneTop[c];
    o.push(`<rect class="lane" data-cpu="${c}" x="${LEFT}" y="${top - 4}" width="${plotW}" height="${laneH(c) + 8}" fill="#f7f8fa" stroke="#e2e5ea"/>`);
    o.push(`<text x="${LEFT - 8}" y="${top + 13}" text-anchor="end" font-weight="bold" font-size="13">CPU${c}</text>`);
    const ctx = t.finalContext[c]?.join(' > ') ?? '';
    wrap(ctx, 18).slice(0, 3).forEach((l, i) => o.push(`<text x="${LEFT - 8}" y="${top + 27 + 11 * i}" text-anchor="end" fill="#666" font-size="9">${esc(l)}</text>`));
  }
  for (const s of t.spans) {
    if (s.end < from && !s.open) continue;
    const x0 = x(s.start);
    const x1 = x(s.open ? to : s.end);
    if (x1 - x0 < 0.3) continue;
    const yy = laneTop[s.cpu] + s.depth * BAND;
    o.push(`<rect x="${x0.toFixed(1)}" y="${yy}" width="${(x1 - x0).toFixed(1)}" height="${BAND - 2}" rx="2" fill="${colour(s)}" stroke="#00000022"><title>${esc(`CPU${s.cpu} ${s.name}: steps ${s.start}–${s.open ? 'end' : s.end}`)}</title></rect>`);
    const label = s.name;
    if (x1 - x0 > label.length * 6.3 + 6) o.push(`<text x="${(Math.max(x0, LEFT) + 4).toFixed(1)}" y="${yy + 12}" fill="#1b1b1b">${esc(label)}</text>`);
  }
  // Waits: a hatched bar under the lane's bands.
  for (const w of t.waits) {
    if (w.end < from && !w.open) continue;
    let x0 = x(w.start);
    const x1 = x(w.open ? to : w.end);
    if (x1 - x0 < 0.5 && !w.open) continue;
    // A wait still open at the end is what the run ended on: always visible, labelled in full.
    if (w.open) x0 = Math.min(x0, x1 - 10);
    const yy = laneTop[w.cpu] + Math.max(depthOf[w.cpu], 1) * BAND;
    o.push(`<rect x="${x0.toFixed(1)}" y="${yy}" width="${(x1 - x0).toFixed(1)}" height="${BAND - 3}" fill="url(#hatch)" stroke="#b08900" stroke-width="0.8"><title>${esc(`CPU${w.cpu} waits: ${w.detail}`)}</title></rect>`);
    const text = `waits: ${w.detail}`;
    if (w.open) {
      o.push(`<text x="${x1.toFixed(1)}" y="${yy + BAND + 10}" font-size="10" text-anchor="end" font-weight="bold" fill="#5a4500">${esc(`${text} (until the end)`)}</text>`);
      continue;
    }
    const room = (x1 - x0 - 8) / 6;
    if (room > 12) o.push(`<text x="${(x0 + 4).toFixed(1)}" y="${yy + 11}" font-size="10" fill="#5a4500">${esc(text.length > room ? text.slice(0, Math.max(0, Math.floor(room) - 1)) + '…' : text)}</text>`);
  }
  // Writes to kernel text.
  for (const p of t.pokes) {
    if (p.step < from) continue;
    const xx = x(p.step);
    const top = laneTop[p.cpu] - 4;
    const int3 = p.bytes.length === 1 && p.bytes[0] === 0xcc;
    o.push(`<line x1="${xx.toFixed(1)}" y1="${top - 6}" x2="${xx.toFixed(1)}" y2="${top + 2}" stroke="${int3 ? '#b3261e' : '#2e7d32'}" stroke-width="1.5"><title>${esc(`CPU${p.cpu} writes ${[...p.bytes].map((b) => b.toString(16).padStart(2, '0')).join(' ')} at ${p.symbol}`)}</title></line>`);
  }
  // NMIs and IPIs: arrows from sender to receiver.
  const arrowY = (c: number): number => laneTop[c] + BAND / 2;
  for (const s of t.signals) {
    if (s.delivered < from) continue;
    const x0 = x(s.sent);
    const x1 = x(s.delivered);
    const y0 = arrowY(s.from);
    const y1 = laneTop[s.to] + (s.to > s.from ? -2 : laneH(s.to));
    const col = s.nmi ? '#b3261e' : '#5b3fa0';
    o.push(`<path d="M${x0.toFixed(1)},${y0} C${(x0 + 20).toFixed(1)},${y0} ${(x1 - 20).toFixed(1)},${y1} ${x1.toFixed(1)},${y1}" fill="none" stroke="${col}" stroke-width="1.6" marker-end="url(#${s.nmi ? 'arrow' : 'arrow-ipi'})"><title>${esc(`${s.nmi ? 'NMI' : `IPI vector ${s.vector}`} CPU${s.from} → CPU${s.to}: sent at ${s.sent}, taken at ${s.delivered}`)}</title></path>`);
  }
  // NMIs without a sender (injected): a marker where the NMI context begins.
  const delivered = new Set(t.signals.filter((s) => s.nmi).map((s) => `${s.to}/${s.delivered}`));
  for (const s of t.spans) {
    if (s.name !== 'NMI' || s.start < from || delivered.has(`${s.cpu}/${s.start}`)) continue;
    const xx = x(s.start);
    const yy = laneTop[s.cpu] + s.depth * BAND;
    o.push(`<path d="M${(xx - 5).toFixed(1)},${yy - 9} L${(xx + 5).toFixed(1)},${yy - 9} L${xx.toFixed(1)},${yy - 1} z" fill="#b3261e"><title>${esc(`NMI injected into CPU${s.cpu} at step ${s.start}`)}</title></path>`);
  }
  // Time axis.
  const ay = plotBottom + 10;
  o.push(`<line x1="${LEFT}" y1="${ay}" x2="${LEFT + plotW}" y2="${ay}" stroke="#888"/>`);
  const span = to - from;
  const stepTick = [1, 2, 5].flatMap((m) => [1, 10, 100, 1000, 10000, 100000, 1e6].map((p) => m * p)).sort((a, b) => a - b).find((v) => span / v <= 8) ?? span;
  for (let v = Math.ceil(from / stepTick) * stepTick; v <= to; v += stepTick) {
    o.push(`<line x1="${x(v).toFixed(1)}" y1="${ay}" x2="${x(v).toFixed(1)}" y2="${ay + 4}" stroke="#888"/><text x="${x(v).toFixed(1)}" y="${ay + 16}" text-anchor="middle" fill="#555" font-size="10">${v.toLocaleString('en-US')}</text>`);
  }
  o.push(`<text x="${LEFT + plotW / 2}" y="${ay + 32}" text-anchor="middle" fill="#555">machine step</text>`);
  // Legend.
  const legend: [string, string][] = [['thread', COLOURS.thread], ['stop_machine', COLOURS.stop_machine], ['NMI', COLOURS.NMI], ['#BP', COLOURS['#BP']], ['host routine', '#9ccf9a'], ['IRQ / IPI', '#a98bd4']];
  let lx = LEFT;
  for (const [n, c] of legend) {
    o.push(`<rect x="${lx}" y="${52}" width="12" height="10" fill="${c}" stroke="#00000033"/><text x="${lx + 16}" y="${61}" fill="#333">${esc(n)}</text>`);
    lx += 24 + n.length * 6.5;
  }
  o.push(`<rect x="${lx}" y="52" width="18" height="10" fill="url(#hatch)" stroke="#b08900"/><text x="${lx + 22}" y="61" fill="#333">waiting</text>`);
  lx += 80;
  o.push(`<line x1="${lx}" y1="57" x2="${lx + 20}" y2="57" stroke="#b3261e" stroke-width="1.6" marker-end="url(#arrow)"/><text x="${lx + 26}" y="61" fill="#333">NMI</text>`);
  lx += 62;
  o.push(`<line x1="${lx}" y1="52" x2="${lx}" y2="62" stroke="#b3261e" stroke-width="1.5"/><text x="${lx + 5}" y="61" fill="#333">int3 poke</text>`);
  lx += 70;
  o.push(`<line x1="${lx}" y1="52" x2="${lx}" y2="62" stroke="#2e7d32" stroke-width="1.5"/><text x="${lx + 5}" y="61" fill="#333">text write</text>`);
  // The wait-for graph at the end.
  o.push(...panel.lines);
  o.push('</svg>');
  return o.join('\n') + '\n';
}

/** The right-hand panel: one node per CPU, an arrow per wait-for edge, the cycle in red. */
function waitForPanel(t: Timeline, px: number, py: number, pw: number): { lines: string[]; bottom: number } {
  const o: string[] = [];
  o.push(`<text x="${px}" y="${py + 10}" font-weight="bold" font-size="13">${t.cycle ? 'wait-for cycle at the end' : 'wait-for graph at the end'}</text>`);
  if (t.waitFor.length === 0) {
    o.push(`<text x="${px}" y="${py + 30}" fill="#555">no CPU waits for another</text>`);
    return { lines: o, bottom: py + 40 };
  }
  const cpus = [...new Set(t.waitFor.flatMap((e) => [e.from, e.to]))].sort((a, b) => a - b);
  const cx = px + pw / 2;
  const cy = py + 100;
  const r = cpus.length <= 2 ? 0 : 60;
  const pos = new Map(cpus.map((c, i) => {
    if (cpus.length <= 2) return [c, { x: px + 40 + i * (pw - 80), y: cy }];
    const a = (2 * Math.PI * i) / cpus.length - Math.PI / 2;
    return [c, { x: cx + r * Math.cos(a), y: cy + r * Math.sin(a) }];
  }));
  const inCycle = (a: number, b: number): boolean => {
    const c = t.cycle;
    if (!c) return false;
    const i = c.indexOf(a);
    return i >= 0 && c[(i + 1) % c.length] === b;
  };
  t.waitFor.forEach((e) => {
    const a = pos.get(e.from)!;
    const b = pos.get(e.to)!;
    const bend = cpus.length <= 2 ? (e.from < e.to ? -38 : 38) : 0;
    const mx = (a.x + b.x) / 2;
    const my = (a.y + b.y) / 2 + bend;
    const col = inCycle(e.from, e.to) ? '#b3261e' : '#333';
    const dx = b.x - mx;
    const dy = b.y - my;
    const len = Math.hypot(dx, dy) || 1;
    const ex = b.x - (dx / len) * 24;
    const ey = b.y - (dy / len) * 24;
    const sx = a.x + ((mx - a.x) / (Math.hypot(mx - a.x, my - a.y) || 1)) * 24;
    const sy = a.y + ((my - a.y) / (Math.hypot(mx - a.x, my - a.y) || 1)) * 24;
    o.push(`<path d="M${sx.toFixed(1)},${sy.toFixed(1)} Q${mx.toFixed(1)},${(my + bend * 0.6).toFixed(1)} ${ex.toFixed(1)},${ey.toFixed(1)}" fill="none" stroke="${col}" stroke-width="2" marker-end="url(#arrow-wait)"/>`);
  });
  for (const c of cpus) {
    const p = pos.get(c)!;
    const onCycle = t.cycle?.includes(c) ?? false;
    o.push(`<circle cx="${p.x.toFixed(1)}" cy="${p.y.toFixed(1)}" r="22" fill="${onCycle ? '#fde2df' : '#eee'}" stroke="${onCycle ? '#b3261e' : '#666'}" stroke-width="2"/>`);
    o.push(`<text x="${p.x.toFixed(1)}" y="${(p.y + 4).toFixed(1)}" text-anchor="middle" font-weight="bold">CPU${c}</text>`);
  }
  let ty = cy + 70;
  for (const e of t.waitFor) {
    const lines = wrap(`CPU${e.from} waits for CPU${e.to}: ${e.text}`, 50);
    lines.forEach((l, i) => o.push(`<text x="${px}" y="${ty + i * 13}" fill="${inCycle(e.from, e.to) ? '#7a1712' : '#333'}">${esc(l)}</text>`));
    ty += lines.length * 13 + 8;
  }
  return { lines: o, bottom: ty };
}

export function writeTimelineSvg(path: string, t: Timeline): void {
  writeFileViaTemp(path, timelineSvg(t));
}
