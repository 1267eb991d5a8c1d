// String instructions (emu/ops/string.ts) and atomics (emu/ops/atomic.ts).
//
// "Host-verified" marks expected values that were checked by running the same bytes
// with the same registers and memory natively on the development host (an AMD EPYC,
// x86-64 Linux) in a small C harness that loads all GPRs and RFLAGS, runs the bytes,
// and reports GPRs, RFLAGS, a hash of each memory region and, for a fault, the
// registers, RIP and fault address from the signal context. The same harness was
// used for ~8000 random string cases and ~8000 random cmpxchg/xadd/cmpxchg8b/16b
// cases (all widths, prefixes, 0x67, GS override, DF, faults), all identical.

import { prepareExec, readRegs, type RegName } from '../emu/exec';
import type { Machine, RunResult } from '../emu/machine';
import { loadIdt, writeIdtGate } from '../emu/setup';
import { REP_BUDGET } from '../emu/ops/string';

const hex = (s: string): Uint8Array => Uint8Array.from(Buffer.from(s.replace(/\s/g, ''), 'hex'));
const ascii = (s: string): Uint8Array => Uint8Array.from(Buffer.from(s, 'latin1'));
/** Byte-array equality without jest's element-by-element diffing (large buffers). */
const same = (a: Uint8Array, b: Uint8Array): boolean => Buffer.from(a).equals(Buffer.from(b));

const A = 0x10000000n;
const B = 0x20000000n;
const CODE = 0x401000n;
const CF = 0x1n, PF = 0x4n, AF = 0x10n, ZF = 0x40n, SF = 0x80n, DF = 0x400n, ARITH = 0x8d5n;

function setup(
  code: string,
  regs: Partial<Record<RegName, bigint>>,
  map: [bigint, number][] = [],
  init: [bigint, Uint8Array][] = [],
): Machine {
  const m = prepareExec({ code: hex(code), regs, map });
  for (const [a, b] of init) m.mem.writeBytes(a, b);
  return m;
}

function run(m: Machine, maxSteps = 1_000_000): RunResult {
  return m.run({ schedule: { kind: 'round-robin', quantum: 100000 }, maxSteps, stopOnHlt: true });
}

/** Deterministic filler bytes. */
function pattern(n: number, seed: number): Uint8Array {
  const b = new Uint8Array(n);
  let s = seed >>> 0;
  for (let k = 0; k < n; k++) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    b[k] = (s >>> 16) & 0xff;
  }
  return b;
}

