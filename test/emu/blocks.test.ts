// Compiled blocks (emu/block.ts) against the interpreter, on the host-CPU oracle's own
// cases: every 'oracle' row's generated instances (flag producer + consumer pairs
// included), and chains of three random instances laid end to end, so that inlined
// instructions hand pending flags to each other, to closures and to faults in the
// middle of a block. Each case runs twice from the same inputs on a machine with
// blocks (compiled before the second run) and on one without; registers, RFLAGS
// (undefined bits included: the model is one), RIP, the exception and both memory
// windows must be identical. The interpreter itself is held to the host CPU by
// test/oracle/oracle.test.ts, so this carries that agreement over to blocks.

import { Machine, setBlocksByDefault } from '../../emu/machine';
import { guest, DATA, type Guest } from '../helpers/guest';
import { RBX, RCX, RDX, RSI } from '../../emu/regs';
import { OP_ROWS } from '../../emu/optable';
import { readFlags, writeFlags } from '../../emu/flags';
import { Prng } from '../../emu/scheduler';
import { formsFor, generateCases, producerForms, type OracleCase } from '../oracle/generate';
import { CODE_BASE, DATA_BASE, STACK_BASE, REGION_SIZE, DATA_WIN, STACK_WIN, DATA_WIN_SIZE, STACK_WIN_SIZE, INSN_ADDR, INSN_OFF } from '../oracle/layout';
import { splitAddr } from '../../emu/memory';

const SEED = 0x0b10c;
const CASES = Number(process.env.BLOCK_CASES ?? 24);
const HLT = 0xf4;

interface Outcome {
  regs: bigint[];
  rflags: number;
  rip: bigint;
  vector: number | null;
  data: Uint8Array;
  stack: Uint8Array;
  /** A block was compiled at the entry (and so ran on the second pass). */
  compiled: boolean;
  /** The entry instruction runs its compiled single-instruction form (emu/block.ts buildSingle). */
  single: boolean;
}

/**
 * Runs `bytes` (followed by HLT; every other byte of the page is HLT too) twice from
 * `c`'s inputs, in slices of `quantum` (1: one instruction at a time, where blocks never
 * fit and hot instructions run their compiled single-instruction forms).
 */
function run(c: OracleCase, bytes: Uint8Array, blocks: boolean, quantum = 1000): Outcome {
  const m = new Machine({ cpus: 1, blocks, blockHot: 2 });
  const page = new Uint8Array(0x1000).fill(HLT);
  page.set(bytes, INSN_OFF);
  m.load(CODE_BASE, page, true);
  m.mem.map(DATA_BASE, REGION_SIZE);
  m.mem.map(STACK_BASE, REGION_SIZE);
  const cpu = m.cpu(0);
  cpu.serialize();
  for (let pass = 0; pass < 2; pass++) {
    m.mem.writeBytes(DATA_BASE, new Uint8Array(REGION_SIZE));
    m.mem.writeBytes(STACK_BASE, new Uint8Array(REGION_SIZE));
    m.mem.writeBytes(DATA_WIN, c.data);
    m.mem.writeBytes(STACK_WIN, c.stack);
    c.regs.forEach((v, i) => cpu.setReg(i, v));
    cpu.gsLo = Number(c.gsBase & 0xffffffffn) | 0;
    cpu.gsHi = Number(c.gsBase >> 32n) | 0;
    cpu.setRipBig(INSN_ADDR);
    writeFlags(cpu, c.rflags);
    cpu.shutdown = null;
    cpu.halted = false;
    m.run({ schedule: { kind: 'round-robin', quantum }, maxSteps: m.steps + 10_000, stopOnHlt: true });
  }
  const [lo, hi] = splitAddr(INSN_ADDR);
  const regs: bigint[] = [];
  for (let i = 0; i < 16; i++) regs.push(cpu.getReg(i));
  return {
    regs,
    rflags: readFlags(cpu),
    rip: cpu.shutdown ? cpu.shutdown.rip : cpu.rip,
    vector: cpu.shutdown ? cpu.shutdown.vector : null,
    data: m.mem.readBytes(DATA_WIN, DATA_WIN_SIZE),
    stack: m.mem.readBytes(STACK_WIN, STACK_WIN_SIZE),
    compiled: cpu.icache.peek(lo, hi)?.block != null,
    single: cpu.icache.peek(lo, hi)?.exec.name === 'single',
  };
}

