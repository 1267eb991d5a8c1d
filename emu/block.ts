// Block compilation: a hot run of straight-line instructions becomes one JavaScript
// function (`new Function`), so the step loop's per-instruction work (generation
// compare, indirect call, break test) is paid once per block, register-only
// instructions are inlined with their registers, constants and operand sizes baked
// in, and the lazy flags an instruction records are stored only if something may read
// them before the next instruction overwrites them.
//
// Exactness is by construction, not by checking afterwards:
// - Inlined are register forms (mov, movzx, the ALU ops, inc/dec, rol/ror/shl/shr by
//   an immediate, lea, nop, and the jcc/jmp that ends a block), which cannot fault,
//   touch no memory, read no clock and raise no event, and loads (mov, movzx, ALU
//   sources) through the CPU's own accessors, so footprints, store forwarding, paging
//   and MMIO see them as they see the interpreter's; a load is a fault point, made
//   exact (flags stored, `cpu.insn`, `cpu.retired`) before it, and the block leaves
//   after it if it set `cpu.brk`.
// - Every other instruction runs its own compiled closure (the one the interpreter
//   would run) from a call site of this block's own, with the state exact at its
//   boundary: flags stored, `cpu.insn` and `cpu.retired` set as the step loop sets
//   them, so a fault, TSC read, hook or host routine sees what it would see stepping.
//   After it the block leaves, as the step loop would stop or turn, when it set
//   `cpu.brk`, went somewhere other than the next instruction, or wrote to the
//   block's code page.
// - A block is valid while its page's generation is the one its instructions were
//   validated at and its CPU's block epoch is unchanged: the epoch moves whenever a
//   decode is dropped or kept stale (XMC revalidation, stale fetch mode, breakpoints,
//   host bindings, serialization, snapshot restores). An invalid block is dropped and
//   its instructions step one at a time until they are hot again.
// - A block runs only when the slice has budget for all of it; otherwise (quantum 1,
//   the explorer's single steps) the interpreter steps, as it does under a probe.

import type { Cpu } from './cpu';
import type { Insn, Exec } from './insn';
import { linkNext, linkTarget } from './insn';
import { decodeOne, isDecodeFailure, type Decoded, type Operand } from './decode';
import { getCF, testCondition, materializeKeepingSzap, parityFlag, LZ_NONE, LZ_ADD, LZ_SUB, LZ_LOGIC, LZ_INC, LZ_DEC, LZ_IMUL64, ARITH, CF, OF, PF, AF, ZF, SF } from './flags';
import { mulHiU32, imulOverflows } from './ops/muldiv';

/**
 * Executions of an instruction before a block (and its single-instruction form) is
 * compiled from it. A new function runs in V8's interpreter until it has been called
 * hundreds of times, several times slower than the interpreter's optimised closures:
 * at 32, straight-line code re-run a few dozen times (a boot, a scenario of 30,000
 * steps) ran 3 to 8 times slower after compiling than before, and paid the compile.
 * Code that has run a thousand times tends to run on; a loop gets there in a blink.
 */
export const BLOCK_HOT = 1000;
/** Instructions per block at most. */
const BLOCK_MAX = 64;

export interface Block {
  /**
   * Runs the block; returns the next instruction with `cpu.retired` advanced by what
   * ran. A block that branches back to its own start goes round again while the slice
   * (ending at retired count `end`) has room for a whole pass.
   */
  run: (cpu: Cpu, end: number) => Insn;
  /** Instructions in the block: the slice must have this much budget left. */
  len: number;
  /** The code page generation the instructions were validated at. */
  gen: number;
  /** The CPU's block epoch at compilation. */
  epoch: number;
}

/** Mnemonics after which execution does not simply fall through: a block ends with them. */
const ENDS = new Set(['jmp', 'call', 'ret', 'retf', 'iret', 'iretd', 'iretq', 'hlt', 'ud0', 'ud1', 'ud2', 'int', 'int1', 'int3', 'into', 'syscall', 'sysret', 'sysretq', 'sysenter', 'sysexit', 'sysexitq']);

type Compiled = (cpu: Cpu, end: number) => Insn;
type Factory = (I: Insn[], E: Exec[], H: typeof HELPERS, G: number, pg: Insn['page'], EP: number) => Compiled;

/**
 * Compiled factories by source. The source holds only the code's constants (the
 * instructions, their closures and the page are arguments), so the same code on
 * another machine, a fresh one per bench trial or explorer run, reuses the factory;
 * its blocks then share V8's feedback and optimised code instead of warming up again.
 */
const FACTORIES = new Map<string, Factory>();
const FACTORY_CACHE_MAX = 20_000;

/** Helpers the generated code calls (passed in, so generated code imports nothing). */
const HELPERS = { getCF, testCondition, materializeKeepingSzap, parityFlag, linkNext, linkTarget, mulHiU32, imulOverflows };

/**
 * Compiles the block starting at `entry` (decoded and validated at its page's current
 * generation), or returns null when fewer than two instructions qualify.
 */
