// The kernel model's JS-side state that host routines on more than one CPU read or
// write (the plan, the stop_machine function, the protocol in progress, …), as
// pseudo-words of the explorer's step footprint. A routine's guest-memory accesses are
// recorded by the machine (`Memory.footprint`); these fields are not memory, so every
// read and write of one notes a word of its own there, and the explorer treats it
// like any memory word: a step that reads a field another CPU's step writes is not
// private (explore/README.md, reductions: private steps). Outside a recorded step
// (`footprint` null: runs, snapshots, reports) an access costs one test.
//
// Keys are negative and at most -2^32, so they meet neither memory words (keys ≥ 0)
// nor the explorer's own pseudo-words (a CPU's pending events: -1 - cpu).

import type { Memory } from '../../emu/memory';
import type { HostOp, HostResult } from '../../emu/host';

/** The first model pseudo-word; field i is MODEL_WORD_BASE - i. */
export const MODEL_WORD_BASE = -(2 ** 32);

/** One pseudo-word per field (per CPU where each CPU has its own slot). */
export const MODEL_WORDS = {
  plan: 0,
  stopFn: 1,
  request: 2,
  patchDone: 3,
  active: 4,
  /** Whatever listeners on kernel-function entry read and write (scenario injections). */
  callListeners: 5,
  /** Every routine step on the protocol's guest-memory state (protocolShared below). */
  protocol: 6,
  /** stop_machine's per-CPU "last state acknowledged" (stop-machine.ts), slot 16 + cpu. */
  stopAcked: 16,
} as const;

export function modelWord(field: number): number {
  return MODEL_WORD_BASE - field;
}

/** Notes an access of the model pseudo-word `key` in the step being recorded, if any. */
export function noteModelAccess(mem: Memory, key: number, write: boolean): void {
  const fp = mem.footprint;
  if (fp === null) return;
  if (write) fp.writes.push(key);
  else fp.reads.push(key);
}

/**
 * A field host routines share: `get`/`set` note the access. `raw`/`load` do not: for
 * snapshots (a routine's entry state), reports and checks run between steps.
 */
export class SharedCell<T> {
  private readonly key: number;
  constructor(
    private readonly mem: Memory,
    field: number,
    private value: T,
  ) {
    this.key = modelWord(field);
  }

  get(): T {
    if (this.mem.footprint !== null) this.mem.footprint.reads.push(this.key);
    return this.value;
  }

  set(v: T): void {
    if (this.mem.footprint !== null) this.mem.footprint.writes.push(this.key);
    this.value = v;
  }

  raw(): T {
    return this.value;
  }

  load(v: T): void {
    this.value = v;
  }
}

/**
 * The protocol's own state in guest memory (text_poke_state, bp_desc, the batch
 * vector, stop_machine's data, …) is shared by design: every CPU's routine reads what
 * the primary writes. The explorer learns sharing word by word, and each word it learns
 * after a private step relied on it costs a restart of the whole pass (explore/
 * README.md: private steps); these words would otherwise be learnt one at a time,
 * deep into the passes with NMIs (a secondary's first int3 on bp_desc). So every
 * routine step whose operation touches one of these ranges also reads and writes one
 * pseudo-word, `protocol`: shared from the first step of a second CPU, after which no
 * such step is private. Sound either way (it only makes fewer steps private).
 */
export const PROTOCOL_WORD = modelWord(MODEL_WORDS.protocol);

export interface GuestRange {
  start: bigint;
  /** Exclusive. */
  end: bigint;
}

/** Wraps a routine's generator: each operation on a protocol range (as `ranges()` gives them now) notes `PROTOCOL_WORD`. */
export function* protocolShared<T>(mem: Memory, ranges: () => readonly GuestRange[], gen: Generator<HostOp, T, HostResult>): Generator<HostOp, T, HostResult> {
  let input: HostResult = undefined;
  for (;;) {
    const r = gen.next(input);
    if (r.done) return r.value;
    if (mem.footprint !== null && touchesAny(r.value, ranges())) {
      mem.footprint.reads.push(PROTOCOL_WORD);
      mem.footprint.writes.push(PROTOCOL_WORD);
    }
    input = yield r.value;
  }
}

function touchesAny(op: HostOp, ranges: readonly GuestRange[]): boolean {
  if (!('addr' in op)) return false;
  const hit = (a: bigint, n: number): boolean => ranges.some((g) => a < g.end && a + BigInt(n) > g.start);
  if (hit(op.addr, op.size)) return true;
  return op.op === 'wait' && (op.also ?? []).some((x) => hit(x.addr, x.size));
}
