// x86-TSO store buffers beyond the litmus tests: what drains them (MFENCE, serializing
// instructions, locked host operations, event delivery), what does not (LFENCE,
// SFENCE), the bound on entries, host routines' stores, self-modifying versus
// cross-modifying code, and random schedules that delay drains.

import { guest } from './helpers/guest';
import { runSlice } from '../emu/run';
import type { HostGen } from '../emu/host';
import { RAX, RBX } from '../emu/regs';

const step = (g: ReturnType<typeof guest>, cpu: number, n = 1): void => {
  for (let k = 0; k < n; k++) expect(runSlice(g.m.cpu(cpu), 1)).toBe(1);
};

describe('the store buffer', () => {
  const SRC = `
    _start:
      movq $1, x(%rip)
      mov x(%rip), %rax
      FENCE
      movq $2, y(%rip)
      hlt
    .data
    x: .quad 0
    y: .quad 0
  `;

  it('holds a store from other CPUs while its own loads forward from it', () => {
    const g = guest(SRC.replace('FENCE', 'nop'), { memoryModel: 'tso' });
    step(g, 0, 2);
    expect(g.m.cpu(0).getReg(RAX)).toBe(1n);
    expect(g.m.mem.readU64(g.sym('x'))).toBe(0n);
    expect(g.m.cpu(0).drainable).toBe(1);
    g.m.cpu(0).drainOne();
    expect(g.m.mem.readU64(g.sym('x'))).toBe(1n);
  });

  it.each([
    ['mfence', true],
    ['cpuid', true],
    ['lock orq $0, y(%rip)', true],
    ['xchg %rbx, y(%rip)', true],
    ['lfence', false],
    ['sfence', false],
  ])('%s drains it: %s', (fence, drains) => {
    const g = guest(SRC.replace('FENCE', fence), { memoryModel: 'tso' });
    step(g, 0, 3);
    expect(g.m.mem.readU64(g.sym('x'))).toBe(drains ? 1n : 0n);
  });

  it('is FIFO and bounded: a store beyond storeBufferSize pushes the oldest out', () => {
    const g = guest(
      `_start:
        movq $1, x(%rip)
        movq $2, y(%rip)
        movq $3, x(%rip)
        hlt
      .data
      x: .quad 0
      y: .quad 0`,
      { memoryModel: 'tso', storeBufferSize: 2 },
    );
    step(g, 0, 3);
    expect(g.m.cpu(0).drainable).toBe(2);
    expect(g.m.mem.readU64(g.sym('x'))).toBe(1n);
    g.m.cpu(0).drainOne();
    expect(g.m.mem.readU64(g.sym('y'))).toBe(2n);
    expect(g.m.mem.readU64(g.sym('x'))).toBe(1n);
    g.m.cpu(0).drainOne();
    expect(g.m.mem.readU64(g.sym('x'))).toBe(3n);
  });

  it('drains before an NMI is delivered (SDM: event delivery serializes)', () => {
    const g = guest(
      `_start:
        movq $1, x(%rip)
        nop
        hlt
      nmi:
        hlt
      .data
      x: .quad 0`,
      { memoryModel: 'tso', gates: { 2: ['nmi', 1] } },
    );
    step(g, 0);
    expect(g.m.mem.readU64(g.sym('x'))).toBe(0n);
    g.m.nmi(0);
    step(g, 0);
    expect(g.m.cpu(0).rip).toBe(g.sym('nmi') + 1n);
    expect(g.m.mem.readU64(g.sym('x'))).toBe(1n);
  });

  it('under sc, nothing is ever buffered', () => {
    const g = guest(SRC.replace('FENCE', 'nop'), { memoryModel: 'sc' });
    step(g, 0);
    expect(g.m.mem.readU64(g.sym('x'))).toBe(1n);
    expect(g.m.cpu(0).stores.length).toBe(0);
  });
});