export function buildBlock(cpu: Cpu, entry: Insn): Block | null {
  const m = cpu.machine;
  const page = entry.page;
  const gen = page.gen;
  const insns: Insn[] = [];
  const decs: Decoded[] = [];
  let ins: Insn | null = entry;
  while (ins !== null && insns.length < BLOCK_MAX) {
    if (ins.len === 0 || ins.crossesPage || ins.page !== page || ins.xgen !== gen || ins.bytes === null) break;
    // Hooked and host-bound addresses keep their own exec (and may change under a block).
    if (m.hostAt(ins.lo, ins.hi) !== undefined || m.hasBreakpoint(ins.lo, ins.hi)) break;
    const d = decodeOne(ins.bytes, ins.lo, ins.hi);
    if (isDecodeFailure(d) || d.len !== ins.len) break;
    insns.push(ins);
    decs.push(d);
    if (ENDS.has(d.name) || d.ops.some((o) => o.k === 'branch')) break;
    ins = ins.next;
  }
  if (insns.length < 2) return null;
  const epoch = cpu.icache.blockEpoch;
  const run = instantiate(generate(insns, decs, cpuFlagsHint(cpu)), insns, gen, page, epoch);
  return { run, len: insns.length, gen, epoch };
}

/** The function of `src` for these instructions, its factory compiled once per source. */
function instantiate(src: string, insns: Insn[], gen: number, page: Insn['page'], epoch: number): Compiled {
  let factory = FACTORIES.get(src);
  if (factory === undefined) {
    if (FACTORIES.size >= FACTORY_CACHE_MAX) FACTORIES.clear();
    factory = new Function('I', 'E', 'H', 'G', 'pg', 'EP', src) as Factory;
    FACTORIES.set(src, factory);
  }
  return factory(insns, insns.map((i) => i.exec), HELPERS, gen, page, epoch);
}

/**
 * A compiled replacement for the closure of one hot instruction, or null when its form
 * is not one blocks inline (or a direct jmp/jcc). It is the body a block would inline
 * for it, entered and left as the closure is (the step loop sets `cpu.insn` before it
 * and counts `cpu.retired` after it), with its registers, sizes and constants baked
 * in and no call through a shared operation. The quantum-1 path runs one instruction
 * per slice, where a block never fits: this is what compilation gives it. It stays
 * valid as long as the decode does (a new decode compiles a new closure).
 */
export function buildSingle(cpu: Cpu, ins: Insn): Exec | null {
  const m = cpu.machine;
  if (ins.len === 0 || ins.crossesPage || ins.xgen !== ins.page.gen || ins.bytes === null) return null;
  if (m.hostAt(ins.lo, ins.hi) !== undefined || m.hasBreakpoint(ins.lo, ins.hi)) return null;
  const d = decodeOne(ins.bytes, ins.lo, ins.hi);
  if (isDecodeFailure(d) || d.len !== ins.len) return null;
  // The split-RMW wrapper (emu/ordering.ts) runs every memory form with cpu.rmw set: such forms keep their closure.
  if (m.rmw === 'split' && d.ops.some((o) => o.k === 'mem')) return null;
  const g = new Gen(true);
  g.hint = cpuFlagsHint(cpu);
  if (inline(g, d, 0)) {
    g.flush();
    g.emit('return I[0].next ?? H.linkNext(cpu, I[0]);');
  } else if (!directBranch(g, d, 0, 1)) return null;
  // The instruction is the closure's second argument (the step loop passes it): no load through the factory's context.
  const src = `"use strict";\nreturn function single(cpu, ins) {\nconst r = cpu.r;\n${g.out.join('\n').replaceAll('I[0]', 'ins')}\n};`;
  return instantiate(src, [ins], ins.page.gen, ins.page, 0) as unknown as Exec;
}

// ---- Code generation ----

/**
 * The kind of lazy flags `cpu` holds now, as Gen.hint: complete flags, or a record of
 * a 32- or 64-bit operation whose flags pendingFlag derives (its fields read from the
 * CPU, compared as flags.ts's readers compare them). null for any other kind.
 */
function cpuFlagsHint(cpu: Cpu): Gen['hint'] {
  const op = cpu.lzOp;
  if (op === LZ_NONE) return { guard: `cpu.lzOp === ${LZ_NONE}`, pend: { kind: 'flags', f: 'cpu.flags' } };
  const size = cpu.lzSize;
  if (!(op === LZ_ADD || op === LZ_SUB || op === LZ_LOGIC || op === LZ_INC || op === LZ_DEC || (op === LZ_IMUL64 && size === 64)) || (size !== 32 && size !== 64)) return null;
  return {
    guard: `cpu.lzOp === ${op} && cpu.lzSize === ${size}`,
    pend: { kind: 'lazy', op, size, al: 'cpu.aLo', ah: 'cpu.aHi', bl: 'cpu.bLo', bh: 'cpu.bHi', rl: 'cpu.rLo', rh: 'cpu.rHi', c: 'cpu.lzC' },
  };
}

/**
 * The flags of the last inlined flag-writing instruction, not yet stored in the CPU:
 * a lazy record (its operands and result as JavaScript expressions, constants or
 * locals) or a complete RFLAGS value. null: the CPU's flag fields are current.
 */
type Pending =
  | { kind: 'lazy'; op: number; size: number; al: string; ah: string; bl: string; bh: string; rl: string; rh: string; c: string | null }
  | { kind: 'flags'; f: string }
  | null;

const isReg = (o: Operand, size?: number): o is Extract<Operand, { k: 'reg' }> =>
  o.k === 'reg' && !o.high8 && (o.size === 32 || o.size === 64) && (size === undefined || o.size === size);

