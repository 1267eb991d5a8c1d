// Host-routine steps as private steps (explore/README.md, reductions: private steps).
// A step of a host routine counts as private when everything it touched is private,
// and that includes the kernel model's JS-side state its body reads or writes: each
// such field is a pseudo-word of the step's footprint (kernel-model/linux/shared-state.ts).
// Checked here: (1) on two host routines that share one JS-side flag, the reduced
// search finds exactly what brute force finds when the flag is a SharedCell, and misses
// the bug when it is a plain variable (so the noting is what makes it sound); (2) every
// field of the kernel model that host routines read (its host-read state part) notes
// its pseudo-word when read and when written; (3) on a real scenario with host
// routines, the private-step reduction reports what the search without it reports.

import { guest } from '../helpers/guest';
import { explore, type ExploreOptions, type Bug } from '../../explore/search';
import type { Machine } from '../../emu/machine';
import { exploreScenario } from '../../explore/scenario';
import { Footprint } from '../../emu/memory';
import type { HostGen } from '../../emu/host';
import { SharedCell, MODEL_WORD_BASE, PROTOCOL_WORD, protocolShared } from '../../kernel-model/linux/shared-state';
import { prepareScenario } from '../../kernel-model/scenario/run';
import { loadScenario } from '../../kernel-model/scenario/scenario-file';
import { note, read, waitUntil } from '../../kernel-model/linux/hostlib';

/**
 * CPU0 calls `writer`: it sets the flag in one step and clears it in the next. CPU1
 * calls `reader`: it reads the flag in one step and, if it saw it set, waits for
 * lock_a (held for ever) two steps later: a deadlock only if CPU1's read falls between
 * CPU0's two writes, which needs a switch between two of CPU0's host steps that touch
 * nothing but the flag.
 */
const SOURCE = `
  .text
  .globl cpu0
cpu0:
  call writer
1:
  hlt
  jmp 1b
  .globl cpu1
cpu1:
  call reader
2:
  hlt
  jmp 2b
writer:
  ret
reader:
  ret
  .data
lock_a: .quad 1
`;

interface Flag {
  get(): boolean;
  set(v: boolean): void;
}

function sharedFlagMachine(noted: boolean): ReturnType<typeof guest> {
  const g = guest(SOURCE, { cpus: 2, entry: 'cpu0' });
  g.m.cpu(1).setRipBig(g.sym('cpu1'));
  let plain = false;
  const flag: Flag = noted ? new SharedCell(g.m.mem, 1000, false) : { get: () => plain, set: (v) => void (plain = v) };
  // JS-side state joins snapshots, as the kernel model's does (its host-read part).
  g.m.addStatePart('flag', { saveState: () => (noted ? (flag as SharedCell<boolean>).raw() : plain), loadState: (v: boolean) => (noted ? (flag as SharedCell<boolean>).load(v) : void (plain = v)) }, { readByHostRoutines: true });
  const lock = g.sym('lock_a');
  g.m.bindHost(g.sym('writer'), 'writer', function* (): HostGen {
    yield* note('writer starts');
    flag.set(true);
    yield* note('flag set');
    flag.set(false);
    yield* note('flag cleared');
    yield* note('writer returns');
  });
  g.m.bindHost(g.sym('reader'), 'reader', function* (): HostGen {
    yield* note('reader starts');
    const seen = flag.get();
    yield* note(`flag read: ${seen}`);
    yield* note('reader goes on');
    if (seen) yield* waitUntil(lock, 8, (v) => v === 0n, 'lock_a (held for ever)');
  });
  return g;
}

/**
 * Serializing reads the code-write sequence: CPU1 runs CPUID and then a `mov` whose
 * immediate CPU0 rewrites once CPU1 is ready. If CPU1 serializes after the rewrite,
 * it runs the new `mov` legitimately and then spins on lock_a (held for ever): a
 * deadlock. If it serialized before, the XMC checker reports the `mov`, and that
 * schedule ends there. CPUID touches no memory, so without the code-write sequence in
 * its footprint it ran on as a private step before CPU0 could write, and the deadlock
 * was never reached.
 */
const SERIALIZE_LATE = `
  .text
  .globl cpu0
cpu0:
1:
  pause
  cmpq $0, ready(%rip)
  je 1b
  movb $1, site+1(%rip)
2:
  hlt
  jmp 2b
  .globl cpu1
cpu1:
  movq $1, ready(%rip)
  xor %eax, %eax
  cpuid
  /* Long NOPs: the bytes a step is taken to fetch (15 from RIP) must not reach site. */
  .byte 0x0f, 0x1f, 0x80, 0, 0, 0, 0
  .byte 0x0f, 0x1f, 0x80, 0, 0, 0, 0
  .byte 0x0f, 0x1f, 0x80, 0, 0, 0, 0
  .byte 0x0f, 0x1f, 0x80, 0, 0, 0, 0
site:
  mov $0, %eax
  test %eax, %eax
  jz 4f
3:
  pause
  cmpq $0, lock_a(%rip)
  jne 3b
4:
  hlt
  jmp 4b
  .data
ready: .quad 0
lock_a: .quad 1
`;

function serializeLateMachine(): ReturnType<typeof guest> {
  const g = guest(SERIALIZE_LATE, { cpus: 2, entry: 'cpu0' });
  g.m.cpu(1).setRipBig(g.sym('cpu1'));
  return g;
}

function summary(r: ReturnType<typeof explore>): string[] {
  return r.bugs.map((b) => `${b.kind} ${b.signature} nmis=${b.nmis} preemptions=${b.preemptions}`).sort();
}

