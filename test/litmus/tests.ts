// Litmus tests: the x86-TSO paper's (Owens, Sarkar, Sewell, TPHOLs 2009, section 2 and
// its table of Intel white-paper (iwp) and AMD tests) and fenced/locked variants. Each
// names one outcome and says whether x86-TSO allows it; `sc` says whether sequential
// consistency allows it. Locations are x, y; registers are per thread.

export type Loc = 'x' | 'y';
export type Reg = 'rax' | 'rbx' | 'rcx' | 'rdx';

export type Op =
  | { op: 'st'; loc: Loc; v: number }
  | { op: 'ld'; loc: Loc; r: Reg }
  | { op: 'mfence' }
  /** Locked exchange: r receives the old value, memory the new one. */
  | { op: 'xchg'; loc: Loc; v: number; r: Reg };

export interface Litmus {
  name: string;
  threads: Op[][];
  /** The outcome the test is about, as "t:reg=v" and "loc=v" terms (all must hold). */
  outcome: string[];
  tso: 'allowed' | 'forbidden';
  sc: 'allowed' | 'forbidden';
}

const st = (loc: Loc, v: number): Op => ({ op: 'st', loc, v });
const ld = (loc: Loc, r: Reg): Op => ({ op: 'ld', loc, r });
const mf: Op = { op: 'mfence' };
const xchg = (loc: Loc, v: number, r: Reg): Op => ({ op: 'xchg', loc, v, r });

