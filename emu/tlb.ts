// Translation caches of one CPU, in two layers:
//
// - `Tlb`, the architectural TLB (SDM vol. 3, 4.10.2): linear page → translation with
//   the rights the walk found, filled only by page walks and emptied only by what the
//   SDM says invalidates it (INVLPG, a CR3 write, a page fault on that address, a
//   change of paging mode). It never evicts on its own: that is a TLB the SDM allows,
//   and the one that punishes a missing flush most surely.
// - `DataCache`, the emulator's direct-mapped host cache the memory hot path compares
//   against (`Cpu.rd*`/`wr*`): linear page → `Page`, read and write halves. With paging
//   off it maps a page to itself; with paging on it holds only entries the TLB grants
//   without any further check in the current mode, so the hot path is the same either way.
//
// Leaf module: imports only `memory.ts` types.

import type { Page } from './memory';

export const CACHE_SIZE = 256;

/** One cached translation of a 4 KiB linear page (a large page is cached per 4 KiB page used). */
export interface TlbEntry {
  /** Physical page number (address >> 12) of this 4 KiB page. */
  pfn: number;
  /** Page size in bytes (4 KiB, 2 MiB or 1 GiB), so INVLPG can drop all of a large page. */
  size: number;
  /** Rights combined over every level: U/S and R/W AND-ed, XD OR-ed (SDM 4.6). */
  user: boolean;
  writable: boolean;
  nx: boolean;
  global: boolean;
  /** The leaf's D bit was set when cached: a write through a clean entry walks again. */
  dirty: boolean;
}

export class Tlb {
  private readonly map = new Map<number, TlbEntry>();
  /** Entries of pages larger than 4 KiB: INVLPG must scan for them only when this is non-zero. */
  private large = 0;

  get(vpn: number): TlbEntry | undefined {
    return this.map.get(vpn);
  }

  set(vpn: number, e: TlbEntry): void {
    const old = this.map.get(vpn);
    if (old && old.size !== 4096) this.large--;
    if (e.size !== 4096) this.large++;
    this.map.set(vpn, e);
  }

  get size(): number {
    return this.map.size;
  }

  /** INVLPG: every entry for the page containing `vpn`, of whatever size (SDM 4.10.4.1). */
  invalidate(vpn: number): void {
    this.drop(vpn);
    if (this.large === 0) return;
    for (const [k, e] of this.map) {
      if (e.size === 4096) continue;
      const pages = e.size / 4096;
      if (Math.floor(k / pages) === Math.floor(vpn / pages)) this.drop(k);
    }
  }

  /** A CR3 write without PCIDs: all entries but global ones when `keepGlobal` (CR4.PGE). */
  flush(keepGlobal: boolean): void {
    if (!keepGlobal) {
      this.map.clear();
      this.large = 0;
      return;
    }
    for (const [k, e] of this.map) if (!e.global) this.drop(k);
  }

  private drop(vpn: number): void {
    const e = this.map.get(vpn);
    if (!e) return;
    if (e.size !== 4096) this.large--;
    this.map.delete(vpn);
  }

  entries(): [number, TlbEntry][] {
    return [...this.map];
  }

  /** Replaces every entry (a snapshot restore); entries are never mutated once cached. */
  restore(entries: readonly [number, TlbEntry][]): void {
    this.map.clear();
    this.large = 0;
    for (const [k, e] of entries) this.set(k, e);
  }
}

/** The direct-mapped host caches the hot path reads (fields live on the Cpu for one load less). */
export interface DataCache {
  readonly tlbKey: Float64Array;
  readonly tlbPage: (Page | null)[];
  readonly wtlbKey: Float64Array;
  readonly wtlbPage: (Page | null)[];
  /** Some entry maps a linear page to a different physical page (paging on). */
  aliased: boolean;
  /** Some entry may be set since the last flush (false: the flush has nothing to do). */
  cached: boolean;
}

export function newKeys(): Float64Array {
  return new Float64Array(CACHE_SIZE).fill(-1);
}

export function newPages(): (Page | null)[] {
  return new Array<Page | null>(CACHE_SIZE).fill(null);
}

export function flushCache(c: DataCache): void {
  // The explorer flushes before every step it records (the footprint mode fills nothing).
  if (!c.cached) return;
  c.cached = false;
  c.tlbKey.fill(-1);
  c.wtlbKey.fill(-1);
  c.tlbPage.fill(null);
  c.wtlbPage.fill(null);
  c.aliased = false;
}

/** Drops one linear page from both halves. */
export function dropLinear(c: DataCache, vpn: number): void {
  const i = vpn % CACHE_SIZE;
  if (c.tlbKey[i] === vpn) {
    c.tlbKey[i] = -1;
    c.tlbPage[i] = null;
  }
  if (c.wtlbKey[i] === vpn) {
    c.wtlbKey[i] = -1;
    c.wtlbPage[i] = null;
  }
}

/** A physical page's writes now need bookkeeping: drop it from the write half wherever it is. */
export function dropFromWrite(c: DataCache, pg: Page): void {
  if (!c.aliased) {
    const i = pg.key % CACHE_SIZE;
    if (c.wtlbPage[i] === pg) {
      c.wtlbKey[i] = -1;
      c.wtlbPage[i] = null;
    }
    return;
  }
  for (let i = 0; i < CACHE_SIZE; i++) {
    if (c.wtlbPage[i] === pg) {
      c.wtlbKey[i] = -1;
      c.wtlbPage[i] = null;
    }
  }
}

/** A physical page's reads are now watched: drop it from the read half wherever it is. */
export function dropFromRead(c: DataCache, pg: Page): void {
  for (let i = 0; i < CACHE_SIZE; i++) {
    if (c.tlbPage[i] === pg) {
      c.tlbKey[i] = -1;
      c.tlbPage[i] = null;
    }
  }
}