const HI = 16;
const ALU: Record<string, { op: number; store: boolean }> = {
  add: { op: LZ_ADD, store: true },
  sub: { op: LZ_SUB, store: true },
  cmp: { op: LZ_SUB, store: false },
  and: { op: LZ_LOGIC, store: true },
  or: { op: LZ_LOGIC, store: true },
  xor: { op: LZ_LOGIC, store: true },
  test: { op: LZ_LOGIC, store: false },
};
const LOGIC_OP: Record<string, string> = { and: '&', or: '|', xor: '^', test: '&' };

/** A flag of the CPU's state, through the interpreter's readers. */
function cpuFlag(bit: number): string {
  switch (bit) {
    case CF:
      return '(H.getCF(cpu) !== 0)';
    case ZF:
      return 'H.testCondition(cpu, 5)';
    case SF:
      return 'H.testCondition(cpu, 9)';
    case PF:
      return 'H.testCondition(cpu, 11)';
    case OF:
      return 'H.testCondition(cpu, 1)';
    default:
      throw new Error('internal: AF of the CPU state is not read by inlined code');
  }
}

class Gen {
  readonly out: string[] = [];
  /** Code for one instruction in place of its closure (buildSingle): the step loop keeps the boundary. */
  constructor(readonly single = false) {}
  pend: Pending = null;
  /** The instruction being inlined loaded from memory (set by emitLoad): its end is a boundary check. */
  loadAt = -1;
  /** Per instruction: SF, ZF, AF and PF as they stand after it are never read (szapDeadAfter). */
  szapDead: boolean[] = [];
  /**
   * The kind of lazy flags the CPU held when the code was compiled (cpuFlagsHint): where
   * the code reads the CPU's flags, it tests for that kind and reads them inline, the
   * interpreter's readers being the other arm. A site sees the same kind almost always
   * (the instruction in front of it is the same), and the test keeps any other exact.
   */
  hint: { guard: string; pend: Exclude<Pending, null> } | null = null;

  /** `fast` evaluated with the hinted flags pending, behind the hint's test, else `slow`. */
  private hinted(fast: () => string, slow: string): string {
    const h = this.hint;
    if (h === null || this.pend !== null) return slow;
    this.pend = h.pend;
    try {
      return `(${h.guard} ? ${fast()} : ${slow})`;
    } finally {
      this.pend = null;
    }
  }

  emit(s: string): void {
    this.out.push(s);
  }

  /** Stores the pending flags into the CPU (before anything that may read them there). */
  flush(): void {
    const p = this.pend;
    if (p === null) return;
    if (p.kind === 'flags') {
      this.emit(`cpu.flags = ${p.f}; cpu.lzOp = 0;`);
    } else {
      let s = `cpu.lzOp = ${p.op}; cpu.lzSize = ${p.size}; cpu.rLo = ${p.rl}; cpu.rHi = ${p.rh};`;
      if (p.op !== LZ_LOGIC) s += ` cpu.aLo = ${p.al}; cpu.aHi = ${p.ah}; cpu.bLo = ${p.bl}; cpu.bHi = ${p.bh};`;
      if (p.c !== null) s += ` cpu.lzC = ${p.c};`;
      this.emit(s);
    }
    this.pend = null;
  }

  /** A boolean expression for one arithmetic flag as it stands now. */
  flag(bit: number): string {
    if (this.pend !== null) return this.pendingFlag(bit);
    // The CPU's state: the interpreter's readers decide (they know every lazy kind),
    // unless it holds the hinted kind.
    const slow = cpuFlag(bit);
    return bit === AF ? slow : this.hinted(() => this.pendingFlag(bit), slow);
  }

  /** A flag as the pending record says. */
  private pendingFlag(bit: number): string {
    const p = this.pend!;
    if (p.kind === 'flags') return `((${p.f} & ${bit}) !== 0)`;
    const { op, size, al, ah, bl, bh, rl, rh } = p;
    const w = size === 64;
    const ult = (xl: string, xh: string, yl: string, yh: string): string =>
      w ? `((${xh} >>> 0) < (${yh} >>> 0) || (${xh} === ${yh} && (${xl} >>> 0) < (${yl} >>> 0)))` : `((${xl} >>> 0) < (${yl} >>> 0))`;
    switch (bit) {
      case ZF:
        return `((${rl} | ${rh}) === 0)`;
      case SF:
        return w ? `(${rh} < 0)` : `(${rl} < 0)`;
      case PF:
        return `(H.parityFlag(${rl}) !== 0)`;
      case AF:
        return op === LZ_LOGIC || op === LZ_IMUL64 ? 'false' : `(((${al} ^ ${bl} ^ ${rl}) & 16) !== 0)`;
      case CF:
        if (op === LZ_IMUL64) return `H.imulOverflows(${al}, ${ah}, ${bl}, ${bh})`;
        if (op === LZ_LOGIC) return 'false';
        if (op === LZ_INC || op === LZ_DEC) return `(${p.c} !== 0)`;
        return op === LZ_ADD ? ult(rl, rh, al, ah) : ult(al, ah, bl, bh);
      case OF: {
        if (op === LZ_IMUL64) return `H.imulOverflows(${al}, ${ah}, ${bl}, ${bh})`;
        if (op === LZ_LOGIC) return 'false';
        const [xl, xh] = op === LZ_ADD || op === LZ_INC ? [`((${al} ^ ${rl}) & (${bl} ^ ${rl}))`, `((${ah} ^ ${rh}) & (${bh} ^ ${rh}))`] : [`((${al} ^ ${bl}) & (${al} ^ ${rl}))`, `((${ah} ^ ${bh}) & (${ah} ^ ${rh}))`];
        return w ? `(${xh} < 0)` : `(${xl} < 0)`;
      }
    }
    throw new Error(`internal: flag ${bit}`);
  }

