// ORC unwinding on Debian's 6.1 kernel at the seed's deadlock: CPU0 spins in the
// kernel's own qspinlock slow path, called from _raw_spin_lock, from the harness's NMI
// handler; frames in kernel text come from the .orc_unwind tables.

import { join } from 'path';
import { loadScenario } from '../../kernel-model/scenario/scenario-file';
import { prepareScenario, vectorNamer } from '../../kernel-model/scenario/run';
import { Unwinder } from '../../kernel-model/scenario/backtrace';
import { OrcTable } from '../../kernel-model/image/orc';
import { testKernel, FETCH_TIMEOUT_MS } from './kernel';

const ROOT = join(__dirname, '..', '..', '..');

beforeAll(() => testKernel(), FETCH_TIMEOUT_MS);

describe('bt on the real kernel', () => {
  it('ORC: native_queued_spin_lock_slowpath <- _raw_spin_lock <- the NMI handler', () => {
    const file = join(ROOT, 'fixtures', 'scenarios', 'kernel', 'real-nmi-deadlock-primary.json');
    const run = prepareScenario(loadScenario(file), {}, file);
    const orc = OrcTable.fromImage(run.img);
    expect(orc).not.toBeNull();
    expect(orc!.count).toBeGreaterThan(100_000);
    const r = run.m.run({ schedule: run.schedule, maxSteps: run.maxSteps });
    expect(r.stop).toBe('deadlock');
    const f = new Unwinder(run.m, run.img, vectorNamer(run.k)).backtrace(run.m.cpus[0]);
    const names = f.map((x) => x.symbol.replace(/\+0x[0-9a-f]+$/, ''));
    expect(names.slice(0, 3)).toEqual(['native_queued_spin_lock_slowpath', '_raw_spin_lock', 'nmi_lock_handler']);
    expect(f.slice(1, 3).map((x) => x.how)).toEqual(['orc', 'orc']);
    expect(f.slice(0, 3).every((x) => x.context === 'NMI')).toBe(true);
  });
});
