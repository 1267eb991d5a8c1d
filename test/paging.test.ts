// 4-level paging against the SDM (vol. 3, chapter 4): the walk, large pages, access
// rights and #PF error codes (4.6, 4.7), accessed/dirty bits (4.8), and per-CPU TLBs
// that keep a stale translation until INVLPG or a CR3 write (4.10).

import { Machine } from '../emu/machine';
import { PageFault } from '../emu/memory';
import { GuestException } from '../emu/fault';
import type { Cpu } from '../emu/cpu';
import { splitAddr } from '../emu/memory';
import {
  PTE_P, PTE_RW, PTE_US, PTE_A, PTE_D, PTE_PS, PTE_G, PF_P, PF_W, PF_U, PF_RSVD, PF_I,
  CR0_PG, CR0_WP, CR4_PGE, CR4_SMAP, CR4_SMEP, EFER_NXE,
} from '../emu/paging';
import { AC } from '../emu/flags';
import { PageTables } from '../emu/page-tables';
import { assemble } from '../scripts/gas';

const PML4 = 0x10000n;
const PDPT = 0x11000n;
const PD = 0x12000n;
const PT = 0x13000n;
const XD = 1n << 63n;
const RWP = BigInt(PTE_P | PTE_RW);

/** A machine whose CPUs translate through tables at PML4: virtual 0x200000+ by a 4 KiB PT. */
function paged(cpus = 1): Machine {
  const m = new Machine({ cpus, paging: true });
  for (const a of [PML4, PDPT, PD, PT, 0x400000n, 0x401000n, 0x402000n, 0x403000n, 0x600000n, 0x40000000n]) m.mem.map(a, 0x1000);
  m.mem.writeU64(PML4, PDPT | RWP | BigInt(PTE_US));
  m.mem.writeU64(PDPT, PD | RWP | BigInt(PTE_US));
  m.mem.writeU64(PD + 8n, PT | RWP | BigInt(PTE_US)); // virtual 0x200000..0x3fffff
  m.mem.writeU64(PT + 0n * 8n, 0x400000n | RWP); // 0x200000 -> 0x400000, supervisor RW
  m.mem.writeU64(PT + 1n * 8n, 0x401000n | BigInt(PTE_P)); // 0x201000 -> 0x401000, read-only
  // 0x202000: not present
  m.mem.writeU64(PT + 3n * 8n, 0x403000n | RWP | BigInt(PTE_US)); // 0x203000 -> user page
  m.mem.writeU64(PT + 4n * 8n, 0x402000n | RWP | XD); // 0x204000 -> no-execute
  for (const c of m.cpus) on(c);
  return m;
}

function on(c: Cpu): void {
  const [lo, hi] = splitAddr(PML4);
  c.setCr3(lo, hi);
  c.cr0 |= CR0_PG;
  expect(c.paging).toBe(true);
}

function rd(c: Cpu, a: bigint): number {
  const [lo, hi] = splitAddr(a);
  return c.rd32(lo, hi) >>> 0;
}

function wr(c: Cpu, a: bigint, v: number): void {
  const [lo, hi] = splitAddr(a);
  c.wr32(lo, hi, v);
}

function fetch(c: Cpu, a: bigint): void {
  const [lo, hi] = splitAddr(a);
  c.codePage(lo, hi);
}

/** The #PF error code an access raises (and CR2's value), or null if it succeeds. */
function fault(f: () => void): { code: number; addr: bigint } | null {
  try {
    f();
    return null;
  } catch (e) {
    if (!(e instanceof PageFault)) throw e;
    return { code: e.code, addr: (BigInt(e.hi >>> 0) << 32n) | BigInt(e.lo >>> 0) };
  }
}

