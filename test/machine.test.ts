// The machine as a whole: host routines, PAUSE-spin blocking, deadlock detection,
// determinism of schedules, and robustness against random code.

import { guest } from './helpers/guest';
import type { HostGen, HostContext } from '../emu/host';
import type { Probe } from '../emu/probe';
import type { Cpu } from '../emu/cpu';
import type { Insn } from '../emu/insn';
import { execCode } from '../emu/exec';
import { Prng } from '../emu/scheduler';
import { createHash } from 'crypto';

describe('host routines', () => {
  it('run as generators bound to text, call guest functions, wait on memory, and return in RAX', () => {
    const g = guest(
      `
      .text
      .globl _start
      _start:
        mov $5, %rdi
        call host_fn
        mov %rax, %r12
        hlt
      double_it:                 # a guest function the host routine calls
        lea (%rdi,%rdi), %rax
        ret
      setter:                    # CPU 1 sets the flag after a while
        mov $100, %ecx
      1:
        dec %ecx
        jnz 1b
        movq $42, flag(%rip)
        hlt
      host_fn:
        ud2                      # replaced by the host routine
      .data
      flag: .quad 0
      `,
      { cpus: 2 },
    );
    const steps: string[] = [];
    g.m.bindHost(g.sym('host_fn'), 'host_fn', function* (ctx: HostContext): HostGen {
      const doubled = yield { op: 'call', target: g.sym('double_it'), args: [ctx.args[0]] };
      steps.push(`doubled=${doubled}`);
      const flag = yield { op: 'wait', addr: g.sym('flag'), size: 8, until: (v) => v !== 0n, what: 'flag set' };
      steps.push(`flag=${flag}`);
      return (doubled as bigint) + (flag as bigint);
    });
    g.m.cpu(1).setRipBig(g.sym('setter'));
    const r = g.m.run({ schedule: { kind: 'round-robin', quantum: 1 }, maxSteps: 10000 });
    expect(r.stop).toBe('halted');
    expect(steps).toEqual(['doubled=10', 'flag=42']);
    expect(g.m.cpu(0).getReg(12)).toBe(52n);
    // While it waited, CPU 0 was blocked, not spinning: few steps for it.
    expect(g.m.cpu(0).retired).toBeLessThan(20);
  });

  it('resume after an NMI taken between two steps', () => {
    const g = guest(
      `
      .text
      .globl _start
      _start:
        call host_fn
        hlt
      nmi:
        incq nmis(%rip)
        iretq
      host_fn:
        ud2
      .data
      nmis: .quad 0
      counter: .quad 0
      `,
      { gates: { 2: ['nmi', 1] } },
    );
    g.m.bindHost(g.sym('host_fn'), 'host_fn', function* (): HostGen {
      for (let i = 0n; i < 10n; i++) yield { op: 'write', addr: g.sym('counter'), size: 8, value: i + 1n };
      return 7n;
    });
    g.m.step(0, 4);
    g.m.nmi(0);
    g.m.run({ stopOnHlt: true, maxSteps: 1000 });
    expect(g.m.mem.readU64(g.sym('counter'))).toBe(10n);
    expect(g.m.mem.readU64(g.sym('nmis'))).toBe(1n);
    expect(g.m.cpu(0).getReg(0)).toBe(7n);
  });
});

