// The explorer's asynchronous choices, where no CPU runs: a store-buffer drain (x86-TSO)
// and an IPI's arrival (IPI latency). On small guest programs: the store-buffering
// litmus outcome is an invariant violation the search finds under TSO and never under
// SC; a self-NMI that arrives late is found only when arrivals are choices; both with
// and without the reductions; and the state hash tells apart states that differ only
// in what is still on its way.

import { guest } from '../helpers/guest';
import { RBX } from '../../emu/regs';
import { explore, replay, stateHash, type Bug, type ExploreOptions } from '../../explore/search';
import type { Machine } from '../../emu/machine';

// SB (Owens, Sarkar and Sewell, "A Better x86 Memory Model: x86-TSO", TPHOLs 2009):
// each CPU stores to one location, then loads the other. Both loads reading 0 is
// allowed under TSO (each store still in its CPU's buffer), impossible under SC.
const SB = `
  _start:
    movq $1, x(%rip)
    mov y(%rip), %rbx
    hlt
  other:
    movq $1, y(%rip)
    mov x(%rip), %rbx
    hlt
  .data
  x: .quad 0
  y: .quad 0
`;

function sb(memoryModel: 'sc' | 'tso'): Machine {
  const g = guest(SB, { memoryModel, cpus: 2 });
  g.m.cpu(1).setRipBig(g.sym('other'));
  return g.m;
}

/** Both CPUs halted having read 0: the outcome SC forbids. */
function bothZero(m: Machine): Bug | null {
  const done = m.cpus.every((c) => c.halted);
  if (done && m.cpu(0).getReg(RBX) === 0n && m.cpu(1).getReg(RBX) === 0n) {
    return { kind: 'invariant', summary: 'SB: both loads read 0', signature: 'sb' };
  }
  return null;
}

describe('the explorer under x86-TSO: drains are choices', () => {
  const bound: ExploreOptions = { nmis: 0, preemptions: 1, maxDepth: 40, check: bothZero };

  it.each([true, false])('SB: the TSO-only outcome is found under tso (stateful %s), never under sc', (stateful) => {
    const tso = explore(sb('tso'), { ...bound, stateful });
    expect(tso.complete).toBe(true);
    // No preemption needed: CPU0 runs to its hlt, CPU1 then loads x before CPU0's store drains.
    expect(tso.bugs.map((b) => [b.kind, b.preemptions])).toEqual([['invariant', 0]]);
    // The counterexample replays to the same outcome.
    const ce = tso.bugs[0];
    const m = sb('tso');
    replay(m, ce.choices);
    expect(bothZero(m)).not.toBeNull();

    const sc = explore(sb('sc'), { ...bound, stateful });
    expect(sc.complete).toBe(true);
    expect(sc.bugs).toEqual([]);
  });

  it('with an MFENCE between store and load, tso is clean too', () => {
    const g = guest(SB.replace(/movq \$1, (x|y)\(%rip\)/g, 'movq $$1, $1(%rip)\n    mfence'), { memoryModel: 'tso', cpus: 2 });
    g.m.cpu(1).setRipBig(g.sym('other'));
    const r = explore(g.m, bound);
    expect(r.complete).toBe(true);
    expect(r.bugs).toEqual([]);
  });

  it('the state hash sees buffered stores: same registers and memory, different buffers', () => {
    // Two stores of the same value: after store, drain, store the buffer holds one entry;
    // after store, drain, store, drain it holds none; memory and registers agree.
    const m = sb('tso');
    const mark = m.snapshot().mark;
    m.take({ kind: 'step', cpu: 1 }); // movq $1, y: buffered
    m.take({ kind: 'drain', cpu: 1 });
    const s = m.snapshot();
    m.cpu(1).setRipBig(m.symbols.resolve('other')!); // run the same store again
    m.take({ kind: 'step', cpu: 1 });
    const buffered = stateHash(m, mark);
    m.take({ kind: 'drain', cpu: 1 });
    expect(m.cpu(1).drainable).toBe(0);
    expect(stateHash(m, mark)).not.toBe(buffered);
    m.restore(s);
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
