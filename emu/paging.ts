// 4-level paging (SDM vol. 3, chapter 4): the walk from CR3 through PML4, PDPT, PD and
// PT, 4 KiB / 2 MiB / 1 GiB pages, accessed and dirty bits written back, the access
// rights of 4.6 (U/S, R/W with CR0.WP, XD with EFER.NXE, SMEP, SMAP with RFLAGS.AC)
// and #PF with the error code of 4.7. A CPU translates through here only when its
// machine was made with `paging: true` and CR0.PG, CR4.PAE and EFER.LME are all set
// (`Cpu.paging`); otherwise linear addresses are physical ones, the flat mapping the
// fixtures use. Translations are cached in the CPU's `Tlb` (emu/tlb.ts); the hot
// path never comes here (see `Cpu.xlate`).
//
// Choices where the SDM leaves room, and why (docs/notes/paging.md):
// - A and D bits are written only when the translation succeeds (a faulting access
//   sets none); each is a locked update of the entry, never buffered (x86-TSO).
// - Paging-structure entries are read from memory as it is (drained stores only).
// - A page-structure entry in physical memory nothing was loaded at reads as 0 (not present).
// - A fault found through a stale TLB entry is delivered with the stale rights, and
//   the #PF invalidates the entry (4.10.4.1), so a retry walks again.

import type { Cpu } from './cpu';
import { GuestException } from './fault';
import { PageFault, type Page } from './memory';
import type { TlbEntry } from './tlb';
import { AC } from './flags';

export const ACCESS_READ = 0;
export const ACCESS_WRITE = 1;
export const ACCESS_FETCH = 2;
export type Access = typeof ACCESS_READ | typeof ACCESS_WRITE | typeof ACCESS_FETCH;

// Paging-structure entry bits (SDM tables 4-15 to 4-20).
export const PTE_P = 1;
export const PTE_RW = 2;
export const PTE_US = 4;
export const PTE_A = 0x20;
export const PTE_D = 0x40;
export const PTE_PS = 0x80;
export const PTE_G = 0x100;
/** XD is bit 63: bit 31 of the high half. */
const PTE_XD_HI = 0x80000000 | 0;
/** With MAXPHYADDR = 48 (CPUID 0x80000008), bits 51:48 of an entry are reserved. */
const RSVD_HI = 0x000f0000;
/** Bits 29:13 of a 1 GiB PDPTE and 20:13 of a 2 MiB PDE are reserved (the PAT bit is 12). */
const RSVD_1G_LO = 0x3fffe000;
const RSVD_2M_LO = 0x001fe000;

// #PF error code bits (SDM 4.7).
export const PF_P = 1;
export const PF_W = 2;
export const PF_U = 4;
export const PF_RSVD = 8;
export const PF_I = 16;

// Control-register bits this file reads.
export const CR0_WP = 1 << 16;
export const CR0_PG = 1 << 31;
export const CR4_PAE = 1 << 5;
export const CR4_PGE = 1 << 7;
export const CR4_PCIDE = 1 << 17;
export const CR4_SMEP = 1 << 20;
export const CR4_SMAP = 1 << 21;
export const EFER_LME = 1 << 8;
export const EFER_NXE = 1 << 11;

const PAGE_4K = 4096;
const PAGE_2M = 2 * 1024 * 1024;
const PAGE_1G = 1024 * 1024 * 1024;

/** Linear page number (address >> 12) of (lo, hi), a 52-bit integer. */
export function vpnOf(lo: number, hi: number): number {
  return (hi >>> 0) * 1048576 + (lo >>> 12);
}

function hex(lo: number, hi: number): string {
  return '0x' + ((BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0)).toString(16);
}

/** Whether the rights in `e` allow the access in the CPU's current mode (SDM 4.6). */
export function allowed(cpu: Cpu, e: TlbEntry, kind: Access): boolean {
  const user = (cpu.cs & 3) === 3;
  if (kind === ACCESS_FETCH) {
    if (e.nx) return false;
    if (user) return e.user;
    return !(e.user && (cpu.cr4 & CR4_SMEP) !== 0);
  }
  if (user) return e.user && (kind === ACCESS_READ || e.writable);
  if (e.user && (cpu.cr4 & CR4_SMAP) !== 0 && (cpu.flags & AC) === 0) return false;
  return kind === ACCESS_READ || e.writable || (cpu.cr0 & CR0_WP) === 0;
}

/**
 * Whether every access of `kind` to this entry is allowed in the current mode whatever
 * RFLAGS.AC is: only such entries enter the hot path's cache, so STAC/CLAC need not flush it.
 */
export function cacheable(cpu: Cpu, e: TlbEntry, kind: Access): boolean {
  const user = (cpu.cs & 3) === 3;
  if (user) return e.user && (kind === ACCESS_READ || e.writable);
  if (e.user && (cpu.cr4 & CR4_SMAP) !== 0) return false;
  return kind === ACCESS_READ || e.writable || (cpu.cr0 & CR0_WP) === 0;
}

function faultCode(cpu: Cpu, kind: Access, present: boolean): number {
  let c = present ? PF_P : 0;
  if (kind === ACCESS_WRITE) c |= PF_W;
  if ((cpu.cs & 3) === 3) c |= PF_U;
  // I/D is reported for fetches only when XD or SMEP could have been the reason (4.7).
  if (kind === ACCESS_FETCH && ((cpu.efer & EFER_NXE) !== 0 || (cpu.cr4 & CR4_SMEP) !== 0)) c |= PF_I;
  return c;
}