  /** A condition code (iced-x86 numbering) as a boolean expression. */
  cond(cc: number): string {
    if (this.pend === null) return this.hinted(() => this.cond(cc), cc === 6 ? '!H.testCondition(cpu, 5)' : `H.testCondition(cpu, ${cc})`);
    const f = (b: number): string => this.pendingFlag(b);
    switch (cc) {
      case 1: return f(OF);
      case 2: return `!${f(OF)}`;
      case 3: return f(CF);
      case 4: return `!${f(CF)}`;
      case 5: return f(ZF);
      case 6: return `!${f(ZF)}`;
      case 7: return `(${f(CF)} || ${f(ZF)})`;
      case 8: return `(!${f(CF)} && !${f(ZF)})`;
      case 9: return f(SF);
      case 10: return `!${f(SF)}`;
      case 11: return f(PF);
      case 12: return `!${f(PF)}`;
      case 13: return `(${f(SF)} !== ${f(OF)})`;
      case 14: return `(${f(SF)} === ${f(OF)})`;
      case 15: return `(${f(ZF)} || ${f(SF)} !== ${f(OF)})`;
      case 16: return `(!${f(ZF)} && ${f(SF)} === ${f(OF)})`;
      default: return 'true';
    }
  }

  /**
   * RFLAGS with CF and OF cleared and the other arithmetic flags as they stand (rotates
   * keep those), or with those four left as zeros when `dead`: nothing reads them
   * before they are all overwritten (szapDeadAfter).
   */
  keptSzap(k: number, dead: boolean): string {
    if (dead) return `(cpu.flags & ${~ARITH})`;
    const v = `k${k}`;
    if (this.pend === null) {
      const slow = `(H.materializeKeepingSzap(cpu), cpu.flags & ${~(CF | OF)})`;
      this.emit(`const ${v} = ${this.hinted(() => this.pendingSzap(), slow)};`);
      return v;
    }
    if (this.pend.kind === 'flags') return this.pendingSzap();
    this.emit(`const ${v} = ${this.pendingSzap()};`);
    return v;
  }

  /** RFLAGS with CF and OF cleared and SF, ZF, AF, PF as the pending record says. */
  private pendingSzap(): string {
    const p = this.pend!;
    if (p.kind === 'flags') return `(${p.f} & ${~(CF | OF)})`;
    const f = (b: number): string => this.pendingFlag(b);
    return `((cpu.flags & ${~ARITH}) | H.parityFlag(${p.rl}) | (${f(AF)} ? ${AF} : 0) | (${f(ZF)} ? ${ZF} : 0) | (${f(SF)} ? ${SF} : 0))`;
  }
}

/**
 * A direct jump or jcc, the last of `n` instructions (only a last instruction has a
 * branch operand): emits its exit. (loop/loopcc and jrcxz also count RCX or test it:
 * they keep their closures.) False if `d` is not one.
 */
function directBranch(g: Gen, d: Decoded, k: number, n: number, loop = false): boolean {
  if (!isDirectBranch(d)) return false;
  const t = d.ops[0] as Extract<Operand, { k: 'branch' }>;
  const taken = `(I[${k}].target ?? H.linkTarget(cpu, I[${k}], ${t.lo | 0}, ${t.hi | 0}))`;
  const fall = `(I[${k}].next ?? H.linkNext(cpu, I[${k}]))`;
  const c = d.name === 'jmp' ? 'true' : g.cond(d.cc);
  if (c !== 'true') g.emit(`const t${k} = ${c};`);
  g.flush();
  if (loop) {
    // Back to the start: again, as the step loop would enter this block again, while the
    // slice has room for a pass and the block is still valid (brk is clear here: every
    // step that may set it left already; only closures write memory or move the epoch,
    // and the page is checked after each, so the checks here are the step loop's own,
    // kept for the day an inlined form can).
    if (c !== 'true') g.emit(`if (!t${k}) { cpu.retired = R0 + ${n}; return ${fall}; }`);
    g.emit(`R0 += ${n};`);
    g.emit(`if (R0 + ${n} > end || pg.gen !== G || cpu.icache.blockEpoch !== EP) { cpu.retired = R0; return ${taken}; }`);
    return true;
  }
  if (!g.single) g.emit(`cpu.retired = R0 + ${n};`);
  g.emit(c === 'true' ? `return ${taken};` : `return t${k} ? ${taken} : ${fall};`);
  return true;
}

/** A direct jmp or jcc (loop/loopcc and jrcxz also count RCX or test it: they keep their closures). */
function isDirectBranch(d: Decoded): boolean {
  return d.ops.length === 1 && d.ops[0].k === 'branch' && !d.lock && ((d.cc !== 0 && d.name[0] === 'j' && !d.name.endsWith('cxz')) || d.name === 'jmp');
}

