// 6.1's int3 emulation for every instruction kind text_poke_bp may write: one
// scenario per kind (fixtures/scenarios/poke-*.json), whose schedule makes a CPU hit
// the int3 at the site while the patch is under way. The emulated instruction must
// do what the real one does: the Jcc sites' taken paths check the condition held.

import { join } from 'path';
import { loadScenario } from '../../kernel-model/scenario/scenario-file';
import { prepareScenario, explain } from '../../kernel-model/scenario/run';
import { requireSymbol } from '../../kernel-model/image/kernel-image';
import { textPokeLocInit, encodePokeInsn, emulateCc, JMP32, JMP8, RET } from '../../kernel-model/linux/text-poke-loc';
import type { Cpu } from '../../emu/cpu';

const DIR = join(__dirname, '..', '..', '..', 'fixtures', 'scenarios');

describe.each([
  ['ret', 'poke_site_ret', 'poke_ret_fall'],
  ['jmp8', 'poke_site_jmp8', 'poke_jmp8_fall'],
  ['jcc8', 'poke_site_jcc8', 'poke_jcc8_taken_count'],
  ['jcc32', 'poke_site_jcc32', 'poke_jcc32_taken_count'],
])('poke-%s', (kind, site, counter) => {
  it('a CPU hits the int3 and has the new instruction emulated; the run completes and the site verifies', () => {
    const s = loadScenario(join(DIR, `poke-${kind}.json`));
    // The int3 handler's emulation steps, as each CPU's host frame describes them.
    const emulated = new Set<string>();
    const run = prepareScenario(s, {
      probe: {
        onStep(cpu: Cpu): void {
          const top = cpu.hostFrames[cpu.hostFrames.length - 1];
          if (top && /^write .*int3_emulate_/.test(top.last)) emulated.add(top.last.replace(/^.*(int3_emulate_\w+).*$/, '$1'));
        },
      },
    });
    void site;
    const r = explain(run, run.m.run({ schedule: run.schedule, maxSteps: run.maxSteps }));
    expect(r.outcome).toBe('completed');
    expect([...emulated]).toEqual([kind === 'ret' ? 'int3_emulate_ret' : kind === 'jmp8' ? 'int3_emulate_jmp' : 'int3_emulate_jcc']);
    expect(r.sites.map((x) => x.verified)).toEqual([true]);
    const c = (n: string): bigint => run.m.mem.readU64(requireSymbol(run.img, n));
    expect(c('poke_mismatch')).toBe(0n);
    if (kind.startsWith('jcc')) expect(c(counter)).toBeGreaterThan(0n);
    else expect(c(counter)).toBeLessThan(600n); // the new instruction skipped the counter after the patch
  });
});

describe('text_poke_loc_init', () => {
  const at = 0xffffffff81000100n;
  const to = (x: bigint) => () => x;
  it('keeps Jcc rel32 as the rel8 opcode, NOPs as jumps to the next instruction', () => {
    expect(textPokeLocInit(at, encodePokeInsn('jne32 t', at, undefined, to(at + 0x400n)))).toEqual({ opcode: 0x75, target: at + 0x400n, len: 6 });
    expect(textPokeLocInit(at, Uint8Array.of(0x0f, 0x1f, 0x44, 0, 0))).toEqual({ opcode: JMP32, target: at + 5n, len: 5 });
    expect(textPokeLocInit(at, Uint8Array.of(0x66, 0x90))).toEqual({ opcode: JMP8, target: at + 2n, len: 2 });
    expect(textPokeLocInit(at, Uint8Array.of(0xc3, 0xcc, 0xcc))).toEqual({ opcode: RET, target: 0n, len: 3 });
  });
  it('refuses what 6.1 BUGs on: padding after a Jcc, an instruction it cannot emulate', () => {
    expect(() => encodePokeInsn('je8 t', at, 5, to(at + 4n))).not.toThrow();
    expect(() => textPokeLocInit(at, encodePokeInsn('je8 t', at, 5, to(at + 4n)))).toThrow(/the instruction is 2 bytes, the poke 5/);
    expect(() => textPokeLocInit(at, Uint8Array.of(0xc6, 0x07, 0x00))).toThrow(/not an instruction poke_int3_handler can emulate/);
  });
  it('__emulate_cc: each condition on RFLAGS', () => {
    const CF = 1n, ZF = 0x40n, SF = 0x80n, OF = 0x800n;
    expect(emulateCc(ZF, 4)).toBe(true); // je
    expect(emulateCc(0n, 5)).toBe(true); // jne
    expect(emulateCc(CF, 6)).toBe(true); // jbe
    expect(emulateCc(SF, 12)).toBe(true); // jl: SF != OF
    expect(emulateCc(SF | OF, 12)).toBe(false);
    expect(emulateCc(SF | OF, 15)).toBe(true); // jg: ZF clear and SF == OF
  });
});
