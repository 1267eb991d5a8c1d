// The x86-TSO abstract machine of Owens, Sarkar and Sewell (TPHOLs 2009, section 3) for
// the litmus language of tests.ts, and the SC machine, each enumerated to the set of
// final outcomes. This is the oracle the emulator's outcome sets are compared with: it
// is written from the paper's transition rules and shares no code with emu/.
//
// TSO transitions: a thread's store enters its FIFO buffer; its load reads the newest
// buffered store to the location, else memory; mfence and a locked xchg are enabled
// only when its buffer is empty (the paper's lock also excludes other threads'
// reads, which an xchg done in one transition already gives); any non-empty buffer may
// write its oldest store to memory. SC: stores write memory at once.

import { type Litmus, type Loc, outcomeKey, regsOf } from './tests';

interface State {
  pc: number[];
  regs: Record<string, number>[];
  buf: [Loc, number][][];
  mem: Record<Loc, number>;
}

function key(s: State): string {
  return JSON.stringify(s);
}

function clone(s: State): State {
  return JSON.parse(JSON.stringify(s)) as State;
}

export function specOutcomes(t: Litmus, model: 'sc' | 'tso'): Set<string> {
  const out = new Set<string>();
  const seen = new Set<string>();
  const init: State = {
    pc: t.threads.map(() => 0),
    regs: t.threads.map((ops) => Object.fromEntries(regsOf(ops).map((r) => [r, 0]))),
    buf: t.threads.map(() => []),
    mem: { x: 0, y: 0 },
  };
  const stack = [init];
  while (stack.length) {
    const s = stack.pop()!;
    const k = key(s);
    if (seen.has(k)) continue;
    seen.add(k);
    let moved = false;
    for (let i = 0; i < t.threads.length; i++) {
      // Drain one store of thread i.
      if (s.buf[i].length) {
        const n = clone(s);
        const [loc, v] = n.buf[i].shift()!;
        n.mem[loc] = v;
        stack.push(n);
        moved = true;
      }
      const op = t.threads[i][s.pc[i]];
      if (!op) continue;
      const empty = s.buf[i].length === 0;
      if ((op.op === 'mfence' || op.op === 'xchg') && !empty) continue;
      const n = clone(s);
      n.pc[i]++;
      switch (op.op) {
        case 'st':
          if (model === 'tso') n.buf[i].push([op.loc, op.v]);
          else n.mem[op.loc] = op.v;
          break;
        case 'ld': {
          const mine = n.buf[i].filter(([l]) => l === op.loc);
          n.regs[i][op.r] = mine.length ? mine[mine.length - 1][1] : n.mem[op.loc];
          break;
        }
        case 'xchg':
          n.regs[i][op.r] = n.mem[op.loc];
          n.mem[op.loc] = op.v;
          break;
        case 'mfence':
          break;
      }
      stack.push(n);
      moved = true;
    }
    if (!moved) out.add(finalKey(s.regs, s.mem));
  }
  return out;
}

export function finalKey(regs: Record<string, number>[], mem: Record<Loc, number>): string {
  const terms: string[] = [];
  regs.forEach((rs, i) => {
    for (const [r, v] of Object.entries(rs)) terms.push(`${i}:${r}=${v}`);
  });
  terms.push(`x=${mem.x}`, `y=${mem.y}`);
  return outcomeKey(terms);
}