describe('page walk: translation and page sizes (SDM 4.5)', () => {
  it('a 4 KiB page maps virtual to physical; paging off again is the identity', () => {
    const m = paged();
    const c = m.cpu(0);
    m.mem.writeU32(0x400010n, 0xdeadbeef);
    expect(rd(c, 0x200010n)).toBe(0xdeadbeef);
    wr(c, 0x200020n, 0x1234);
    expect(m.mem.readU32(0x400020n)).toBe(0x1234);
    c.cr0 &= ~CR0_PG;
    expect(c.paging).toBe(false);
    m.mem.map(0x200000n, 0x1000);
    expect(rd(c, 0x200010n)).toBe(0);
  });

  it('2 MiB and 1 GiB pages take the low bits of the address as the offset', () => {
    const m = paged();
    const c = m.cpu(0);
    m.mem.writeU64(PD + 3n * 8n, 0x600000n | RWP | BigInt(PTE_PS)); // 0x600000..0x7fffff, 2 MiB
    m.mem.writeU64(PDPT + 8n, 0x40000000n | RWP | BigInt(PTE_PS)); // 0x40000000..0x7fffffff, 1 GiB
    m.mem.map(0x7ff000n, 0x1000);
    m.mem.map(0x40123000n, 0x1000);
    m.mem.writeU32(0x7ff008n, 0xaa);
    m.mem.writeU32(0x40123004n, 0xbb);
    expect(rd(c, 0x7ff008n)).toBe(0xaa);
    expect(rd(c, 0x40123004n)).toBe(0xbb);
    // Mapped elsewhere: 2 MiB virtual 0x800000 -> physical 0x600000.
    m.mem.writeU64(PD + 4n * 8n, 0x600000n | RWP | BigInt(PTE_PS));
    m.mem.writeU32(0x600100n, 0xcc);
    expect(rd(c, 0x800100n)).toBe(0xcc);
  });

  it('accessed bits on every level used; dirty only on the leaf, only on a write (4.8)', () => {
    const m = paged();
    const c = m.cpu(0);
    rd(c, 0x200000n);
    for (const e of [PML4, PDPT, PD + 8n, PT]) expect(m.mem.readU64(e) & BigInt(PTE_A)).toBe(BigInt(PTE_A));
    expect(m.mem.readU64(PT) & BigInt(PTE_D)).toBe(0n);
    expect(m.mem.readU64(PD + 8n) & BigInt(PTE_D)).toBe(0n);
    wr(c, 0x200000n, 1);
    expect(m.mem.readU64(PT) & BigInt(PTE_D)).toBe(BigInt(PTE_D));
    expect(m.mem.readU64(PD + 8n) & BigInt(PTE_D)).toBe(0n);
    // A faulting access sets no accessed bit.
    m.mem.writeU64(PT + 5n * 8n, 0x402000n | RWP);
    m.mem.writeU64(PD + 2n * 8n, 0n);
    expect(fault(() => rd(c, 0x400000n))).not.toBeNull();
    expect(m.mem.readU64(PT + 5n * 8n) & BigInt(PTE_A)).toBe(0n);
  });

  it('a write through a clean cached entry walks again to set D', () => {
    const m = paged();
    const c = m.cpu(0);
    rd(c, 0x200000n);
    expect(m.mem.readU64(PT) & BigInt(PTE_D)).toBe(0n);
    wr(c, 0x200000n, 7);
    expect(m.mem.readU64(PT) & BigInt(PTE_D)).toBe(BigInt(PTE_D));
  });
});