function differences(a: Outcome, b: Outcome): string[] {
  const out: string[] = [];
  a.regs.forEach((v, i) => {
    if (v !== b.regs[i]) out.push(`reg ${i}: blocks 0x${v.toString(16)}, interpreter 0x${b.regs[i].toString(16)}`);
  });
  if (a.rflags !== b.rflags) out.push(`rflags: blocks 0x${a.rflags.toString(16)}, interpreter 0x${b.rflags.toString(16)}`);
  if (a.rip !== b.rip) out.push(`rip: blocks 0x${a.rip.toString(16)}, interpreter 0x${b.rip.toString(16)}`);
  if (a.vector !== b.vector) out.push(`exception: blocks ${a.vector}, interpreter ${b.vector}`);
  if (!Buffer.from(a.data).equals(Buffer.from(b.data))) out.push('data window differs');
  if (!Buffer.from(a.stack).equals(Buffer.from(b.stack))) out.push('stack window differs');
  return out;
}

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

/**
 * A test guest (test/helpers/guest.ts) with blocks on or off; on, they compile after 16
 * executions rather than the default thousand, so short guest loops get them.
 */
function blockGuest(src: string, blocks: boolean, opts: Parameters<typeof guest>[1]): Guest {
  setBlocksByDefault(blocks);
  let g: Guest;
  try {
    g = guest(src, opts);
  } finally {
    setBlocksByDefault(true);
  }
  for (const cpu of g.m.cpus) if (cpu.icache.blockHot !== 0) cpu.icache.blockHot = 16;
  return g;
}

