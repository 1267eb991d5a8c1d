// How a poke reaches kernel text: through poking_mm, as Linux 6.1's __text_poke and
// the series' __text_poke_map / __text_do_poke / __text_poke_unmap do it (sources:
// docs/notes/poking-mm.md). Kernel text is mapped read-only, so the patcher maps the
// text page(s) without the global bit at poking_addr in a temporary mm of its own,
// loads that mm's CR3, writes through the alias, clears the PTEs, loads the previous
// CR3 again, flushes poking_mm's range, and checks through the text mapping that the
// text holds what it wrote (BUG_ON(memcmp)).
//
// Every step is guest-visible: the PTE writes are stores to the page table (through
// the direct map), the CR3 loads and INVLPG are the fixture's own instructions
// (fixtures/include/mm.inc) called from here, and the alias write is translated by
// the writing CPU's TLB. When the machine runs flat (no page tables: real-kernel
// runs, and fixture scenarios without "paging"), `KernelContext.poking` is null and
// a poke writes the text address directly, as text_poke_early does.

import type { KernelContext } from './kernel-context';
import { hexBytes, kfn, kernelBug } from './kernel-context';
import { type Step, read, write, writeBytes, call, irqs } from './hostlib';

export const PAGE_SIZE = 4096n;
const PAGE_MASK = ~(PAGE_SIZE - 1n);

/** x86 PTE bits of PAGE_KERNEL without _PAGE_GLOBAL (arch/x86/include/asm/pgtable_types.h). */
export const PTE_PRESENT = 0x1n;
export const PTE_RW = 0x2n;
export const PTE_ACCESSED = 0x20n;
export const PTE_DIRTY = 0x40n;
export const PTE_GLOBAL = 0x100n;
export const PTE_NX = 1n << 63n;
export const PAGE_KERNEL_NOGLOBAL = PTE_PRESENT | PTE_RW | PTE_ACCESSED | PTE_DIRTY | PTE_NX;

const X86_EFLAGS_IF = 0x200n;

/** poking_init()'s results, made at boot (kernel-model/scenario/fixture-mm.ts). */
export interface PokingMm {
  /** CR3 of init_mm: the kernel's own page tables. */
  readonly initPgd: bigint;
  /** CR3 of poking_mm. */
  readonly pgd: bigint;
  /** poking_addr: a user-half address whose next page lies under the same PMD. */
  readonly addr: bigint;
  /** The PTE that maps poking_addr, at its direct-map address (the next one maps poking_addr + 4 KiB). */
  readonly ptep: bigint;
  /** The same PTE's physical address (tests and reports read it there). */
  readonly ptePhys: bigint;
  /** virt_to_page() for the kernel image: image address `imageBase` is physical `physBase`. */
  readonly imageBase: bigint;
  readonly physBase: bigint;
}

/** The kernel functions of the poke path a CPU can be seen entering (KernelCalls). */
export const POKE_FUNCTIONS = ['__text_poke', '__text_poke_map', '__text_do_poke', '__text_poke_unmap', 'use_temporary_mm', 'unuse_temporary_mm', 'flush_tlb_mm_range'] as const;

/** The poking_mm state of one poke in progress (the series keeps it for a whole site). */
export interface PokeMapping {
  /** The text address the mapping is for. */
  readonly addr: bigint;
  /** The CR3 use_temporary_mm replaced (null: flat machine, nothing was mapped). */
  readonly prev: bigint | null;
  /** Whether the bytes cross into a second page (two PTEs). */
  readonly crossPage: boolean;
}

function sym(k: KernelContext, name: string): bigint {
  const a = k.m.symbols.resolve(name);
  if (a === undefined) throw new Error(`the poke path through poking_mm needs the symbol '${name}' (fixtures/include/mm.inc)`);
  return a;
}

/** virt_to_page(): the physical frame holding a kernel image address. */
function frameOf(p: PokingMm, va: bigint): bigint {
  return p.physBase + ((va & PAGE_MASK) - p.imageBase);
}

/** Where a poke of the text at `addr` writes: the alias at poking_addr, or the text itself when flat. */
export function pokeAddress(k: KernelContext, addr: bigint): bigint {
  return k.poking ? k.poking.addr + (addr & (PAGE_SIZE - 1n)) : addr;
}

/** use_temporary_mm(): load `pgd` into CR3 (switch_mm_irqs_off); returns the CR3 it replaced. */
function useTemporaryMm(k: KernelContext, cpu: number, pgd: bigint): Step<bigint> {
  return kfn(k, cpu, 'use_temporary_mm', (function* (): Step<bigint> {
    const prev = yield* call(sym(k, 'native_read_cr3'), [], 'cpu_tlbstate.loaded_mm');
    yield* call(sym(k, 'native_write_cr3'), [pgd], 'switch_mm_irqs_off(poking_mm)');
    return prev;
  })());
}

/** unuse_temporary_mm(): load the previous mm's CR3 again (serializing; drops non-global TLB entries). */
function unuseTemporaryMm(k: KernelContext, cpu: number, prev: bigint): Step {
  return kfn(k, cpu, 'unuse_temporary_mm', (function* (): Step {
    yield* call(sym(k, 'native_write_cr3'), [prev], 'switch_mm_irqs_off(prev)');
  })());
}

