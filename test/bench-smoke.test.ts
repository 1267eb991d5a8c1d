// The bench must not rot silently: run its emulator section and one scenario in
// --quick mode and check the shape of what it reports: every field, its unit (steps
// are whole machine steps, rates follow from steps and seconds), one row per figure,
// and the relations between figures. No speed assertions: the project measures speed
// in `npm run bench`, never in tests.

import { join } from 'path';
import { benchEmulator, RATE_SPECS, semanticsText, verifyChecksumLoop } from '../bench/emulator';
import { benchScenario } from '../bench/scenarios';
import { formatEmulator } from '../bench/report';
import { parseArgs, SECTIONS } from '../bench/run';
import { benchOptions } from '../bench/util';
import { FIXTURES_DIR } from '../kernel-model/image/fixture-image';
import { loadScenario } from '../kernel-model/scenario/scenario-file';

/** a ≈ b, relative: the figures are floating-point quotients of the same numbers. */
const near = (a: number, b: number): boolean => Math.abs(a - b) <= 1e-9 * Math.max(1, Math.abs(b));

describe('bench smoke (--quick)', () => {
  const o = benchOptions(true);

  it('the checksum loop computes what JS computes', () => {
    const c = verifyChecksumLoop();
    expect(c.emulated).toBe(c.expected);
    expect(c.ok).toBe(true);
  });

  it('emulator: one figure per spec with its configuration, rates that follow from steps and seconds, decode figures', () => {
    const r = benchEmulator(o);
    expect(r.checksum.ok).toBe(true);
    expect(r.rates).toHaveLength(RATE_SPECS.length);
    r.rates.forEach((f, i) => {
      const spec = RATE_SPECS[i];
      expect(Object.keys(f).sort()).toEqual(['baseline', 'best', 'cpus', 'label', 'loop', 'mips', 'probe', 'quantum', 'seconds', 'semantics', 'steps', 'trials', 'wallMips'].sort());
      expect({ label: f.label, loop: f.loop, cpus: f.cpus, quantum: f.quantum, probe: f.probe }).toEqual({
        label: spec.label, loop: spec.loop, cpus: spec.cpus, quantum: spec.quantum, probe: !!spec.probe,
      });
      // Rows measuring tso, split RMW or paging name it and the sc+atomic+flat row they are compared with.
      expect(f.semantics).toBe(semanticsText(spec.semantics));
      expect(f.baseline).toBe(spec.baseline ?? null);
      if (f.baseline !== null) expect(RATE_SPECS.some((x) => x.label === f.baseline && !x.semantics)).toBe(true);
      // Whole steps, run in the quick mode's chunks of 50,000 until minSeconds passed.
      expect(Number.isSafeInteger(f.steps)).toBe(true);
      expect(f.steps % 50_000).toBe(0);
      expect(f.steps).toBeGreaterThanOrEqual(50_000);
      expect(f.seconds).toBeGreaterThanOrEqual(o.minSeconds);
      // MIPS: millions of steps per second; one trial in quick mode, so median = best = it.
      expect(f.trials).toHaveLength(o.trials);
      expect(near(f.mips, f.steps / f.seconds / 1e6)).toBe(true);
      expect(f.best).toBe(Math.max(...f.trials));
      expect(f.mips).toBeLessThanOrEqual(f.best);
      expect(f.wallMips).toBeGreaterThan(0);
    });
    const d = r.decode;
    expect(d.instructions).toBe(1000);
    expect(d.trials).toHaveLength(o.trials);
    expect(d.firstPerSecond).toBe(d.trials[0]);
    // compileMicros is defined as the time per instruction first minus cached, in µs.
    expect(near(d.compileMicros, (1 / d.firstPerSecond - 1 / d.cachedPerSecond) * 1e6)).toBe(true);

    const text = formatEmulator(r).split('\n');
    const header = text.findIndex((l) => /^\s*figure\s+steps\s+seconds\s+MIPS \(median\)\s+best\s+wall MIPS\s+trials\s*$/.test(l));
    expect(header).toBeGreaterThanOrEqual(0);
    const rows = text.filter((l) => RATE_SPECS.some((s) => l.trimStart().startsWith(s.label + ' ')));
    expect(rows).toHaveLength(RATE_SPECS.length);
    // Each row shows its steps with thousands separators and its trial count.
    r.rates.forEach((f, i) => expect(rows[i]).toMatch(new RegExp(`${f.steps.toLocaleString('en-US')}.* ${f.trials.length}\\s*$`)));
    expect(text.some((l) => l.includes(`decode: ${d.instructions.toLocaleString('en-US')} distinct straight-line instructions`))).toBe(true);
  });

  it('scenarios: a figure for one scenario file, with its outcome as the file expects and a rate in steps per second', () => {
    const file = join(FIXTURES_DIR, 'scenarios', 'nmi-deadlock-primary.json');
    const f = benchScenario(file, o);
    expect(Object.keys(f).sort()).toEqual(
      ['cpus', 'expected', 'explainMs', 'file', 'name', 'outcome', 'runMs', 'runs', 'schedule', 'setupMs', 'steps', 'stepsPerSecond', 'totalMs'].sort(),
    );
    const s = loadScenario(file);
    expect(f.name).toBe(s.name);
    expect(f.file).toBe(join('fixtures', 'scenarios', 'nmi-deadlock-primary.json'));
    expect(f.cpus).toBe(s.cpus);
    expect(f.schedule).toBe('rr q=1000');
    expect(f.outcome).toBe(s.expect!.outcome);
    expect(f.expected).toBe(true);
    expect(Number.isSafeInteger(f.steps) && f.steps > 0).toBe(true);
    expect(f.runs).toBeGreaterThanOrEqual(o.trials);
    // Milliseconds (medians over the runs); the rate is steps per second of the run part.
    for (const ms of [f.setupMs, f.runMs, f.explainMs, f.totalMs]) expect(ms).toBeGreaterThan(0);
    expect(near(f.stepsPerSecond, f.steps / (f.runMs / 1e3))).toBe(true);
  });

  it('parses its command line', () => {
    expect(parseArgs([])).toEqual({ quick: false, json: false, sections: [...SECTIONS], partial: false, blocks: true });
    expect(parseArgs(['--no-blocks'])).toMatchObject({ blocks: false, partial: true });
    expect(parseArgs(['--quick', '--json', '--no-kernel'])).toMatchObject({ quick: true, json: true, partial: true, sections: SECTIONS.filter((s) => s !== 'kernel') });
    expect(parseArgs(['--only', 'emulator,kernel']).sections).toEqual(['emulator', 'kernel']);
    expect(() => parseArgs(['--only=bogus'])).toThrow(/unknown section 'bogus'/);
    expect(() => parseArgs(['--fast'])).toThrow(/unknown argument/);
  });
});
