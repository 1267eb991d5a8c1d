// `exec` as a library: one bare CPU to hlt, an exception or the step limit; and the
// chunked run behind the CLI, which can be interrupted and must end where one long
// run would.

import { execCode, execCodeAsync } from '../emu/exec';

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

describe('execCodeAsync: chunks, progress, interruption', () => {
  // A countdown loop: mov $25000,%ecx; 1: dec %ecx; jnz 1b; hlt.
  const LOOP = hex('b9a8610000 ffc9 75fc f4');

  it('ends exactly where one long run ends, whatever the chunk size', async () => {
    const once = execCode({ code: LOOP, maxSteps: 1_000_000 });
    const progress: number[] = [];
    const chunked = await execCodeAsync({ code: LOOP, maxSteps: 1_000_000 }, { chunk: 7_777, onProgress: (n) => progress.push(n) });
    expect(once.stop).toBe('hlt');
    expect(chunked).toEqual(once);
    // One report per chunk, rising to the total.
    expect(progress.length).toBe(Math.ceil(once.steps / 7_777));
    expect(progress[progress.length - 1]).toBe(once.steps);
    expect(progress.every((n, i) => i === 0 || n > progress[i - 1])).toBe(true);
  });

  it('the step limit still holds across chunks', async () => {
    const r = await execCodeAsync({ code: hex('ebfe'), maxSteps: 25_000 }, { chunk: 10_000 });
    expect(r.stop).toBe('step-limit');
    expect(r.steps).toBe(25_000);
  });

  it('an aborted signal stops at the next chunk boundary with the state so far', async () => {
    const ac = new AbortController();
    const r = await execCodeAsync({ code: hex('ebfe'), maxSteps: 1e12 }, { chunk: 5_000, onProgress: (n) => n >= 15_000 && ac.abort(), signal: ac.signal });
    expect(r.stop).toBe('interrupted');
    expect(r.steps).toBe(15_000);
    expect(r.regs.rip).toBe(0x401000n);
  });
});

