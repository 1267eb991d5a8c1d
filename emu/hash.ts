// Hashing of machine state for the explorer's visited-state table (explore/search.ts):
// FNV-1a over 32-bit words, and a finalizer for values combined by addition (an
// unordered set of pages). Here, not in explore/, because host routines keep a running
// hash of their histories as they grow (emu/host.ts), so that the table does not
// re-hash every history at every state. Leaf module.

// Bound once: under jest every test file runs in a vm context, where each lookup of a
// global such as `Math` goes through the context's interceptors; in the explorer's
// hottest loop that made a search 5-13x slower in the test suite than on the command
// line (16 s in jest, 2.5 s in node; 3.5 s with this binding).
const imul = Math.imul;

/** FNV-1a over a 32-bit word, 16 bits at a time. */
export function mix(h: number, v: number): number {
  h ^= v & 0xffff;
  h = imul(h, 16777619);
  h ^= v >>> 16;
  return imul(h, 16777619);
}

/**
 * A 32-bit avalanche (MurmurHash3's fmix32): every input bit flips each output bit with
 * probability about 1/2, so sums of finalized values do not cancel by structure.
 */
export function fmix(h: number): number {
  h ^= h >>> 16;
  h = imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = imul(h, 0xc2b2ae35);
  return h ^ (h >>> 16);
}

/** The two halves' starting values (FNV's offset basis, and another for the second half). */
export const SEED_A = 2166136261;
export const SEED_B = 0x9747b28c;