export const LITMUS: Litmus[] = [
  // Stores are not reordered with other stores, loads not with loads (iwp2.1, amd1).
  { name: 'MP', threads: [[st('x', 1), st('y', 1)], [ld('y', 'rax'), ld('x', 'rbx')]], outcome: ['1:rax=1', '1:rbx=0'], tso: 'forbidden', sc: 'forbidden' },
  // Loads are not reordered with later stores (iwp2.2, amd2).
  { name: 'LB', threads: [[ld('x', 'rax'), st('y', 1)], [ld('y', 'rax'), st('x', 1)]], outcome: ['0:rax=1', '1:rax=1'], tso: 'forbidden', sc: 'forbidden' },
  // Loads may be reordered with older stores to other locations (iwp2.3.a, amd4).
  { name: 'SB', threads: [[st('x', 1), ld('y', 'rax')], [st('y', 1), ld('x', 'rax')]], outcome: ['0:rax=0', '1:rax=0'], tso: 'allowed', sc: 'forbidden' },
  { name: 'SB+mfences', threads: [[st('x', 1), mf, ld('y', 'rax')], [st('y', 1), mf, ld('x', 'rax')]], outcome: ['0:rax=0', '1:rax=0'], tso: 'forbidden', sc: 'forbidden' },
  // Locked instructions are not reordered with loads (iwp2.8).
  { name: 'SB+xchgs', threads: [[xchg('x', 1, 'rbx'), ld('y', 'rax')], [xchg('y', 1, 'rbx'), ld('x', 'rax')]], outcome: ['0:rax=0', '1:rax=0'], tso: 'forbidden', sc: 'forbidden' },
  { name: 'SB+mfence+po', threads: [[st('x', 1), mf, ld('y', 'rax')], [st('y', 1), ld('x', 'rax')]], outcome: ['0:rax=0', '1:rax=0'], tso: 'allowed', sc: 'forbidden' },
  // Intra-processor forwarding (iwp2.3.b, amd9-like).
  {
    name: 'SB+rfi (iwp2.3.b)',
    threads: [[st('x', 1), ld('x', 'rax'), ld('y', 'rbx')], [st('y', 1), ld('y', 'rax'), ld('x', 'rbx')]],
    outcome: ['0:rax=1', '0:rbx=0', '1:rax=1', '1:rbx=0'], tso: 'allowed', sc: 'forbidden',
  },
  // Stores are transitively visible (iwp2.4, WRC).
  {
    name: 'WRC (iwp2.4)',
    threads: [[st('x', 1)], [ld('x', 'rax'), st('y', 1)], [ld('y', 'rax'), ld('x', 'rbx')]],
    outcome: ['1:rax=1', '2:rax=1', '2:rbx=0'], tso: 'forbidden', sc: 'forbidden',
  },
  // Independent reads of independent writes: all CPUs agree on the store order (iwp2.5? amd? the paper's IRIW).
  {
    name: 'IRIW',
    threads: [[st('x', 1)], [st('y', 1)], [ld('x', 'rax'), ld('y', 'rbx')], [ld('y', 'rax'), ld('x', 'rbx')]],
    outcome: ['2:rax=1', '2:rbx=0', '3:rax=1', '3:rbx=0'], tso: 'forbidden', sc: 'forbidden',
  },
  // Stores to one location have a total order (iwp2.6).
  {
    name: 'CoRR2 (iwp2.6)',
    threads: [[st('x', 1)], [st('x', 2)], [ld('x', 'rax'), ld('x', 'rbx')], [ld('x', 'rax'), ld('x', 'rbx')]],
    outcome: ['2:rax=1', '2:rbx=2', '3:rax=2', '3:rbx=1'], tso: 'forbidden', sc: 'forbidden',
  },
  // Locked instructions have a total order (iwp2.7): IRIW with xchg stores.
  {
    name: 'IRIW+xchgs (iwp2.7)',
    threads: [[xchg('x', 1, 'rcx')], [xchg('y', 1, 'rcx')], [ld('x', 'rax'), ld('y', 'rbx')], [ld('y', 'rax'), ld('x', 'rbx')]],
    outcome: ['2:rax=1', '2:rbx=0', '3:rax=1', '3:rbx=0'], tso: 'forbidden', sc: 'forbidden',
  },
  // The paper's n4, n5 (forbidden) and n6 (allowed, the x86-CC counterexample).
  {
    name: 'n4',
    threads: [[ld('x', 'rax'), st('x', 1)], [ld('x', 'rax'), st('x', 2)]],
    outcome: ['0:rax=2', '1:rax=1'], tso: 'forbidden', sc: 'forbidden',
  },
  {
    name: 'n5',
    threads: [[st('x', 1), ld('x', 'rax')], [st('x', 2), ld('x', 'rax')]],
    outcome: ['0:rax=2', '1:rax=1'], tso: 'forbidden', sc: 'forbidden',
  },
  {
    name: 'n6',
    threads: [[st('x', 1), ld('x', 'rax'), ld('y', 'rbx')], [st('y', 2), st('x', 2)]],
    outcome: ['0:rax=1', '0:rbx=0', 'x=1'], tso: 'allowed', sc: 'forbidden',
  },
  // n7 (allowed): a reader sees y before x although P0 read its own x first.
  {
    name: 'n7',
    threads: [[st('x', 1), ld('x', 'rax'), ld('y', 'rbx')], [st('y', 1)], [ld('y', 'rax'), ld('x', 'rbx')]],
    outcome: ['0:rax=1', '0:rbx=0', '2:rax=1', '2:rbx=0'], tso: 'allowed', sc: 'forbidden',
  },
  // MP with the fence on the writer: still forbidden (nothing to fence).
  { name: 'MP+mfence', threads: [[st('x', 1), mf, st('y', 1)], [ld('y', 'rax'), ld('x', 'rbx')]], outcome: ['1:rax=1', '1:rbx=0'], tso: 'forbidden', sc: 'forbidden' },
  // 2+2W: two stores each to both locations; final values both from the first stores.
  {
    name: '2+2W',
    threads: [[st('x', 1), st('y', 2)], [st('y', 1), st('x', 2)]],
    outcome: ['x=1', 'y=1'], tso: 'forbidden', sc: 'forbidden',
  },
];

/** An outcome as a canonical string of sorted "t:reg=v" and "loc=v" terms. */
export function outcomeKey(terms: string[]): string {
  return [...terms].sort().join(' ');
}

/** Whether every term of `want` holds in the outcome key `got`. */
export function matches(got: string, want: string[]): boolean {
  const have = new Set(got.split(' '));
  return want.every((t) => have.has(t));
}

/** The registers a thread loads into, in order of first use. */
export function regsOf(ops: Op[]): Reg[] {
  const out: Reg[] = [];
  for (const o of ops) if ((o.op === 'ld' || o.op === 'xchg') && !out.includes(o.r)) out.push(o.r);
  return out;
}
