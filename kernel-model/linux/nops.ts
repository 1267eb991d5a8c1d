// The kernel's x86-64 NOPs (the x86_nops table) and add_nops(): padding is the
// longest NOP that fits, repeated. Each NOP is encoded with iced-x86 from its
// instruction form, with the displacement sizes the kernel's table uses. Linux 6.1's
// table stops at 8 bytes (ASM_NOP_MAX 8); since 6.6 x86-64 has 9 to 11 byte NOPs
// too (cs, then one or two 0x66 prefixes on the 8-byte one; ASM_NOP_MAX 11).

import { Code, Instruction, MemoryOperand, Register } from 'iced-x86';
import { encodeAt } from './encode';

export const ASM_NOP_MAX = 8;

function nopMem(code: Code, index: boolean, displSize: number): Uint8Array {
  const mem = MemoryOperand.new64(Register.RAX, index ? Register.RAX : Register.None, 1, 0n, displSize, false, Register.None);
  return encodeAt(Instruction.createMem(code, mem), 0n);
}

function buildTable(): Uint8Array[] {
  const t: Uint8Array[] = [new Uint8Array(0)];
  t[1] = encodeAt(Instruction.create(Code.Nopd), 0n); // 90
  t[2] = encodeAt(Instruction.create(Code.Nopw), 0n); // 66 90
  t[3] = nopMem(Code.Nop_rm32, false, 0); // 0f 1f 00
  t[4] = nopMem(Code.Nop_rm32, false, 1); // 0f 1f 40 00
  t[5] = nopMem(Code.Nop_rm32, true, 1); // 0f 1f 44 00 00
  t[6] = nopMem(Code.Nop_rm16, true, 1); // 66 0f 1f 44 00 00
  // iced-x86 spells a 32-bit displacement in 64-bit addressing as displacement size 8.
  t[7] = nopMem(Code.Nop_rm32, false, 8); // 0f 1f 80 00 00 00 00
  t[8] = nopMem(Code.Nop_rm32, true, 8); // 0f 1f 84 00 00 00 00 00
  return t;
}

/** x86_nops[n]: the n-byte NOP, n = 1..8. */
export const X86_NOPS: readonly Uint8Array[] = buildTable();

/** Fills `buf[from, from+len)` with NOPs the way the kernel's add_nops() does. */
export function addNops(buf: Uint8Array, from: number, len: number): void {
  let at = from;
  let left = len;
  while (left > 0) {
    const n = Math.min(left, ASM_NOP_MAX);
    buf.set(X86_NOPS[n], at);
    at += n;
    left -= n;
  }
}

export function nops(len: number): Uint8Array {
  const b = new Uint8Array(len);
  addNops(b, 0, len);
  return b;
}

/** x86_nops of 6.6+ on x86-64: NOP1..NOP8 as above, NOP9 = cs NOP8, NOP10/11 = 66 (66) NOP9. */
export const X86_NOPS_64: readonly Uint8Array[] = (() => {
  const t = [...X86_NOPS];
  t[9] = Uint8Array.from([0x2e, ...X86_NOPS[8]]);
  t[10] = Uint8Array.from([0x66, ...t[9]]);
  t[11] = Uint8Array.from([0x66, ...t[10]]);
  return t;
})();
