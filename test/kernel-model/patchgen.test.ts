// Patch generation against what the kernel writes: the x86_nops table, the native
// templates (as GNU as assembles the kernel's replacement strings), and the site
// forms of DESIGN.md.

import { X86_NOPS, nops } from '../../kernel-model/linux/nops';
import { NATIVE_TEMPLATES } from '../../kernel-model/linux/templates';
import { generatePatch, PatchError } from '../../kernel-model/linux/paravirt-patch';
import { asmBytes } from '../../scripts/gas';

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

describe('kernel NOPs', () => {
  // Linux's x86_nops for 64-bit (arch/x86/include/asm/nops.h), as DESIGN.md lists them.
  const KERNEL = ['', '90', '6690', '0f1f00', '0f1f4000', '0f1f440000', '660f1f440000', '0f1f8000000000', '0f1f840000000000'];
  it.each([1, 2, 3, 4, 5, 6, 7, 8])('the %i-byte NOP', (n) => {
    expect(hex(X86_NOPS[n])).toBe(KERNEL[n]);
  });
  it('longer padding is 8-byte NOPs then the rest, like add_nops()', () => {
    expect(hex(nops(11))).toBe(KERNEL[8] + KERNEL[3]);
    expect(hex(nops(16))).toBe(KERNEL[8] + KERNEL[8]);
  });
});

describe('native templates equal what GNU as makes of the kernel replacement strings', () => {
  const SOURCE: Record<string, string> = {
    'irq.save_fl': 'pushf; pop %rax',
    'irq.irq_disable': 'cli',
    'irq.irq_enable': 'sti',
    'mmu.read_cr2': 'mov %cr2, %rax',
    'mmu.read_cr3': 'mov %cr3, %rax',
    'mmu.write_cr3': 'mov %rdi, %cr3',
    'cpu.wbinvd': 'wbinvd',
    'mmu.pte_val': 'mov %rdi, %rax',
    'mmu.make_pgd': 'mov %rdi, %rax',
    'lock.queued_spin_unlock': 'movb $0, (%rdi)',
    // The series' 5.6 template (31 c0), not 6.1's ALTERNATIVE (48 31 c0).
    'lock.vcpu_is_preempted': 'xor %eax, %eax',
  };
  it.each(Object.keys(SOURCE))('%s', (op) => {
    expect(hex(NATIVE_TEMPLATES.get(op)!)).toBe(hex(asmBytes(SOURCE[op])));
  });
});

describe('site forms', () => {
  const at = 0xffffffff81001000n;
  it('native op with a template: inline plus NOP padding', () => {
    expect(hex(generatePatch('lock.queued_spin_unlock', at, 6, { target: 1n, native: true, nop: false }).bytes)).toBe('c607000f1f00');
    expect(hex(generatePatch('irq.irq_disable', at, 6, { target: 1n, native: true, nop: false }).bytes)).toBe('fa0f1f440000');
  });
  it('otherwise a direct call to the target, then a 1-byte NOP', () => {
    const g = generatePatch('lock.queued_spin_unlock', at, 6, { target: at + 0x100n, native: false, nop: false });
    expect(g.form).toBe('call');
    expect(hex(g.bytes)).toBe('e8fb00000090');
  });
  it('the paravirt no-op: all NOPs', () => {
    expect(hex(generatePatch('lock.wait', at, 6, { target: 0n, native: true, nop: true }).bytes)).toBe('660f1f440000');
  });
  it('a site too short for a call is an error', () => {
    expect(() => generatePatch('x.y', at, 4, { target: at + 0x100n, native: false, nop: false })).toThrow(PatchError);
  });
});
