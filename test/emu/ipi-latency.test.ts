// IPI delivery latency (docs/notes/ipi-latency.md): an IPI written to the ICR is in
// flight and arrives later — in run() after a seeded delay (default: none, delivered at
// the ICR write exactly as before), for the explorer when an 'ipi' choice takes it;
// the xAPIC ICR's delivery-status bit reads "send pending" meanwhile, x2APIC's never.

import { guest } from '../helpers/guest';
import type { Machine } from '../../emu/machine';

// CPU0 sends an NMI to CPU1 (x2APIC ICR, destination APIC ID 1) and halts; CPU1 counts
// in a loop; its NMI handler stores the count it interrupted and halts.
const X2 = `
  _start:
    mov $0x830, %ecx
    mov $0x400, %eax        # delivery mode NMI
    mov $1, %edx            # destination: APIC ID 1
    wrmsr
    rdmsr                   # the ICR read back while the IPI is in flight
    mov %eax, icr_read(%rip)
    hlt
  counter:
    xor %rbx, %rbx
  1:
    inc %rbx
    jmp 1b
  nmi:
    mov %rbx, seen(%rip)
  2:
    hlt
    jmp 2b
  .data
  seen: .quad -1
  icr_read: .quad 0
`;

function x2(): ReturnType<typeof guest> {
  const g = guest(X2, { cpus: 2, gates: { 2: ['nmi', 1] } });
  g.m.cpu(1).setRipBig(g.sym('counter'));
  return g;
}

/** The count CPU1 had reached when the NMI came, after a quantum-1 round-robin run. */
function seenAfterRun(m: Machine, sym: (s: string) => bigint): bigint {
  m.run({ schedule: { kind: 'round-robin', quantum: 1 }, maxSteps: 400, livelockSteps: 0 });
  return m.mem.readU64(sym('seen'));
}

describe('IPI latency in run()', () => {
  it('none by default: the NMI arrives at the ICR write, taken at the target\'s next step', () => {
    const g = x2();
    const seen = seenAfterRun(g.m, g.sym);
    // Round-robin quantum 1: CPU0's wrmsr is its 4th step; CPU1 has run xor, inc, jmp, then takes the NMI.
    expect(seen).toBe(1n);
    expect(g.m.ipisInFlight).toEqual([]);
  });

  it('a fixed delay of d steps: the target runs on d machine steps before the NMI comes', () => {
    const counts = [0, 10, 40].map((d) => {
      const g = x2();
      g.m.setIpiLatency({ min: d, max: d, seed: 1 });
      return seenAfterRun(g.m, g.sym);
    });
    expect(counts[0]).toBe(1n);
    // CPU1 runs every other step (CPU0 halts after 4 steps): it gets further the longer the flight.
    expect(counts[1]).toBeGreaterThan(counts[0]);
    // Two instructions per count (inc, jmp): 30 more steps in flight, about 15 more counts.
    expect(counts[2]).toBeGreaterThan(counts[1] + 10n);
  });

  it('seeded: the same seed gives the same delay, different seeds differ somewhere', () => {
    const run = (seed: number): bigint => {
      const g = x2();
      g.m.setIpiLatency({ min: 1, max: 50, seed });
      return seenAfterRun(g.m, g.sym);
    };
    expect(run(7)).toBe(run(7));
    expect(new Set([1, 2, 3, 4, 5, 6].map(run)).size).toBeGreaterThan(1);
  });

  it('a snapshot holds the IPIs in flight and the generator', () => {
    const g = x2();
    g.m.setIpiLatency({ min: 5, max: 30, seed: 3 });
    g.m.step(0, 4); // to the wrmsr: the NMI is in flight
    expect(g.m.ipisInFlight.map((e) => [e.from, e.to, e.nmi])).toEqual([[0, 1, true]]);
    const s = g.m.snapshot();
    const a = seenAfterRun(g.m, g.sym);
    g.m.restore(s);
    expect(g.m.ipisInFlight.length).toBe(1);
    expect(seenAfterRun(g.m, g.sym)).toBe(a);
  });

  it('x2APIC has no delivery status: bit 12 of the ICR reads 0 while the IPI is in flight', () => {
    const g = x2();
    g.m.setIpiLatency({ min: 50, max: 50, seed: 1 });
    g.m.step(0, 6);
    expect(g.m.ipisInFlight.length).toBe(1);
    expect(g.m.mem.readU64(g.sym('icr_read')) & 0x1000n).toBe(0n);
  });
});

