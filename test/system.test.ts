// Privileged and machine-level instructions, checked against the SDM's description
// (they cannot run in the host-CPU oracle's user mode).

import { guest } from './helpers/guest';
import { execCode } from '../emu/exec';
import { asmBytes } from '../scripts/gas';
import { AC, ZF, IF } from '../emu/flags';

function run(src: string, regs: Record<string, bigint> = {}): ReturnType<typeof execCode> {
  return execCode({ code: asmBytes(src + '\nhlt'), regs, maxSteps: 10000 });
}

describe('CPUID', () => {
  it('leaf 0 names the vendor; leaf 1 has the APIC ID and advertises x2APIC; it serializes', () => {
    const r = run('xor %eax,%eax; cpuid; mov %ebx,%r8d; mov %edx,%r9d; mov %ecx,%r10d; mov $1,%eax; cpuid');
    const vendor = Buffer.alloc(12);
    vendor.writeUInt32LE(Number(r.regs.r8), 0);
    vendor.writeUInt32LE(Number(r.regs.r9), 4);
    vendor.writeUInt32LE(Number(r.regs.r10), 8);
    expect(vendor.toString()).toBe('GenuineIntel');
    expect(Number(r.regs.rbx) >>> 24).toBe(0); // initial APIC ID
    expect(Number(r.regs.rcx) & (1 << 21)).not.toBe(0); // x2APIC
    expect(Number(r.regs.rcx) & (1 << 31)).toBe(0); // no hypervisor: bare metal
  });
});

describe('MSRs', () => {
  it('GS_BASE and KERNEL_GS_BASE through wrmsr/rdmsr, swapped by swapgs', () => {
    const r = run(`
      mov $0xc0000101, %ecx; mov $0x11111111, %eax; mov $0x22222222, %edx; wrmsr
      mov $0xc0000102, %ecx; mov $0x33333333, %eax; mov $0x44444444, %edx; wrmsr
      swapgs
      mov $0xc0000101, %ecx; rdmsr; mov %rax, %r8; mov %rdx, %r9
      rdgsbase %r10`);
    expect(r.regs.r8).toBe(0x33333333n);
    expect(r.regs.r9).toBe(0x44444444n);
    expect(r.regs.r10).toBe(0x4444444433333333n);
  });

  it('an MSR the model does not know is a #GP', () => {
    const r = run('mov $0x12345, %ecx; rdmsr');
    expect(r.stop).toBe('exception');
    expect(r.exception?.name).toBe('#GP');
  });

  it('the TSC counts machine steps and is writable', () => {
    const r = run('rdtsc; mov %rax, %r8; nop; nop; rdtsc; mov %rax, %r9');
    expect(r.regs.r9 - r.regs.r8).toBe(4n);
  });
});

describe('control registers and descriptor tables', () => {
  it('mov to and from CR0/CR3/CR4; CR8 is the APIC task priority', () => {
    const r = run('mov $0x1000, %rax; mov %rax, %cr3; mov %cr3, %rbx; mov $5, %eax; mov %rax, %cr8; mov %cr8, %rcx');
    expect(r.regs.rbx).toBe(0x1000n);
    expect(r.regs.rcx).toBe(5n);
  });

  it('lgdt/sgdt and lidt/sidt round-trip a 10-byte pseudo-descriptor', () => {
    const r = execCode({
      code: asmBytes('lidt (%rsi); sidt (%rdi); mov 2(%rdi), %rax; movzwl (%rdi), %ebx; hlt'),
      regs: { rsi: 0x7fff0000n, rdi: 0x7fff0100n },
      map: [[0x7fff0000n, 0x1000]],
    });
    expect(r.regs.rax).toBe(0n);
    expect(r.regs.rbx).toBe(0n);
  });

  it('ltr loads the TSS base from a 16-byte GDT descriptor and marks it busy', () => {
    const g = guest(
      `
      .text
      .globl _start
      _start:
        lgdt gdtr(%rip)
        mov $0x40, %ax
        ltr %ax
        str %bx
        mov gdt+0x45(%rip), %cl      # type byte: 0x8b after ltr (busy)
        hlt
      .data
      .balign 16
      gdt: .fill 0x40, 1, 0
        .word 103                    # limit
        .word 0x5678                 # base 15:0
        .byte 0x34                   # base 23:16
        .byte 0x89                   # present, available 64-bit TSS
        .byte 0
        .byte 0x12                   # base 31:24
        .long 0xffffffff             # base 63:32
        .long 0
      gdtr: .word 0x4f
        .quad gdt
      `,
    );
    g.m.run({ stopOnHlt: true });
    const c = g.m.cpu(0);
    expect(c.trSel).toBe(0x40);
    expect((BigInt(c.trHi >>> 0) << 32n) | BigInt(c.trLo >>> 0)).toBe(0xffffffff12345678n);
    expect(c.getReg(3) & 0xffffn).toBe(0x40n);
    expect(c.getReg(1) & 0xffn).toBe(0x8bn);
  });
});

describe('flags and I/O', () => {
  it('cli/sti change IF; stac/clac change AC', () => {
    const r = run('cli; pushfq; pop %r8; sti; stac; pushfq; pop %r9; clac; pushfq; pop %r10');
    expect(Number(r.regs.r8) & IF).toBe(0);
    expect(Number(r.regs.r9) & (IF | AC)).toBe(IF | AC);
    expect(Number(r.regs.r10) & AC).toBe(0);
  });

  it('in from a port nobody claims reads all ones; out is accepted', () => {
    const r = run('xor %eax, %eax; in $0x71, %al; mov %eax, %r8d; mov $0x80, %dx; out %al, %dx; in (%dx), %ax');
    expect(r.regs.r8).toBe(0xffn);
    expect(r.regs.rax & 0xffffn).toBe(0xffffn);
  });

  it('verw sets ZF for the kernel data selector', () => {
    const r = run('mov $0x18, %eax; verw %ax; pushfq; pop %r8');
    expect(Number(r.regs.r8) & ZF).toBe(ZF);
  });

  it('xgetbv reads XCR0 (x87 and SSE); movnti stores like mov', () => {
    const r = execCode({
      code: asmBytes('xor %ecx, %ecx; xgetbv; mov %rax, %r8; mov $7, %r9; movnti %r9, (%rsi); mov (%rsi), %r10; hlt'),
      regs: { rsi: 0x7fff0000n },
      map: [[0x7fff0000n, 0x1000]],
    });
    expect(r.regs.r8).toBe(3n);
    expect(r.regs.r10).toBe(7n);
  });

  it('ud2 is #UD; int $n goes through the IDT (no IDT here: it stops)', () => {
    expect(run('ud2').exception?.name).toBe('#UD');
    expect(run('int $0x80').stop).toBe('exception');
  });
});
