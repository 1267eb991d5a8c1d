/**
 * The explorer's visited-state table: states already searched, each with the budget it
 * had left and the pass that searched it (README: visited states). It holds tens of
 * millions of entries on 3 CPUs, so it lives in typed arrays (about 16 bytes a slot, 20
 * with exactDepth) rather than one JS object per state (about 130 bytes): open
 * addressing with linear probing, keyed by the state's 64-bit hash as two 32-bit
 * halves. A state may hold several budgets none of which covers another: they sit in
 * the same probe run under the same key, so no overflow structure is needed.
 */

/**
 * Whether a state searched with budget s (NMIs, per-CPU NMI counts, preemptions, depth,
 * last CPU) has every schedule a visit with budget t has. With another last CPU, one
 * preemption more covers it: only the first switch's cost depends on who ran last.
 */
export function covers(sn: number, su: number, sp: number, sd: number, sl: number, tn: number, tu: number, tp: number, td: number, tl: number, exactDepth: boolean): boolean {
  return sn >= tn && (su === tu || noMorePerCpu(su, tu)) && (!exactDepth || sd >= td) && sp >= tp + (sl === tl || sl === -1 ? 0 : 1);
}

/** Per-CPU NMI counts (4 bits each): every CPU has had at most as many in `s` as in `t`. */
function noMorePerCpu(s: number, t: number): boolean {
  for (; s !== 0 || t !== 0; s >>>= 4, t >>>= 4) if ((s & 15) > (t & 15)) return false;
  return true;
}

// One 32-bit word per slot packs the small budget fields; bit 31 marks a slot in use
// (an empty slot's word is 0).
const USED = 1 << 31;
const PASS_SHIFT = 18; // 13 bits
const LAST_SHIFT = 13; // 5 bits: last CPU + 1
const NMIS_SHIFT = 7; // 6 bits
// preemptions: the low 7 bits

/** What the packed word can hold (explore checks its options against these). */
export const VISITED_LIMITS = { nmis: 63, preemptions: 127, cpus: 31, passes: 8192, depth: 0x7fffffff } as const;

/** The table grows (doubles) past this load; linear probing slows sharply above it. */
const MAX_LOAD = 0.75;

/** The bytes one slot takes (for sizing a budget of memory). */
export function slotBytes(exactDepth: boolean): number {
  return exactDepth ? 20 : 16;
}

/**
 * The most entries a table may hold within `bytes`: its last doubling, from cap / 2 to
 * cap slots, keeps both arrays alive at once, and it never grows past cap.
 */
export function entriesWithin(bytes: number, exactDepth: boolean): number {
  let cap = 2;
  while (3 * cap * slotBytes(exactDepth) <= bytes) cap *= 2; // 1.5 * (2 * cap) slots fit
  return Math.floor(cap * MAX_LOAD);
}

export class VisitedTable {
  /** Entries held (a dropped entry is subtracted). */
  size = 0;
  // One array per field (set by allocate): the hash halves, the per-CPU NMI counts,
  // the packed word, and the depth left (only with exactDepth).
  private mask!: number;
  private ha!: Int32Array;
  private hb!: Int32Array;
  private used!: Int32Array;
  private packed!: Int32Array;
  private depth!: Int32Array | null;

  constructor(private readonly exactDepth: boolean, capacity = 1 << 12) {
    if (capacity < 2 || (capacity & (capacity - 1)) !== 0) throw new RangeError(`VisitedTable capacity: a power of two, at least 2 (${capacity})`);
    this.allocate(capacity);
  }

  /** Empty arrays of `capacity` slots. */
  private allocate(capacity: number): void {
    this.mask = capacity - 1;
    this.ha = new Int32Array(capacity);
    this.hb = new Int32Array(capacity);
    this.used = new Int32Array(capacity);
    this.packed = new Int32Array(capacity);
    this.depth = this.exactDepth ? new Int32Array(capacity) : null;
  }

  /** Slots allocated (a power of two). */
  get capacity(): number {
    return this.mask + 1;
  }

