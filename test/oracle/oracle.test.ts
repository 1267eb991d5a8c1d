// Instruction semantics against the host CPU. Every 'oracle' row of the opcode table
// gets ORACLE_CASES (default 200) random instances spread over its forms; they run
// natively in one batch (test/oracle/harness.c, built with gcc into .cache/oracle/)
// and in the emulator, and the results must agree: all 16 GPRs, RFLAGS except the
// flags the instruction leaves undefined, the data and stack windows, where execution
// ended (branches) and the exception class. Instructions that read flags get half as
// many cases again with a flag-producing instruction in front (lazy flags computed by
// one instruction, consumed by the next). Where Intel and AMD CPUs differ from each
// other or from the SDM, textpoke models the SDM and a case compares only what holds on
// the host's vendor (docs/notes/vendor-differences.md); the title names the host CPU.
//
//   ORACLE_CASES=2000   more cases per mnemonic
//   ORACLE_SEED=1234    another seed (ORACLE_SEED=random: a fresh one, printed)
//   ORACLE_ONLY=add,sub only these mnemonics
//
// A failure message carries the seed and the case number: the same seed, mnemonic and
// ORACLE_CASES regenerate the same case.

import { OP_ROWS } from '../../emu/optable';
import { MNEMONIC_NAMES } from '../../emu/decode';
import { Mnemonic } from 'iced-x86';
import { CF, ZF, materialize } from '../../emu/flags';
import { formsFor, generateCases, hostCpuIdentity, producerForms, type Form, type OracleCase } from './generate';
import { buildHarness, runNative, type MachineResult } from './native';
import { runEmulator } from './emulate';
import { compareResults, describeCase, COMPARED_FLAGS } from './compare';
import { INSN_ADDR } from './layout';

const DEFAULT_SEED = 0x7e47_90ce;
const CASES = Number(process.env.ORACLE_CASES ?? 200);
const SEED =
  process.env.ORACLE_SEED === 'random'
    ? (Date.now() ^ (process.pid << 16)) >>> 0
    : process.env.ORACLE_SEED !== undefined
      ? Number(process.env.ORACLE_SEED) >>> 0
      : DEFAULT_SEED;
const HOST = hostCpuIdentity();
const ONLY = process.env.ORACLE_ONLY ? new Set(process.env.ORACLE_ONLY.split(',').map((s) => s.trim().toLowerCase())) : null;
/** Failing cases shown in full per mnemonic (the first of each failing form). */
const SHOW = 4;

if (!Number.isInteger(CASES) || CASES < 1) throw new Error(`ORACLE_CASES must be a positive integer (got ${process.env.ORACLE_CASES})`);
if (!Number.isFinite(SEED)) throw new Error(`ORACLE_SEED must be a number or 'random' (got ${process.env.ORACLE_SEED})`);

const rows = OP_ROWS.filter((r) => r.check === 'oracle' && (!ONLY || ONLY.has(MNEMONIC_NAMES[r.mnemonic])));
const names = rows.map((r) => MNEMONIC_NAMES[r.mnemonic]);
if (names.length === 0) throw new Error(`no oracle rows${ONLY ? ` named ${[...ONLY].join(', ')}` : ''}`);

interface Batch {
  forms: Form[];
  skipped: { name: string; why: string }[];
  cases: OracleCase[];
  host: MachineResult[];
}
const batches = new Map<string, Batch>();
const timing = { build: 0, generate: 0, native: 0, emulate: 0 };
let totalCases = 0;
const failedMnemonics: string[] = [];

function ms(t0: bigint): number {
  return Number(process.hrtime.bigint() - t0) / 1e6;
}