describe("IPI arrival as the explorer's choice", () => {
  it("an IPI stays in flight until take({kind: 'ipi'}); enabled() offers it", () => {
    const g = x2();
    const m = g.m;
    m.setIpiChoice(true);
    for (let i = 0; i < 4; i++) m.take({ kind: 'step', cpu: 0 }); // to the wrmsr
    expect(m.enabled()).toContainEqual({ kind: 'ipi', cpu: 1, from: 0 });
    for (let i = 0; i < 20; i++) m.take({ kind: 'step', cpu: 1 });
    // Without the choice, run() never delivers it.
    m.run({ schedule: { kind: 'round-robin', quantum: 1 }, maxSteps: m.steps + 50, livelockSteps: 0 });
    expect(m.mem.readU64(g.sym('seen'))).toBe(-1n & 0xffffffffffffffffn);
    const s = m.snapshot();
    m.take({ kind: 'ipi', cpu: 1, from: 0 });
    expect(m.ipisInFlight).toEqual([]);
    expect(m.enabled().some((c) => c.kind === 'ipi')).toBe(false);
    m.take({ kind: 'step', cpu: 1 });
    expect(m.cpu(1).contexts.map((c) => c.kind)).toEqual(['NMI']);
    m.restore(s);
    expect(m.enabled()).toContainEqual({ kind: 'ipi', cpu: 1, from: 0 });
  });

  it('turning the choice off hands the IPIs in flight back to run(), which delivers them', () => {
    const g = x2();
    const m = g.m;
    m.setIpiChoice(true);
    for (let i = 0; i < 4; i++) m.take({ kind: 'step', cpu: 0 });
    expect(m.ipisInFlight.length).toBe(1);
    m.setIpiChoice(false);
    m.run({ schedule: { kind: 'round-robin', quantum: 1 }, maxSteps: m.steps + 50, livelockSteps: 0 });
    expect(m.ipisInFlight).toEqual([]);
    expect(m.mem.readU64(g.sym('seen'))).not.toBe(-1n & 0xffffffffffffffffn);
  });
});

// xAPIC: CPU0 sends a fixed IPI to itself by MMIO and polls the ICR's delivery-status
// bit with PAUSE until the APIC has sent it, counting the polls.
const XAPIC = `
  _start:
    movabs $0xfee00000, %rsi
    movl $0x01000000, 0x310(%rsi)  # ICR high: destination APIC ID 1
    movl $0x00000040, 0x300(%rsi)  # ICR low: fixed, vector 0x40: sends
    xor %rbx, %rbx
  1:
    testl $0x1000, 0x300(%rsi)
    jz 2f
    inc %rbx
    pause
    jmp 1b
  2:
    mov %rbx, polls(%rip)
    hlt
  idle:
    hlt
    jmp idle
  .data
  polls: .quad -1
`;

describe('xAPIC delivery status', () => {
  function polls(latency: number): { polls: bigint; stop: string; irr: number } {
    const g = guest(XAPIC, { cpus: 2, apicMode: 'xapic' });
    g.m.cpu(1).setRipBig(g.sym('idle'));
    if (latency > 0) g.m.setIpiLatency({ min: latency, max: latency, seed: 1 });
    const r = g.m.run({ schedule: { kind: 'round-robin', quantum: 1 }, maxSteps: 100_000 });
    return { polls: g.m.mem.readU64(g.sym('polls')), stop: r.stop, irr: g.m.cpu(1).apic.irr[2] };
  }

  it('reads idle at once without latency', () => {
    expect(polls(0)).toEqual({ polls: 0n, stop: 'halted', irr: 1 });
  });

  it('reads "send pending" until the IPI arrives; the polling CPU is not left blocked by the spin detector', () => {
    // The poll loop is a fixed point the spin detector blocks on; the arrival ends it.
    const r = polls(300);
    expect(r.polls).toBeGreaterThan(0n);
    expect(r.stop).toBe('halted');
    expect(r.irr).toBe(1);
  });
});
