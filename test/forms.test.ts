// The opcode table's forms (emu/forms.ts): what rows declare about the forms they leave
// out is true, the oracle's form list comes from the table, and coverage reports a
// declared reason.

import { Mnemonic } from 'iced-x86';
import { OP_ROWS, OPTABLE } from '../emu/optable';
import { mnemonicForms, rowForms } from '../emu/forms';
import { decodeOne, isDecodeFailure, MNEMONIC_NAMES } from '../emu/decode';
import { Unsupported } from '../emu/operands';
import { sweepCoverage } from '../emu/coverage';

const hex = (s: string): Uint8Array => Uint8Array.from(Buffer.from(s.replace(/\s/g, ''), 'hex'));

/** Bytes of one instance of each declared-unimplemented form. */
const INSTANCES: Record<string, string> = {
  Movsd_xmm_xmmm64: 'f20f10c1',
  Movsd_xmmm64_xmm: 'f20f11c1',
  Cmpsd_xmm_xmmm64_imm8: 'f20fc2c100',
  Pushw_FS: '660fa0',
  Pushw_GS: '660fa8',
  Popw_FS: '660fa1',
  Popw_GS: '660fa9',
};

describe('opcode-table forms', () => {
  it('declared names are forms of the row, and the oracle skips only implemented ones', () => {
    for (const row of OP_ROWS) {
      const all = new Set(mnemonicForms(row.mnemonic).map((f) => f.name));
      const implemented = new Set(rowForms(row).map((f) => f.name));
      const name = MNEMONIC_NAMES[row.mnemonic];
      for (const n of Object.keys(row.unimplemented ?? {})) expect(`${name}: ${n} ${all.has(n)}`).toBe(`${name}: ${n} true`);
      for (const n of Object.keys(row.oracleSkip ?? {})) expect(`${name}: ${n} ${implemented.has(n)}`).toBe(`${name}: ${n} true`);
    }
  });

  it('a form declared unimplemented really is (compile throws Unsupported)', () => {
    const declared = OP_ROWS.flatMap((r) => Object.keys(r.unimplemented ?? {}));
    expect(declared.sort()).toEqual(Object.keys(INSTANCES).sort());
    for (const [name, bytes] of Object.entries(INSTANCES)) {
      const d = decodeOne(hex(bytes), 0x1000, 0);
      if (isDecodeFailure(d)) throw new Error(`${name}: ${bytes} does not decode`);
      expect(d.code).toBeDefined();
      expect(() => OPTABLE.get(d.mnemonic)!.compile(d)).toThrow(Unsupported);
    }
  });

  it('leaves out forms that are not forms on the modelled CPU', () => {
    const jo = mnemonicForms(Mnemonic.Jo).map((f) => f.name);
    expect(jo).toEqual(expect.arrayContaining(['Jo_rel8_64', 'Jo_rel32_64']));
    expect(jo).not.toContain('Jo_rel16'); // Intel decodes 66 jcc as the 64-bit form
    expect(mnemonicForms(Mnemonic.Bextr).map((f) => f.name)).not.toContain('XOP_Bextr_r32_rm32_imm32');
    expect(mnemonicForms(Mnemonic.Popcnt).map((f) => f.name).some((n) => n.startsWith('VEX_KNC'))).toBe(false);
  });

  it('coverage reports a declared reason for a form the row leaves out', () => {
    // movsd xmm0,xmm1; push fs (implemented); 66 push fs (declared out)
    const r = sweepCoverage([{ base: 0x1000n, bytes: hex('f20f10c1 0fa0 660fa0') }]);
    const reasons = r.unsupported.map((u) => `${u.code}: ${u.reason}`);
    expect(reasons).toEqual(expect.arrayContaining([expect.stringMatching(/^Movsd_xmm_xmmm64: SSE2 scalar double/), expect.stringMatching(/^Pushw_FS: 16-bit push/)]));
    expect(r.unsupported.every((u) => !u.crashed)).toBe(true);
  });
});