describe('#PF error codes (SDM 4.7) and CR2', () => {
  it('not present: P=0, with W/R and I/D as the access was', () => {
    const c = paged().cpu(0);
    expect(fault(() => rd(c, 0x202008n))).toEqual({ code: 0, addr: 0x202008n });
    expect(fault(() => wr(c, 0x202008n, 1))).toEqual({ code: PF_W, addr: 0x202008n });
    expect(fault(() => fetch(c, 0x202000n))).toEqual({ code: PF_I, addr: 0x202000n });
  });

  it('write to a read-only page: P|W with CR0.WP=1; allowed in supervisor mode with WP=0', () => {
    const m = paged();
    const c = m.cpu(0);
    expect(rd(c, 0x201000n)).toBe(0);
    expect(fault(() => wr(c, 0x201000n, 1))?.code).toBe(PF_P | PF_W);
    c.cr0 &= ~CR0_WP;
    expect(fault(() => wr(c, 0x201000n, 5))).toBeNull();
    expect(m.mem.readU32(0x401000n)).toBe(5);
  });

  it('user mode: a supervisor page faults with U set; a user page reads', () => {
    const c = paged().cpu(0);
    c.cs = 0x33;
    expect(fault(() => rd(c, 0x200000n))?.code).toBe(PF_P | PF_U);
    expect(fault(() => wr(c, 0x201000n, 1))?.code).toBe(PF_P | PF_W | PF_U);
    expect(fault(() => rd(c, 0x203000n))).toBeNull();
    expect(fault(() => rd(c, 0x202000n))?.code).toBe(PF_U);
  });

  it('SMAP: a supervisor read of a user page faults unless RFLAGS.AC; SMEP: no supervisor fetch from it', () => {
    const c = paged().cpu(0);
    expect(c.cr4 & CR4_SMAP).not.toBe(0);
    expect(fault(() => rd(c, 0x203000n))?.code).toBe(PF_P);
    c.flags |= AC;
    expect(fault(() => rd(c, 0x203000n))).toBeNull();
    expect(fault(() => fetch(c, 0x203000n))?.code).toBe(PF_P | PF_I);
    c.cr4 &= ~(CR4_SMEP | CR4_SMAP);
    c.flags &= ~AC;
    expect(fault(() => rd(c, 0x203000n))).toBeNull();
    expect(fault(() => fetch(c, 0x203000n))).toBeNull();
  });

  it('NX: a fetch from an XD page is P|I; with EFER.NXE clear bit 63 is reserved', () => {
    const c = paged().cpu(0);
    expect(fault(() => fetch(c, 0x204000n))?.code).toBe(PF_P | PF_I);
    expect(fault(() => rd(c, 0x204000n))).toBeNull();
    c.efer &= ~EFER_NXE;
    expect(fault(() => rd(c, 0x204000n))?.code).toBe(PF_P | PF_RSVD);
  });

  it('reserved bits: above MAXPHYADDR, PS in a PML4E, bits 20:13 of a 2 MiB PDE', () => {
    const m = paged();
    const c = m.cpu(0);
    m.mem.writeU64(PT + 6n * 8n, 0x402000n | RWP | (1n << 50n));
    expect(fault(() => rd(c, 0x206000n))?.code).toBe(PF_P | PF_RSVD);
    expect(fault(() => wr(c, 0x206000n, 1))?.code).toBe(PF_P | PF_W | PF_RSVD);
    m.mem.writeU64(PD + 5n * 8n, 0x600000n | RWP | BigInt(PTE_PS) | 0x2000n);
    expect(fault(() => rd(c, 0xa00000n))?.code).toBe(PF_P | PF_RSVD);
    m.mem.writeU64(PML4 + 8n, PDPT | RWP | BigInt(PTE_PS));
    expect(fault(() => rd(c, 0x8000000000n))?.code).toBe(PF_P | PF_RSVD);
  });

  it('a non-canonical address is #GP(0), not #PF', () => {
    const c = paged().cpu(0);
    expect(() => rd(c, 0x0000800000000000n)).toThrow(GuestException);
  });
});