/**
 * flush_tlb_mm_range(poking_mm, start, end): on this CPU only if poking_mm is still
 * the loaded mm (INVLPG per page, flush_tlb_func's local path). It never is here: the
 * switch back already dropped its entries (no PCIDs), and no other CPU has poking_mm
 * in its mm_cpumask, so no flush IPI is sent either.
 */
function flushTlbMmRange(k: KernelContext, cpu: number, p: PokingMm, pages: number): Step {
  return kfn(k, cpu, 'flush_tlb_mm_range', (function* (): Step {
    const loaded = yield* call(sym(k, 'native_read_cr3'), [], 'cpu_tlbstate.loaded_mm == poking_mm?');
    if ((loaded & PAGE_MASK) !== p.pgd) return;
    for (let i = 0; i < pages; i++) yield* call(sym(k, 'native_flush_tlb_one_user'), [p.addr + BigInt(i) * PAGE_SIZE], 'flush_tlb_one_user(poking_addr)');
  })());
}

/**
 * __text_poke_map(): point poking_addr's PTE (and the next, if the bytes cross a page)
 * at the text frame(s), PAGE_KERNEL without _PAGE_GLOBAL, then use_temporary_mm.
 */
export function textPokeMap(k: KernelContext, cpu: number, addr: bigint, len: number): Step<PokeMapping> {
  return kfn(k, cpu, '__text_poke_map', (function* (): Step<PokeMapping> {
    const p = k.poking;
    const crossPage = (addr & (PAGE_SIZE - 1n)) + BigInt(len) > PAGE_SIZE;
    if (!p) return { addr, prev: null, crossPage };
    yield* write(p.ptep, 8, frameOf(p, addr) | PAGE_KERNEL_NOGLOBAL, 'set_pte_at(poking_mm, poking_addr)');
    if (crossPage) yield* write(p.ptep + 8n, 8, frameOf(p, addr + PAGE_SIZE) | PAGE_KERNEL_NOGLOBAL, 'set_pte_at(poking_mm, poking_addr + PAGE_SIZE)');
    const prev = yield* useTemporaryMm(k, cpu, p.pgd);
    return { addr, prev, crossPage };
  })());
}

/** __text_do_poke(): the memcpy into the poking alias (re-entrant: the series' int3 path calls it too). */
export function textDoPoke(k: KernelContext, cpu: number, addr: bigint, bytes: Uint8Array, what: string): Step {
  if (!k.poking) return kfn(k, cpu, '__text_do_poke', writeBytes(addr, bytes, what));
  return kfn(k, cpu, '__text_do_poke', (function* (): Step {
    // One store per byte, as writeBytes; traces name the text byte behind the alias.
    for (let i = 0; i < bytes.length; i++) {
      const at = addr + BigInt(i);
      yield* write(pokeAddress(k, at), 1, BigInt(bytes[i]), `${what}, ${k.m.symbolize(at)} through poking_addr`);
    }
  })());
}

/**
 * __text_poke_unmap(): clear the PTE(s), unuse_temporary_mm, flush poking_mm's range,
 * then BUG_ON(memcmp(addr, opcode, len)) read back through the text mapping.
 */
export function textPokeUnmap(k: KernelContext, cpu: number, map: PokeMapping, expected: Uint8Array, where = 'arch/x86/kernel/alternative.c:__text_poke'): Step {
  return kfn(k, cpu, '__text_poke_unmap', (function* (): Step {
    const p = k.poking;
    if (p && map.prev !== null) {
      yield* write(p.ptep, 8, 0n, 'pte_clear(poking_mm, poking_addr)');
      if (map.crossPage) yield* write(p.ptep + 8n, 8, 0n, 'pte_clear(poking_mm, poking_addr + PAGE_SIZE)');
      yield* unuseTemporaryMm(k, cpu, map.prev);
      yield* flushTlbMmRange(k, cpu, p, map.crossPage ? 2 : 1);
    }
    const got = new Uint8Array(expected.length);
    for (let i = 0; i < expected.length; i++) got[i] = Number(yield* read(map.addr + BigInt(i), 1));
    if (hexBytes(got) !== hexBytes(expected)) {
      yield* kernelBug(k, cpu, where, `BUG_ON(memcmp): 0x${map.addr.toString(16)} holds ${hexBytes(got)}, expected ${hexBytes(expected)}`);
    }
  })());
}

/**
 * 6.1's text_poke() / __text_poke(text_poke_memcpy, …): with local interrupts saved
 * and disabled, map, write, unmap and check, all for this one write.
 */
export function textPoke(k: KernelContext, cpu: number, addr: bigint, bytes: Uint8Array, what: string): Step {
  return kfn(k, cpu, '__text_poke', (function* (): Step {
    let flags = 0n;
    if (k.poking) {
      flags = yield* call(sym(k, 'native_save_fl'), [], 'local_irq_save');
      yield* irqs(false);
    }
    const map = yield* textPokeMap(k, cpu, addr, bytes.length);
    yield* textDoPoke(k, cpu, addr, bytes, what);
    yield* textPokeUnmap(k, cpu, map, bytes);
    if (k.poking && (flags & X86_EFLAGS_IF) !== 0n) yield* irqs(true);
  })());
}
