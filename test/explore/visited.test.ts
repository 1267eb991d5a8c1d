// The explorer's visited-state table (explore/visited.ts): a visit is skipped exactly
// when an entry of the same 64-bit hash covers its budget; a state keeps several budgets
// none of which covers another; a visit drops the entries it covers; the table grows
// past its load; a restarted pass's entries go. Checked against a plain reference
// (one list of budgets per hash, the rule the table replaced) on random visits whose
// hashes share probe runs, so growth, wrap-around and the removal's back-shifts run.

import { VisitedTable, covers, entriesWithin } from '../../explore/visited';

interface Entry { ha: number; hb: number; n: number; u: number; p: number; d: number; l: number; pass: number }

/** The rule the table must keep: a list of budgets per hash. */
class Reference {
  entries: Entry[] = [];
  constructor(private readonly exact: boolean) {}
  visit(e: Entry): boolean {
    const same = this.entries.filter((s) => s.ha === e.ha && s.hb === e.hb);
    if (same.some((s) => covers(s.n, s.u, s.p, s.d, s.l, e.n, e.u, e.p, e.d, e.l, this.exact))) return true;
    this.entries = this.entries.filter((s) => !(s.ha === e.ha && s.hb === e.hb && covers(e.n, e.u, e.p, e.d, e.l, s.n, s.u, s.p, s.d, s.l, this.exact)));
    this.entries.push(e);
    return false;
  }
  dropPass(pass: number): void {
    this.entries = this.entries.filter((s) => s.pass !== pass);
  }
}

function visit(t: VisitedTable, e: Entry): boolean {
  return t.visit(e.ha, e.hb, e.n, e.u, e.p, e.d, e.l, e.pass);
}

const B = { ha: 7, hb: 99, n: 1, u: 0, p: 1, d: 10, l: 0, pass: 0 };

test('a visit is skipped when an entry of the same hash has at least its budget left', () => {
  const t = new VisitedTable(false);
  expect(visit(t, B)).toBe(false);
  expect(visit(t, B)).toBe(true);
  expect(visit(t, { ...B, n: 0, p: 0 })).toBe(true);
  // Same first half, other second half: another state.
  expect(visit(t, { ...B, hb: 100 })).toBe(false);
  // Another last CPU costs one preemption more: p 1 covers p 0 there, not p 1.
  expect(visit(t, { ...B, l: 1, p: 0 })).toBe(true);
  expect(visit(t, { ...B, l: 1 })).toBe(false);
  // Depth counts only with exactDepth.
  expect(visit(t, { ...B, d: 50 })).toBe(true);
  const exact = new VisitedTable(true);
  visit(exact, B);
  expect(visit(exact, { ...B, d: 50 })).toBe(false);
  expect(visit(exact, { ...B, d: 5 })).toBe(true);
});

test('a state keeps several budgets none of which covers another, and a visit drops those it covers', () => {
  const t = new VisitedTable(false);
  // More NMIs, fewer preemptions; and the reverse: neither covers the other.
  expect(visit(t, { ...B, n: 2, p: 0 })).toBe(false);
  expect(visit(t, { ...B, n: 0, p: 2 })).toBe(false);
  expect(t.size).toBe(2);
  expect(visit(t, { ...B, n: 2, p: 0 })).toBe(true);
  expect(visit(t, { ...B, n: 0, p: 2 })).toBe(true);
  expect(visit(t, { ...B, n: 1, p: 1 })).toBe(false);
  expect(t.size).toBe(3);
  // Per-CPU NMI counts: having sent CPU 1 one NMI already leaves less to do.
  expect(visit(t, { ...B, n: 2, p: 0, u: 0x10 })).toBe(true);
  expect(visit(t, { ...B, n: 3, p: 3 })).toBe(false);
  expect(t.size).toBe(1);
  expect(visit(t, { ...B, n: 2, p: 2 })).toBe(true);
});

test('the table grows past its load and keeps every entry', () => {
  const t = new VisitedTable(false, 2);
  for (let i = 0; i < 1000; i++) expect(visit(t, { ...B, ha: i * 0x9e3779b1, hb: i })).toBe(false);
  expect(t.size).toBe(1000);
  expect(t.capacity).toBeGreaterThanOrEqual(1000 / 0.75);
  for (let i = 0; i < 1000; i++) expect(visit(t, { ...B, ha: i * 0x9e3779b1, hb: i })).toBe(true);
});

test('dropping a pass removes its entries only', () => {
  const t = new VisitedTable(false, 8);
  for (let i = 0; i < 40; i++) visit(t, { ...B, ha: i & 3, hb: i, pass: i % 3 });
  t.dropPass(1);
  expect(t.size).toBe(40 - 13);
  for (let i = 0; i < 40; i++) expect(visit(t, { ...B, ha: i & 3, hb: i, pass: 5 })).toBe(i % 3 !== 1 ? true : false);
});

test('random visits and dropped passes agree with the reference, also with exactDepth', () => {
  for (const exact of [false, true]) {
    let seed = exact ? 12345 : 777;
    const rnd = (k: number): number => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return (seed >>> 8) % k;
    };
    const t = new VisitedTable(exact, 2);
    const ref = new Reference(exact);
    let pass = 0;
    for (let step = 0; step < 20000; step++) {
      if (rnd(500) === 0) {
        t.dropPass(pass);
        ref.dropPass(pass);
      } else if (rnd(300) === 0) pass++;
      // Few first halves (shared probe runs), including negative ones and ones that wrap.
      const e: Entry = {
        ha: ([0, 1, -1, 0x7fffffff, -0x80000000, 5, 6][rnd(7)] + rnd(3) * 64) | 0,
        hb: rnd(40) - 20,
        n: rnd(4), u: rnd(3) * 0x11, p: rnd(4), d: rnd(6), l: rnd(4) - 1, pass,
      };
      expect([step, visit(t, e)]).toEqual([step, ref.visit(e)]);
      expect(t.size).toBe(ref.entries.length);
    }
    for (const e of ref.entries) expect(visit(t, e)).toBe(true);
  }
});

test('the default cap fits in the memory given, the last doubling included', () => {
  const bytes = 2.5 * 2 ** 30;
  for (const exact of [false, true]) {
    const n = entriesWithin(bytes, exact);
    const cap = 2 ** Math.ceil(Math.log2(n / 0.75));
    expect(1.5 * cap * (exact ? 20 : 16)).toBeLessThanOrEqual(bytes);
    expect(n).toBeGreaterThan(40_000_000);
  }
});