describe('compiled blocks agree with the interpreter on the oracle cases', () => {
  const rows = OP_ROWS.filter((r) => r.check === 'oracle');
  const producers = rows.flatMap((r) => producerForms(formsFor(r.mnemonic).forms));
  const all: OracleCase[] = [];
  const byName = new Map<string, OracleCase[]>();
  for (const row of rows) {
    const cases = generateCases(row.mnemonic, formsFor(row.mnemonic).forms, CASES, SEED, producers, Math.ceil(CASES / 2));
    if (cases.length === 0) continue;
    byName.set(cases[0].name, cases);
    all.push(...cases);
  }
  const INLINED = ['mov', 'add', 'sub', 'cmp', 'and', 'or', 'xor', 'test', 'inc', 'dec', 'rol', 'ror', 'shl', 'shr', 'lea', 'imul', 'movzx'];
  const inlined = INLINED.flatMap((n) => byName.get(n) ?? []);
  let compiled = 0;
  let total = 0;

  for (const [name, cases] of byName) {
    test(name, () => {
      const p = new Prng(SEED ^ name.length);
      const failures: string[] = [];
      for (const c of cases) {
        // The case itself; it and two random others, end to end; and it between two
        // instances of what blocks inline, which hand it (and take from it) pending flags.
        const a = all[p.below(all.length)];
        const b = all[p.below(all.length)];
        const x = inlined[p.below(inlined.length)];
        const y = inlined[p.below(inlined.length)];
        const chains = [c.bytes, new Uint8Array([...c.bytes, ...a.bytes, ...b.bytes]), new Uint8Array([...x.bytes, ...c.bytes, ...y.bytes])];
        for (const bytes of chains) {
          const on = run(c, bytes, true);
          const off = run(c, bytes, false);
          total++;
          if (on.compiled) compiled++;
          if (off.compiled) failures.push(`${hex(bytes)}: a block was compiled with blocks off`);
          const d = differences(on, off);
          if (d.length) failures.push(`${hex(bytes)} (case ${c.index}): ${d.join('; ')}`);
        }
      }
      expect(failures.slice(0, 5)).toEqual([]);
    });
  }

  test('every pair of inlined mnemonics (flags handed from one to the next)', () => {
    const p = new Prng(SEED);
    const failures: string[] = [];
    for (const xn of INLINED) {
      for (const yn of INLINED) {
        const xs = byName.get(xn) ?? [];
        const ys = byName.get(yn) ?? [];
        for (let k = 0; k < 4 && xs.length && ys.length; k++) {
          const x = xs[p.below(xs.length)];
          const y = ys[p.below(ys.length)];
          const bytes = new Uint8Array([...x.bytes, ...y.bytes]);
          const on = run(x, bytes, true);
          const off = run(x, bytes, false);
          total++;
          if (on.compiled) compiled++;
          const d = differences(on, off);
          if (d.length) failures.push(`${xn} then ${yn}, ${hex(bytes)}: ${d.join('; ')}`);
        }
      }
    }
    expect(failures.slice(0, 5)).toEqual([]);
  });

  test('a rotate, an inlined instruction, then anything (the SF/ZF/AF/PF a rotate keeps are dropped only when dead)', () => {
    // Rotates keep SF, ZF, AF and PF; a block computes them only when something may read
    // them before an instruction overwrites all four. The third instruction reads them
    // (setcc, cmovcc, adc, jcc, pushf …), overwrites them, or is a boundary.
    const p = new Prng(SEED + 2);
    const failures: string[] = [];
    for (const rn of ['rol', 'ror']) {
      const rs = byName.get(rn) ?? [];
      for (const yn of INLINED) {
        const ys = byName.get(yn) ?? [];
        for (let k = 0; k < 6 && rs.length && ys.length; k++) {
          const x = rs[p.below(rs.length)];
          const y = ys[p.below(ys.length)];
          const z = all[p.below(all.length)];
          const bytes = new Uint8Array([...x.bytes, ...y.bytes, ...z.bytes]);
          const d = differences(run(x, bytes, true), run(x, bytes, false));
          if (d.length) failures.push(`${rn}, ${yn}, ${z.name}: ${hex(bytes)}: ${d.join('; ')}`);
        }
      }
    }
    expect(failures.slice(0, 5)).toEqual([]);
  });

  test('one instruction at a time: the compiled single-instruction forms agree too', () => {
    // Quantum 1: the entry, hot on the second pass, runs its compiled form; the flags it
    // leaves are read by the next instruction's closure or compiled form.
    const p = new Prng(SEED + 1);
    const failures: string[] = [];
    let singles = 0;
    let n = 0;
    for (const xn of INLINED) {
      const xs = byName.get(xn) ?? [];
      for (let k = 0; k < 12 && xs.length; k++) {
        const x = xs[p.below(xs.length)];
        const y = all[p.below(all.length)];
        for (const bytes of [x.bytes, new Uint8Array([...x.bytes, ...y.bytes])]) {
          const on = run(x, bytes, true, 1);
          const off = run(x, bytes, false, 1);
          n++;
          if (on.single) singles++;

          if (off.single) failures.push(`${hex(bytes)}: a single-instruction form was compiled with blocks off`);
          const d = differences(on, off);
          if (d.length) failures.push(`${xn}, ${hex(bytes)} (case ${x.index}): ${d.join('; ')}`);
        }
      }
    }
    expect(failures.slice(0, 5)).toEqual([]);
    // The oracle's instances of these mnemonics include 8/16-bit, locked and memory-destination
    // forms, which inline() declines (about 120 of 408 cases here are compiled).
    expect(singles).toBeGreaterThan(n / 5);
  });

  test('blocks were compiled for most of them', () => {
    // Every case is at least two instructions with the HLT: most must have run as a block.
    expect(total).toBeGreaterThan(0);
    expect(compiled).toBeGreaterThan(total / 2);
  });
});

