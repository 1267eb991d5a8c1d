// Sparse guest physical memory: 4 KiB pages keyed by their 52-bit page number, so
// kernel addresses such as 0xffffffff81000000 are used as they are when paging is off.
//
// Each CPU's direct-mapped data caches (emu/tlb.ts) keep the hot path to one compare:
// the read half holds RAM pages, the write half only pages whose writes need no
// bookkeeping. Memory knows every CPU's cache so that a page becoming code or watched
// leaves every write half. A write to a code page or a watched page takes the slow
// path, which logs it (per-byte writer and sequence number for the XMC checker, a page
// generation for decode-cache invalidation) and wakes whoever watches the bytes.

import { pageKey, TWO32 } from './u64';
import { type DataCache, dropFromRead, dropFromWrite, flushCache } from './tlb';
import type { Journal } from './journal';

export const PAGE_SIZE = 4096;

/** Page flag bits: any set bit sends writes down the slow path. */
export const PAGE_CODE = 1;
export const PAGE_WATCHED = 2;
/** Reads of the page are watched (debugger read watchpoints): kept out of the read caches. */
export const PAGE_RWATCHED = 4;

/** A memory-mapped device page (the xAPIC register page). Accesses are per CPU. */
export interface MmioDevice {
  read(cpu: number, offset: number, size: number): number;
  write(cpu: number, offset: number, size: number, value: number): void;
}

/**
 * The memory one step touched, for the explorer's partial-order reduction: 8-byte
 * words (key: address bits 3..47) read and written, and whether it touched a device
 * (MMIO) or wrote code (`global`: such a step is dependent on every other step). Set as `Memory.footprint`, CPUs record every access in their slow path and
 * fill no caches (Cpu.xlate), so nothing is missed; off (null) it costs one test on a
 * cache miss.
 */
export class Footprint {
  reads: number[] = [];
  writes: number[] = [];
  global = false;

  clear(): void {
    this.reads.length = 0;
    this.writes.length = 0;
    this.global = false;
  }

  /** An access of up to 8 bytes (size unknown here) at (lo, hi): the words it may cover. */
  note(lo: number, hi: number, write: boolean): void {
    const k = (hi & 0xffff) * 536870912 + (lo >>> 3);
    const out = write ? this.writes : this.reads;
    out.push(k);
    if ((lo & 7) !== 0) out.push(k + 1);
  }

  /** A host-side access of `len` bytes at `addr`. */
  noteRange(addr: bigint, len: number, write: boolean): void {
    const a = BigInt.asUintN(48, addr);
    const first = Number(a >> 3n);
    const last = Number((a + BigInt(Math.max(len, 1) - 1)) >> 3n);
    const out = write ? this.writes : this.reads;
    for (let k = first; k <= last; k++) out.push(k);
  }
}

/**
 * Called after a watched byte range is written; `cpu` is the writer (-1 for the host
 * API), (lo, hi) the address it wrote. `at` is the same byte at the address the page
 * was first mapped at: they differ when paging reaches the page through an alias
 * (emu/page-tables.ts assignFrame; a poke through poking_mm).
 */
export type WatchFn = (cpu: number, lo: number, hi: number, size: number, at: bigint) => void;

interface Watch {
  start: number; // offset in page
  end: number; // exclusive
  fn: WatchFn;
  id: number;
}

export class Page {
  readonly data = new Uint8Array(PAGE_SIZE);
  readonly view = new DataView(this.data.buffer);
  flags = 0;
  /** Bumped on every write while the page holds code; decoded instructions compare it. */
  gen = 0;
  /**
   * Per byte: CPU that last wrote it (-1: loader or host API), and the global write
   * sequence. Allocated on the first logged write: most code is never written, and a
   * kernel's text is thousands of pages.
   */
  writer: Int16Array | null = null;
  seq: Float64Array | null = null;
  watches: Watch[] | null = null;
  /** Read watches (debugger watchpoints); reads of such a page take the CPU's slow path. */
  readWatches: Watch[] | null = null;
  /** The journal epoch in which this page was last saved (emu/journal.ts). */
  jepoch = 0;
  /**
   * Content version: a fresh number each time the journal saves the page (before a
   * change), put back by an undo. While a journal exists, the same version is the same
   * bytes as long as a mark separates a reader from the next write (the explorer hashes
   * a page once per version).
   */
  ver = 0;
  constructor(readonly key: number) {}
}