function pageFault(cpu: Cpu, lo: number, hi: number, kind: Access, code: number, why: string): PageFault {
  return new PageFault(lo, hi, kind === ACCESS_WRITE, kind === ACCESS_FETCH, code, `${why} at ${hex(lo, hi)} (error code 0x${code.toString(16)})`);
}

/** Translates (lo, hi) for `kind`, from the TLB or by a walk. Returns the TLB entry; throws #PF or #GP. */
export function translate(cpu: Cpu, lo: number, hi: number, kind: Access): TlbEntry {
  // Bits 63:47 must all equal bit 47 (3.3.7.1); otherwise #GP(0), not #PF.
  const top = hi >> 15;
  if (top !== 0 && top !== -1) throw new GuestException(13, 0, `non-canonical address ${hex(lo, hi)}`);
  const vpn = vpnOf(lo, hi);
  let e = cpu.tlb.get(vpn);
  if (e) {
    if (!allowed(cpu, e, kind)) {
      cpu.tlb.invalidate(vpn);
      throw pageFault(cpu, lo, hi, kind, faultCode(cpu, kind, true), 'protection violation (cached translation)');
    }
    if (kind !== ACCESS_WRITE || e.dirty) return e;
    // A write through a clean entry walks again so the D bit reaches memory (4.8).
  }
  e = walk(cpu, lo, hi, kind);
  cpu.tlb.set(vpn, e);
  return e;
}

interface Level {
  pg: Page | undefined;
  off: number;
  lo: number;
}

/** Reads the 8-byte entry at physical (pfn, off); an absent page reads as 0. */
function readEntry(cpu: Cpu, pfn: number, off: number): Level & { hi: number } {
  const pg = cpu.mem.pages.get(pfn);
  if (!pg) return { pg, off, lo: 0, hi: 0 };
  return { pg, off, lo: pg.view.getInt32(off, true), hi: pg.view.getInt32(off + 4, true) };
}

/** Sets bits in the low half of an entry, as a locked write the memory log sees. */
function setBits(cpu: Cpu, l: Level, bits: number): void {
  if ((l.lo & bits) === bits || !l.pg) return;
  const pg = l.pg;
  cpu.mem.touch(pg);
  const v = pg.view.getInt32(l.off, true) | bits;
  pg.view.setInt32(l.off, v, true);
  if (pg.flags !== 0) {
    const a = pg.key * 4096 + l.off;
    cpu.mem.noteWrite(pg, l.off, 4, cpu.id, a % 4294967296 | 0, Math.floor(a / 4294967296) | 0);
  }
}

/** The page walk of SDM 4.5 for one linear address. */
export function walk(cpu: Cpu, lo: number, hi: number, kind: Access): TlbEntry {
  const nxe = (cpu.efer & EFER_NXE) !== 0;
  const idx = [(hi >>> 7) & 0x1ff, ((hi & 0x7f) << 2) | (lo >>> 30), (lo >>> 21) & 0x1ff, (lo >>> 12) & 0x1ff];
  let pfn = (cpu.cr3Hi & 0xffff) * 1048576 + (cpu.cr3Lo >>> 12);
  let user = true;
  let writable = true;
  let nx = false;
  const used: Level[] = [];
  const names = ['PML4E', 'PDPTE', 'PDE', 'PTE'];
  for (let level = 0; level < 4; level++) {
    const ent = readEntry(cpu, pfn, idx[level] * 8);
    if ((ent.lo & PTE_P) === 0) {
      throw pageFault(cpu, lo, hi, kind, faultCode(cpu, kind, false), `${names[level]} not present`);
    }
    const leaf = level === 3 || (level > 0 && (ent.lo & PTE_PS) !== 0);
    const rsvd =
      (ent.hi & RSVD_HI) !== 0 ||
      (!nxe && (ent.hi & PTE_XD_HI) !== 0) ||
      (level === 0 && (ent.lo & PTE_PS) !== 0) ||
      (leaf && level === 1 && (ent.lo & RSVD_1G_LO) !== 0) ||
      (leaf && level === 2 && (ent.lo & RSVD_2M_LO) !== 0);
    if (rsvd) {
      throw pageFault(cpu, lo, hi, kind, faultCode(cpu, kind, true) | PF_RSVD, `reserved bit set in ${names[level]}`);
    }
    user &&= (ent.lo & PTE_US) !== 0;
    writable &&= (ent.lo & PTE_RW) !== 0;
    nx ||= nxe && (ent.hi & PTE_XD_HI) !== 0;
    used.push(ent);
    const base = (ent.hi & 0xffff) * 1048576 + (ent.lo >>> 12);
    if (!leaf) {
      pfn = base;
      continue;
    }
    const size = level === 3 ? PAGE_4K : level === 2 ? PAGE_2M : PAGE_1G;
    const span = size / PAGE_4K;
    // The PAT bit (12) of a large page is not part of its frame: round the base down.
    const frame = base - (base % span) + (vpnOf(lo, hi) % span);
    const e: TlbEntry = {
      pfn: frame,
      size,
      user,
      writable,
      nx,
      global: (ent.lo & PTE_G) !== 0 && (cpu.cr4 & CR4_PGE) !== 0,
      dirty: (ent.lo & PTE_D) !== 0,
    };
    if (!allowed(cpu, e, kind)) {
      throw pageFault(cpu, lo, hi, kind, faultCode(cpu, kind, true), 'protection violation');
    }
    for (const u of used) setBits(cpu, u, PTE_A);
    if (kind === ACCESS_WRITE) {
      setBits(cpu, ent, PTE_A | PTE_D);
      e.dirty = true;
    }
    return e;
  }
  throw new Error('internal: page walk fell through');
}
