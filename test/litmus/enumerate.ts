// Every execution of a litmus test on the emulator: a small stateless enumerator over
// the machine. The only choices a machine of litmus code has are which CPU executes
// its next instruction and (under x86-TSO) which CPU drains its oldest buffered store;
// everything else is a function of those choices (emu/ is deterministic). The
// enumerator takes every enabled choice at every point, depth first, continuing the
// first choice on the machine at hand and replaying the prefix on a fresh machine for
// each other one, until no CPU has an instruction left before its final HLT and no
// buffer holds a store. Its set of final outcomes is therefore that of every schedule.

import { Machine, type MemoryModel } from '../../emu/machine';
import { runSlice } from '../../emu/run';
import { RAX, RBX, RCX, RDX } from '../../emu/regs';
import { assemble } from '../../scripts/gas';
import { type Litmus, type Op, type Reg, regsOf } from './tests';
import { finalKey } from './spec';

const BASE = 0x1000000n;
const REG_INDEX: Record<Reg, number> = { rax: RAX, rbx: RBX, rcx: RCX, rdx: RDX };

interface Program {
  bytes: Uint8Array;
  entry: bigint[];
  end: bigint[];
  x: bigint;
  y: bigint;
}

function asm(o: Op): string {
  switch (o.op) {
    case 'st':
      return `movq $${o.v}, ${o.loc}(%rip)`;
    case 'ld':
      return `mov ${o.loc}(%rip), %${o.r}`;
    case 'mfence':
      return 'mfence';
    case 'xchg':
      return `mov $${o.v}, %${o.r}\n  xchg %${o.r}, ${o.loc}(%rip)`;
  }
}

const compiled = new Map<Litmus, Program>();

/** The test as x86 code: one routine per thread ending in HLT, x and y on their own lines. */
export function compileLitmus(t: Litmus): Program {
  let p = compiled.get(t);
  if (p) return p;
  const src = t.threads.map((ops, i) => `t${i}:\n  ${ops.map(asm).join('\n  ')}\ne${i}:\n  hlt`).join('\n');
  const a = assemble(`.text\n${src}\n.balign 4096\nx: .quad 0\n.balign 64\ny: .quad 0\n`, { base: BASE });
  const sym = (n: string): bigint => a.symbols.get(n)!;
  p = { bytes: a.bytes, entry: t.threads.map((_, i) => sym(`t${i}`)), end: t.threads.map((_, i) => sym(`e${i}`)), x: sym('x'), y: sym('y') };
  compiled.set(t, p);
  return p;
}

interface Choice {
  cpu: number;
  drain: boolean;
}

export interface Enumeration {
  outcomes: Set<string>;
  /** Complete executions (leaves of the choice tree). */
  executions: number;
}

export function enumerate(t: Litmus, model: MemoryModel): Enumeration {
  const p = compileLitmus(t);
  const fresh = (): Machine => {
    const m = new Machine({ cpus: t.threads.length, memoryModel: model });
    m.load(BASE, p.bytes);
    m.cpus.forEach((c, i) => c.setRipBig(p.entry[i]));
    return m;
  };
  const enabled = (m: Machine): Choice[] => {
    const out: Choice[] = [];
    m.cpus.forEach((c, i) => {
      if (c.rip !== p.end[i]) out.push({ cpu: i, drain: false });
      if (c.drainable > 0) out.push({ cpu: i, drain: true });
    });
    return out;
  };
  const apply = (m: Machine, ch: Choice): void => {
    const c = m.cpus[ch.cpu];
    if (ch.drain) c.drainOne();
    else if (runSlice(c, 1) !== 1 || c.shutdown) throw new Error(`${t.name}: CPU ${ch.cpu} did not execute one instruction`);
  };
  const replay = (prefix: Choice[]): Machine => {
    const m = fresh();
    for (const ch of prefix) apply(m, ch);
    return m;
  };
  const res: Enumeration = { outcomes: new Set(), executions: 0 };
  const walk = (prefix: Choice[], m: Machine): void => {
    for (;;) {
      const en = enabled(m);
      if (en.length === 0) {
        res.executions++;
        res.outcomes.add(outcome(t, p, m));
        return;
      }
      for (let k = 1; k < en.length; k++) {
        const branch = [...prefix, en[k]];
        const m2 = replay(prefix);
        apply(m2, en[k]);
        walk(branch, m2);
      }
      apply(m, en[0]);
      prefix = [...prefix, en[0]];
    }
  };
  walk([], fresh());
  return res;
}

function outcome(t: Litmus, p: Program, m: Machine): string {
  const regs = t.threads.map((ops, i) =>
    Object.fromEntries(regsOf(ops).map((r) => [r, Number(m.cpus[i].getReg(REG_INDEX[r]))])),
  );
  return finalKey(regs, { x: Number(m.mem.readU64(p.x)), y: Number(m.mem.readU64(p.y)) });
}
