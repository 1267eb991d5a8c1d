// Exceptions and interrupts through the IDT: frames, IST, error codes, NMI blocking
// and latching, IRETQ, maskable interrupts with IF and the STI shadow, HLT wake-up,
// #DF and triple fault. Expected values follow the SDM (vol. 3, ch. 6).

import { guest } from './helpers/guest';
import { GATE_TRAP } from '../emu/setup';
import { IF, ZF } from '../emu/flags';

describe('exception frames', () => {
  it('int3 pushes SS, RSP, RFLAGS, CS and the RIP after the 0xCC, 16-byte aligned', () => {
    const g = guest(
      `
      .text
      .globl _start
      _start:
        sub $8, %rsp          # misalign: the CPU must align the new frame to 16
        int3
      after_int3:
        hlt
      bp_handler:
        mov %rsp, %rbx
        hlt
      `,
      { gates: { 3: ['bp_handler'] } },
    );
    const top = g.stackTop(0) - 8n;
    g.m.run({ stopOnHlt: true });
    const cpu = g.m.cpu(0);
    const rsp = cpu.getReg(3);
    expect(rsp % 16n).toBe(8n); // 5 pushes below a 16-aligned boundary
    const rd = (k: bigint): bigint => g.m.mem.readU64(rsp + 8n * k);
    expect(rd(0n)).toBe(g.sym('after_int3'));
    expect(rd(1n)).toBe(0x10n); // CS
    expect(rd(2n) & 0x2n).toBe(0x2n); // RFLAGS image
    expect(rd(3n)).toBe(top); // interrupted RSP
    expect(rd(4n)).toBe(0x18n); // SS
    expect(rsp + 40n).toBe((top & ~0xfn));
    expect(cpu.contexts.map((c) => c.kind)).toEqual(['#BP']);
  });

  it('an interrupt gate clears IF, a trap gate does not', () => {
    const src = `
      .text
      .globl _start
      _start:
        sti
        nop
        int $0x80
        hlt
      h:
        pushfq
        pop %rbx
        hlt
      `;
    const intr = guest(src, { gates: { 0x80: ['h'] } });
    intr.m.run({ stopOnHlt: true });
    expect(Number(intr.m.cpu(0).getReg(3)) & IF).toBe(0);
    const trap = guest(src, { gates: { 0x80: ['h', 0, GATE_TRAP] } });
    trap.m.run({ stopOnHlt: true });
    expect(Number(trap.m.cpu(0).getReg(3)) & IF).toBe(IF);
  });

  it('an IST gate switches to the TSS stack', () => {
    const g = guest(
      `
      .text
      .globl _start
      _start:
        int $0x40
      h:
        mov %rsp, %rbx
        hlt
      `,
      { gates: { 0x40: ['h', 1] } },
    );
    g.m.run({ stopOnHlt: true });
    expect(g.m.cpu(0).getReg(3)).toBe(g.istTop(0) - 40n);
  });

  it('#GP pushes an error code and RIP of the faulting instruction', () => {
    const g = guest(
      `
      .text
      .globl _start
      _start:
        movabs $0x8000000000000000, %rax
      bad:
        jmp *%rax             # non-canonical target: #GP(0)
      gp:
        mov %rsp, %rbx
        hlt
      `,
      { gates: { 13: ['gp'] } },
    );
    g.m.run({ stopOnHlt: true });
    const rsp = g.m.cpu(0).getReg(3);
    expect(g.m.mem.readU64(rsp)).toBe(0n); // error code
    expect(g.m.mem.readU64(rsp + 8n)).toBe(g.sym('bad'));
  });

  it('#PF sets CR2 and the error code (write, not present)', () => {
    const g = guest(
      `
      .text
      .globl _start
      _start:
        movabs $0x123456789000, %rax
      bad:
        movq $1, (%rax)
      pf:
        mov %cr2, %rcx
        mov (%rsp), %rdx
        hlt
      `,
      { gates: { 14: ['pf'] } },
    );
    g.m.run({ stopOnHlt: true });
    const cpu = g.m.cpu(0);
    expect(cpu.getReg(1)).toBe(0x123456789000n);
    expect(cpu.getReg(2)).toBe(2n); // W=1, P=0, supervisor, data
    expect(g.m.mem.readU64(cpu.getReg(4) + 8n)).toBe(g.sym('bad'));
  });

  it('a fault with no usable handler becomes #DF, then a triple fault shuts the CPU down', () => {
    const g = guest(
      `
      .text
      .globl _start
      _start:
        ud2
      `,
      {},
    );
    const r = g.m.run({ stopOnHlt: true, maxSteps: 100 });
    expect(r.stop).toBe('shutdown');
    expect(g.m.cpu(0).shutdown?.vector).toBe(6);
    expect(g.m.cpu(0).shutdown?.detail).toMatch(/#UD/);
  });

  it('#DF is delivered when the first handler cannot be reached', () => {
    const g = guest(
      `
      .text
      .globl _start
      _start:
        ud2
      df:
        mov (%rsp), %rbx       # error code (always 0)
        mov $1, %rcx
        hlt
      `,
      { gates: { 8: ['df', 1] } }, // no #UD gate: not present -> #NP -> #DF
    );
    g.m.run({ stopOnHlt: true, maxSteps: 100 });
    expect(g.m.cpu(0).getReg(1)).toBe(1n);
    expect(g.m.cpu(0).getReg(3)).toBe(0n);
  });
});

describe('NMI', () => {
  const src = `
    .text
    .globl _start
    _start:
      nop
    loop:
      inc %r8
      jmp loop
    nmi:
      incq nmi_count(%rip)
      mov nmi_count(%rip), %rax
      cmp $1, %rax
      jne 1f
      mov $1, %r9          # first NMI: wait here a little
    2:
      inc %r10
      cmp $50, %r10
      jne 2b
    1:
      iretq
    bp:
      iretq
    nmi_with_bp:
      incq nmi_count(%rip)
      int3                 # the #BP's IRETQ unblocks NMIs inside the NMI handler
      mov %rsp, %r11
      mov $200, %rcx
    3:
      dec %rcx
      jnz 3b
      iretq
    .data
    nmi_count: .quad 0
  `;

  /** The guest stopped two instructions into its first NMI handler. */
  function inFirstNmi(): ReturnType<typeof guest> {
    const g = guest(src, { gates: { 2: ['nmi', 1] } });
    g.m.step(0, 3);
    g.m.nmi(0);
    g.m.step(0, 2);
    return g;
  }

  it('blocks further NMIs until IRETQ and latches exactly one', () => {
    const g = inFirstNmi();
    const m = g.m;
    expect(m.cpu(0).nmiBlocked).toBe(true);
    m.nmi(0); // latched
    m.nmi(0); // lost: one is already latched
    expect(m.droppedNmis).toBe(1);
    m.step(0, 2000);
    expect(m.mem.readU64(g.sym('nmi_count'))).toBe(2n);
    expect(m.cpu(0).nmiBlocked).toBe(false);
    expect(m.cpu(0).contexts).toEqual([]);
  });

  it('the latched NMI is taken at the boundary right after IRETQ, before the interrupted code runs again', () => {
    const g = inFirstNmi();
    const m = g.m;
    m.nmi(0); // latched while blocked
    expect(m.cpu(0).nmiPending).toBe(true);
    const r8 = m.cpu(0).getReg(8);
    // Step until the first handler's IRETQ has run: the next instruction is the second
    // handler's first, with NMIs blocked again and the loop not having run in between.
    let guard = 0;
    while (m.mem.readU64(g.sym('nmi_count')) < 2n && guard++ < 1000) m.step(0, 1);
    expect(m.mem.readU64(g.sym('nmi_count'))).toBe(2n);
    expect(m.cpu(0).getReg(8)).toBe(r8);
    expect(m.cpu(0).nmiBlocked).toBe(true);
    expect(m.cpu(0).nmiPending).toBe(false);
    expect(m.cpu(0).contexts.map((c) => c.kind)).toEqual(['NMI']);
  });

  it('the latch holds one NMI even before the first is taken: two at once run the handler once', () => {
    const g = guest(src, { gates: { 2: ['nmi', 1] } });
    const m = g.m;
    m.step(0, 2);
    m.nmi(0);
    m.nmi(0);
    expect(m.droppedNmis).toBe(1);
    m.step(0, 2000);
    expect(m.mem.readU64(g.sym('nmi_count'))).toBe(1n);
  });

  it('an NMI is taken with IF clear (cli does not mask it)', () => {
    const g = guest(
      `
      .text
      .globl _start
      _start:
        cli
      1:
        inc %r8
        jmp 1b
      nmi:
        mov $1, %rcx
        iretq
      `,
      { gates: { 2: ['nmi', 1] } },
    );
    g.m.step(0, 3);
    g.m.nmi(0);
    g.m.step(0, 1);
    expect(g.m.cpu(0).contexts.map((c) => c.kind)).toEqual(['NMI']);
    g.m.step(0, 2);
    expect(g.m.cpu(0).getReg(1)).toBe(1n);
    expect(g.m.cpu(0).contexts).toEqual([]);
  });

  it('any IRETQ unblocks NMIs, including the one from a #BP inside the NMI handler', () => {
    const g = guest(src, { gates: { 2: ['nmi_with_bp', 1], 3: ['bp'] } });
    const m = g.m;
    m.step(0, 2);
    m.nmi(0);
    m.step(0, 4); // nmi: inc; int3 -> #BP; iretq
    expect(m.cpu(0).nmiBlocked).toBe(false);
    // A second NMI is taken while the first handler still runs: it lands on the same
    // IST stack, which is why Linux's NMI entry has to detect nesting.
    m.nmi(0);
    m.step(0, 1);
    expect(m.cpu(0).contexts.map((c) => c.kind)).toEqual(['NMI', 'NMI']);
  });

  it('wakes a halted CPU with IF=0', () => {
    const g = guest(
      `
      .text
      .globl _start
      _start:
        cli
        hlt
        mov $7, %rbx
        hlt
      nmi:
        mov $1, %rcx
        iretq
      `,
      { gates: { 2: ['nmi', 1] } },
    );
    const m = g.m;
    let r = m.run({ maxSteps: 100 });
    expect(r.stop).toBe('halted');
    m.nmi(0);
    r = m.run({ maxSteps: 100 });
    expect(m.cpu(0).getReg(1)).toBe(1n);
    expect(m.cpu(0).getReg(3)).toBe(7n);
  });
});

describe('maskable interrupts', () => {
  const src = `
    .text
    .globl _start
    _start:
      cli
      mov $1, %rax
      mov $2, %rax
      sti
      mov $3, %rax          # runs in the STI shadow: the interrupt comes after it
      mov $4, %rax
      hlt
    irq:
      mov %rax, %rbx
      movl $0, %ecx
      mov $0x80b, %ecx      # x2APIC EOI
      xor %eax, %eax
      xor %edx, %edx
      wrmsr
      iretq
  `;

  it('honour IF and the one-instruction STI shadow', () => {
    const g = guest(src, { gates: { 0x40: ['irq'] } });
    const m = g.m;
    m.step(0, 2); // cli; mov $1
    m.interrupt(0, 0x40);
    m.step(0, 2); // mov $2; sti — not taken: IF was 0, then the shadow
    expect(m.cpu(0).contexts).toEqual([]);
    m.step(0, 1); // mov $3 executes in the shadow
    expect(m.cpu(0).getReg(0)).toBe(3n);
    m.step(0, 1); // now the interrupt is taken before mov $4
    expect(m.cpu(0).contexts.map((c) => c.kind)).toEqual(['IRQ 64']);
    m.run({ stopOnHlt: true, maxSteps: 100 });
    expect(m.cpu(0).getReg(3)).toBe(3n);
    expect(m.cpu(0).apic.isr.every((w) => w === 0)).toBe(true);
  });

  it('HLT wakes on an interrupt when IF=1', () => {
    const g = guest(
      `
      .text
      .globl _start
      _start:
        sti
        hlt
        mov $5, %rbx
        cli
        hlt
      irq:
        mov $9, %rcx
        iretq
      `,
      { gates: { 0x41: ['irq'] } },
    );
    const m = g.m;
    expect(m.run({ maxSteps: 100 }).stop).toBe('halted');
    m.interrupt(0, 0x41);
    expect(m.run({ maxSteps: 100 }).stop).toBe('halted');
    expect(m.cpu(0).getReg(1)).toBe(9n);
    expect(m.cpu(0).getReg(3)).toBe(5n);
  });

  it('sets ZF from a popfq image and keeps VM clear', () => {
    const g = guest(
      `
      .text
      .globl _start
      _start:
        pushq $0x20ec3        # ZF, SF? (0x80) no: 0x40|0x80|0x2|0x1|... and VM (0x20000)
        popfq
        pushfq
        pop %rbx
        hlt
      `,
    );
    g.m.run({ stopOnHlt: true });
    const f = Number(g.m.cpu(0).getReg(3));
    expect(f & ZF).toBe(ZF);
    expect(f & 0x20000).toBe(0);
  });
});
