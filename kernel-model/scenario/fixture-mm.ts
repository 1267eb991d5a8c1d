// The fixture kernel's address spaces, built at boot when the machine has paging:
// init_mm — the kernel image at its link address on frames from PHYS_BASE up (text
// read-only and executable, data and bss writable and not executable, all global,
// as Linux maps itself without PTI) plus the direct map of the page-table pages — and
// poking_mm, as 6.1's poking_init() makes it: a new mm sharing the kernel half of
// init_mm's PGD, with the page table for poking_addr allocated up front and its PTE
// empty. Every CPU starts with CR0.PG set and CR3 = init_mm. Sources:
// docs/notes/poking-mm.md.

import type { Machine } from '../../emu/machine';
import { PageTables, assignFrame } from '../../emu/page-tables';
import { PTE_P, PTE_RW, PTE_A, PTE_D, PTE_G, CR4_PGE } from '../../emu/paging';
import type { FixtureImage } from '../image/fixture-image';
import type { PokingMm } from '../linux/text-poke-mm';

/** Where the image's frames start: CONFIG_PHYSICAL_START's 16 MiB. */
export const PHYS_BASE = 0x1000000n;
/** Page-table pages: init_mm's from 1 MiB, poking_mm's after them. */
const PGTABLE_POOL = 0x100000n;
const POOL_PAGES = 64n;
/** The direct map (page_offset_base, 4-level paging, no KASLR). */
export const PAGE_OFFSET = 0xffff888000000000n;
/** 6.1's TASK_SIZE_MAX for 4-level paging and TASK_UNMAPPED_BASE = PAGE_ALIGN(TASK_SIZE / 3). */
const TASK_SIZE = 0x7ffffffff000n;
const PMD_SIZE = 0x200000n;
const PAGE = 0x1000n;
const NX = 1n << 63n;
const ADDR_MASK = 0x000ffffffffff000n;

const KERNEL_ROX = BigInt(PTE_A | PTE_G);
const KERNEL_RW = BigInt(PTE_RW | PTE_A | PTE_D | PTE_G) | NX;

/** poking_init()'s address without KASLR, moved on a page if its next page would start a new PMD. */
export function pokingAddress(): bigint {
  let a = (TASK_SIZE / 3n + PAGE - 1n) & ~(PAGE - 1n);
  if (((a + PAGE) & (PMD_SIZE - 1n)) === 0n) a += PAGE;
  return a;
}

/** The physical address of the 4 KiB leaf entry for `va` under `root` (tables must exist). */
function leafEntry(m: Machine, root: bigint, va: bigint): bigint {
  let table = root;
  for (let level = 0; level < 3; level++) {
    const e = m.mem.readU64(table + ((va >> BigInt(39 - 9 * level)) & 0x1ffn) * 8n);
    if ((e & BigInt(PTE_P)) === 0n) throw new Error(`no page table for 0x${va.toString(16)} at level ${level}`);
    table = e & ADDR_MASK;
  }
  return table + ((va >> 12n) & 0x1ffn) * 8n;
}

/** Builds init_mm and poking_mm for a loaded fixture and turns paging on for every CPU. */
export function pokingInit(m: Machine, img: FixtureImage): PokingMm {
  if (!m.pagingEnabled) throw new Error('pokingInit: the machine needs the option paging: true');
  const init = new PageTables(m, PGTABLE_POOL);
  const text = img.sections.find((s) => s.name === '.text');
  if (!text) throw new Error(`${img.path}: no .text section`);
  const textEnd = text.address + BigInt(text.size);
  for (const s of img.sections) {
    const first = s.address & ~(PAGE - 1n);
    const end = s.address + BigInt(Math.max(1, s.size));
    for (let va = first; va < end; va += PAGE) {
      const phys = PHYS_BASE + (va - img.base);
      assignFrame(m, va, phys);
      init.map(va, phys, va < textEnd ? KERNEL_ROX : KERNEL_RW);
    }
  }
  // The direct map of the page-table pool: the kernel writes PTEs through it.
  for (let i = 0n; i < 2n * POOL_PAGES; i++) init.map(PAGE_OFFSET + PGTABLE_POOL + i * PAGE, PGTABLE_POOL + i * PAGE, KERNEL_RW);
  // poking_mm: mm_alloc()'s pgd_alloc() copies the kernel half of the PGD.
  const poking = new PageTables(m, PGTABLE_POOL + POOL_PAGES * PAGE);
  for (let i = 256n; i < 512n; i++) m.mem.writeU64(poking.root + i * 8n, m.mem.readU64(init.root + i * 8n));
  // get_locked_pte(poking_mm, poking_addr): the tables down to the PTE, the PTE itself empty.
  const addr = pokingAddress();
  poking.map(addr, 0n, 0n);
  const ptePhys = leafEntry(m, poking.root, addr);
  m.mem.writeU64(ptePhys, 0n);
  if (ptePhys >= PGTABLE_POOL + 2n * POOL_PAGES * PAGE) throw new Error('pokingInit: the page-table pool is too small');
  for (const c of m.cpus) c.cr4 |= CR4_PGE;
  init.enable();
  return { initPgd: init.root, pgd: poking.root, addr, ptep: PAGE_OFFSET + ptePhys, ptePhys, imageBase: img.base, physBase: PHYS_BASE };
}
