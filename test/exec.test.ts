import { execCode } from '../emu/exec';

const hex = (s: string): Uint8Array => Uint8Array.from(Buffer.from(s.replace(/\s/g, ''), 'hex'));

describe('exec', () => {
  it('runs to hlt and reports registers', () => {
    const r = execCode({ code: hex('4801d8 f4'), regs: { rax: 2n, rbx: 3n } });
    expect(r.stop).toBe('hlt');
    expect(r.steps).toBe(2);
    expect(r.regs.rax).toBe(5n);
    expect(r.regs.rip).toBe(0x401004n);
  });

  it('stops on an exception with no handler and names it', () => {
    const r = execCode({ code: hex('0f0b') });
    expect(r.stop).toBe('exception');
    expect(r.exception?.name).toBe('#UD');
    expect(r.regs.rip).toBe(0x401000n);
  });

  it('stops at the step limit', () => {
    const r = execCode({ code: hex('ebfe'), maxSteps: 1000 });
    expect(r.stop).toBe('step-limit');
    expect(r.steps).toBe(1000);
  });

  it('computes a 64-bit loop exactly', () => {
    // mov ecx, 1000; xor eax, eax; 1: add rax, rcx; xor rdx, rax; dec rcx; jnz 1b; hlt
    const r = execCode({ code: hex('b9e8030000 31c0 4801c8 4831c2 48ffc9 75f5 f4') });
    let rax = 0n;
    let rdx = 0n;
    for (let c = 1000n; c > 0n; c--) {
      rax += c;
      rdx ^= rax;
    }
    expect(r.regs.rax).toBe(rax);
    expect(r.regs.rdx).toBe(rdx);
    expect(r.steps).toBe(2 + 4 * 1000 + 1);
  });
});