describe('string instructions', () => {
  it('rep with rcx = 0 does nothing, not even to the flags', () => {
    // Host-verified: rep cmpsb with rcx=0 keeps RFLAGS 0x8d5.
    const src = pattern(16, 1);
    const m = setup('f3a4 f3a6 f4', { rsi: A, rdi: B, rcx: 0n, rflags: ARITH }, [[A, 4096], [B, 4096]], [[A, src]]);
    expect(run(m).stop).toBe('hlt');
    const r = readRegs(m);
    expect([r.rsi, r.rdi, r.rcx]).toEqual([A, B, 0n]);
    expect(r.rflags & ARITH).toBe(ARITH);
    expect(m.mem.readBytes(B, 16)).toEqual(new Uint8Array(16));
  });

  it('with 0x67 and ecx = 0 leaves RCX (upper half included) unwritten', () => {
    // The SDM's loop runs no iteration, so nothing is written. Host-verified on an AMD
    // EPYC: 67 f3 a4 with rcx=0x500000000 leaves rcx, rsi, rdi as they were. Intel Xeons
    // clear the upper halves of RCX, RSI and RDI here (undocumented; textpoke models the
    // SDM: docs/notes/vendor-differences.md).
    const m = setup('67f3a4 f4', { rcx: 0x500000000n, rsi: 0x700000000n, rdi: 0x900000000n });
    expect(run(m).stop).toBe('hlt');
    const r = readRegs(m);
    expect([r.rcx, r.rsi, r.rdi]).toEqual([0x500000000n, 0x700000000n, 0x900000000n]);
  });

  it('copies backwards with DF=1 (overlapping memmove)', () => {
    // Host-verified: registers and memory hash of both cases.
    const m = setup('f3a4 f4', { rsi: A + 7n, rdi: A + 9n, rcx: 8n, rflags: DF }, [[A, 4096]], [[A, ascii('0123456789')]]);
    expect(run(m).stop).toBe('hlt');
    let r = readRegs(m);
    expect([r.rsi, r.rdi, r.rcx]).toEqual([A - 1n, A + 1n, 0n]);
    expect(Buffer.from(m.mem.readBytes(A, 10)).toString('latin1')).toBe('0101234567');

    const q = pattern(64, 5);
    const m2 = setup('f348a5 f4', { rsi: A + 0x10n, rdi: A + 0x18n, rcx: 3n, rflags: DF }, [[A, 4096]], [[A, q]]);
    expect(run(m2).stop).toBe('hlt');
    r = readRegs(m2);
    expect([r.rsi, r.rdi, r.rcx]).toEqual([A - 8n, A, 0n]);
    const want = q.slice();
    for (let k = 2; k >= 0; k--) want.set(q.subarray(k * 8, k * 8 + 8), k * 8 + 8);
    expect(m2.mem.readBytes(A, 64)).toEqual(want);
  });

  it('replicates a pattern when a forward rep movsb overlaps its destination', () => {
    // The classic fill idiom: dst = src + 1 copies byte 0 everywhere (not a memmove).
    const m = setup('f3a4 f4', { rsi: A, rdi: A + 1n, rcx: 3000n }, [[A, 8192]], [[A, ascii('x')]]);
    expect(run(m).stop).toBe('hlt');
    expect(same(m.mem.readBytes(A, 3001), new Uint8Array(3001).fill(0x78))).toBe(true);
    // Distance 12 with qwords: each element reads bytes an earlier element wrote.
    const p = pattern(4096, 9);
    const m2 = setup('f348a5 f4', { rsi: A, rdi: A + 12n, rcx: 300n }, [[A, 8192]], [[A, p]]);
    expect(run(m2).stop).toBe('hlt');
    const want = p.slice();
    for (let k = 0; k < 300; k++) want.copyWithin(12 + 8 * k, 8 * k, 8 * k + 8);
    expect(same(m2.mem.readBytes(A, 4096), want)).toBe(true);
  });

  it('repe cmpsb stops at the first difference', () => {
    // Host-verified: rcx=5, rsi/rdi +6, RFLAGS CF|AF|SF (0x20 - 0x5f).
    const m = setup('f3a6 f4', { rsi: A, rdi: B, rcx: 11n }, [[A, 4096], [B, 4096]], [
      [A, ascii('hello world')],
      [B, ascii('hello_world')],
    ]);
    expect(run(m).stop).toBe('hlt');
    const r = readRegs(m);
    expect([r.rcx, r.rsi, r.rdi]).toEqual([5n, A + 6n, B + 6n]);
    expect(r.rflags & ARITH).toBe(CF | AF | SF);
  });

  it('repne scasb finds the terminator (strlen)', () => {
    // Host-verified: rcx=-5, rdi=+4, RFLAGS ZF|PF.
    const m = setup('f2ae f4', { rdi: A, rcx: 0xffffffffffffffffn, rax: 0n }, [[A, 4096]], [[A, ascii('abc\0')]]);
    expect(run(m).stop).toBe('hlt');
    const r = readRegs(m);
    expect([r.rcx, r.rdi]).toEqual([0xfffffffffffffffbn, A + 4n]);
    expect(r.rflags & ARITH).toBe(ZF | PF);
  });

  it('uses esi/edi/ecx with a 0x67 prefix and zero-extends their updates', () => {
    // Host-verified: upper halves of rsi/rdi are ignored for the address and cleared;
    // rcx's upper half is cleared when ecx is written.
    const m = setup(
      '67f3a4 f4',
      { rcx: 0x500000003n, rsi: 0xdead00000000n | A, rdi: 0xbeef00000000n | (A + 0x100n) },
      [[A, 4096]],
      [[A, ascii('abc')]],
    );
    expect(run(m).stop).toBe('hlt');
    let r = readRegs(m);
    expect([r.rcx, r.rsi, r.rdi]).toEqual([0n, A + 3n, A + 0x103n]);
    expect(Buffer.from(m.mem.readBytes(A + 0x100n, 3)).toString('latin1')).toBe('abc');
    // Without rep, RCX is not touched at all.
    const m2 = setup('67a4 f4', { rcx: 0x500000003n, rsi: 0x700000000n | A, rdi: 0x900000000n | (A + 0x100n) }, [[A, 4096]]);
    expect(run(m2).stop).toBe('hlt');
    r = readRegs(m2);
    expect([r.rcx, r.rsi, r.rdi]).toEqual([0x500000003n, A + 1n, A + 0x101n]);
  });

  it('rep movsb across page boundaries', () => {
    const src = pattern(64, 3);
    const m = setup('f3a4 f4', { rsi: A + 0xfe0n, rdi: B + 0xff5n, rcx: 64n }, [[A, 8192], [B, 8192]], [[A + 0xfe0n, src]]);
    expect(run(m).stop).toBe('hlt');
    const r = readRegs(m);
    expect([r.rsi, r.rdi, r.rcx]).toEqual([A + 0x1020n, B + 0x1035n, 0n]);
    expect(m.mem.readBytes(B + 0xff5n, 64)).toEqual(src);
  });

  it('segment override applies to the source (fs: lodsb, gs: movsb)', () => {
    const m = setup('64ac 65a4 f4', { rsi: 0x10n, rdi: B }, [[A, 4096], [B, 4096]], [[A + 0x10n, hex('5a')], [A + 0x11n, hex('c3')]]);
    const cpu = m.cpu(0);
    cpu.fsLo = Number(A);
    cpu.gsLo = Number(A);
    expect(run(m).stop).toBe('hlt');
    const r = readRegs(m);
    expect(r.rax & 0xffn).toBe(0x5an);
    expect(m.mem.readU8(B)).toBe(0xc3);
    expect([r.rsi, r.rdi]).toEqual([0x12n, B + 1n]);
  });

  it('rep stosq of 100000 elements finishes over several steps with exact registers', () => {
    const n = 100000;
    const m = setup('f348ab f4', { rdi: A, rcx: BigInt(n), rax: 0x1122334455667788n }, [[A, n * 8 + 4096]]);
    // One step runs one batch: the registers show exactly REP_BUDGET elements done.
    m.step(0, 1);
    let r = readRegs(m);
    expect([r.rcx, r.rdi, r.rip]).toEqual([BigInt(n - REP_BUDGET), A + BigInt(8 * REP_BUDGET), CODE]);
    const res = run(m);
    expect(res.stop).toBe('hlt');
    expect(res.steps).toBe(Math.ceil(n / REP_BUDGET) + 1);
    r = readRegs(m);
    expect([r.rcx, r.rdi, r.rax, r.rip]).toEqual([0n, A + BigInt(8 * n), 0x1122334455667788n, CODE + 4n]);
    for (const k of [0, 1, 511, 512, 1023, 1024, n - 1]) expect(m.mem.readU64(A + BigInt(8 * k))).toBe(0x1122334455667788n);
    expect(m.mem.readU64(A + BigInt(8 * n))).toBe(0n);
  });

  it('an NMI between batches sees consistent state and the copy completes exactly', () => {
    const IDT = 0x30000000n;
    const n = 5000;
    // f348a5: rep movsq; f4: hlt; handler at +0x100: inc r15; iretq.
    const code = 'f348a5f4' + '00'.repeat(0x100 - 4) + '49ffc748cf';
    const src = pattern(n * 8, 11);
    const m = setup(code, { rsi: A, rdi: B, rcx: BigInt(n) }, [[A, n * 8], [B, n * 8], [IDT, 4096]], [[A, src]]);
    writeIdtGate(m, IDT, 2, CODE + 0x100n);
    loadIdt(m.cpu(0), IDT);
    m.step(0, 2);
    m.nmi(0);
    const res = run(m);
    expect(res.stop).toBe('hlt');
    const r = readRegs(m);
    expect([r.rcx, r.rsi, r.rdi, r.r15]).toEqual([0n, A + BigInt(8 * n), B + BigInt(8 * n), 1n]);
    expect(same(m.mem.readBytes(B, n * 8), src)).toBe(true);
  });

  it('a fault mid-way leaves RCX/RSI/RDI at the faulting iteration', () => {
    // Host-verified: #PF at 0x20001000 with rip at the instruction, rcx=60, rsi=+40.
    const src = pattern(4096, 3);
    const m = setup('f3a4 f4', { rsi: A, rdi: B + 0xfd8n, rcx: 100n }, [[A, 4096], [B, 4096]], [[A, src]]);
    run(m);
    const cpu = m.cpu(0);
    expect(cpu.shutdown?.vector).toBe(14);
    expect(cpu.shutdown?.rip).toBe(CODE);
    expect([cpu.cr2Lo >>> 0, cpu.cr2Hi]).toEqual([Number(B + 0x1000n), 0]);
    const r = readRegs(m);
    expect([r.rcx, r.rsi, r.rdi]).toEqual([60n, A + 40n, B + 0x1000n]);
    expect(m.mem.readBytes(B + 0xfd8n, 40)).toEqual(src.subarray(0, 40));
  });

  it('a fault mid-way through repne scasb restores RFLAGS to its value before the instruction', () => {
    // SDM (REP/REPE/REPZ/REPNE/REPNZ): a fault during repe/repne cmps/scas restores
    // EFLAGS to the state prior to the instruction; RCX/RDI show the iterations done.
    // Host-verified on an Intel Xeon (the oracle's run-off cases).
    const m = setup('f2ae f4', { rax: 0n, rdi: B + 0xff0n, rcx: 100n, rflags: CF | ZF }, [[B, 4096]], [[B, new Uint8Array(4096).fill(0x11)]]);
    run(m);
    const cpu = m.cpu(0);
    expect(cpu.shutdown?.vector).toBe(14);
    expect(cpu.shutdown?.rip).toBe(CODE);
    const r = readRegs(m);
    expect([r.rcx, r.rdi]).toEqual([84n, B + 0x1000n]);
    // 0 - 0x11 in every iteration would leave CF AF SF; the fault puts back CF ZF.
    expect(r.rflags & ARITH).toBe(CF | ZF);
  });

  it('a fault in a later batch of repe cmpsb still restores the flags from before the instruction', () => {
    // Equal bytes for more than REP_BUDGET iterations, then the source runs off its page.
    const n = 4096;
    expect(n).toBeGreaterThan(2 * REP_BUDGET);
    const data = pattern(n, 9);
    const m = setup('f3a6 f4', { rsi: A, rdi: B, rcx: BigInt(n + 10), rflags: SF | PF }, [[A, n], [B, 2 * n]], [[A, data], [B, data]]);
    run(m);
    expect(m.cpu(0).shutdown?.vector).toBe(14);
    const r = readRegs(m);
    expect([r.rcx, r.rsi, r.rdi]).toEqual([10n, A + BigInt(n), B + BigInt(n)]);
    expect(r.rflags & ARITH).toBe(SF | PF);
  });

  it('after an interrupt between batches, a fault restores the flags from the interruption', () => {
    // The interrupted instruction restarts from its saved state: "before the
    // instruction" is then the flags at the interruption (the last iteration's).
    const IDT = 0x30000000n;
    const code = 'f2ae f4' + '00'.repeat(0x100 - 3) + '49ffc748cf';
    const m = setup(code, { rax: 0n, rdi: B, rcx: 0x10000n, rflags: CF | ZF }, [[B, 4096], [IDT, 4096]], [[B, new Uint8Array(4096).fill(0x11)]]);
    writeIdtGate(m, IDT, 2, CODE + 0x100n);
    loadIdt(m.cpu(0), IDT);
    m.step(0, 2);
    m.nmi(0);
    run(m);
    expect(m.cpu(0).shutdown?.vector).toBe(14);
    const r = readRegs(m);
    expect([r.rcx, r.rdi, r.r15]).toEqual([0x10000n - 4096n, B + 4096n, 1n]);
    expect(r.rflags & ARITH).toBe(CF | AF | SF);
  });

  it('xlatb loads AL from [rBX + AL], with 0x67 mod 2^32, and takes a gs override', () => {
    const table = pattern(512, 4);
    // d7: xlatb; 67 d7: xlatb with EBX; 65 d7: gs xlatb.
    let m = setup('d7 f4', { rax: 0xffffffffffff12c5n, rbx: A + 0x10n }, [[A, 4096]], [[A, table]]);
    expect(run(m).stop).toBe('hlt');
    expect(readRegs(m).rax).toBe(0xffffffffffff1200n | BigInt(table[0x10 + 0xc5]));
    m = setup('67d7 f4', { rax: 0x7fn, rbx: 0xdead00000000n | (A + 0x20n) }, [[A, 4096]], [[A, table]]);
    expect(run(m).stop).toBe('hlt');
    expect(readRegs(m).rax).toBe(BigInt(table[0x20 + 0x7f]));
    m = setup('65d7 f4', { rax: 0x3n, rbx: 0x40n }, [[A, 4096]], [[A, table]]);
    m.cpu(0).gsLo = Number(A);
    expect(run(m).stop).toBe('hlt');
    expect(readRegs(m).rax).toBe(BigInt(table[0x43]));
    // A table outside mapped memory faults with AL unchanged.
    m = setup('d7 f4', { rax: 0x3n, rbx: 0x7000000000n }, [[A, 4096]]);
    run(m);
    expect(m.cpu(0).shutdown?.vector).toBe(14);
    expect(readRegs(m).rax).toBe(0x3n);
  });

  it('an element straddling into an unmapped page faults without a partial store', () => {
    // Host-verified: rep movsq with rdi = page end - 4 faults at the next page's first
    // byte with nothing stored and rcx/rsi/rdi unchanged.
    const m = setup('f348a5 f4', { rsi: A, rdi: B + 0xffcn, rcx: 5n }, [[A, 4096], [B, 4096]], [[A, pattern(64, 1)]]);
    run(m);
    const cpu = m.cpu(0);
    expect(cpu.shutdown?.vector).toBe(14);
    expect([cpu.cr2Lo >>> 0, cpu.cr2Hi]).toEqual([Number(B + 0x1000n), 0]);
    const r = readRegs(m);
    expect([r.rcx, r.rsi, r.rdi]).toEqual([5n, A, B + 0xffcn]);
    expect(m.mem.readBytes(B + 0xffcn, 4)).toEqual(new Uint8Array(4));
  });

  it('stores into code pages go through the logged path (decode cache sees them)', () => {
    // Loop twice: the first pass runs `inc rbx`; the second overwrites it with nops
    // (rep stosb into the code page) before reaching it again, so rbx ends at 1.
    //   top: mov ecx, esi; rep stosb; inc rbx; mov esi, 3; dec rdx; jnz top; hlt
    const code = '89f1 f3aa 48ffc3 be03000000 48ffca 75ef f4';
    const m = setup(code, { rsi: 0n, rdx: 2n, rdi: CODE + 4n, rax: 0x90n });
    expect(run(m).stop).toBe('hlt');
    expect(readRegs(m).rbx).toBe(1n);
    expect(m.mem.readBytes(CODE + 4n, 3)).toEqual(hex('909090'));
  });

  it('lock on a string instruction and the SSE movsd are #UD', () => {
    let m = setup('f0a4 f4', { rsi: A, rdi: A }, [[A, 4096]]);
    run(m);
    expect(m.cpu(0).shutdown?.vector).toBe(6);
    m = setup('f20f10c1 f4', {});
    run(m);
    expect(m.cpu(0).shutdown?.vector).toBe(6);
    expect(m.cpu(0).shutdown?.detail).toMatch(/movsd/);
  });
});