describe('waiting CPUs', () => {
  const ABBA = `
    .text
    # Each CPU takes its first lock, then spins (with PAUSE) for the other: ABBA.
    cpu0:
      movq $1, lock_a(%rip)
      mov $50, %ecx
    1: dec %ecx
      jnz 1b
    2: pause
      cmpq $0, lock_b(%rip)
      jne 2b
      hlt
    cpu1:
      movq $1, lock_b(%rip)
    3: pause
      cmpq $0, lock_a(%rip)
      jne 3b
      hlt
    .data
    lock_a: .quad 0
    lock_b: .quad 0
  `;

  it('a PAUSE spin on unchanged memory blocks the CPU instead of burning steps', () => {
    const g = guest(ABBA, { cpus: 2 });
    g.m.cpu(0).setRipBig(g.sym('cpu0'));
    g.m.cpu(1).setRipBig(g.sym('cpu1'));
    const r = g.m.run({ schedule: { kind: 'round-robin', quantum: 1 }, maxSteps: 1_000_000 });
    expect(r.stop).toBe('deadlock');
    expect(r.steps).toBeLessThan(300);
    for (const c of g.m.cpus) expect(c.blocked?.reason).toBe('spin');
    expect(g.m.blockInfo.get(0)?.detail).toMatch(/lock_b/);
    expect(g.m.blockInfo.get(1)?.detail).toMatch(/lock_a/);
  });

  it('a spin loop that calls a function (rewriting the same return address) still blocks', () => {
    const g = guest(
      `
      .text
      spinner:
      1: pause
        call check
        test %eax, %eax
        jz 1b
        hlt
      check:
        mov flag(%rip), %eax
        ret
      setter:
        mov $2000, %ecx
      2: dec %ecx
        jnz 2b
        movl $1, flag(%rip)
        hlt
      .data
      flag: .long 0
      `,
      { cpus: 2 },
    );
    g.m.cpu(0).setRipBig(g.sym('spinner'));
    g.m.cpu(1).setRipBig(g.sym('setter'));
    const r = g.m.run({ schedule: { kind: 'round-robin', quantum: 1 }, maxSteps: 1_000_000 });
    expect(r.stop).toBe('halted');
    expect(g.m.cpu(0).retired).toBeLessThan(40);
    expect(g.m.cpu(1).retired).toBeGreaterThan(4000);
  });

  it('does not block when a location the iteration read changed before its PAUSE (no lost wake-up)', () => {
    const g = guest(
      `
      .text
      spinner:
      1: mov flag(%rip), %eax
        pause
        test %eax, %eax
        jnz 1b
        hlt
      releaser:
        movl $0, flag(%rip)
        hlt
      .data
      flag: .long 1
      `,
      { cpus: 2 },
    );
    g.m.cpu(0).setRipBig(g.sym('spinner'));
    g.m.cpu(1).setRipBig(g.sym('releaser'));
    g.m.step(0, 5); // read 1, PAUSE (start watching), test, jnz, read 1 again (watched)
    g.m.step(1, 1); // the other CPU releases the flag
    g.m.step(0, 1); // PAUSE: same registers, but what it read is stale: it must not block
    expect(g.m.cpu(0).blocked).toBeNull();
    const r = g.m.run({ schedule: { kind: 'round-robin', quantum: 1 }, maxSteps: 1000 });
    expect(r.stop).toBe('halted');
    expect(g.m.cpu(0).halted).toBe(true);
  });

  it('a blocked spinner wakes when the location changes', () => {
    const g = guest(ABBA, { cpus: 2 });
    g.m.cpu(0).setRipBig(g.sym('cpu0'));
    g.m.cpu(1).setRipBig(g.sym('cpu1'));
    g.m.run({ schedule: { kind: 'round-robin', quantum: 1 }, maxSteps: 1_000_000 });
    g.m.mem.writeU64(g.sym('lock_b'), 0n); // the host releases lock_b
    const r = g.m.run({ schedule: { kind: 'round-robin', quantum: 1 }, maxSteps: 1_000_000 });
    expect(g.m.cpu(0).halted).toBe(true);
    expect(r.stop).toBe('deadlock'); // CPU 1 still waits for lock_a
  });

  it('host waits that wait for each other are a deadlock', () => {
    const g = guest(
      `
      .text
      a: call wait_b
      b: call wait_a
      wait_a: ud2
      wait_b: ud2
      .data
      fa: .quad 0
      fb: .quad 0
      `,
      { cpus: 2 },
    );
    const waiter = (addr: bigint, other: number) =>
      function* (): HostGen {
        yield { op: 'wait', addr, size: 8, until: (v) => v !== 0n, what: `flag of CPU ${other}`, waitsFor: () => ({ cpus: [other], text: '' }) };
      };
    g.m.bindHost(g.sym('wait_b'), 'wait_b', waiter(g.sym('fb'), 1));
    g.m.bindHost(g.sym('wait_a'), 'wait_a', waiter(g.sym('fa'), 0));
    g.m.cpu(0).setRipBig(g.sym('a'));
    g.m.cpu(1).setRipBig(g.sym('b'));
    const r = g.m.run({ maxSteps: 1000 });
    expect(r.stop).toBe('deadlock');
    expect(g.m.blockInfo.get(0)?.waitsFor).toEqual([1]);
    expect(g.m.blockInfo.get(1)?.waitsFor).toEqual([0]);
  });

  it('CPUs that keep going round PAUSE loops that change something are a livelock', () => {
    const g = guest(
      `
      .text
      # Each CPU waits for a flag nobody sets, counting its attempts: never a fixed point.
      waiter:
      1: pause
        incq %r8
        cmpq $0, flag(%rip)
        je 1b
        hlt
      .data
      flag: .quad 0
      `,
      { cpus: 2 },
    );
    for (const c of g.m.cpus) c.setRipBig(g.sym('waiter'));
    const r = g.m.run({ schedule: { kind: 'round-robin', quantum: 10 }, maxSteps: 10_000_000, livelockSteps: 100_000 });
    expect(r.stop).toBe('livelock');
    expect(r.steps).toBeLessThan(1_000_000);
    expect(g.m.cpus.every((c) => (c.spin?.loopLength() ?? 0) >= 100_000)).toBe(true);
    expect(g.m.cpus.every((c) => c.blocked === null)).toBe(true); // spinning, not waiting: no fixed point
  });

  it('a timed event still arrives while every CPU waits', () => {
    const g = guest(ABBA, { cpus: 2 });
    g.m.cpu(0).setRipBig(g.sym('cpu0'));
    g.m.cpu(1).setRipBig(g.sym('cpu1'));
    g.m.at(5000, () => g.m.mem.writeU64(g.sym('lock_a'), 0n));
    const r = g.m.run({ schedule: { kind: 'round-robin', quantum: 1 }, maxSteps: 1_000_000 });
    expect(g.m.cpu(1).halted).toBe(true);
    expect(r.steps).toBeGreaterThanOrEqual(5000);
  });
});

