// The per-CPU decoded-instruction cache: one Insn object per (CPU, address), decoded
// once and executed from a pre-resolved closure. It models the CPU's instruction
// cache: in the stale fetch mode a CPU keeps executing the bytes it decoded until it
// serializes, even after another CPU rewrote them.
//
// An Insn stays valid while its page's generation is the one it last checked
// (`xgen`). Any write to a code page bumps the generation, so the step loop's single
// compare sends the instruction to `revalidate`, which runs the XMC checker and
// decides whether to decode again.

import { Page, PageFault, PAGE_SIZE } from './memory';
import { pageKey } from './u64';
import { compileAt } from './compile';
import { overlayBytes } from './store-buffer';
import type { Cpu } from './cpu';
import type { Block } from './block';

/** Executes one instruction and returns the next one to run. */
export type Exec = (cpu: Cpu, ins: Insn) => Insn;

/** Never-decoded instructions point here: gen 0 never equals their xgen of -1. */
const UNDECODED = new Page(-1);

export class Insn {
  /** Length in bytes; 0 until decoded. */
  len = 0;
  /** Address of the next instruction (fall-through). */
  nlo = 0;
  nhi = 0;
  exec: Exec = notDecoded;
  /** Fall-through successor, linked on first use. */
  next: Insn | null = null;
  /** Direct branch target, linked on first use. */
  target: Insn | null = null;
  page: Page = UNDECODED;
  xgen = -1;
  /** The bytes as decoded, to tell a real change from a write elsewhere on the page. */
  bytes: Uint8Array | null = null;
  /** `cpu.serialEpoch` when decoded (stale mode re-fetches only after serializing). */
  epoch = 0;
  /** Crosses into a second page: checked on every execution. */
  crossesPage = false;
  /** iced-x86 mnemonic and code, and our short name, for tracing and statistics. */
  mnemonic = 0;
  code = 0;
  name = '';
  /** The journal epoch in which this decode was last saved (emu/journal.ts). */
  jepoch = 0;
  /** The compiled block starting here (emu/block.ts), and how often it ran before one was tried. */
  block: Block | null = null;
  heat = 0;
  constructor(
    readonly lo: number,
    readonly hi: number,
  ) {}

  get address(): bigint {
    return (BigInt(this.hi >>> 0) << 32n) | BigInt(this.lo >>> 0);
  }
}

function notDecoded(): Insn {
  throw new Error('internal: executed an instruction that was never decoded');
}

export class InsnCache {
  private readonly pages = new Map<number, (Insn | undefined)[]>();
  private lastKey = -1;
  private lastArr: (Insn | undefined)[] = [];
  /** Stale-mode instructions kept despite a foreign write; re-checked on serialization. */
  private staleKept: Insn[] = [];
  /** Executions of an instruction before a block is compiled from it; 0: never (machine options `blocks`, `blockHot`). */
  blockHot = 0;
  /**
   * Moves whenever a decode this CPU holds is dropped, re-fetched or kept stale, or the
   * machine is restored: blocks compiled in an earlier epoch are dropped (emu/block.ts).
   */
  blockEpoch = 0;

  constructor(private readonly cpu: Cpu) {}

  at(lo: number, hi: number): Insn {
    const key = pageKey(lo, hi);
    let arr: (Insn | undefined)[] | undefined;
    if (key === this.lastKey) {
      arr = this.lastArr;
    } else {
      arr = this.pages.get(key);
      if (!arr) {
        arr = new Array<Insn | undefined>(PAGE_SIZE);
        this.pages.set(key, arr);
      }
      this.lastKey = key;
      this.lastArr = arr;
    }
    const off = lo & 0xfff;
    let ins = arr[off];
    if (!ins) {
      ins = new Insn(lo, hi);
      arr[off] = ins;
    }
    return ins;
  }

  /** The cached instruction at an address, if any (no allocation). */
  peek(lo: number, hi: number): Insn | undefined {
    return this.pages.get(pageKey(lo, hi))?.[lo & 0xfff];
  }

