// The explorer's asynchronous choices, where no CPU runs: a store-buffer drain (x86-TSO)
// and an IPI's arrival (IPI latency). On small guest programs: each x86-TSO litmus
// test's named outcome is an invariant violation the search finds exactly when the
// paper says the model (TSO or SC) allows it — SB's both-loads-0 under TSO, never
// under SC; a self-NMI that arrives late is found only when arrivals are choices, with
// and without the reductions; and the state hash tells apart states that differ only
// in what is still on its way.

import { guest } from '../helpers/guest';
import { Machine, type MemoryModel } from '../../emu/machine';
import { RAX, RBX, RCX, RDX } from '../../emu/regs';
import { explore, replay, stateHash, type Bug, type ExploreOptions } from '../../explore/search';
import { LITMUS, matches, regsOf, type Litmus, type Reg } from '../litmus/tests';
import { compileLitmus } from '../litmus/enumerate';
import { finalKey } from '../litmus/spec';

const REG: Record<Reg, number> = { rax: RAX, rbx: RBX, rcx: RCX, rdx: RDX };

/** A litmus test (test/litmus/) on a fresh machine: each thread on its CPU, ending in HLT. */
function litmusMachine(t: Litmus, memoryModel: MemoryModel): Machine {
  const p = compileLitmus(t);
  const m = new Machine({ cpus: t.threads.length, memoryModel });
  // Thread 0's routine opens the text, so its entry is where the bytes load.
  m.load(p.entry[0], p.bytes);
  m.cpus.forEach((c, i) => c.setRipBig(p.entry[i]));
  return m;
}

/** The test's named outcome, once every CPU has halted and every buffer drained. */
function outcomeCheck(t: Litmus): (m: Machine) => Bug | null {
  const p = compileLitmus(t);
  return (m) => {
    if (!m.cpus.every((c) => c.halted && c.drainable === 0)) return null;
    const regs = t.threads.map((ops, i) => Object.fromEntries(regsOf(ops).map((r) => [r, Number(m.cpus[i].getReg(REG[r]))])));
    const key = finalKey(regs, { x: Number(m.mem.readU64(p.x)), y: Number(m.mem.readU64(p.y)) });
    return matches(key, t.outcome) ? { kind: 'invariant', summary: `${t.name}: ${t.outcome.join(' ')}`, signature: t.name } : null;
  };
}

describe('the explorer under x86-TSO: drains are choices', () => {
  // Enough preemptions for every named outcome of these tests: the oracle is the
  // x86-TSO paper's verdict (test/litmus/tests.ts), which the exhaustive enumerator
  // (test/litmus/enumerate.ts) already checks the emulator against.
  const bound: ExploreOptions = { nmis: 0, preemptions: 2, maxDepth: 60 };

  // The four-CPU tests (IRIW, CoRR2, IRIW+xchgs; all forbidden under both models) cost a
  // minute together: test/litmus's enumerator covers them.
  const small = LITMUS.filter((t) => t.threads.length <= 3);
  it.each(small.map((t) => [t.name, t] as const))('%s: the named outcome is found exactly when the model allows it', (_name, t) => {
    for (const model of ['tso', 'sc'] as const) {
      const r = explore(litmusMachine(t, model), { ...bound, check: outcomeCheck(t) });
      expect(r.complete).toBe(true);
      expect([model, r.bugs.length > 0 ? 'allowed' : 'forbidden']).toEqual([model, t[model]]);
      for (const ce of r.bugs) {
        const m = litmusMachine(t, model);
        replay(m, ce.choices);
        expect(outcomeCheck(t)(m)).not.toBeNull();
      }
    }
  });

  it('SB is found with no preemption, with and without the visited-state table', () => {
    const sb = LITMUS.find((t) => t.name === 'SB')!;
    for (const stateful of [true, false]) {
      const r = explore(litmusMachine(sb, 'tso'), { nmis: 0, preemptions: 0, maxDepth: 40, stateful, check: outcomeCheck(sb) });
      // CPU0 runs to its hlt, CPU1 then loads x before CPU0's store drains.
      expect(r.bugs.map((b) => [b.kind, b.preemptions])).toEqual([['invariant', 0]]);
    }
  });

  it('the state hash sees buffered stores: same registers and memory, different buffers', () => {
    // Two stores of the same value: after store, drain, store the buffer holds one entry;
    // after store, drain, store, drain it holds none; memory and registers agree.
    const sb = LITMUS.find((t) => t.name === 'SB')!;
    const m = litmusMachine(sb, 'tso');
    const mark = m.snapshot().mark;
    m.take({ kind: 'step', cpu: 1 }); // movq $1, y: buffered
    m.take({ kind: 'drain', cpu: 1 });
    m.cpu(1).setRipBig(compileLitmus(sb).entry[1]); // run the same store again
    m.take({ kind: 'step', cpu: 1 });
    const buffered = stateHash(m, mark);
    m.take({ kind: 'drain', cpu: 1 });
    expect(m.cpu(1).drainable).toBe(0);
    expect(stateHash(m, mark)).not.toBe(buffered);
  });
});

// CPU0 sends itself an NMI (x2APIC ICR, its own APIC ID) and then stores `after`; its
// NMI handler records what it finds there. Delivered at the ICR write (the default),
// the NMI is taken before the store; in flight, it may come after.
const SELF_NMI = `
  _start:
    mov $0x830, %ecx
    mov $0x400, %eax
    xor %edx, %edx
    wrmsr
    movq $1, after(%rip)
    hlt
  nmi:
    mov after(%rip), %rax
    mov %rax, seen(%rip)
    hlt
  .data
  after: .quad 0
  seen: .quad -1
`;

describe('the explorer with IPI latency: arrivals are choices', () => {
  function selfNmi(): { m: Machine; late: (m: Machine) => Bug | null } {
    const g = guest(SELF_NMI, { cpus: 1, gates: { 2: ['nmi', 1] } });
    const late = (m: Machine): Bug | null =>
      m.mem.readU64(g.sym('seen')) === 1n ? { kind: 'invariant', summary: 'the self-NMI came after the store', signature: 'late' } : null;
    return { m: g.m, late };
  }

  it.each([true, false])('a late self-NMI is found only with arrivals as choices (reduce %s)', (reduce) => {
    const bound: ExploreOptions = { nmis: 0, preemptions: 0, maxDepth: 30, reduce };
    const now = selfNmi();
    const clean = explore(now.m, { ...bound, check: now.late });
    expect(clean.complete).toBe(true);
    expect(clean.bugs).toEqual([]);

    const inFlight = selfNmi();
    inFlight.m.setIpiChoice(true);
    const r = explore(inFlight.m, { ...bound, check: inFlight.late });
    expect(r.bugs.map((b) => [b.kind, b.nmis, b.preemptions])).toEqual([['invariant', 0, 0]]);
    const ce = r.bugs[0];
    expect(ce.choices.filter((c) => c.kind === 'ipi')).toEqual([{ kind: 'ipi', cpu: 0, from: 0 }]);
    const m = selfNmi();
    m.m.setIpiChoice(true);
    replay(m.m, ce.choices);
    expect(m.late(m.m)).not.toBeNull();
  });
});
