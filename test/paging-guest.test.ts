// A guest that turns paging on itself: in flat mode (CR0.PG clear, linear = physical)
// it writes a PML4, PDPT, PD and PT, loads CR3, sets CR0.PG, then writes through a
// mapping to another frame, reads a read-only page and writes it, taking a #PF whose
// handler sees CR2 and the error code the SDM gives (4.7).

import { Machine } from '../emu/machine';
import { assemble } from '../scripts/gas';
import { loadIdt, writeIdtGate } from '../emu/setup';
import { RBX, RSP, R12, R13 } from '../emu/regs';
import { PTE_A, PTE_D } from '../emu/paging';

const CODE = 0x100000n;
const IDT = 0x20000n;

const SOURCE = `
_start:
  movq $0x11003, 0x10000      # PML4[0] -> PDPT, P|RW
  movq $0x12003, 0x11000      # PDPT[0] -> PD
  movq $0x83, 0x12000         # PD[0]: 2 MiB identity page (this code, the tables, the stack)
  movq $0x13003, 0x12008      # PD[1] -> PT: virtual 0x200000..0x3fffff
  movq $0x400003, 0x13000     # PT[0]: 0x200000 -> 0x400000, writable
  movq $0x401001, 0x13008     # PT[1]: 0x201000 -> 0x401000, read-only
  mov $0x10000, %eax
  mov %rax, %cr3
  mov %cr0, %rax
  bts $31, %rax
  mov %rax, %cr0              # paging on; the next fetch is translated
  movl $0x5a5a, 0x200008
  mov 0x201000, %ebx
  movl $1, 0x201004           # #PF: present, write
  hlt
pf_handler:
  mov %cr2, %r12
  pop %r13
  hlt
`;

describe('a guest turns paging on', () => {
  it('walks its own tables, sets A/D, and faults with CR2 and error code P|W', () => {
    const m = new Machine({ cpus: 1, paging: true });
    const a = assemble(`.text\n${SOURCE}\n`, { base: CODE });
    m.load(CODE, a.bytes, true);
    for (const p of [0x10000n, 0x11000n, 0x12000n, 0x13000n, IDT, 0x80000n, 0x400000n, 0x401000n]) m.mem.map(p, 0x1000);
    m.mem.writeU32(0x401000n, 0xfeed);
    writeIdtGate(m, IDT, 14, a.symbols.get('pf_handler')!);
    const c = m.cpu(0);
    loadIdt(c, IDT);
    c.setReg(RSP, 0x80ff0n);
    c.setRipBig(a.symbols.get('_start')!);
    expect(c.paging).toBe(false);
    const r = m.run({ stopOnHlt: true, maxSteps: 1000 });
    expect(r.stop).toBe('hlt');
    expect(c.paging).toBe(true);
    expect(m.mem.readU32(0x400008n)).toBe(0x5a5a);
    expect(c.getReg(RBX)).toBe(0xfeedn);
    expect(c.getReg(R12)).toBe(0x201004n); // CR2
    expect(c.getReg(R13)).toBe(3n); // P | W
    expect(m.mem.readU64(0x13000n) & BigInt(PTE_A | PTE_D)).toBe(BigInt(PTE_A | PTE_D));
    expect(m.mem.readU64(0x13008n) & BigInt(PTE_A | PTE_D)).toBe(BigInt(PTE_A));
    expect(m.mem.readU32(0x401004n)).toBe(0);
    expect(m.exceptionLog.at(-1)?.detail).toMatch(/write to .*protection violation/);
  });
});