class TraceHash implements Probe {
  readonly h = createHash('sha256');
  n = 0;
  onStep(cpu: Cpu, ins: Insn): void {
    this.h.update(`${cpu.id}:${ins.lo}:${cpu.r[0]};`);
    this.n++;
  }
}

describe('determinism', () => {
  const SRC = `
    .text
    worker:
      mov $300, %ecx
    1:
      mov $1, %eax
    2: xchg %eax, lock(%rip)
      test %eax, %eax
      jz 3f
      pause
      jmp 2b
    3: incq counter(%rip)
      movl $0, lock(%rip)
      dec %ecx
      jnz 1b
      hlt
    .data
    lock: .long 0
    counter: .quad 0
  `;

  function trace(seed: number): { hash: string; steps: number; counter: bigint } {
    const g = guest(SRC, { cpus: 4 });
    for (const c of g.m.cpus) c.setRipBig(g.sym('worker'));
    const p = new TraceHash();
    g.m.probe = p;
    const r = g.m.run({ schedule: { kind: 'random', seed, maxQuantum: 7 }, maxSteps: 1_000_000 });
    return { hash: p.h.digest('hex'), steps: r.steps, counter: g.m.mem.readU64(g.sym('counter')) };
  }

  it('the same seed gives the same trace, bit for bit; another seed another trace', () => {
    const a = trace(1234);
    const b = trace(1234);
    const c = trace(99);
    expect(a).toEqual(b);
    expect(c.hash).not.toBe(a.hash);
    expect(a.counter).toBe(1200n);
    expect(c.counter).toBe(1200n);
  });
});

describe('fuzz: random bytes never crash or hang the host', () => {
  it('each run ends in an exception, hlt or the step limit', () => {
    const rng = new Prng(0xf00d);
    const outcomes = new Map<string, number>();
    for (let i = 0; i < 3000; i++) {
      const code = new Uint8Array(24);
      for (let k = 0; k < code.length; k++) code[k] = rng.below(256);
      const regs = { rax: BigInt(rng.next()), rbx: 0x7fff0000n + BigInt(rng.below(0x1000)), rcx: BigInt(rng.below(64)) };
      const r = execCode({ code, regs, maxSteps: 2000 });
      expect(['hlt', 'step-limit', 'exception']).toContain(r.stop);
      outcomes.set(r.stop, (outcomes.get(r.stop) ?? 0) + 1);
    }
    // Most random code faults quickly; all three endings occur.
    expect(outcomes.get('exception')).toBeGreaterThan(1000);
  });
});