/** How an instruction inline() compiles treats SF, ZF, AF and PF, for szapDeadAfter. */
function szapEffect(d: Decoded): 'writes' | 'keeps' | 'other' {
  if (d.lock || d.rep || d.repe || d.repne) return 'other';
  const o = d.ops;
  const name = d.name;
  if (name === 'nop') return 'keeps';
  if (o.length === 0 || !isReg(o[0])) return 'other';
  const size = o[0].size;
  if ((name === 'inc' || name === 'dec') && o.length === 1) return 'writes';
  if (o.length !== 2 && !(name === 'imul' && o.length === 3)) return 'other';
  const s = o[1];
  if (name === 'mov') return isReg(s, size) || s.k === 'imm' ? 'keeps' : 'other';
  if (name === 'movzx') return s.k === 'reg' && (s.size === 8 || s.size === 16) ? 'keeps' : 'other';
  if (name === 'lea') return plainMemAddress(s) ? 'keeps' : 'other';
  if (ALU[name] !== undefined) return isReg(s, size) || s.k === 'imm' ? 'writes' : 'other';
  if (name === 'imul') {
    const y = o.length === 3 ? o[2] : o[1];
    return size === 64 && isReg(s, 64) && (isReg(y, 64) || y.k === 'imm') ? 'writes' : 'other';
  }
  if ((name === 'rol' || name === 'ror' || name === 'shl' || name === 'shr') && s.k === 'imm' && (s.lo & (size === 64 ? 63 : 31)) !== 0) {
    return name === 'rol' || name === 'ror' ? 'keeps' : 'writes';
  }
  return 'other';
}

/**
 * Whether SF, ZF, AF and PF as they stand after instruction k are dead: a later
 * instruction of the block overwrites all four before anything can see them. What
 * can see them: a flag reader, a closure, a load (a fault point: the CPU's flags are
 * exact there), the block's exit. Only register forms that inline() compiles without a
 * boundary count as passing them through ('keeps') or overwriting them ('writes').
 */
function szapDeadAfter(decs: Decoded[], k: number): boolean {
  for (let j = k + 1; j < decs.length; j++) {
    const e = szapEffect(decs[j]);
    if (e === 'writes') return true;
    if (e === 'other') return false;
  }
  return false;
}

function generate(insns: Insn[], decs: Decoded[], hint: Gen['hint']): string {
  const g = new Gen();
  g.hint = hint;
  g.szapDead = decs.map((_, k) => szapDeadAfter(decs, k));
  const n = insns.length;
  const lastDec = decs[n - 1];
  const back = lastDec.ops[0];
  // A loop: the block ends with a direct branch to its own first instruction.
  const loop = isDirectBranch(lastDec) && back.k === 'branch' && (back.lo | 0) === insns[0].lo && (back.hi | 0) === insns[0].hi;
  g.emit('const r = cpu.r;');
  g.emit(loop ? 'let R0 = cpu.retired;' : 'const R0 = cpu.retired;');
  g.emit('let nx;');
  if (loop) g.emit('for (;;) {');
  for (let k = 0; k < n; k++) {
    const d = decs[k];
    const last = k === n - 1;
    g.emit(`// ${d.name}`);
    g.loadAt = -1;
    if (inline(g, d, k)) {
      if (g.loadAt === k && !last) {
        // As after a closure: leave if the load set brk (its flags are still pending: store them).
        g.emit(`if (cpu.brk) {`);
        const saved = g.pend;
        g.flush();
        g.pend = saved;
        g.emit(`cpu.retired = R0 + ${k + 1}; return I[${k}].next ?? H.linkNext(cpu, I[${k}]); }`);
      }
      if (last) {
        g.flush();
        g.emit(`cpu.retired = R0 + ${n};`);
        g.emit(`return I[${k}].next ?? H.linkNext(cpu, I[${k}]);`);
      }
      continue;
    }
    if (directBranch(g, d, k, n, loop)) continue;
    // Its own closure, at an exact boundary.
    g.flush();
    g.emit(`cpu.retired = R0 + ${k}; cpu.insn = I[${k}];`);
    g.emit(`nx = E[${k}](cpu, I[${k}]);`);
    if (last) {
      g.emit(`cpu.retired = R0 + ${n};`);
      g.emit('return nx;');
    } else {
      g.emit(`if (nx !== I[${k + 1}] || cpu.brk || pg.gen !== G) { cpu.retired = R0 + ${k + 1}; return nx; }`);
    }
  }
  if (loop) g.emit('}');
  return `"use strict";\nreturn function block(cpu, end) {\n${g.out.join('\n')}\n};`;
}

