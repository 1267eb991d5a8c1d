// Native templates: the instructions a paravirt site becomes when its op runs
// natively and the native code is short enough to inline (DESIGN.md, "Paravirt and
// alternatives"), as the 2020 series' kernel (5.6, paravirt_patch.c) has them: the
// model the fixture kernels run. Each is encoded with iced-x86 from its form.

import { Code, Instruction, MemoryOperand, Register } from 'iced-x86';
import { encodeAt } from './encode';

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

const movRdiToRax = (): Uint8Array => encodeAt(Instruction.createRegReg(Code.Mov_rm64_r64, Register.RAX, Register.RDI), 0n);

function build(): Map<string, Uint8Array> {
  const t = new Map<string, Uint8Array>();
  t.set('irq.save_fl', concat([encodeAt(Instruction.create(Code.Pushfq), 0n), encodeAt(Instruction.createReg(Code.Pop_r64, Register.RAX), 0n)]));
  t.set('irq.irq_disable', encodeAt(Instruction.create(Code.Cli), 0n));
  t.set('irq.irq_enable', encodeAt(Instruction.create(Code.Sti), 0n));
  t.set('mmu.read_cr2', encodeAt(Instruction.createRegReg(Code.Mov_r64_cr, Register.RAX, Register.CR2), 0n));
  t.set('mmu.read_cr3', encodeAt(Instruction.createRegReg(Code.Mov_r64_cr, Register.RAX, Register.CR3), 0n));
  t.set('mmu.write_cr3', encodeAt(Instruction.createRegReg(Code.Mov_cr_r64, Register.CR3, Register.RDI), 0n));
  t.set('cpu.wbinvd', encodeAt(Instruction.create(Code.Wbinvd), 0n));
  for (const level of ['pte', 'pmd', 'pud', 'p4d', 'pgd']) {
    t.set(`mmu.${level}_val`, movRdiToRax());
    t.set(`mmu.make_${level}`, movRdiToRax());
  }
  const rdi = MemoryOperand.new64(Register.RDI, Register.None, 1, 0n, 0, false, Register.None);
  t.set('lock.queued_spin_unlock', encodeAt(Instruction.createMemU32(Code.Mov_rm8_imm8, rdi, 0), 0n));
  // The series' (5.6) native_patch template is the 2-byte `xor %eax,%eax`; 6.1 has no
  // templates and its ALTERNATIVE writes `xor %rax,%rax` (alternatives-6.1.ts).
  t.set('lock.vcpu_is_preempted', encodeAt(Instruction.createRegReg(Code.Xor_rm32_r32, Register.EAX, Register.EAX), 0n));
  return t;
}

/** Op name -> native template bytes, for the ops that have one. */
export const NATIVE_TEMPLATES: ReadonlyMap<string, Uint8Array> = build();