  /** Forgets the decode at an address (a breakpoint or host binding changed there). */
  forget(lo: number, hi: number): void {
    const ins = this.peek(lo, hi);
    if (ins) {
      journalInsn(this.cpu, ins);
      resetInsn(ins);
      this.blockEpoch++;
    }
  }

  /** Forgets the decodes on one linear page (its translation changed, or this CPU buffered a store to it). */
  forgetPage(lo: number, hi: number): void {
    const arr = this.pages.get(pageKey(lo, hi));
    if (!arr) return;
    this.blockEpoch++;
    for (const ins of arr) {
      if (!ins) continue;
      journalInsn(this.cpu, ins);
      resetInsn(ins);
    }
  }

  /** Forgets every decode (fetch mode or bindings changed wholesale). */
  forgetAll(): void {
    this.blockEpoch++;
    for (const arr of this.pages.values()) {
      for (const ins of arr) {
        if (!ins) continue;
        journalInsn(this.cpu, ins);
        resetInsn(ins);
      }
    }
    this.staleKept = [];
  }

  /** The CPU serialized: stale instructions must be fetched again. */
  afterSerialize(): void {
    if (this.staleKept.length === 0) return;
    this.blockEpoch++;
    for (const ins of this.staleKept) {
      journalInsn(this.cpu, ins);
      ins.xgen = -1;
    }
    this.staleKept = [];
  }

  /** Stale-mode instructions kept despite a foreign write (machine snapshots save the list). */
  saveState(): Insn[] {
    return this.staleKept.slice();
  }

  loadState(s: Insn[]): void {
    this.staleKept = s.slice();
  }

  /** Called for each of this CPU's own writes to a code page (own writes are seen at once). */
  ownWrite(_pg: Page): void {
    // Nothing to do eagerly: the page generation moved, and revalidate() tells own
    // writes from foreign ones by the per-byte writer log.
  }

  keepStale(ins: Insn): void {
    this.staleKept.push(ins);
    this.blockEpoch++;
  }

  /** Drops every compiled block (hooks or bindings changed, or the machine was restored). */
  dropBlocks(): void {
    this.blockEpoch++;
  }

  get cpuRef(): Cpu {
    return this.cpu;
  }
}

/** Saves a decode before its first change since the last snapshot (emu/journal.ts). */
function journalInsn(cpu: Cpu, ins: Insn): void {
  const j = cpu.mem.journal;
  if (j !== null && ins.jepoch !== j.epoch) j.saveInsn(ins);
}

function resetInsn(ins: Insn): void {
  ins.block = null;
  ins.heat = 0;
  ins.len = 0;
  ins.page = UNDECODED;
  ins.xgen = -1;
  ins.next = null;
  ins.target = null;
  ins.bytes = null;
  ins.exec = notDecoded;
}

/**
 * Reads up to 15 instruction bytes through the CPU's translation, stopping at a page
 * that cannot be fetched. The CPU's own buffered stores are laid over them: under
 * x86-TSO a CPU executes what it wrote itself (docs/notes/x86-tso.md), others what
 * memory holds.
 */
export function fetchBytes(cpu: Cpu, lo: number, hi: number): Uint8Array {
  const first = cpu.codePage(lo, hi);
  const off = lo & 0xfff;
  const inFirst = Math.min(15, PAGE_SIZE - off);
  if (inFirst === 15) return ownStores(cpu, first, off, first.data.slice(off, off + 15));
  const out = new Uint8Array(15);
  out.set(first.data.subarray(off, off + inFirst), 0);
  ownStores(cpu, first, off, out.subarray(0, inFirst));
  const s = (lo >>> 0) + inFirst;
  let second: Page;
  try {
    second = cpu.codePage(s | 0, (hi + (s > 0xffffffff ? 1 : 0)) | 0);
  } catch (e) {
    if (e instanceof PageFault) return out.subarray(0, inFirst);
    throw e;
  }
  out.set(second.data.subarray(0, 15 - inFirst), inFirst);
  ownStores(cpu, second, 0, out.subarray(inFirst));
  return out;
}