describe('host-routine steps as private steps', () => {
  const bound: ExploreOptions = { nmis: 0, preemptions: 1, maxDepth: 60 };

  it('JS-side state two routines share is in the footprint: the reduced search finds what brute force finds', () => {
    const brute = explore(sharedFlagMachine(true).m, { ...bound, stateful: false, reduce: false });
    expect(brute.complete).toBe(true);
    expect(brute.bugs.map((b) => [b.kind, b.preemptions])).toEqual([['deadlock', 1]]);
    for (const o of [{ stateful: false, reduce: true }, { stateful: true, reduce: true }]) {
      const reduced = explore(sharedFlagMachine(true).m, { ...bound, ...o });
      expect(reduced.complete).toBe(true);
      expect(summary(reduced)).toEqual(summary(brute));
      // Ownership is learnt: the flag turned shared after a private step of CPU0 relied on it.
      expect(reduced.restarts).toBeGreaterThan(0);
    }
  });

  it('left out of the footprint, the same flag hides the deadlock from the reduced search (what the noting prevents)', () => {
    const brute = explore(sharedFlagMachine(false).m, { ...bound, stateful: false, reduce: false });
    expect(brute.bugs.map((b) => b.kind)).toEqual(['deadlock']);
    const reduced = explore(sharedFlagMachine(false).m, { ...bound, stateful: true, reduce: true });
    expect(reduced.complete).toBe(true);
    expect(reduced.bugs).toEqual([]);
  });

  it('a serializing step reads the code-write sequence: serializing after another CPU rewrote code is a choice (as brute force)', () => {
    // The XMC checker's reports are bugs here, as in a scenario search (explore/scenario.ts).
    const check = (m: Machine): Bug | null => (m.xmc.violations.length ? { kind: 'xmc', summary: 'XMC', signature: `CPU${m.xmc.violations[0].cpu}` } : null);
    const brute = explore(serializeLateMachine().m, { ...bound, check, stateful: false, reduce: false });
    expect(brute.complete).toBe(true);
    expect(brute.bugs.map((b) => b.kind).sort()).toEqual(['deadlock', 'xmc']);
    const reduced = explore(serializeLateMachine().m, { ...bound, check, stateful: true, reduce: true });
    expect(reduced.complete).toBe(true);
    expect(summary(reduced)).toEqual(summary(brute));
  });

  it("every field of the kernel model's host-read state notes its own pseudo-word when read and when written", () => {
    const run = prepareScenario(loadScenario('fixtures/scenarios/explore/fixed-2cpu.json'), {}, 'fixed-2cpu.json');
    const { m, k } = run;
    const parts = m.saveParts(true);
    const state = parts.get('kernel-model') as Record<string, unknown>;
    const fields = Object.keys(state);
    expect(fields.length).toBeGreaterThan(0);
    const fp = new Footprint();
    const seen = new Set<number>();
    const fieldsOf = k as unknown as Record<string, unknown>;
    for (const f of fields) {
      fp.clear();
      m.mem.footprint = fp;
      let value: unknown;
      try {
        value = fieldsOf[f];
        fieldsOf[f] = value;
      } finally {
        m.mem.footprint = null;
      }
      // One pseudo-word per field, read then written, in the model's range.
      expect([f, fp.reads.length, fp.writes.length]).toEqual([f, 1, 1]);
      expect(fp.reads[0]).toBe(fp.writes[0]);
      expect(fp.reads[0]).toBeLessThanOrEqual(MODEL_WORD_BASE);
      expect(seen.has(fp.reads[0])).toBe(false);
      seen.add(fp.reads[0]);
    }
  });

  it("a routine's operation on the protocol's guest-memory state notes the protocol word; other operations do not", () => {
    const g = guest(SOURCE, { cpus: 1, entry: 'cpu0' });
    const lock = g.sym('lock_a');
    const ranges = [{ start: lock, end: lock + 8n }];
    const gen = protocolShared(g.m.mem, () => ranges, (function* (): HostGen {
      yield* read(lock + 8n, 8);
      yield* read(lock + 4n, 4);
    })());
    const fp = new Footprint();
    g.m.mem.footprint = fp;
    try {
      gen.next();
      expect(fp.reads).toEqual([]);
      gen.next(0n);
      expect([fp.reads, fp.writes]).toEqual([[PROTOCOL_WORD], [PROTOCOL_WORD]]);
    } finally {
      g.m.mem.footprint = null;
    }
  });

  it('on a scenario with host routines, the private-step reduction reports what the search without it reports', () => {
    // publish-before-clear: README finding 1, a deadlock at 0 preemptions; at 1
    // preemption host steps of both CPUs meet. Table only vs table and reduction.
    const file = 'fixtures/scenarios/explore/mutants/publish-before-clear.json';
    const o = { nmis: 0, preemptions: 1, maxDepth: 5000 };
    const plain = exploreScenario(file, { ...o, reduce: false }).result;
    const reduced = exploreScenario(file, { ...o, reduce: true }).result;
    expect(plain.complete).toBe(true);
    expect(reduced.complete).toBe(true);
    const bugs = (r: typeof plain): string[] => r.bugs.map((b) => `${b.kind} ${b.signature} nmis=${b.nmis} preemptions=${b.preemptions}`).sort();
    expect(bugs(reduced)).toEqual(bugs(plain));
    expect(bugs(reduced).length).toBeGreaterThan(0);
  }, 600_000);
});
