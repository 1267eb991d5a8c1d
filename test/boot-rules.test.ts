// The 6.12 boot-patching building blocks on hand-made bytes: add_nop (NOPs up to 11
// bytes, jmp8/jmp32 + int3 beyond), optimize_nops (runs of NOP/NOPL merged, PAUSE
// left alone, a NOP already ending the buffer left alone), and apply_relocation
// (rel32/rel8 branches and RIP-relative operands leaving the replacement, jmp32 to
// jmp8 where it fits, targets inside the block untouched).

import { addNop612, applyRelocation612, decodeInsn, optimizeNops612 } from '../kernel-model/linux/alternatives-common';
import { X86_NOPS, X86_NOPS_64 } from '../kernel-model/linux/nops';

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const bytes = (h: string): Uint8Array => Uint8Array.from(Buffer.from(h.replace(/ /g, ''), 'hex'));

describe('NOPs of 6.6+', () => {
  it('x86_nops up to 11 bytes: NOP9 = cs NOP8, NOP10/11 add 0x66', () => {
    expect(hex(X86_NOPS_64[8])).toBe(hex(X86_NOPS[8]));
    expect(hex(X86_NOPS_64[9])).toBe('2e0f1f840000000000');
    expect(hex(X86_NOPS_64[11])).toBe('66662e0f1f840000000000');
    for (let n = 1; n <= 11; n++) expect(decodeInsn(X86_NOPS_64[n], 0n)?.len).toBe(n);
  });

  it('add_nop: one NOP up to 11 bytes, a jump over int3 padding beyond', () => {
    const b = new Uint8Array(200);
    addNop612(b, 0, 11, X86_NOPS_64);
    expect(hex(b.subarray(0, 11))).toBe(hex(X86_NOPS_64[11]));
    addNop612(b, 0, 12, X86_NOPS_64);
    expect(hex(b.subarray(0, 12))).toBe('eb0a' + 'cc'.repeat(10));
    addNop612(b, 0, 130, X86_NOPS_64);
    expect(hex(b.subarray(0, 6))).toBe('e97d000000cc');
    expect(b.subarray(5, 130).every((x) => x === 0xcc)).toBe(true);
  });

  it('optimize_nops: a run becomes one NOP; pause is no NOP; a trailing lone NOP stays', () => {
    const b = bytes('909090 4889c7 90 90');
    optimizeNops612(b, b.length, 0x1000n, X86_NOPS_64);
    expect(hex(b)).toBe('0f1f00' + '4889c7' + '6690');
    const pause = bytes('f390 f390 9090');
    optimizeNops612(pause, pause.length, 0n, X86_NOPS_64);
    expect(hex(pause)).toBe('f390f390' + '6690');
    const tail = bytes('4889c7 90');
    optimizeNops612(tail, tail.length, 0n, X86_NOPS_64);
    expect(hex(tail)).toBe('4889c790');
    // NOPL runs merge too, past 11 bytes into a jump.
    const long = Uint8Array.from([...X86_NOPS_64[8], ...X86_NOPS_64[8]]);
    optimizeNops612(long, long.length, 0n, X86_NOPS_64);
    expect(hex(long)).toBe('eb0e' + 'cc'.repeat(14));
  });
});

describe('apply_relocation', () => {
  const instr = 0xffffffff81001000n;
  const repl = 0xffffffff83000000n;
  const delta = Number(repl - instr);

  it('a call leaving the replacement keeps its target from the new place', () => {
    // call +0x100 from repl: target repl+5+0x100.
    const b = bytes('e800010000');
    applyRelocation612(b, instr, 5, repl, 5, X86_NOPS_64);
    const rel = Buffer.from(b).readInt32LE(1);
    expect(instr + 5n + BigInt(rel)).toBe(repl + 5n + 0x100n);
    expect(rel).toBe(0x100 + delta);
  });

  it('jmp rel32 becomes jmp rel8 + int3 when the target is close to the new place', () => {
    // From repl, jump to instr+0x20: rel32 = instr+0x20 - (repl+5).
    const b = new Uint8Array(5);
    b[0] = 0xe9;
    Buffer.from(b.buffer).writeInt32LE(Number(instr + 0x20n - (repl + 5n)), 1);
    applyRelocation612(b, instr, 5, repl, 5, X86_NOPS_64);
    expect(hex(b)).toBe('eb1ecccccc');
  });

  it('RIP-relative operands are relocated; a jump within the block is not', () => {
    // mov 0x10(%rip),%rax then jmp back to the block's start (inside: no relocation).
    const b = bytes('488b0510000000 ebf7');
    applyRelocation612(b, instr, 9, repl, 9, X86_NOPS_64);
    expect(Buffer.from(b).readInt32LE(3)).toBe(0x10 + delta);
    expect(hex(b.subarray(7))).toBe('ebf7');
  });

  it('Jcc rel32 leaving the block is relocated, and the padding after it optimized', () => {
    const b = bytes('0f8410000000 909090');
    applyRelocation612(b, instr, 9, repl, 6, X86_NOPS_64);
    expect(Buffer.from(b).readInt32LE(2)).toBe(0x10 + delta);
    expect(hex(b.subarray(6))).toBe('0f1f00');
  });
});
