// The bench must not rot silently: run its emulator section in --quick mode and check
// it reports figures. No timing assertions (the project measures speed in `npm run
// bench`, never in tests): only that the code runs and the numbers are positive.

import { benchEmulator, RATE_SPECS, verifyChecksumLoop } from '../bench/emulator';
import { formatEmulator } from '../bench/report';
import { parseArgs, SECTIONS } from '../bench/run';
import { benchOptions } from '../bench/util';

describe('bench smoke (--quick, emulator section)', () => {
  it('the checksum loop computes what JS computes', () => {
    const c = verifyChecksumLoop();
    expect(c.emulated).toBe(c.expected);
    expect(c.ok).toBe(true);
  });

  it('reports positive steps, seconds and MIPS for every figure, and decode throughput', () => {
    const r = benchEmulator(benchOptions(true));
    expect(r.checksum.ok).toBe(true);
    expect(r.rates.map((f) => f.label)).toEqual(RATE_SPECS.map((s) => s.label));
    for (const f of r.rates) {
      expect(f.steps).toBeGreaterThan(0);
      expect(f.seconds).toBeGreaterThan(0);
      expect(f.mips).toBeGreaterThan(0);
      expect(f.best).toBeGreaterThanOrEqual(f.mips);
    }
    expect(r.decode.instructions).toBeGreaterThan(0);
    expect(r.decode.firstPerSecond).toBeGreaterThan(0);
    expect(r.decode.cachedPerSecond).toBeGreaterThan(0);
    const text = formatEmulator(r);
    for (const s of RATE_SPECS) expect(text).toContain(s.label);
    expect(text).toContain('decode:');
  });

  it('parses its command line', () => {
    expect(parseArgs([])).toEqual({ quick: false, json: false, sections: [...SECTIONS], partial: false });
    expect(parseArgs(['--quick', '--json', '--no-kernel'])).toMatchObject({ quick: true, json: true, partial: true, sections: SECTIONS.filter((s) => s !== 'kernel') });
    expect(parseArgs(['--only', 'emulator,kernel']).sections).toEqual(['emulator', 'kernel']);
    expect(() => parseArgs(['--only=bogus'])).toThrow(/unknown section 'bogus'/);
    expect(() => parseArgs(['--fast'])).toThrow(/unknown argument/);
  });
});
