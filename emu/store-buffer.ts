// Stores a CPU has executed but memory does not hold yet, and the reading side of them.
//
// - x86-TSO (Owens, Sarkar and Sewell, "A Better x86 Memory Model: x86-TSO", TPHOLs
//   2009): each CPU's stores enter a FIFO buffer; its own loads read the newest
//   buffered value for each byte (forwarding), other CPUs see a store only when it
//   drains to memory, one entry per schedulable step. What drains the whole buffer
//   (locked instructions, MFENCE, serializing instructions, event delivery) is listed
//   in docs/notes/x86-tso.md with the SDM's words.
// - Split read-modify-write (machine option rmw 'split'): an unlocked instruction that
//   reads memory and then writes it keeps its stores at the tail of the same list
//   ("held") until its store step, so the load and the store are two steps with a
//   scheduling point between; its own later reads forward from them as well.
//
// The entries live on the Cpu (`Cpu.stores`); this file holds their shape and the
// forwarding rule. Leaf module: imports only types.

import type { Page } from './memory';

export interface PendingStore {
  /** Physical page and offset: translation happened when the store executed. */
  pg: Page;
  off: number;
  /** Bytes: 1, 2, 4 or 8 (never crossing a page; crossing stores are split per byte). */
  size: number;
  /** Value; `vhi` only for 8-byte stores. */
  vlo: number;
  vhi: number;
  /** Linear address, for the write log and watchers when it drains. */
  lo: number;
  hi: number;
}

/** A split read-modify-write in progress on a CPU. */
export interface RmwState {
  /** Loads done so far; stores after the first load are held. */
  reads: number;
  /** Stores held at the tail of `Cpu.stores` until the store step. */
  held: number;
}

/** The byte at `off` of a store, or -1 if it does not cover it. */
function byteOf(st: PendingStore, off: number): number {
  const k = off - st.off;
  if (k < 0 || k >= st.size) return -1;
  const word = k < 4 ? st.vlo : st.vhi;
  return (word >>> (8 * (k & 3))) & 0xff;
}

/**
 * `v` (size bytes at page offset `off`, unsigned, read from memory) with every byte a
 * buffered store of this CPU covers replaced by the newest such store's byte.
 */
export function forward(stores: readonly PendingStore[], pg: Page, off: number, size: number, v: number): number {
  // Most loads overlap no buffered store: one pass to find out before the per-byte merge.
  let overlaps = false;
  for (let j = 0; j < stores.length && !overlaps; j++) {
    const st = stores[j];
    overlaps = st.pg === pg && st.off < off + size && off < st.off + st.size;
  }
  if (!overlaps) return v;
  let out = v;
  for (let k = 0; k < size; k++) {
    for (let j = stores.length - 1; j >= 0; j--) {
      const st = stores[j];
      if (st.pg !== pg) continue;
      const b = byteOf(st, off + k);
      if (b < 0) continue;
      const scale = 2 ** (8 * k);
      const cur = Math.floor(out / scale) % 256;
      out += (b - cur) * scale;
      break;
    }
  }
  return out;
}

/** Lays this CPU's buffered stores over instruction bytes fetched from `pg` at `off`. */
export function overlayBytes(stores: readonly PendingStore[], pg: Page, off: number, bytes: Uint8Array): void {
  for (const st of stores) {
    if (st.pg !== pg) continue;
    for (let k = 0; k < bytes.length; k++) {
      const b = byteOf(st, off + k);
      if (b >= 0) bytes[k] = b;
    }
  }
}