function ownStores(cpu: Cpu, pg: Page, off: number, bytes: Uint8Array): Uint8Array {
  if (cpu.stores.length !== 0) overlayBytes(cpu.stores, pg, off, bytes);
  return bytes;
}

/**
 * Brings `ins` up to date before it runs: decodes it the first time, and after any
 * write to its page runs the XMC checker and decodes again if its bytes changed (in
 * the stale fetch mode, only if this CPU wrote them or has serialized since).
 */
export function revalidate(cpu: Cpu, ins: Insn): Insn {
  const machine = cpu.machine;
  journalInsn(cpu, ins);
  if (ins.len === 0) {
    decodeInto(cpu, ins, fetchBytes(cpu, ins.lo, ins.hi));
    machine.xmc.check(cpu, ins);
    return ins;
  }
  const cur = fetchBytes(cpu, ins.lo, ins.hi);
  const old = ins.bytes!;
  let same = cur.length >= ins.len;
  for (let k = 0; same && k < ins.len; k++) if (cur[k] !== old[k]) same = false;
  if (same) {
    ins.xgen = ins.crossesPage ? -1 : ins.page.gen;
    machine.xmc.check(cpu, ins);
    return ins;
  }
  if (machine.fetchMode === 'stale' && ins.epoch === cpu.serialEpoch && !writtenBy(cpu, ins)) {
    // The CPU has not serialized since it decoded these bytes and did not write them
    // itself: it keeps running what is in its instruction cache. The checker judges
    // that stale instruction, since it is what runs.
    ins.xgen = ins.crossesPage ? -1 : ins.page.gen;
    cpu.icache.keepStale(ins);
    machine.xmc.check(cpu, ins);
    return ins;
  }
  // The checker judges the instruction that will run: the one decoded from the new bytes.
  resetInsn(ins);
  cpu.icache.dropBlocks();
  decodeInto(cpu, ins, cur);
  machine.xmc.check(cpu, ins);
  return ins;
}

/** Whether any byte of the instruction was last written by this CPU. */
function writtenBy(cpu: Cpu, ins: Insn): boolean {
  for (let k = 0; k < ins.len; k++) {
    const s = (ins.lo >>> 0) + k;
    const pg = codePageOrNull(cpu, s | 0, (ins.hi + (s > 0xffffffff ? 1 : 0)) | 0);
    if (pg?.writer && pg.writer[(s | 0) & 0xfff] === cpu.id) return true;
  }
  return false;
}

function codePageOrNull(cpu: Cpu, lo: number, hi: number): Page | null {
  try {
    return cpu.codePage(lo, hi);
  } catch {
    return null;
  }
}

function decodeInto(cpu: Cpu, ins: Insn, bytes: Uint8Array): void {
  const page = cpu.codePage(ins.lo, ins.hi);
  // Instruction fetch marks the page as code, so later writes to it are logged.
  cpu.mem.makeCode(page);
  compileAt(cpu, ins, bytes);
  ins.bytes = bytes.slice(0, Math.max(ins.len, 1));
  ins.page = page;
  ins.epoch = cpu.serialEpoch;
  const off = ins.lo & 0xfff;
  ins.crossesPage = off + Math.max(ins.len, 1) > PAGE_SIZE;
  if (ins.crossesPage) {
    const s = (ins.lo >>> 0) + ins.len - 1;
    const p2 = codePageOrNull(cpu, s | 0, (ins.hi + (s > 0xffffffff ? 1 : 0)) | 0);
    if (p2) cpu.mem.makeCode(p2);
  }
  ins.xgen = ins.crossesPage ? -1 : page.gen;
}

/** Links and returns the fall-through successor (first use only; then `ins.next`). */
export function linkNext(cpu: Cpu, ins: Insn): Insn {
  const n = cpu.icache.at(ins.nlo, ins.nhi);
  ins.next = n;
  return n;
}

/** Links and returns a direct branch target. */
export function linkTarget(cpu: Cpu, ins: Insn, lo: number, hi: number): Insn {
  const t = cpu.icache.at(lo, hi);
  ins.target = t;
  return t;
}