  /**
   * A visit to the state hashed (ha, hb) with this budget: true if an entry covers it
   * (the state need not be searched again); else records it, dropping the entries it
   * covers, and returns false.
   */
  visit(ha: number, hb: number, nmis: number, nmiUsed: number, preemptions: number, depth: number, last: number, pass: number): boolean {
    ha |= 0;
    hb |= 0;
    const exact = this.exactDepth;
    const mask = this.mask;
    const { packed } = this;
    let coveredOld = 0;
    let i = ha & mask;
    for (let w = packed[i]; w !== 0; w = packed[(i = (i + 1) & mask)]) {
      if (this.ha[i] !== ha || this.hb[i] !== hb) continue;
      const sn = (w >>> NMIS_SHIFT) & 63;
      const sp = w & 127;
      const sl = ((w >>> LAST_SHIFT) & 31) - 1;
      const su = this.used[i];
      const sd = exact ? this.depth![i] : 0;
      if (covers(sn, su, sp, sd, sl, nmis, nmiUsed, preemptions, depth, last, exact)) return true;
      if (covers(nmis, nmiUsed, preemptions, depth, last, sn, su, sp, sd, sl, exact)) coveredOld++;
    }
    if (coveredOld > 0) {
      // Entries this visit covers are dropped (it has at least their budget left).
      i = ha & mask;
      for (let w = packed[i]; w !== 0; w = packed[i]) {
        if (
          this.ha[i] === ha &&
          this.hb[i] === hb &&
          covers(nmis, nmiUsed, preemptions, depth, last, (w >>> NMIS_SHIFT) & 63, this.used[i], w & 127, exact ? this.depth![i] : 0, ((w >>> LAST_SHIFT) & 31) - 1, exact)
        ) {
          // The run shifts back into slot i: look at it again.
          this.removeAt(i);
        } else i = (i + 1) & mask;
      }
    }
    if ((this.size + 1) > MAX_LOAD * (mask + 1)) {
      this.resize((mask + 1) * 2);
      i = this.freeSlot(ha);
    } else if (coveredOld > 0) i = this.freeSlot(ha);
    this.put(i, ha, hb, USED | (pass << PASS_SHIFT) | ((last + 1) << LAST_SHIFT) | (nmis << NMIS_SHIFT) | preemptions, nmiUsed, depth);
    this.size++;
    return false;
  }

  /** Drops the entries recorded in `pass` (a restarted pass searches again). */
  dropPass(pass: number): void {
    const { packed } = this;
    const cap = this.mask + 1;
    let start = -1;
    for (let i = 0; i < cap; i++) {
      const w = packed[i];
      if (w !== 0 && ((w >>> PASS_SHIFT) & 8191) === pass) {
        packed[i] = 0;
        this.size--;
      }
      if (packed[i] === 0 && start < 0) start = i;
    }
    if (start < 0) return;
    // Clearing slots breaks probe runs: settle every entry again, in probe order from an
    // empty slot, so each is placed among already settled ones (in place, no new arrays).
    for (let k = 1; k <= cap; k++) {
      const i = (start + k) & this.mask;
      const w = packed[i];
      if (w === 0) continue;
      packed[i] = 0;
      const j = this.freeSlot(this.ha[i]);
      this.put(j, this.ha[i], this.hb[i], w, this.used[i], this.depth ? this.depth[i] : 0);
    }
  }

  /** The first empty slot in `ha`'s probe run. */
  private freeSlot(ha: number): number {
    const { packed, mask } = this;
    let i = ha & mask;
    while (packed[i] !== 0) i = (i + 1) & mask;
    return i;
  }

  private put(i: number, ha: number, hb: number, w: number, nmiUsed: number, depth: number): void {
    this.ha[i] = ha;
    this.hb[i] = hb;
    this.packed[i] = w;
    this.used[i] = nmiUsed;
    if (this.depth) this.depth[i] = depth;
  }

  /** Empties slot i, moving later entries of its run back so every entry stays reachable from its home slot. */
  private removeAt(i: number): void {
    const { packed, mask } = this;
    let j = i;
    for (;;) {
      j = (j + 1) & mask;
      const w = packed[j];
      if (w === 0) break;
      const home = this.ha[j] & mask;
      // The entry at j may fill i unless its home lies cyclically in (i, j].
      if (i <= j ? home <= i || home > j : home <= i && home > j) {
        this.put(i, this.ha[j], this.hb[j], w, this.used[j], this.depth ? this.depth[j] : 0);
        i = j;
      }
    }
    packed[i] = 0;
    this.size--;
  }

  private resize(capacity: number): void {
    const { ha, hb, used, packed, depth } = this;
    this.allocate(capacity);
    for (let i = 0; i < packed.length; i++) {
      if (packed[i] === 0) continue;
      this.put(this.freeSlot(ha[i]), ha[i], hb[i], packed[i], used[i], depth ? depth[i] : 0);
    }
  }
}