describe(`host-CPU oracle on ${HOST.vendor} ${HOST.model} (seed ${SEED}, ${CASES} cases per mnemonic)`, () => {
  let bin = '';

  beforeAll(() => {
    let t = process.hrtime.bigint();
    bin = buildHarness();
    timing.build = ms(t);
    t = process.hrtime.bigint();
    const all: OracleCase[] = [];
    // Flag producers come from all oracle rows (also with ORACLE_ONLY).
    const producers = OP_ROWS.filter((r) => r.check === 'oracle').flatMap((r) => producerForms(formsFor(r.mnemonic).forms));
    for (const row of rows) {
      const { forms, skipped } = formsFor(row.mnemonic);
      const cases = generateCases(row.mnemonic, forms, CASES, SEED, producers, Math.ceil(CASES / 2));
      batches.set(MNEMONIC_NAMES[row.mnemonic], { forms, skipped, cases, host: [] });
      all.push(...cases);
    }
    timing.generate = ms(t);
    t = process.hrtime.bigint();
    const host = runNative(bin, all);
    timing.native = ms(t);
    let k = 0;
    for (const b of batches.values()) {
      b.host = host.slice(k, k + b.cases.length);
      k += b.cases.length;
    }
    totalCases = all.length;
  }, 600_000); // ORACLE_CASES=2000 takes about a minute here

  afterAll(() => {
    const skipped = [...batches.values()].reduce((n, b) => n + b.skipped.length, 0);
    const forms = [...batches.values()].reduce((n, b) => n + b.forms.length, 0);
    console.log(
      `host-CPU oracle on ${HOST.vendor} ${HOST.model}: seed ${SEED}, ${names.length} mnemonics, ${forms} forms (${skipped} skipped), ${totalCases} cases; ` +
        `build ${timing.build.toFixed(0)} ms, generate ${timing.generate.toFixed(0)} ms, native ${timing.native.toFixed(0)} ms, ` +
        `emulator+compare ${timing.emulate.toFixed(0)} ms` +
        (failedMnemonics.length ? `\nfailing: ${failedMnemonics.join(' ')}` : ''),
    );
  });

  it.each(names)('%s', (name) => {
    const b = batches.get(name)!;
    if (b.forms.length === 0) {
      failedMnemonics.push(name);
      throw new Error(
        `'${name}' is an oracle row but no form of it can be generated:\n` +
          b.skipped.map((s) => `  ${s.name}: ${s.why}`).join('\n') +
          `\n(mark the row 'sdm', or teach test/oracle/generate.ts its operands)`,
      );
    }
    const t = process.hrtime.bigint();
    const failures: string[] = [];
    const perForm = new Map<string, number>();
    let failed = 0;
    b.cases.forEach((c, i) => {
      const emu = runEmulator(c);
      const diff = compareResults(c, b.host[i], emu, c.flagsUndefined);
      if (diff.length === 0) return;
      failed++;
      const seen = perForm.get(c.form) ?? 0;
      perForm.set(c.form, seen + 1);
      // The first failure of each form, so one broken form does not hide another.
      if (seen === 0 && failures.length < SHOW) {
        failures.push(`${describeCase(c)}\n  host vs emulator:\n    ${diff.join('\n    ')}`);
      }
    });
    timing.emulate += ms(t);
    if (failed) {
      failedMnemonics.push(name);
      const forms = [...perForm].map(([f, n]) => `${f} ${n}`).join(', ');
      throw new Error(
        `${name}: ${failed} of ${b.cases.length} cases differ from the host CPU (seed ${SEED}; replay: ` +
          `ORACLE_SEED=${SEED} ORACLE_CASES=${CASES} ORACLE_ONLY=${name})\nfailing forms: ${forms}\n\n` +
          failures.join('\n\n'),
      );
    }
  });

  it('catches a wrong result (the comparison can fail)', () => {
    // The host really runs the bytes: add rax, rbx with 2 and 3 gives 5.
    const regs = Array.from({ length: 16 }, () => 0n);
    regs[0] = 2n;
    regs[3] = 3n;
    regs[4] = 0x30001000n;
    const sample = [...batches.values()].find((x) => x.cases.length)?.cases[0];
    const add: OracleCase = {
      mnemonic: 0, name: 'add', code: 0, form: 'Add_rm64_r64', index: 0, bytes: Uint8Array.from([0x48, 0x01, 0xd8]),
      regs, rflags: 0x202, gsBase: 0n, flagsUndefined: 0, undefinedRegs: [], undefinedMem: null, vendorDiffers: null, data: sample?.data ?? new Uint8Array(0x200),
      stack: sample?.stack ?? new Uint8Array(0x400), mem: null,
    };
    const [host] = runNative(bin, [add]);
    expect(host.vector).toBeNull();
    expect(host.regs[0]).toBe(5n);
    expect(host.rip).toBe(INSN_ADDR + 3n);
    const emu = runEmulator(add);
    expect(compareResults(add, host, emu, 0)).toEqual([]);

    // Each kind of wrong emulator result is reported.
    const wrongFlag = { ...emu, rflags: emu.rflags ^ CF };
    expect(compareResults(add, host, wrongFlag, 0).join('\n')).toMatch(/rflags.*CF/);
    expect(compareResults(add, host, { ...emu, rflags: emu.rflags ^ ZF }, ZF)).toEqual([]); // undefined flags are masked
    const wrongReg = { ...emu, regs: emu.regs.map((v, i) => (i === 3 ? v ^ 1n : v)) };
    expect(compareResults(add, host, wrongReg, 0).join('\n')).toMatch(/rbx/);
    const data = Uint8Array.from(emu.data);
    data[0x123] ^= 0x10;
    expect(compareResults(add, host, { ...emu, data }, 0).join('\n')).toMatch(/data 0x20001023/);
    expect(compareResults(add, host, { ...emu, vector: 6 }, 0).join('\n')).toMatch(/exception: host none, emulator #UD/);
    expect(compareResults(add, host, { ...emu, rip: emu.rip + 1n }, 0).join('\n')).toMatch(/end RIP/);
    expect(COMPARED_FLAGS & CF).toBe(CF);
  });

  it('catches a broken instruction end to end', () => {
    // Generated add cases, run natively and in an emulator whose add row is sabotaged
    // (CF inverted after every add): the oracle must flag the cases where CF is defined.
    const row = OP_ROWS.find((r) => r.mnemonic === Mnemonic.Add)!;
    const cases = generateCases(Mnemonic.Add, formsFor(Mnemonic.Add).forms, 20, SEED);
    const host = runNative(bin, cases);
    const original = row.compile;
    row.compile = (d) => {
      const exec = original(d);
      return (cpu, ins) => {
        const next = exec(cpu, ins);
        materialize(cpu);
        cpu.flags ^= CF;
        return next;
      };
    };
    let caught = 0;
    try {
      cases.forEach((c, i) => {
        const diff = compareResults(c, host[i], runEmulator(c), c.flagsUndefined);
        if (host[i].vector === null && diff.some((l) => /rflags.*differ in CF/.test(l))) caught++;
      });
    } finally {
      row.compile = original;
    }
    expect(caught).toBeGreaterThan(cases.length / 2);
    // And with the row restored, the same cases agree again.
    cases.forEach((c, i) => expect(compareResults(c, host[i], runEmulator(c), c.flagsUndefined)).toEqual([]));
  });
});