/** Emits an inlined instruction; false if this form is not inlined. */
function inline(g: Gen, d: Decoded, k: number): boolean {
  if (d.lock || d.rep || d.repe || d.repne) return false;
  const name = d.name;
  const ops = d.ops;
  if (name === 'nop') return true;
  if (name === 'mov' && ops.length === 2 && isReg(ops[0])) {
    const dst = ops[0];
    const D = dst.reg;
    const s = ops[1];
    if (isReg(s, dst.size)) {
      if (dst.size === 64) g.emit(`{ const lo = r[${s.reg}], hi = r[${s.reg + HI}]; r[${D}] = lo; r[${D + HI}] = hi; }`);
      else g.emit(`r[${D}] = r[${s.reg}]; r[${D + HI}] = 0;`);
      return true;
    }
    if (s.k === 'imm') {
      g.emit(`r[${D}] = ${s.lo | 0}; r[${D + HI}] = ${dst.size === 64 ? s.hi | 0 : 0};`);
      return true;
    }
    if (plainMem(s) && s.size * 8 === dst.size) {
      emitLoad(g, s, dst.size, k);
      g.emit(`r[${D}] = v${k}; r[${D + HI}] = ${dst.size === 64 ? `vh${k}` : '0'};`);
      return true;
    }
    return false;
  }
  if (name === 'movzx' && ops.length === 2 && isReg(ops[0])) {
    const D = ops[0].reg;
    const s = ops[1];
    if (s.k === 'reg' && (s.size === 8 || s.size === 16)) {
      const v = s.high8 ? `((r[${s.reg}] >> 8) & 255)` : `(r[${s.reg}] & ${s.size === 8 ? 255 : 65535})`;
      g.emit(`r[${D}] = ${v}; r[${D + HI}] = 0;`);
      return true;
    }
    if (plainMem(s) && (s.size === 1 || s.size === 2)) {
      emitLoad(g, s, s.size * 8, k);
      g.emit(`r[${D}] = v${k}; r[${D + HI}] = 0;`);
      return true;
    }
    return false;
  }
  const alu = ALU[name];
  if (alu !== undefined && ops.length === 2 && isReg(ops[0])) {
    const size = ops[0].size;
    const D = ops[0].reg;
    const s = ops[1];
    let bl: string;
    let bh: string;
    if (isReg(s, size)) {
      g.emit(`const b${k} = r[${s.reg}], bh${k} = ${size === 64 ? `r[${s.reg + HI}]` : '0'};`);
      bl = `b${k}`;
      bh = `bh${k}`;
    } else if (s.k === 'imm') {
      bl = String(s.lo | 0);
      bh = size === 64 ? String(s.hi | 0) : '0';
    } else if (plainMem(s) && s.size * 8 === size) {
      emitLoad(g, s, size, k);
      bl = `v${k}`;
      bh = size === 64 ? `vh${k}` : '0';
    } else return false;
    const al = `a${k}`;
    const ah = size === 64 ? `ah${k}` : '0';
    g.emit(`const ${al} = r[${D}]${size === 64 ? `, ${ah} = r[${D + HI}]` : ''};`);
    const rl = `l${k}`;
    const rh = size === 64 ? `h${k}` : '0';
    if (alu.op === LZ_LOGIC) {
      const o = LOGIC_OP[name];
      g.emit(`const ${rl} = ${al} ${o} ${bl};` + (size === 64 ? ` const ${rh} = ${ah} ${o} ${bh};` : ''));
    } else if (size === 64) {
      const add = alu.op === LZ_ADD;
      g.emit(`const s${k} = (${al} >>> 0) ${add ? '+' : '-'} (${bl} >>> 0);`);
      g.emit(`const ${rl} = s${k} | 0, ${rh} = (${ah} ${add ? '+' : '-'} ${bh} ${add ? `+ (s${k} > 4294967295 ? 1 : 0)` : `- (s${k} < 0 ? 1 : 0)`}) | 0;`);
    } else {
      g.emit(`const ${rl} = (${al} ${alu.op === LZ_ADD ? '+' : '-'} ${bl}) | 0;`);
    }
    if (alu.store) g.emit(`r[${D}] = ${rl}; r[${D + HI}] = ${rh};`);
    // The previous pending flags are overwritten unread.
    g.pend = { kind: 'lazy', op: alu.op, size, al, ah, bl, bh, rl, rh, c: null };
    return true;
  }
  if (name === 'imul' && (ops.length === 2 || ops.length === 3) && isReg(ops[0], 64)) {
    // The truncated 64-bit product from 32-bit pieces; CF=OF lazily (LZ_IMUL64), as emu/ops/muldiv.ts.
    const D = ops[0].reg;
    const x = ops.length === 3 ? ops[1] : ops[0];
    const y = ops.length === 3 ? ops[2] : ops[1];
    if (!isReg(x, 64) || !(isReg(y, 64) || y.k === 'imm' || (plainMem(y) && y.size === 8))) return false;
    let bl: string;
    let bh: string;
    if (y.k === 'imm') {
      bl = String(y.lo | 0);
      bh = String(y.hi | 0);
    } else if (y.k === 'reg') {
      g.emit(`const b${k} = r[${y.reg}], bh${k} = r[${y.reg + HI}];`);
      bl = `b${k}`;
      bh = `bh${k}`;
    } else {
      emitLoad(g, y as Extract<Operand, { k: 'mem' }>, 64, k);
      bl = `v${k}`;
      bh = `vh${k}`;
    }
    g.emit(`const a${k} = r[${x.reg}], ah${k} = r[${x.reg + HI}];`);
    g.emit(`const l${k} = Math.imul(a${k}, ${bl}), h${k} = (H.mulHiU32(a${k}, ${bl}) + Math.imul(a${k}, ${bh}) + Math.imul(ah${k}, ${bl})) | 0;`);
    g.emit(`r[${D}] = l${k}; r[${D + HI}] = h${k};`);
    g.pend = { kind: 'lazy', op: LZ_IMUL64, size: 64, al: `a${k}`, ah: `ah${k}`, bl, bh, rl: `l${k}`, rh: `h${k}`, c: null };
    return true;
  }
  if ((name === 'inc' || name === 'dec') && ops.length === 1 && isReg(ops[0])) {
    const size = ops[0].size;
    const D = ops[0].reg;
    const inc = name === 'inc';
    // CF is kept: taken from the flags as they stand.
    g.emit(`const c${k} = ${g.pend === null && g.hint === null ? 'H.getCF(cpu)' : `(${g.flag(CF)} ? 1 : 0)`};`);
    const al = `a${k}`;
    const ah = size === 64 ? `ah${k}` : '0';
    g.emit(`const ${al} = r[${D}]${size === 64 ? `, ${ah} = r[${D + HI}]` : ''};`);
    const rl = `l${k}`;
    const rh = size === 64 ? `h${k}` : '0';
    if (size === 64) {
      g.emit(`const s${k} = (${al} >>> 0) ${inc ? '+' : '-'} 1;`);
      g.emit(`const ${rl} = s${k} | 0, ${rh} = (${ah} ${inc ? '+ (s' + k + ' > 4294967295 ? 1 : 0)' : '- (s' + k + ' < 0 ? 1 : 0)'}) | 0;`);
    } else {
      g.emit(`const ${rl} = (${al} ${inc ? '+' : '-'} 1) | 0;`);
    }
    g.emit(`r[${D}] = ${rl}; r[${D + HI}] = ${rh};`);
    g.pend = { kind: 'lazy', op: inc ? LZ_INC : LZ_DEC, size, al, ah, bl: '1', bh: '0', rl, rh, c: `c${k}` };
    return true;
  }
  if ((name === 'rol' || name === 'ror' || name === 'shl' || name === 'shr') && ops.length === 2 && isReg(ops[0]) && ops[1].k === 'imm') {
    const size = ops[0].size;
    const D = ops[0].reg;
    const m = ops[1].lo & (size === 64 ? 63 : 31);
    // A count of zero changes nothing (not even the flags): the closure knows the details.
    if (m === 0) return false;
    g.emit(`const a${k} = r[${D}], ah${k} = ${size === 64 ? `r[${D + HI}]` : '0'};`);
    const lo = `a${k}`;
    const hi = `ah${k}`;
    let rl: string;
    let rh: string;
    let cf: string;
    let of: string;
    if (size === 64) {
      [rl, rh] = shift64(name, lo, hi, m);
      g.emit(`const l${k} = ${rl}, h${k} = ${rh};`);
      rl = `l${k}`;
      rh = `h${k}`;
    } else {
      const e = name === 'rol' ? `(${lo} << ${m}) | (${lo} >>> ${32 - m})` : name === 'ror' ? `(${lo} >>> ${m}) | (${lo} << ${32 - m})` : name === 'shl' ? `${lo} << ${m}` : `(${lo} >>> ${m}) | 0`;
      g.emit(`const l${k} = ${e};`);
      rl = `l${k}`;
      rh = '0';
    }
    // The word holding the sign bit, of the result and of the source.
    const top = size === 64 ? rh : rl;
    const srcTop = size === 64 ? hi : lo;
    if (name === 'rol') {
      cf = `(${rl} & 1)`;
      of = `((${top} >>> 31) ^ ${cf})`;
    } else if (name === 'ror') {
      cf = `(${top} >>> 31)`;
      of = `(${cf} ^ ((${top} >>> 30) & 1))`;
    } else if (name === 'shl') {
      cf = size === 64 ? bit64(lo, hi, 64 - m) : `((${lo} >>> ${32 - m}) & 1)`;
      of = `((${top} >>> 31) ^ ${cf})`;
    } else {
      cf = size === 64 ? bit64(lo, hi, m - 1) : `((${lo} >>> ${m - 1}) & 1)`;
      of = m === 1 ? `(${srcTop} >>> 31)` : '0';
    }
    g.emit(`r[${D}] = ${rl}; r[${D + HI}] = ${rh};`);
    if (name === 'rol' || name === 'ror') {
      // Rotates write CF and OF and keep the rest.
      const base = g.keptSzap(k, g.szapDead[k]);
      g.emit(`const f${k} = ${base} | ${cf} | (${of} ? ${OF} : 0);`);
    } else {
      // Shifts write all six (AF reads 1, as emu/ops/shift.ts models it).
      const sf = `(${top} < 0 ? ${SF} : 0)`;
      g.emit(`const f${k} = (cpu.flags & ${~ARITH}) | ${cf} | H.parityFlag(${rl}) | ${AF} | ((${rl} | ${rh}) === 0 ? ${ZF} : 0) | ${sf} | (${of} ? ${OF} : 0);`);
    }
    g.pend = { kind: 'flags', f: `f${k}` };
    return true;
  }
  if (name === 'lea' && ops.length === 2 && isReg(ops[0]) && plainMemAddress(ops[1])) {
    // LEA takes the address without its segment base.
    const D = ops[0].reg;
    emitEa(g, ops[1], k);
    if (ops[0].size === 64) g.emit(`r[${D}] = e${k}; r[${D + HI}] = eh${k};`);
    else g.emit(`r[${D}] = e${k}; r[${D + HI}] = 0;`);
    return true;
  }
  return false;
}

