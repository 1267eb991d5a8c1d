// Host-side construction of 4-level page tables in guest physical memory, for tests,
// benches and scenarios that start a machine with paging on (the guest can of course
// build its own: test/paging-guest.test.ts). Tables are taken from a bump allocator in
// physical memory and mapped as they are needed.

import type { Machine } from './machine';
import { PTE_P, PTE_RW, PTE_US, PTE_PS } from './paging';

const ADDR_MASK = 0x000ffffffffff000n;

export class PageTables {
  /** Physical address of the PML4 (what CR3 holds). */
  readonly root: bigint;
  private next: bigint;

  /** Tables are allocated from physical memory at `pool` upwards, one 4 KiB page each. */
  constructor(
    private readonly m: Machine,
    pool: bigint,
  ) {
    this.next = pool;
    this.root = this.alloc();
  }

  private alloc(): bigint {
    const a = this.next;
    this.m.mem.map(a, 0x1000);
    this.next += 0x1000n;
    return a;
  }

  /**
   * Maps the page at linear `virt` to physical `phys` (both aligned to `size`: 4 KiB,
   * 2 MiB or 1 GiB). `flags` are the leaf's low bits (P is added); the tables above it
   * allow everything (P|RW|US), so the leaf alone decides the rights.
   */
  map(virt: bigint, phys: bigint, flags: bigint = BigInt(PTE_RW), size = 0x1000): void {
    const v = BigInt.asUintN(48, virt);
    const leafLevel = size === 0x1000 ? 3 : size === 0x200000 ? 2 : size === 0x40000000 ? 1 : -1;
    if (leafLevel < 0) throw new Error(`page size must be 4 KiB, 2 MiB or 1 GiB (got ${size})`);
    if (v % BigInt(size) !== 0n || phys % BigInt(size) !== 0n) throw new Error('map: addresses must be aligned to the page size');
    let table = this.root;
    for (let level = 0; level < leafLevel; level++) {
      const idx = (v >> BigInt(39 - 9 * level)) & 0x1ffn;
      const at = table + idx * 8n;
      let e = this.m.mem.readU64(at);
      if ((e & BigInt(PTE_P)) === 0n) {
        e = this.alloc() | BigInt(PTE_P | PTE_RW | PTE_US);
        this.m.mem.writeU64(at, e);
      }
      table = e & ADDR_MASK;
    }
    const idx = (v >> BigInt(39 - 9 * leafLevel)) & 0x1ffn;
    const ps = leafLevel < 3 ? BigInt(PTE_PS) : 0n;
    this.m.mem.writeU64(table + idx * 8n, phys | flags | ps | BigInt(PTE_P));
  }

  /** Points every CPU's CR3 at these tables and turns paging on (the machine needs `paging: true`). */
  enable(): void {
    for (const c of this.m.cpus) {
      c.setCr3(Number(this.root & 0xffffffffn) | 0, Number(this.root >> 32n) | 0);
      c.cr0 |= 1 << 31;
      if (!c.paging) throw new Error('paging did not turn on: the machine needs the option paging: true, and CR4.PAE and EFER.LME set');
    }
  }
}

/**
 * Gives the RAM page loaded at page number `flat >> 12` a physical frame `phys` too:
 * with paging, CPUs reach it through the frame their page tables name, while loaders,
 * reports and tests keep using the address it was loaded at (a kernel image loaded
 * at 0xffffffff81000000 needs a frame below MAXPHYADDR). One page, two keys: every
 * write is seen under both.
 */
export function assignFrame(m: Machine, flat: bigint, phys: bigint): void {
  const pg = m.mem.pages.get(Number(flat >> 12n));
  if (!pg) throw new Error(`assignFrame: nothing is loaded at 0x${flat.toString(16)}`);
  const key = Number(phys >> 12n);
  const there = m.mem.pages.get(key);
  if (there && there !== pg) throw new Error(`assignFrame: physical 0x${phys.toString(16)} already holds another page`);
  m.mem.pages.set(key, pg);
}