/**
 * While a host routine's body runs, its direct reads of memory (outside its yielded
 * operations) go through this, so they can be recorded and served again when the
 * routine is re-created after a restore (emu/host.ts).
 */
export interface HostReadTap {
  read(addr: bigint, len: number, live: () => Uint8Array): Uint8Array;
}

/**
 * Raised for an access to unmapped memory, or by a page walk (emu/paging.ts); the CPU
 * turns it into a guest #PF with `code` as the error code and (lo, hi) in CR2.
 */
export class PageFault {
  constructor(
    readonly lo: number,
    readonly hi: number,
    readonly write: boolean,
    readonly fetch: boolean,
    readonly code: number = (write ? 2 : 0) | (fetch ? 16 : 0),
    /** Why, when a page walk found it (otherwise the address was unmapped). */
    readonly detail: string | null = null,
  ) {}
}

export class Memory {
  readonly pages = new Map<number, Page>();
  private readonly mmio = new Map<number, MmioDevice>();
  /** Every CPU's data cache, registered by the CPU. */
  readonly caches: DataCache[] = [];
  /** Global sequence of logged (code-page) writes; CPUs record it when they serialize. */
  writeSeq = 0;
  private nextWatchId = 1;
  /** The pages each watch sits on, so unwatch touches only those. */
  private readonly watchPages = new Map<number, Page[]>();
  /** Code-page writes since the start, for consumers (stale fetch mode) that catch up lazily. */
  readonly codeWriteLog: { seq: number; page: Page; writer: number }[] = [];
  /** Set once the machine takes snapshots: pages are saved on their first change after each. */
  journal: Journal | null = null;
  hostReads: HostReadTap | null = null;
  /** While set, every access is recorded there (and the TLBs are not filled). */
  footprint: Footprint | null = null;

  /** Saves a page before its first change since the last snapshot (a no-op without snapshots). */
  touch(pg: Page): void {
    const j = this.journal;
    if (j !== null && pg.jepoch !== j.epoch) j.savePage(pg);
  }

  /** Maps zeroed pages covering [addr, addr+size). Already-mapped pages are kept. */
  map(addr: bigint, size: number): void {
    if (size <= 0) return;
    const first = addr >> 12n;
    const last = (addr + BigInt(size) - 1n) >> 12n;
    for (let p = first; p <= last; p++) {
      const key = Number(p);
      if (!this.pages.has(key) && !this.mmio.has(key)) {
        this.pages.set(key, new Page(key));
        this.journal?.savedMap(key, (k) => this.pages.delete(k));
      }
    }
  }

  isMapped(addr: bigint): boolean {
    const key = Number(BigInt.asUintN(64, addr) >> 12n);
    return this.pages.has(key) || this.mmio.has(key);
  }

  mapMmio(addr: bigint, dev: MmioDevice): void {
    const key = Number(addr >> 12n);
    this.pages.delete(key);
    this.mmio.set(key, dev);
    this.flushTlb();
  }

  /** Marks the pages of [addr, addr+size) as code: writes to them are logged per byte. */
  markCode(addr: bigint, size: number): void {
    const first = addr >> 12n;
    const last = (addr + BigInt(Math.max(size, 1)) - 1n) >> 12n;
    for (let p = first; p <= last; p++) {
      const pg = this.pages.get(Number(p));
      if (pg) this.makeCode(pg);
    }
  }

  makeCode(pg: Page): void {
    if (pg.flags & PAGE_CODE) return;
    this.touch(pg);
    pg.flags |= PAGE_CODE;
    this.dropFromWriteTlb(pg);
  }

  pageAt(lo: number, hi: number): Page | undefined {
    return this.pages.get(pageKey(lo, hi));
  }