/** Whether a memory operand's address is inlined: flat 64-bit addressing, no FS/GS base. (Its size is in bytes.) */
function plainMem(o: Operand): o is Extract<Operand, { k: 'mem' }> {
  return o.k === 'mem' && !o.addr32 && o.seg === null;
}

/** A memory operand whose address (not its segment base) is computed inline: 64-bit addressing. */
function plainMemAddress(o: Operand): o is Extract<Operand, { k: 'mem' }> {
  return o.k === 'mem' && !o.addr32;
}

/** Emits the effective address of `mo` into locals `e{k}` (low) and `eh{k}` (high), as compileEa computes it. */
function emitEa(g: Gen, mo: Extract<Operand, { k: 'mem' }>, k: number): void {
  const lo: string[] = [];
  const hi: string[] = [];
  if (mo.base >= 0) {
    lo.push(`(r[${mo.base}] >>> 0)`);
    hi.push(`r[${mo.base + HI}]`);
  }
  if (mo.index >= 0) {
    lo.push(`(r[${mo.index}] >>> 0) * ${mo.scale}`);
    hi.push(`Math.imul(r[${mo.index + HI}], ${mo.scale})`);
  }
  if (mo.base >= 0 && mo.index < 0 && mo.dispLo === 0 && mo.dispHi === 0) {
    // The base register itself.
    g.emit(`const e${k} = r[${mo.base}], eh${k} = r[${mo.base + HI}];`);
    return;
  }
  lo.push(String(mo.dispLo >>> 0));
  hi.push(String(mo.dispHi | 0));
  g.emit(`const es${k} = ${lo.join(' + ')};`);
  // Two 32-bit terms carry at most 1; a scaled index makes the carry up to 9.
  const carry = lo.length <= 2 ? `(es${k} > 4294967295 ? 1 : 0)` : `Math.floor(es${k} / 4294967296)`;
  g.emit(`const e${k} = es${k} | 0, eh${k} = (${hi.join(' + ')} + ${carry}) | 0;`);
}