describe('a fault inside a block is taken at an exact boundary', () => {
  // A loop that reads its way off the end of the mapped data: the #PF comes after the
  // block was compiled, in the middle of it, with flags pending from the instructions
  // before the load. The handler halts; everything it would see must match.
  const LOADS = ['movzbl (%rsi), %eax', 'mov (%rsi), %rax', 'xor (%rsi), %rax', 'add 8(%rsi,%rbx,1), %eax', 'cmp (%rsi), %edx'];
  for (const [load, quantum] of LOADS.flatMap((l) => [[l, 100_000], [l, 1]] as const)) {
    test(`${load}, quantum ${quantum}`, () => {
      const src = `
        .text
        .globl _start
      _start:
      1:
        add %rcx, %rdx
        rol $5, %rdx
        cmp %rdx, %rdi
        ${load}
        inc %rsi
        dec %rcx
        jnz 1b
        hlt
      pf:
        hlt
        .data
        .fill 4096, 1, 7
      `;
      const state = (blocks: boolean): unknown => {
        const g = blockGuest(src, blocks, { gates: { 14: ['pf'] } });
        const cpu = g.m.cpu(0);
        cpu.setReg(RSI, DATA + 4096n - 300n);
        cpu.setReg(RCX, 1000n);
        cpu.setReg(RDX, 0x1234n);
        cpu.setReg(RBX, 0n);
        const r = g.m.run({ schedule: { kind: 'round-robin', quantum }, maxSteps: 100_000 });
        const regs: string[] = [];
        for (let i = 0; i < 16; i++) regs.push(cpu.getReg(i).toString(16));
        const frame = Array.from({ length: 5 }, (_, k) => g.m.readGuest(0, cpu.getReg(4) + 8n * BigInt(k), 8).toString(16));
        return { stop: r.stop, steps: r.steps, rip: cpu.rip.toString(16), regs, rflags: readFlags(cpu), frame, cr2: [cpu.cr2Lo, cpu.cr2Hi], faults: g.m.exceptionLog.length };
      };
      const on = state(true);
      const off = state(false);
      expect(on).toEqual(off);
      // The fault was taken in the handler, after a few hundred iterations.
      expect((off as { faults: number }).faults).toBe(1);
    });
  }
});

describe('quantum-1 interleaving is the same with blocks, compiled forms and the batched slots', () => {
  // Three CPUs race on one counter with a plain load, add and store (lost updates
  // depend on the exact interleaving), read the TSC (the step count inside a slot) and
  // take a #PF once their pointer runs off the data. The final memory, registers,
  // RFLAGS, TSC values and step count must not depend on blocks, on the compiled
  // single-instruction forms, or on whether run() batches quantum-1 slots (an
  // onProgress callback makes it go slot by slot).
  const src = `
    .text
    .globl _start
  _start:
  1:
    mov counter(%rip), %rax
    add $3, %rax
    rol $7, %rdx
    xor %rax, %rdx
    mov %rax, counter(%rip)
    rdtsc
    add %rax, %r9
    movzbl (%rsi), %ebx
    add %rbx, %r10
    lea 1(%rsi), %rsi
    sub $1, %rcx
    jnz 1b
    hlt
  fault:
    hlt
    .data
  counter:
    .quad 0
    .fill 4096, 1, 5
  `;
  const state = (blocks: boolean, batched: boolean, memoryModel: 'sc' | 'tso' = 'sc'): unknown => {
    const g = blockGuest(src, blocks, { cpus: 3, gates: { 14: ['fault'] }, memoryModel });
    for (const cpu of g.m.cpus) {
      cpu.setReg(RSI, DATA + 0x2000n - 100n - 40n * BigInt(cpu.id));
      cpu.setReg(RCX, 150n + 100n * BigInt(cpu.id));
      cpu.setReg(RDX, BigInt(cpu.id) * 0x1234567n);
    }
    const opts = batched ? {} : { onProgress: (): void => {} };
    const r = g.m.run({ schedule: { kind: 'round-robin', quantum: 1 }, maxSteps: 20_000, ...opts });
    const cpus = g.m.cpus.map((cpu) => {
      const regs: string[] = [];
      for (let i = 0; i < 16; i++) regs.push(cpu.getReg(i).toString(16));
      return { rip: cpu.rip.toString(16), regs, rflags: readFlags(cpu), halted: cpu.halted };
    });
    return { stop: r.stop, steps: r.steps, counter: g.m.readGuest(0, g.sym('counter'), 8).toString(16), cpus, faults: g.m.exceptionLog.length };
  };
  test('blocks on and off, batched and slot by slot', () => {
    const ref = state(false, false);
    expect(state(true, true)).toEqual(ref);
    expect(state(true, false)).toEqual(ref);
    expect(state(false, true)).toEqual(ref);
    // The race lost updates and the loops faulted, so the comparison covered both.
    const r = ref as { counter: string; faults: number };
    expect(r.faults).toBeGreaterThan(0);
    expect(BigInt('0x' + r.counter)).toBeLessThan(3n * 150n + 3n * 250n + 3n * 350n);
  });
  test('under x86-TSO (stores buffered, drains scheduled as steps of their own): blocks on and off', () => {
    // Blocks inline no store: the counter's store runs its closure into the store
    // buffer, and the inlined loads read through the CPU's accessors, which forward from it.
    const ref = state(false, true, 'tso');
    expect(state(true, true, 'tso')).toEqual(ref);
    expect(ref).not.toEqual(state(false, true));
  });
});