  mmioAt(lo: number, hi: number): MmioDevice | undefined {
    const dev = this.mmio.get(pageKey(lo, hi));
    if (dev !== undefined && this.footprint !== null) this.footprint.global = true;
    return dev;
  }

  /** The MMIO device at physical page number `key`, if any. */
  mmioByKey(key: number): MmioDevice | undefined {
    if (this.mmio.size === 0) return undefined;
    const dev = this.mmio.get(key);
    if (dev !== undefined && this.footprint !== null) this.footprint.global = true;
    return dev;
  }

  flushTlb(): void {
    for (const c of this.caches) flushCache(c);
  }

  private dropFromWriteTlb(pg: Page): void {
    for (const c of this.caches) dropFromWrite(c, pg);
  }

  private dropFromReadTlb(pg: Page): void {
    for (const c of this.caches) dropFromRead(c, pg);
  }

  /**
   * Records a write of `size` bytes at page offset `off` (already stored) by `cpu`.
   * Only called for pages with flags set.
   */
  noteWrite(pg: Page, off: number, size: number, cpu: number, lo: number, hi: number): void {
    if (pg.flags & PAGE_CODE) {
      // A code write: the step that makes it commutes with no other.
      if (this.footprint !== null) this.footprint.global = true;
      const seq = ++this.writeSeq;
      pg.gen++;
      if (!pg.writer) {
        pg.writer = new Int16Array(PAGE_SIZE).fill(-1);
        pg.seq = new Float64Array(PAGE_SIZE);
      }
      const w = pg.writer;
      const s = pg.seq!;
      for (let k = 0; k < size; k++) {
        w[off + k] = cpu;
        s[off + k] = seq;
      }
      this.codeWriteLog.push({ seq, page: pg, writer: cpu });
    }
    if (pg.watches) {
      const end = off + size;
      const at = (BigInt(pg.key) << 12n) | BigInt(off);
      // Copy: a callback may remove its own watch.
      for (const wt of pg.watches.slice()) {
        if (wt.start < end && off < wt.end) wt.fn(cpu, lo, hi, size, at);
      }
    }
  }

  /**
   * Calls `fn` after every write that overlaps [addr, addr+size). Returns an id for unwatch.
   * The range may span pages.
   */
  watch(addr: bigint, size: number, fn: WatchFn): number {
    return this.watchRange(addr, size, fn, (pg, w) => {
      (pg.watches ??= []).push(w);
      pg.flags |= PAGE_WATCHED;
      this.dropFromWriteTlb(pg);
    });
  }

  /**
   * Calls `fn` after every CPU read that overlaps [addr, addr+size) (a debugger's read
   * watchpoint). The pages leave the read caches, so only their reads pay for it.
   */
  watchReads(addr: bigint, size: number, fn: WatchFn): number {
    return this.watchRange(addr, size, fn, (pg, w) => {
      (pg.readWatches ??= []).push(w);
      pg.flags |= PAGE_RWATCHED;
      this.dropFromReadTlb(pg);
    });
  }

  /** Splits [addr, addr+size) by page and lets `place` attach the watch to each mapped page. */
  private watchRange(addr: bigint, size: number, fn: WatchFn, place: (pg: Page, w: Watch) => void): number {
    const id = this.nextWatchId++;
    const on: Page[] = [];
    this.watchPages.set(id, on);
    let a = BigInt.asUintN(64, addr);
    let left = size;
    while (left > 0) {
      const off = Number(a & 0xfffn);
      const n = Math.min(left, PAGE_SIZE - off);
      const pg = this.pages.get(Number(a >> 12n));
      if (pg) {
        place(pg, { start: off, end: off + n, fn, id });
        on.push(pg);
      }
      a = BigInt.asUintN(64, a + BigInt(n));
      left -= n;
    }
    return id;
  }

  /** Calls the read watches of `pg` that overlap a read of `size` bytes at page offset `off`. */
  noteRead(pg: Page, off: number, size: number, cpu: number, lo: number, hi: number): void {
    const end = off + size;
    const at = (BigInt(pg.key) << 12n) | BigInt(off);
    for (const wt of pg.readWatches?.slice() ?? []) {
      if (wt.start < end && off < wt.end) wt.fn(cpu, lo, hi, size, at);
    }
  }

