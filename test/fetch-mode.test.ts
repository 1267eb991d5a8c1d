// The stale fetch mode on its own: a CPU keeps running the bytes it decoded after
// another CPU rewrote them, exactly until it serializes, and then runs the new ones; a
// CPU always sees its own writes; the coherent mode sees every write at once. (The XMC
// tests show the mode under a patch protocol; this pins its three rules one by one.)

import { guest } from './helpers/guest';
import type { FetchMode } from '../emu/machine';

const SRC = `
  .text
  .globl _start
  _start:
    hlt
  # CPU 1: runs 'site' forever and stores what it loaded; serializes (cpuid) when asked.
  runner:
  1:
  site:
    mov $1, %eax
    mov %rax, seen(%rip)
    cmpq $0, do_sync(%rip)
    je 1b
    cpuid
    movq $0, do_sync(%rip)
    jmp 1b
  # CPU 0: rewrites the immediate of CPU 1's 'site'.
  patcher:
    movl $2, site+1(%rip)
    hlt
  # CPU 0: runs its own 'self_site', rewrites it, runs it again without serializing.
  self:
    mov $2, %ecx
  2:
  self_site:
    mov $1, %eax
    mov %rax, self_seen(%rip)
    movl $7, self_site+1(%rip)
    dec %ecx
    jnz 2b
    hlt
  .data
  seen: .quad 0
  do_sync: .quad 0
  self_seen: .quad 0
`;

function build(mode: FetchMode): ReturnType<typeof guest> {
  const g = guest(SRC, { cpus: 2, fetchMode: mode });
  g.m.cpu(0).setRipBig(g.sym('patcher'));
  g.m.cpu(1).setRipBig(g.sym('runner'));
  return g;
}

describe('fetch modes', () => {
  it('stale: the old bytes run until the CPU serializes, then the new ones', () => {
    const g = build('stale');
    const seen = (): bigint => g.m.mem.readU64(g.sym('seen'));
    g.m.step(1, 8); // CPU 1 has decoded and run 'site' (mov $1)
    expect(seen()).toBe(1n);
    g.m.step(0, 1); // CPU 0 writes mov $2 over it
    g.m.step(1, 40);
    expect(seen()).toBe(1n); // still the decoded instruction
    g.m.mem.writeU64(g.sym('do_sync'), 1n);
    g.m.step(1, 40); // cpuid: serializing
    expect(seen()).toBe(2n);
    expect(g.m.mem.readU64(g.sym('do_sync'))).toBe(0n);
  });

  it('coherent: the new bytes run at once, with no serialization', () => {
    const g = build('coherent');
    g.m.step(1, 8);
    expect(g.m.mem.readU64(g.sym('seen'))).toBe(1n);
    g.m.step(0, 1);
    g.m.step(1, 8);
    expect(g.m.mem.readU64(g.sym('seen'))).toBe(2n);
  });

  it.each<FetchMode>(['stale', 'coherent'])('%s: a CPU sees its own code writes without serializing', (mode) => {
    const g = guest(SRC, { cpus: 1, fetchMode: mode });
    g.m.cpu(0).setRipBig(g.sym('self'));
    g.m.run({ stopOnHlt: true, maxSteps: 100 });
    expect(g.m.mem.readU64(g.sym('self_seen'))).toBe(7n);
    expect(g.m.cpu(0).halted).toBe(true);
  });
});