describe('a block that loops to its own start goes round only while the slice has room and its page is unchanged', () => {
  // Two CPUs run tight loops that compile into blocks branching back to themselves.
  // CPU 0's loop reads the TSC (a closure in the block: the step count must be exact
  // there), stores to data and to a word in its own code page (every store moves the
  // page's generation: the block must leave and revalidate); CPU 1's loop is register
  // only, on a page of its own. Slices of 7, 13 and 1000 end in the middle of passes. Registers, RFLAGS, memory
  // and the step count must be those of the interpreter.
  const src = `
    .text
    .globl _start
  _start:
    cmp $0, %rdi
    jne loop2
  1:
    add %rcx, %rdx
    rol $5, %rdx
    rdtsc
    add %rax, %r9
    mov %rdx, out(%rip)
    mov %ecx, word(%rip)
    dec %rcx
    jnz 1b
    hlt
  word:
    .quad 0
    .balign 4096
  loop2:
    add %rcx, %rdx
    rol $3, %rdx
    xor %rdx, %r10
    dec %rcx
    jnz loop2
    hlt
    .data
  out:
    .quad 0
  `;
  for (const quantum of [7, 13, 1000]) {
    test(`quantum ${quantum}`, () => {
      const state = (blocks: boolean): unknown => {
        const g = blockGuest(src, blocks, { cpus: 2 });
        for (const cpu of g.m.cpus) {
          cpu.setReg(7, BigInt(cpu.id)); // rdi: which loop
          cpu.setReg(RCX, 500n + 300n * BigInt(cpu.id));
          cpu.setReg(RDX, 0x1234n + BigInt(cpu.id));
        }
        const r = g.m.run({ schedule: { kind: 'round-robin', quantum }, maxSteps: 50_000, stopOnHlt: false });
        const cpus = g.m.cpus.map((cpu) => {
          const regs: string[] = [];
          for (let i = 0; i < 16; i++) regs.push(cpu.getReg(i).toString(16));
          return { rip: cpu.rip.toString(16), regs, rflags: readFlags(cpu) };
        });
        // CPU 1's loop is a block that loops (CPU 0's is dropped at each store to its page and compiled again).
        const compiled = g.m.cpu(1).icache.peek(...splitAddr(g.sym('loop2')))?.block != null;
        return { stop: r.stop, steps: r.steps, out: g.m.readGuest(0, g.sym('out'), 8).toString(16), word: g.m.readGuest(0, g.sym('word'), 8).toString(16), cpus, compiled };
      };
      const on = state(true) as { compiled: boolean };
      const off = state(false) as { compiled: boolean };
      expect(on.compiled).toBe(true);
      expect({ ...on, compiled: null }).toEqual({ ...off, compiled: null });
    });
  }
});