describe('atomics', () => {
  it('cmpxchg r32: success writes only the destination, failure only EAX', () => {
    // Host-verified (0f b1 c1 = cmpxchg ecx, eax).
    let m = setup('0fb1c1 f4', { rax: 0xffffffff00000001n, rcx: 0xaaaaaaaa00000002n });
    run(m);
    let r = readRegs(m);
    expect([r.rax, r.rcx, r.rflags & ARITH]).toEqual([2n, 0xaaaaaaaa00000002n, CF | PF | AF | SF]);
    m = setup('0fb1c1 f4', { rax: 0xffffffff00000002n, rcx: 0xaaaaaaaa00000002n });
    run(m);
    r = readRegs(m);
    expect([r.rax, r.rcx, r.rflags & ARITH]).toEqual([0xffffffff00000002n, 2n, ZF | PF]);
  });

  it('a failed memory cmpxchg loads the accumulator and does not write', () => {
    // Host-verified: rax=0x11223344 (upper half cleared), RFLAGS CF|SF.
    const m = setup('f00fb10e f4', { rsi: A, rax: 0xffffffff00000005n, rcx: 0x77n }, [[A, 4096]], [[A, hex('44332211')]]);
    let writes = 0;
    m.mem.watch(A, 4, () => writes++);
    run(m);
    const r = readRegs(m);
    expect([r.rax, r.rflags & ARITH]).toEqual([0x11223344n, CF | SF]);
    expect(writes).toBe(0);
    expect(m.mem.readU32(A)).toBe(0x11223344);
    // The same instruction succeeding stores (and the watcher sees it).
    const m2 = setup('f00fb10e f4', { rsi: A, rax: 0x11223344n, rcx: 0x77n }, [[A, 4096]], [[A, hex('44332211')]]);
    let writes2 = 0;
    m2.mem.watch(A, 4, () => writes2++);
    run(m2);
    expect(writes2).toBe(1);
    expect(m2.mem.readU32(A)).toBe(0x77);
    expect(readRegs(m2).rflags & ZF).toBe(ZF);
  });

  it('lock cmpxchg with a register destination is #UD', () => {
    // Host-verified: SIGILL (#UD).
    const m = setup('f00fb1c1 f4', {});
    run(m);
    expect(m.cpu(0).shutdown?.vector).toBe(6);
  });

  it('xadd writes the old destination to the source, then the sum', () => {
    // Host-verified: xadd ecx, edx -> rcx=5, rdx=2; xadd ecx, ecx -> rcx=4.
    let m = setup('0fc1d1 f4', { rcx: 0xaaaaaaaa00000002n, rdx: 0xbbbbbbbb00000003n });
    run(m);
    let r = readRegs(m);
    expect([r.rcx, r.rdx]).toEqual([5n, 2n]);
    m = setup('0fc1c9 f4', { rcx: 0xaaaaaaaa00000002n });
    run(m);
    r = readRegs(m);
    expect(r.rcx).toBe(4n);
  });

  it('cmpxchg8b changes only ZF and clears upper halves only on failure', () => {
    // Host-verified: failure loads rax=9, rdx=8 (upper halves cleared), RFLAGS 0x895
    // from 0x8d5; success leaves rax/rdx alone and sets ZF.
    let m = setup('0fc70e f4', { rsi: A, rax: 0xffffffff00000001n, rdx: 0xeeeeeeee00000002n, rflags: ARITH }, [[A, 4096]], [
      [A, hex('0900000008000000')],
    ]);
    run(m);
    let r = readRegs(m);
    expect([r.rax, r.rdx, r.rflags & ARITH]).toEqual([9n, 8n, ARITH & ~ZF]);
    m = setup(
      '0fc70e f4',
      { rsi: A, rax: 0xffffffff00000009n, rdx: 0xeeeeeeee00000008n, rbx: 0x1111111100000003n, rcx: 0x2222222200000004n },
      [[A, 4096]],
      [[A, hex('0900000008000000')]],
    );
    run(m);
    r = readRegs(m);
    expect([r.rax, r.rdx, r.rflags & ARITH]).toEqual([0xffffffff00000009n, 0xeeeeeeee00000008n, ZF]);
    expect(m.mem.readU64(A)).toBe(0x0000000400000003n);
  });

  it('cmpxchg16b: #GP(0) when misaligned, exchange when aligned', () => {
    // Host-verified: lock cmpxchg16b [rsi] with rsi = 16n+8 raises #GP (trap 13).
    let m = setup('f0480fc70e f4', { rsi: A + 8n, rax: 1n }, [[A, 4096]]);
    run(m);
    const cpu = m.cpu(0);
    expect(cpu.shutdown?.vector).toBe(13);
    expect(readRegs(m).rax).toBe(1n);
    m = setup('f0480fc70e f4', { rsi: A + 16n, rax: 0n, rdx: 0n, rbx: 0x1111111122222222n, rcx: 0x3333333344444444n }, [[A, 4096]]);
    run(m);
    expect(readRegs(m).rflags & ZF).toBe(ZF);
    expect([m.mem.readU64(A + 16n), m.mem.readU64(A + 24n)]).toEqual([0x1111111122222222n, 0x3333333344444444n]);
    m = setup('f0480fc70e f4', { rsi: A, rax: 5n, rdx: 6n }, [[A, 4096]], [[A, hex('0100000000000080 0200000000000000')]]);
    let writes = 0;
    m.mem.watch(A, 16, () => writes++);
    run(m);
    const r = readRegs(m);
    expect([r.rax, r.rdx, r.rflags & ZF, BigInt(writes)]).toEqual([0x8000000000000001n, 2n, 0n, 0n]);
  });
});