describe('host routines', () => {
  it('store through the buffer; a locked host operation drains it', () => {
    const g = guest(
      `_start:
        call host_fn
        hlt
      host_fn:
        ud2
      .data
      x: .quad 0
      y: .quad 0`,
      { memoryModel: 'tso', cpus: 2 },
    );
    const x = g.sym('x');
    const y = g.sym('y');
    g.m.bindHost(g.sym('host_fn'), 'host_fn', function* (): HostGen {
      yield { op: 'write', addr: x, size: 8, value: 5n };
      const own = yield { op: 'read', addr: x, size: 8 };
      yield { op: 'xadd', addr: y, size: 8, value: 1n };
      return own as bigint;
    });
    step(g, 0, 3); // call, write, read
    expect(g.m.mem.readU64(x)).toBe(0n);
    expect(g.m.readGuest(1, x, 8)).toBe(0n); // another CPU reads memory
    step(g, 0); // xadd: locked
    expect(g.m.mem.readU64(x)).toBe(5n);
    expect(g.m.mem.readU64(y)).toBe(1n);
    step(g, 0); // return
    expect(g.m.cpu(0).getReg(RAX)).toBe(5n);
  });
});

describe('code written while buffered', () => {
  // patch: `mov $1, %al` (b0 01); the store makes it `mov $2, %al`.
  const SRC = `
    _start:
      movw $0x02b0, patch(%rip)
    patch:
      mov $1, %al
      hlt
  `;

  it('the writing CPU executes its own buffered bytes; another CPU the old ones until the drain', () => {
    const g = guest(SRC, { memoryModel: 'tso', cpus: 2 });
    const other = g.m.cpu(1);
    other.setRipBig(g.sym('patch'));
    step(g, 0); // the store, buffered
    step(g, 1);
    expect(other.getReg(RAX) & 0xffn).toBe(1n);
    step(g, 0); // CPU0 runs patch: its own store
    expect(g.m.cpu(0).getReg(RAX) & 0xffn).toBe(2n);
    expect(g.m.cpu(0).drainable).toBe(1);
    other.setRipBig(g.sym('patch'));
    step(g, 1);
    expect(other.getReg(RAX) & 0xffn).toBe(1n);
    g.m.cpu(0).drainOne();
    other.setRipBig(g.sym('patch'));
    step(g, 1);
    expect(other.getReg(RAX) & 0xffn).toBe(2n);
  });
});

describe('random schedules delay drains', () => {
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

  function both0(memoryModel: 'sc' | 'tso', seed: number): boolean {
    const g = guest(SB, { memoryModel, cpus: 2 });
    g.m.cpu(1).setRipBig(g.sym('other'));
    const r = g.m.run({ schedule: { kind: 'random', seed, maxQuantum: 2 }, maxSteps: 1000 });
    expect(r.stop).toBe('halted');
    return g.m.cpu(0).getReg(RBX) === 0n && g.m.cpu(1).getReg(RBX) === 0n;
  }

  it('store buffering shows up under tso for some seed, never under sc', () => {
    const seeds = Array.from({ length: 30 }, (_, i) => i + 1);
    expect(seeds.some((s) => both0('tso', s))).toBe(true);
    expect(seeds.some((s) => both0('sc', s))).toBe(false);
  });
});

describe('choice points and snapshots', () => {
  const SRC = `
    _start:
      movq $1, x(%rip)
      movq $2, y(%rip)
      mov y(%rip), %rbx
      hlt
    .data
    x: .quad 0
    y: .quad 0
  `;

  it('a buffered store is a drain choice; taking it makes the store visible', () => {
    const g = guest(SRC, { memoryModel: 'tso' });
    g.m.take({ kind: 'step', cpu: 0 });
    expect(g.m.enabled()).toEqual([{ kind: 'step', cpu: 0 }, { kind: 'drain', cpu: 0 }]);
    g.m.take({ kind: 'drain', cpu: 0 });
    expect(g.m.mem.readU64(g.sym('x'))).toBe(1n);
    expect(g.m.enabled()).toEqual([{ kind: 'step', cpu: 0 }]);
  });

  it('snapshots hold the store buffer and the TLB; a restore continues identically', () => {
    const g = guest(SRC, { memoryModel: 'tso' });
    g.m.take({ kind: 'step', cpu: 0 });
    g.m.take({ kind: 'step', cpu: 0 });
    const s = g.m.snapshot();
    g.m.take({ kind: 'drain', cpu: 0 });
    g.m.take({ kind: 'drain', cpu: 0 });
    expect(g.m.mem.readU64(g.sym('y'))).toBe(2n);
    g.m.restore(s);
    expect(g.m.cpu(0).drainable).toBe(2);
    expect(g.m.mem.readU64(g.sym('x'))).toBe(0n);
    expect(g.m.mem.readU64(g.sym('y'))).toBe(0n);
    g.m.take({ kind: 'step', cpu: 0 }); // forwards from the restored buffer
    expect(g.m.cpu(0).getReg(RBX)).toBe(2n);
  });
});
