// The oracle's own machinery: what the generator says about a case must be true of
// its bytes (memory operand address, value-dependent undefined results), and the
// comparison leaves out exactly a case's vendor differences on a host of that vendor.
// These run without the host harness.

import { Mnemonic } from 'iced-x86';
import { decodeOne, isDecodeFailure, type Decoded } from '../../emu/decode';
import { ARITH, CF } from '../../emu/flags';
import { formsFor, generateCases, producerForms, type OracleCase } from './generate';
import { compareResults } from './compare';
import { INSN_ADDR } from './layout';
import type { MachineResult } from './native';

const M64 = (1n << 64n) - 1n;
const SEED = 0x51d3;

function decodeAll(bytes: Uint8Array): Decoded[] {
  const out: Decoded[] = [];
  for (let off = 0; off < bytes.length; ) {
    const at = INSN_ADDR + BigInt(off);
    const d = decodeOne(bytes.subarray(off), Number(at & 0xffffffffn) | 0, Number(at >> 32n) | 0);
    if (isDecodeFailure(d)) throw new Error(`undecodable case bytes at ${off}`);
    out.push(d);
    off += d.len;
  }
  return out;
}

/** The linear address of a decoded explicit memory operand with the case's registers. */
function effectiveAddress(d: Decoded, c: OracleCase): bigint | null {
  const m = d.ops.find((o) => o.k === 'mem');
  if (!m || m.k !== 'mem') return null;
  const disp = (BigInt(m.dispHi >>> 0) << 32n) | BigInt(m.dispLo >>> 0);
  let a = disp;
  if (m.base >= 0) a += c.regs[m.base];
  if (m.index >= 0) a += c.regs[m.index] * BigInt(m.scale);
  if (m.addr32) a &= 0xffffffffn;
  if (m.seg === 'gs') a += c.gsBase;
  return a & M64;
}

describe('oracle generator', () => {
  it('puts each explicit memory operand where the case says it is', () => {
    // Scaled-index forms used to be solved with the wrong sign: for an index scale
    // above one the operand landed a few bytes from the recorded (and masked) address.
    let checked = 0;
    for (const mn of [Mnemonic.Shld, Mnemonic.Add, Mnemonic.Mov, Mnemonic.Bsf]) {
      for (const c of generateCases(mn, formsFor(mn).forms, 300, SEED)) {
        if (!c.mem) continue;
        const [d] = decodeAll(c.bytes);
        if (d.ops.some((o) => o.k === 'mem' && o.scale > 1)) checked++;
        const ea = effectiveAddress(d, c);
        if (ea !== null) expect(`${c.form} #${c.index} at 0x${ea.toString(16)}`).toBe(`${c.form} #${c.index} at 0x${c.mem.addr.toString(16)}`);
      }
    }
    expect(checked).toBeGreaterThan(50);
  });

  it('never feeds a flag reader a 16-bit shld/shrd whose count leaves flags or result undefined', () => {
    const producers = [Mnemonic.Shld, Mnemonic.Shrd].flatMap((m) => producerForms(formsFor(m).forms));
    let pairs16 = 0;
    for (const mn of [Mnemonic.Jp, Mnemonic.Cmovns, Mnemonic.Lodsb, Mnemonic.Adc]) {
      for (const c of generateCases(mn, formsFor(mn).forms, 40, SEED, producers, 400)) {
        const ds = decodeAll(c.bytes);
        if (ds.length !== 2) continue;
        const [p, consumer] = ds;
        const dst = p.ops[0];
        if (dst.k !== 'reg' || dst.size !== 16) continue;
        pairs16++;
        const countOp = p.ops[2];
        const count = countOp.k === 'imm' ? countOp.lo & 31 : Number(c.regs[1] & 31n);
        if (count > 16) {
          // Allowed only when the consumer reads none of those flags and the result is
          // not kept: never, since such a producer is rejected.
          throw new Error(`${c.form} #${c.index}: producer count ${count} (consumer reads 0x${consumer.flagsRead.toString(16)})`);
        }
      }
    }
    expect(pairs16).toBeGreaterThan(100);
  });

  it('marks 32-bit-address rep with ECX=0 (Intel) and faulting repe/repne cmps/scas (not Intel)', () => {
    const zero = generateCases(Mnemonic.Stosd, formsFor(Mnemonic.Stosd).forms, 400, SEED).filter((c) => c.vendorDiffers?.intel);
    expect(zero.length).toBeGreaterThan(0);
    for (const c of zero) {
      expect(c.bytes[0]).toBe(0x67);
      expect(c.regs[1] & 0xffffffffn).toBe(0n);
      expect(c.vendorDiffers!.upperHalves).toEqual([1, 7]);
    }
    const runOff = generateCases(Mnemonic.Scasb, formsFor(Mnemonic.Scasb).forms, 400, SEED).filter((c) => c.vendorDiffers && !c.vendorDiffers.intel);
    expect(runOff.length).toBeGreaterThan(0);
    for (const c of runOff) expect(c.vendorDiffers!.flagsIfFault).toBe(ARITH);
  });

  it('compares vendor-dependent results only on a host of the modelled behaviour', () => {
    const [c] = generateCases(Mnemonic.Stosd, formsFor(Mnemonic.Stosd).forms, 400, SEED).filter((x) => x.vendorDiffers?.intel);
    const emu: MachineResult = { vector: null, rip: 0n, regs: c.regs.slice(), rflags: c.rflags, data: c.data, stack: c.stack };
    const host: MachineResult = { ...emu, regs: c.regs.map((v, i) => (i === 1 || i === 7 ? v & 0xffffffffn : v)) };
    expect(compareResults(c, host, emu, 0, true)).toEqual([]);
    expect(compareResults(c, host, emu, 0, false).join('\n')).toMatch(/rcx[\s\S]*rdi/);
    // The low halves are still compared on Intel.
    const lowDiffers: MachineResult = { ...host, regs: host.regs.map((v, i) => (i === 1 ? v ^ 1n : v)) };
    expect(compareResults(c, lowDiffers, emu, 0, true).join('\n')).toMatch(/rcx/);

    const [f] = generateCases(Mnemonic.Scasb, formsFor(Mnemonic.Scasb).forms, 400, SEED).filter((x) => x.vendorDiffers && !x.vendorDiffers.intel);
    const e2: MachineResult = { vector: 14, rip: INSN_ADDR, regs: f.regs, rflags: f.rflags, data: f.data, stack: f.stack };
    const h2: MachineResult = { ...e2, rflags: f.rflags ^ CF };
    expect(compareResults(f, h2, e2, 0, false)).toEqual([]);
    expect(compareResults(f, h2, e2, 0, true).join('\n')).toMatch(/CF/);
    // Without a fault on the host, the flags are compared on every host.
    expect(compareResults(f, { ...h2, vector: null }, { ...e2, vector: null }, 0, false).join('\n')).toMatch(/CF/);
  });
});
