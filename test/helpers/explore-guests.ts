// Test and bench helper: small guest programs with known concurrency bugs, for the
// explorer (test/explore/, bench/explore.ts).

import { guest } from './guest';

/** CPU0 takes a then b, then c; CPU1 takes b then a; the NMI handler takes c. */
export const LOCKS = `
  .text
  .globl cpu0
cpu0:
  lea lock_a(%rip), %rdi
  call take
  lea lock_b(%rip), %rdi
  call take
  movq $0, lock_b(%rip)
  movq $0, lock_a(%rip)
  lea lock_c(%rip), %rdi
  call take
  movq $0, lock_c(%rip)
  hlt
  .globl cpu1
cpu1:
  lea lock_b(%rip), %rdi
  call take
  lea lock_a(%rip), %rdi
  call take
  movq $0, lock_a(%rip)
  movq $0, lock_b(%rip)
  hlt
take:
1:
  mov $1, %eax
  xchg %rax, (%rdi)
  test %rax, %rax
  jz 2f
  pause
  jmp 1b
2:
  ret
nmi_handler:
  push %rdi
  push %rax
  lea lock_c(%rip), %rdi
  call take
  movq $0, lock_c(%rip)
  pop %rax
  pop %rdi
  iretq
  .data
lock_a: .quad 0
lock_b: .quad 0
lock_c: .quad 0
`;

/** Two CPUs at cpu0 and cpu1 of LOCKS, with the NMI gate installed. */
export function lockOrderMachine(): ReturnType<typeof guest> {
  return twoCpus(LOCKS, true);
}

/** Two CPUs of `source`, CPU0 at cpu0 and CPU1 at cpu1; `nmi`: nmi_handler is the NMI gate. */
function twoCpus(source: string, nmi: boolean): ReturnType<typeof guest> {
  const g = guest(source, { cpus: 2, entry: 'cpu0', gates: nmi ? { 2: ['nmi_handler', 0] } : {} });
  g.m.cpu(1).setRipBig(g.sym('cpu1'));
  return g;
}


/**
 * Cross-modifying code: CPU1 runs `site` twice; CPU0 holds lock_a and rewrites `site`
 * (a jmp over `inc %ebx`) into two NOPs. If CPU1 saw the old code once and the new
 * code once (CPU0's write fell between its two runs), it takes lock_a and waits
 * forever: a deadlock that only a switch between two of CPU1's register-only steps
 * reaches.
 */
export const XMC_TWICE = `
  .text
  .globl cpu0
cpu0:
  movq $1, lock_a(%rip)
  movw $0x9090, site(%rip)
  hlt
  .globl cpu1
cpu1:
  xor %ebx, %ebx
  mov $2, %ecx
again:
site:
  jmp skip
  inc %ebx
skip:
  dec %ecx
  jnz again
  cmp $1, %ebx
  jne done
  lea lock_a(%rip), %rdi
1:
  mov $1, %eax
  xchg %rax, (%rdi)
  test %rax, %rax
  jz done
  pause
  jmp 1b
done:
  hlt
  .data
lock_a: .quad 0
`;

/** Two CPUs at cpu0 and cpu1 of XMC_TWICE. */
export function xmcTwiceMachine(): ReturnType<typeof guest> {
  return twoCpus(XMC_TWICE, false);
}

/**
 * Two NMIs needed: CPU0 polls `count` a few times and, if it ever reads 2, spins on
 * lock_a (held from the start) forever; each NMI's handler increments
 * `count`. A second NMI that arrives while the first handler runs is latched and
 * taken at its iret: the explorer's reduction tries it there instead, and must still
 * find the deadlock, exactly as brute force does.
 */
export const TWO_NMIS = `
  .text
  .globl cpu0
cpu0:
  mov $3, %ecx
1:
  mov count(%rip), %rax
  cmp $2, %rax
  je stuck
  dec %ecx
  jnz 1b
4:
  hlt
  jmp 4b
stuck:
  pause
  cmpq $0, lock_a(%rip)
  jne stuck
  hlt
  .globl cpu1
cpu1:
  hlt
  jmp cpu1
nmi_handler:
  lock incq count(%rip)
  lock incq seen(%rip)
  iretq
  .data
lock_a: .quad 1
count: .quad 0
seen: .quad 0
`;

/** Two CPUs at cpu0 and cpu1 of TWO_NMIS, with the NMI gate installed. */
export function twoNmisMachine(): ReturnType<typeof guest> {
  return twoCpus(TWO_NMIS, true);
}

/**
 * An interrupt another CPU sends: CPU0 sends CPU1 an NMI through the x2APIC ICR; CPU1
 * runs register-only steps (each private to it) and then halts. The NMI handler
 * deadlocks (lock_a is held from the start: it spins forever) only if it interrupts CPU1 while %ebx is
 * 2, between two of those private steps: found only if the search lets the IPI land
 * there, which needs CPU1's steps to stop counting as private once another CPU can
 * make an interrupt pending on it.
 */
export const IPI_LANDS = `
  .text
  .globl cpu0
cpu0:
  mov $0x830, %ecx
  mov $0x400, %eax
  mov $1, %edx
  wrmsr
1:
  hlt
  jmp 1b
  .globl cpu1
cpu1:
  xor %ebx, %ebx
  inc %ebx
  inc %ebx
  xor %ebx, %ebx
2:
  hlt
  jmp 2b
nmi_handler:
  cmp $2, %ebx
  jne 4f
3:
  pause
  cmpq $0, lock_a(%rip)
  jne 3b
4:
  iretq
  .data
lock_a: .quad 1
`;

/** Two CPUs at cpu0 and cpu1 of IPI_LANDS, with the NMI gate installed. */
export function ipiLandsMachine(): ReturnType<typeof guest> {
  return twoCpus(IPI_LANDS, true);
}