describe('under x86-TSO an inlined load reads the CPU\'s own buffered store', () => {
  // The store stays in the store buffer (drains are steps the schedule gives between
  // slots); the load after it must forward from the buffer, in a block and in a
  // compiled single-instruction form alike, not read the older value from the cache.
  const src = `
    .text
    .globl _start
  _start:
  1:
    mov %rdx, buf(%rip)
    mov buf(%rip), %rax
    add %rax, %r9
    movzbl buf(%rip), %ebx
    add %rbx, %r10
    inc %rdx
    dec %rcx
    jnz 1b
    hlt
    .data
  buf:
    .quad 0
  `;
  for (const quantum of [1, 1000]) {
    test(`quantum ${quantum}`, () => {
      const state = (blocks: boolean): unknown => {
        const g = blockGuest(src, blocks, { cpus: 1, memoryModel: 'tso' });
        const cpu = g.m.cpu(0);
        cpu.setReg(RCX, 300n);
        cpu.setReg(RDX, 0x100n);
        const r = g.m.run({ schedule: { kind: 'round-robin', quantum }, maxSteps: 10_000, stopOnHlt: true });
        return { stop: r.stop, steps: r.steps, r9: cpu.getReg(9).toString(16), r10: cpu.getReg(10).toString(16), buf: g.m.readGuest(0, g.sym('buf'), 8).toString(16) };
      };
      const on = state(true);
      expect(on).toEqual(state(false));
      // Every load saw the value just stored: r9 is the sum of 0x100 .. 0x100+299.
      expect((on as { r9: string }).r9).toBe((300n * 0x100n + (299n * 300n) / 2n).toString(16));
    });
  }
});

describe('compiled flag readers are right whatever kind of lazy flags reaches them', () => {
  // A compiled reader of the CPU's flags tests for the kind of lazy record the CPU held
  // when it was compiled and reads that kind inline (emu/block.ts cpuFlagsHint). Here
  // each reader is a join reached from five producers in turn (64-bit add, 32-bit sub,
  // 64-bit imul, 32-bit dec, 8-bit add): one matches the hint, the others take the
  // interpreter's readers. Three CPUs start at different counts, so their readers
  // compile with different kinds held. Everything must match the interpreter.
  const READERS = ['rol $1, %r10', 'ror $3, %r10', 'inc %r12', 'dec %r12d', 'jc', 'jz', 'jl', 'jle', 'jo', 'js', 'jp', 'ja', 'jge'];
  const src = `
    .text
    .globl _start
  _start:
  1:
  ${READERS.map((r, i) => `
    test $1, %cl
    jz a${i}
    add %rdx, %rbx
    jmp c${i}
  a${i}:
    test $2, %cl
    jz b${i}
    sub %edx, %esi
    jmp c${i}
  b${i}:
    test $4, %cl
    jz d${i}
    imul %rdx, %rbx
    jmp c${i}
  d${i}:
    test $8, %cl
    jz e${i}
    dec %edi
    jmp c${i}
  e${i}:
    add %dl, %bl
    jmp c${i}
  c${i}:
    ${r.startsWith('j') ? `${r} f${i}\n    inc %r13\n  f${i}:` : r}
    pushf
    pop %rax
    add %rax, %r11
    rol $13, %rdx
    xor %rcx, %rdx
    add %rbx, %rdx`).join('\n')}
    dec %rcx
    jnz 1b
    hlt
  `;
  for (const quantum of [1, 1000]) {
    test(`quantum ${quantum}`, () => {
      const state = (blocks: boolean): unknown => {
        const g = blockGuest(src, blocks, { cpus: 3 });
        for (const cpu of g.m.cpus) {
          cpu.setReg(RCX, 200n + 5n * BigInt(cpu.id));
          cpu.setReg(RDX, 0x9e3779b97f4a7c15n + BigInt(cpu.id));
          cpu.setReg(RBX, 0x7fffffffffffff00n);
          cpu.setReg(RSI, 0x80000000n);
          cpu.setReg(7, 3n); // rdi
        }
        const r = g.m.run({ schedule: { kind: 'round-robin', quantum }, maxSteps: 1_000_000, stopOnHlt: false });
        const cpus = g.m.cpus.map((cpu) => {
          const regs: string[] = [];
          for (let i = 0; i < 16; i++) regs.push(cpu.getReg(i).toString(16));
          return { rip: cpu.rip.toString(16), regs, rflags: readFlags(cpu), halted: cpu.halted };
        });
        return { stop: r.stop, steps: r.steps, cpus };
      };
      const on = state(true);
      expect(on).toEqual(state(false));
      expect((on as { stop: string }).stop).toBe('halted');
    });
  }
});