  unwatch(id: number): void {
    const on = this.watchPages.get(id);
    if (!on) return;
    this.watchPages.delete(id);
    for (const pg of on) {
      if (pg.watches) {
        const kept = pg.watches.filter((w) => w.id !== id);
        if (kept.length !== pg.watches.length) {
          pg.watches = kept.length ? kept : null;
          if (!pg.watches) pg.flags &= ~PAGE_WATCHED;
        }
      }
      if (pg.readWatches) {
        const kept = pg.readWatches.filter((w) => w.id !== id);
        if (kept.length !== pg.readWatches.length) {
          pg.readWatches = kept.length ? kept : null;
          if (!pg.readWatches) pg.flags &= ~PAGE_RWATCHED;
        }
      }
    }
  }

  // ---- Host-side (API) access: bigint addresses, no CPU, not logged as a CPU write. ----

  /** Copies bytes in, logging code-page writes with writer -1 (the loader). */
  writeBytes(addr: bigint, bytes: Uint8Array, writer = -1): void {
    if (this.footprint !== null) {
      this.footprint.noteRange(addr, bytes.length, true);
      this.footprint.global = true; // host-side writes: the loader, pokes by the host API
    }
    let a = BigInt.asUintN(64, addr);
    let i = 0;
    while (i < bytes.length) {
      const key = Number(a >> 12n);
      const pg = this.pages.get(key);
      const lo = Number(a & 0xffffffffn) | 0;
      const hi = Number(a >> 32n) | 0;
      if (!pg) throw new PageFault(lo, hi, true, false);
      const off = Number(a & 0xfffn);
      const n = Math.min(bytes.length - i, PAGE_SIZE - off);
      this.touch(pg);
      pg.data.set(bytes.subarray(i, i + n), off);
      if (pg.flags) this.noteWrite(pg, off, n, writer, lo, hi);
      i += n;
      a = BigInt.asUintN(64, a + BigInt(n));
    }
  }

  readBytes(addr: bigint, len: number): Uint8Array {
    if (this.hostReads !== null) return this.hostReads.read(addr, len, () => this.readLive(addr, len));
    return this.readLive(addr, len);
  }

  private readLive(addr: bigint, len: number): Uint8Array {
    if (this.footprint !== null) this.footprint.noteRange(addr, len, false);
    const out = new Uint8Array(len);
    let a = BigInt.asUintN(64, addr);
    let i = 0;
    while (i < len) {
      const key = Number(a >> 12n);
      const pg = this.pages.get(key);
      if (!pg) {
        throw new PageFault(Number(a & 0xffffffffn) | 0, Number(a >> 32n) | 0, false, false);
      }
      const off = Number(a & 0xfffn);
      const n = Math.min(len - i, PAGE_SIZE - off);
      out.set(pg.data.subarray(off, off + n), i);
      i += n;
      a = BigInt.asUintN(64, a + BigInt(n));
    }
    return out;
  }

  readU64(addr: bigint): bigint {
    const b = this.readBytes(addr, 8);
    return new DataView(b.buffer).getBigUint64(0, true);
  }

  readU32(addr: bigint): number {
    const b = this.readBytes(addr, 4);
    return new DataView(b.buffer).getUint32(0, true);
  }

  readU8(addr: bigint): number {
    return this.readBytes(addr, 1)[0];
  }

  writeU64(addr: bigint, v: bigint, writer = -1): void {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setBigUint64(0, BigInt.asUintN(64, v), true);
    this.writeBytes(addr, b, writer);
  }

  writeU32(addr: bigint, v: number, writer = -1): void {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setUint32(0, v >>> 0, true);
    this.writeBytes(addr, b, writer);
  }
}

/** Splits a bigint address into (lo, hi) int32 halves. */
export function splitAddr(addr: bigint): [number, number] {
  const a = BigInt.asUintN(64, addr);
  return [Number(a & 0xffffffffn) | 0, Number(a >> 32n) | 0];
}

export { TWO32 };