describe('per-CPU TLBs (SDM 4.10)', () => {
  it('a CPU that did not flush keeps the old translation after another changed the PTE', () => {
    const m = paged(2);
    const [c0, c1] = m.cpus;
    m.mem.writeU32(0x400000n, 111);
    m.mem.writeU32(0x402000n, 222);
    expect(rd(c0, 0x200000n)).toBe(111);
    // CPU1 caches a dirty translation (a write through a clean one would walk again).
    wr(c1, 0x200000n, 111);
    // CPU0 remaps the page and flushes its own TLB only.
    const pte = m.mem.readU64(PT);
    m.mem.writeU64(PT, (pte & ~0xfffff000n) | 0x402000n);
    c0.invlpg(0x200000, 0);
    expect(rd(c0, 0x200000n)).toBe(222);
    expect(rd(c1, 0x200000n)).toBe(111);
    // Its writes still go to the old frame.
    wr(c1, 0x200004n, 333);
    expect(m.mem.readU32(0x400004n)).toBe(333);
    c1.invlpg(0x200000, 0);
    expect(rd(c1, 0x200000n)).toBe(222);
  });

  it('a CR3 write flushes all but global pages when CR4.PGE is set; all of them without PGE', () => {
    const m = paged();
    const c = m.cpu(0);
    m.mem.writeU64(PT + 7n * 8n, 0x402000n | RWP | BigInt(PTE_G));
    m.mem.writeU32(0x402000n, 1);
    m.mem.writeU32(0x400000n, 2);
    expect(rd(c, 0x207000n)).toBe(1);
    expect(rd(c, 0x200000n)).toBe(2);
    m.mem.writeU64(PT + 7n * 8n, 0n);
    m.mem.writeU64(PT, 0n);
    c.setCr3(Number(PML4), 0);
    expect(rd(c, 0x207000n)).toBe(1); // global: kept
    expect(fault(() => rd(c, 0x200000n))?.code).toBe(0); // walked again: not present
    c.cr4 &= ~CR4_PGE; // changing PGE flushes everything (4.10.4.1)
    expect(fault(() => rd(c, 0x207000n))?.code).toBe(0);
  });

  it('rights cached in the TLB are used until a #PF invalidates them', () => {
    const m = paged();
    const c = m.cpu(0);
    expect(rd(c, 0x201000n)).toBe(0); // cached read-only
    m.mem.writeU64(PT + 8n, 0x401000n | RWP); // now writable, no INVLPG
    expect(fault(() => wr(c, 0x201000n, 9))?.code).toBe(PF_P | PF_W); // stale rights
    expect(fault(() => wr(c, 0x201000n, 9))).toBeNull(); // the #PF dropped the entry
    expect(m.mem.readU32(0x401000n)).toBe(9);
  });

  it('the hot path does not bypass rights: a read-only page never enters the write cache', () => {
    const m = paged();
    const c = m.cpu(0);
    rd(c, 0x201000n);
    expect(fault(() => wr(c, 0x201000n, 1))?.code).toBe(PF_P | PF_W);
    expect(fault(() => wr(c, 0x201000n, 1))?.code).toBe(PF_P | PF_W);
  });
});

describe('snapshots', () => {
  it('restore the TLB: a translation flushed after the snapshot is cached again', () => {
    const m = paged();
    const c = m.cpu(0);
    m.mem.writeU32(0x400000n, 111);
    m.mem.writeU32(0x402000n, 222);
    wr(c, 0x200000n, 111);
    const s = m.snapshot();
    m.mem.writeU64(PT, 0x402000n | RWP);
    c.invlpg(0x200000, 0);
    expect(rd(c, 0x200000n)).toBe(222);
    m.restore(s);
    expect(m.mem.readU64(PT) & ~0x60n).toBe(0x400000n | RWP);
    m.mem.writeU64(PT, 0x402000n | RWP); // changed again, not flushed: the restored TLB still maps the old frame
    expect(rd(c, 0x200000n)).toBe(111);
  });
});

describe('machine services under paging', () => {
  it('a CPU spinning on a flag blocks on the physical page and wakes when another CPU sets it', () => {
    const TEXT_V = 0xffffffff81000000n;
    const DATA_V = 0xffffffff82000000n;
    const src = `
      _start:
        mov $0, %eax
      1:
        pause
        cmpq $0, 0x${DATA_V.toString(16)}
        je 1b
        hlt
      setter:
        mov $200, %ecx
      2:
        dec %ecx
        jnz 2b
        movq $1, 0x${(DATA_V + 0x1000n).toString(16)}   # the same frame through a second mapping
        hlt
    `;
    const a = assemble(`.text\n${src}\n`, { base: TEXT_V });
    const m = new Machine({ cpus: 2, paging: true });
    m.load(0x100000n, a.bytes, true);
    m.mem.map(0x200000n, 0x1000);
    const pt = new PageTables(m, 0x300000n);
    pt.map(TEXT_V, 0x100000n);
    pt.map(DATA_V, 0x200000n);
    pt.map(DATA_V + 0x1000n, 0x200000n);
    pt.enable();
    m.cpu(0).setRipBig(a.symbols.get('_start')!);
    m.cpu(1).setRipBig(a.symbols.get('setter')!);
    const r = m.run({ schedule: { kind: 'round-robin', quantum: 50 }, maxSteps: 100_000 });
    expect(r.stop).toBe('halted');
    expect(m.mem.readU64(0x200000n)).toBe(1n);
    // CPU0 blocked rather than spinning all the while.
    expect(m.cpu(0).retired).toBeLessThan(200);
  });
});
