// The cross-modifying-code checker in both fetch modes: a naive multi-byte patch of
// code another CPU runs is reported; the int3 three-phase sequence, with every CPU
// serializing between phases, is not. The stale mode also shows what the hazard does.

import { guest } from './helpers/guest';
import type { FetchMode } from '../emu/machine';

const SRC = `
  .text
  .globl _start
  # CPU 1 runs this loop; 'site' is the instruction CPU 0 rewrites.
  runner:
    sti
  loop:
  site:
    mov $1, %eax
    mov %eax, seen(%rip)
    jmp loop

  irq50:                    # the sync IPI: serialize, then acknowledge (do_sync_core)
    push %rax
    push %rbx
    push %rcx
    push %rdx
    mov $0x80b, %ecx
    xor %eax, %eax
    xor %edx, %edx
    wrmsr
    cpuid
    movq $1, acked(%rip)
    pop %rdx
    pop %rcx
    pop %rbx
    pop %rax
    iretq

  bp:                       # a CPU that hits the int3 waits by re-executing it
    decq (%rsp)
    iretq

  sync:                     # IPI CPU 1 and wait until it ran the handler
    movq $0, acked(%rip)
    mov $0x830, %ecx
    mov $0x50, %eax
    mov $1, %edx
    wrmsr
  1:
    pause
    cmpq $0, acked(%rip)
    je 1b
    ret

  # CPU 0: the int3 protocol, one byte at a time where it matters.
  int3_patcher:
    call spin_a_while
    movb $0xcc, site(%rip)
    call sync
    movl $2, site+1(%rip)
    call sync
    movb $0xb8, site(%rip)
    call sync
    call spin_a_while
    hlt

  # CPU 0: a plain multi-byte write while CPU 1 runs the instruction.
  naive_patcher:
    call spin_a_while
    movl $2, site+1(%rip)
    call spin_a_while
    hlt

  spin_a_while:
    mov $200, %ecx
  2:
    dec %ecx
    jnz 2b
    ret

  .data
  acked: .quad 0
  seen: .quad 0
`;

/** A reader that runs the patched site once, late, and two patchers: one skips syncs. */
const LATE = `
  .text
  later_runner:             # CPU 1: busy elsewhere, then runs site2 once
    sti
    mov $3000, %ecx
  3:
    dec %ecx
    jnz 3b
  site2:
    mov $1, %eax
    mov %eax, seen(%rip)
    hlt
  sloppy_patcher:
    movb $0xcc, site2(%rip)
    call sync
    call spin_a_while         # let CPU 1 leave its IPI handler (whose IRETQ serializes)
    movl $2, site2+1(%rip)
    movb $0xb8, site2(%rip)   # no sync after the tail, nor after the first byte
    hlt
  careful_patcher:
    movb $0xcc, site2(%rip)
    call sync
    movl $2, site2+1(%rip)
    call sync
    movb $0xb8, site2(%rip)
    call sync
    hlt
`;

function build(mode: FetchMode, patcher: string): ReturnType<typeof guest> {
  const g = guest(SRC, { cpus: 2, fetchMode: mode, gates: { 0x50: ['irq50'], 3: ['bp'] } });
  g.m.cpu(0).setRipBig(g.sym(patcher));
  g.m.cpu(1).setRipBig(g.sym('runner'));
  return g;
}

describe.each<FetchMode>(['coherent', 'stale'])('XMC checker (%s fetch)', (mode) => {
  it('reports a naive multi-byte patch of code another CPU runs', () => {
    const g = build(mode, 'naive_patcher');
    g.m.run({ schedule: { kind: 'round-robin', quantum: 1 }, maxSteps: 5000 });
    const v = g.m.xmc.violations;
    expect(v.length).toBeGreaterThan(0);
    expect(v[0]).toMatchObject({ cpu: 1, address: g.sym('site'), length: 5 });
    expect(v[0].bytes.map((b) => b.offset)).toEqual([1, 2, 3, 4]);
    expect(v[0].bytes.every((b) => b.writer === 0)).toBe(true);
    const seen = g.m.mem.readU64(g.sym('seen'));
    // Coherent: CPU 1 sees the new immediate at once. Stale: it keeps running the
    // bytes it decoded, since it never serializes.
    expect(seen).toBe(mode === 'coherent' ? 2n : 1n);
  });

  it('passes the int3 three-phase sequence with a sync after each phase', () => {
    const g = build(mode, 'int3_patcher');
    const r = g.m.run({ schedule: { kind: 'round-robin', quantum: 1 }, maxSteps: 20000 });
    expect(r.stop).not.toBe('shutdown');
    expect(g.m.xmc.violations).toEqual([]);
    expect(g.m.cpu(0).halted).toBe(true);
    expect(g.m.mem.readU64(g.sym('seen'))).toBe(2n);
  });

  /** CPU 1 runs site2 once, after CPU 0 has patched it with `patcher` (both below). */
  function lateReader(patcher: string): ReturnType<typeof guest> {
    const g = guest(SRC + LATE, { cpus: 2, fetchMode: mode, gates: { 0x50: ['irq50'], 3: ['bp'] } });
    g.m.cpu(0).setRipBig(g.sym(patcher));
    g.m.cpu(1).setRipBig(g.sym('later_runner'));
    g.m.run({ schedule: { kind: 'round-robin', quantum: 1 }, maxSteps: 20000 });
    return g;
  }

  it('reports a skipped sync: the reader runs the new bytes without having serialized since the tail was written', () => {
    const g = lateReader('sloppy_patcher');
    expect(g.m.xmc.violations.map((v) => [v.cpu, v.address])).toEqual([[1, g.sym('site2')]]);
    expect(g.m.mem.readU64(g.sym('seen'))).toBe(2n);
  });

  it('passes the same late reader when every phase is synced', () => {
    const g = lateReader('careful_patcher');
    expect(g.m.xmc.violations).toEqual([]);
    expect(g.m.mem.readU64(g.sym('seen'))).toBe(2n);
  });
});