/**
 * Emits a load of `size` bits at `mo` into `v{k}` (and `vh{k}` for 64 bits). The hit
 * of the CPU's data cache is inlined, with the accessor's own test (cpu.ts rd8..rd64:
 * the page is cached for reads, the access stays in it, no slow mode such as a
 * non-empty store buffer or recorded footprints): a plain RAM read, which cannot fault
 * or be observed. Anything else calls the accessor (paging, store forwarding,
 * footprints, MMIO): a fault point, so the boundary is made exact first (the pending
 * flags stored but kept pending, as both paths join after), and a step that may set
 * `cpu.brk` (spin tracking, MMIO), after which the block leaves as the step loop would.
 */
function emitLoad(g: Gen, mo: Extract<Operand, { k: 'mem' }>, size: number, k: number): void {
  emitEa(g, mo, k);
  const bytes = size / 8;
  const v = `v${k}`;
  g.emit(`const o${k} = e${k} & 4095, i${k} = (e${k} >>> 12) & 255;`);
  g.emit(`let ${v}${size === 64 ? `, vh${k}` : ''};`);
  const fits = bytes > 1 ? `o${k} <= ${4096 - bytes} && ` : '';
  g.emit(`if (${fits}cpu.tlbKey[i${k}] === (eh${k} >>> 0) * 1048576 + (e${k} >>> 12) && !cpu.slow) {`);
  const page = `cpu.tlbPage[i${k}]`;
  if (size === 8) g.emit(`${v} = ${page}.data[o${k}];`);
  else if (size === 16) g.emit(`${v} = ${page}.view.getUint16(o${k}, true);`);
  else if (size === 32) g.emit(`${v} = ${page}.view.getInt32(o${k}, true);`);
  else g.emit(`{ const dv = ${page}.view; vh${k} = dv.getInt32(o${k} + 4, true); ${v} = dv.getInt32(o${k}, true); }`);
  g.emit('} else {');
  const saved = g.pend;
  g.flush();
  g.pend = saved;
  if (!g.single) g.emit(`cpu.retired = R0 + ${k}; cpu.insn = I[${k}];`);
  const fn = size === 64 ? 'rd64' : size === 32 ? 'rd32' : size === 16 ? 'rd16' : 'rd8';
  g.emit(`${v} = cpu.${fn}(e${k}, eh${k});${size === 64 ? ` vh${k} = cpu.th;` : ''}`);
  g.emit('}');
  g.loadAt = k;
}

/** A 64-bit shift or rotate of (lo, hi) by a constant 1..63, as expressions for the halves. */
function shift64(name: string, lo: string, hi: string, m: number): [string, string] {
  const shl = (l: string, h: string, c: number): [string, string] =>
    c === 0 ? [l, h] : c < 32 ? [`(${l} << ${c})`, `((${h} << ${c}) | (${l} >>> ${32 - c}))`] : [`0`, c === 32 ? l : `(${l} << ${c - 32})`];
  const shr = (l: string, h: string, c: number): [string, string] =>
    c === 0 ? [l, h] : c < 32 ? [`((${l} >>> ${c}) | (${h} << ${32 - c}))`, `(${h} >>> ${c})`] : [c === 32 ? h : `(${h} >>> ${c - 32})`, `0`];
  if (name === 'shl') {
    const [a, b] = shl(lo, hi, m);
    return [`${a} | 0`, `${b} | 0`];
  }
  if (name === 'shr') {
    const [a, b] = shr(lo, hi, m);
    return [`${a} | 0`, `${b} | 0`];
  }
  const [x1, y1] = name === 'rol' ? shl(lo, hi, m) : shr(lo, hi, m);
  const [x2, y2] = name === 'rol' ? shr(lo, hi, 64 - m) : shl(lo, hi, 64 - m);
  return [`(${x1} | ${x2})`, `(${y1} | ${y2})`];
}

/** Bit k (0..63) of (lo, hi), as an expression. */
function bit64(lo: string, hi: string, k: number): string {
  return k < 32 ? `((${lo} >>> ${k}) & 1)` : `((${hi} >>> ${k - 32}) & 1)`;
}
