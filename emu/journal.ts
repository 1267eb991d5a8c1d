// The undo journal behind machine snapshots: memory pages and decoded instructions
// are copied on their first change after a snapshot, never wholesale. A snapshot is a
// mark in the journal; restoring it undoes the entries after the mark, newest first,
// so every page and decoded instruction is back exactly as it was (bytes, write log,
// generation, decode, fetch epoch). This is a trail, as in backtracking solvers:
// restoring a snapshot discards the snapshots taken after it (they are no longer in
// the machine's past), and the snapshot restored stays valid and can be restored
// again. Depth-first search and "go back" only ever restore an ancestor.
//
// Leaf module: memory.ts and insn.ts call into it; it knows their classes by shape.

import { PAGE_WATCHED, PAGE_RWATCHED, type Page } from './memory';
import type { Insn } from './insn';

/** Page fields the journal saves (memory.ts's Page). */
interface PageUndo {
  kind: 'page';
  page: Page;
  data: Uint8Array;
  gen: number;
  flags: number;
  writer: Int16Array | null;
  seq: Float64Array | null;
  ver: number;
}

/** A page mapped after the mark: undone by unmapping it. */
interface MapUndo {
  kind: 'map';
  key: number;
  unmap: (key: number) => void;
}

/** The decoded-instruction fields that decide what runs and when it is re-checked. */
export interface InsnFields {
  len: number;
  nlo: number;
  nhi: number;
  exec: Insn['exec'];
  /** Links: a restored decode must branch where it did (its successors' decodes are journaled on their own). */
  next: Insn | null;
  target: Insn | null;
  page: Page;
  xgen: number;
  bytes: Uint8Array | null;
  epoch: number;
  crossesPage: boolean;
  mnemonic: number;
  code: number;
  name: string;
}

interface InsnUndo {
  kind: 'insn';
  ins: Insn;
  fields: InsnFields;
}

type Undo = PageUndo | MapUndo | InsnUndo;

/** Page flag bits the journal leaves alone on undo (watches, write and read, are rebuilt by their owners). */
const KEEP_FLAGS = PAGE_WATCHED | PAGE_RWATCHED;

export function insnFields(ins: Insn): InsnFields {
  return {
    len: ins.len, nlo: ins.nlo, nhi: ins.nhi, exec: ins.exec, next: ins.next, target: ins.target, page: ins.page, xgen: ins.xgen, bytes: ins.bytes,
    epoch: ins.epoch, crossesPage: ins.crossesPage, mnemonic: ins.mnemonic, code: ins.code, name: ins.name,
  };
}

export class Journal {
  /** Pages and instructions whose `jepoch` equals this were saved since the last mark. */
  epoch = 1;
  private readonly entries: Undo[] = [];
  /** Last page content version handed out (Page.ver). */
  private vers = 0;
  /** The mark `changed` counts from (trackChanges), or -1: none. */
  private from = -1;
  /**
   * The pages saved at or after `from`, in the order of their first such save, and the
   * index of that save. A page leaves when that save is undone; undo runs newest first,
   * so it is always the last one: a stack, kept as the journal grows and shrinks.
   */
  private readonly changedPages: Page[] = [];
  private readonly changedAt: number[] = [];
  private readonly changedSet = new Set<Page>();
  /**
   * Copies of pages whose entries were undone, for the next saves to reuse: a search
   * saves and undoes pages at every state, and a new buffer each time is most of its
   * garbage.
   */
  private readonly spare: Uint8Array[] = [];

  /** Number of saved entries (for benches and tests). */
  get size(): number {
    return this.entries.length;
  }

  /** Call before the first change of a page since the last mark. */
  savePage(pg: Page): void {
    pg.jepoch = this.epoch;
    if (this.from >= 0 && this.entries.length >= this.from && !this.changedSet.has(pg)) {
      this.changedSet.add(pg);
      this.changedPages.push(pg);
      this.changedAt.push(this.entries.length);
    }
    let data = this.spare.pop();
    if (data === undefined || data.length !== pg.data.length) data = pg.data.slice();
    else data.set(pg.data);
    this.entries.push({
      kind: 'page', page: pg, data, gen: pg.gen, flags: pg.flags,
      writer: pg.writer ? pg.writer.slice() : null, seq: pg.seq ? pg.seq.slice() : null, ver: pg.ver,
    });
    pg.ver = ++this.vers;
  }

  savedMap(key: number, unmap: (key: number) => void): void {
    this.entries.push({ kind: 'map', key, unmap });
  }

  /** Call before the first change of a decoded instruction since the last mark. */
  saveInsn(ins: Insn): void {
    ins.jepoch = this.epoch;
    this.entries.push({ kind: 'insn', ins, fields: insnFields(ins) });
  }

  /** The pages saved since `mark`: every page that may differ from what it held then. */
  pagesSince(mark: number): Page[] {
    const out = new Set<Page>();
    for (let i = mark; i < this.entries.length; i++) {
      const u = this.entries[i];
      if (u.kind === 'page') out.add(u.page);
    }
    return [...out];
  }

  /**
   * Keeps the pages saved since `mark` (what pagesSince(mark) returns, in another
   * order) up to date from now on, for a search that asks at every state (`changed`);
   * -1 stops.
   */
  trackChanges(mark: number): void {
    this.from = mark;
    this.changedPages.length = 0;
    this.changedAt.length = 0;
    this.changedSet.clear();
    if (mark < 0) return;
    for (let i = mark; i < this.entries.length; i++) {
      const u = this.entries[i];
      if (u.kind === 'page' && !this.changedSet.has(u.page)) {
        this.changedSet.add(u.page);
        this.changedPages.push(u.page);
        this.changedAt.push(i);
      }
    }
  }

  /** The mark trackChanges was last given, or -1. */
  get trackedMark(): number {
    return this.from;
  }

  /** The pages saved since the tracked mark, in the order of their first save since it. */
  get changed(): readonly Page[] {
    return this.changedPages;
  }

  /** Starts a new epoch; the returned mark is what a snapshot remembers. */
  mark(): number {
    this.epoch++;
    return this.entries.length;
  }

  /** Undoes every entry after `mark`, newest first. Returns the instructions it restored. */
  undoTo(mark: number): Insn[] {
    const restored: Insn[] = [];
    const e = this.entries;
    for (let i = e.length - 1; i >= mark; i--) {
      const u = e[i];
      if (u.kind === 'page') {
        const pg = u.page;
        pg.data.set(u.data);
        this.spare.push(u.data);
        pg.gen = u.gen;
        pg.flags = (u.flags & ~KEEP_FLAGS) | (pg.flags & KEEP_FLAGS);
        pg.writer = u.writer;
        pg.seq = u.seq;
        pg.ver = u.ver;
      } else if (u.kind === 'map') {
        u.unmap(u.key);
      } else {
        Object.assign(u.ins, u.fields);
        restored.push(u.ins);
      }
    }
    e.length = mark;
    const at = this.changedAt;
    while (at.length > 0 && at[at.length - 1] >= mark) {
      at.pop();
      this.changedSet.delete(this.changedPages.pop()!);
    }
    this.epoch++;
    return restored;
  }
}
