// Going back: reverse-stepi and reverse-continue from machine snapshots and
// deterministic re-execution, through real gdb and through the session directly.

import { GdbSession } from '../../debug/gdb-session';
import { gdbSession, prepare, cleanup } from './gdb-driver';

afterAll(cleanup);

describe('reverse execution with gdb', () => {
  it('reverse-stepi undoes one instruction of the selected CPU; reverse-continue returns to the previous breakpoint hit', async () => {
    // The deadlock a plain run reaches, without gdb: the session must reach the same.
    const plain = prepare('nmi-deadlock-primary');
    const end = plain.m.run({ schedule: plain.schedule, maxSteps: plain.maxSteps });
    expect(end.stop).toBe('deadlock');
    const run = prepare('nmi-deadlock-primary');
    const nmi = run.m.symbols.resolve('asm_exc_nmi')!;
    const out = await gdbSession(run, [
      'break asm_exc_nmi',
      'continue',
      'stepi',
      'stepi',
      'echo ==back\\n',
      'reverse-stepi',
      'info registers rip',
      'echo ==fwd\\n',
      'continue',
      'echo ==rc\\n',
      'reverse-continue',
      'info registers rip',
      'info threads',
      'echo ==end\\n',
      'delete',
      'continue',
    ]);
    expect(out.stdout.split('==back')[1].split('==fwd')[0]).toMatch(new RegExp(`rip\\s+0x${(nmi + 1n).toString(16)}\\b`));
    const rc = out.stdout.split('==rc')[1].split('==end')[0];
    expect(rc).toMatch(/Thread 2 hit Breakpoint 1, 0x[0-9a-f]+ in asm_exc_nmi/);
    expect(rc).toMatch(/\* 2 +Thread 2 \(CPU1 thread > stop_machine > NMI\)/);
    // Forward again from the past: the same deadlock at the same step.
    expect(out.stdout.split('==end')[1]).toMatch(new RegExp(`deadlock at machine step ${end.steps}\\b`));
  });
});

describe('reverse execution in the session', () => {
  it('reverse-stepi puts back the registers and memory of one instruction ago', () => {
    const run = prepare('nmi-deadlock-primary');
    const s = new GdbSession(run);
    for (let i = 0; i < 40; i++) s.target.resume({ stepCpu: 1 });
    const g1 = s.handle('Hg2') && s.handle('g');
    const steps = run.m.steps;
    s.target.resume({ stepCpu: 1 });
    expect(run.m.steps).toBeGreaterThan(steps);
    expect(s.handle('bs')).toEqual({ kind: 'reply', payload: 'T05thread:2;' });
    expect(s.handle('Hg2') && s.handle('g')).toEqual(g1);
    expect(run.m.steps).toBe(steps);
  });

  it('reverse-continue walks back through every state change a watchpoint saw, then reports the start of history', () => {
    const run = prepare('nmi-deadlock-primary');
    const s = new GdbSession(run);
    const addr = run.k.L.tps.state;
    s.handle(`Z2,${addr.toString(16)},4`);
    const forward: { steps: number; value: number }[] = [];
    for (;;) {
      const st = s.target.resume({ stepCpu: null });
      if (!st) continue;
      if (st.kind !== 'watch') break;
      forward.push({ steps: run.m.steps, value: run.m.mem.readU32(addr) });
    }
    expect(forward.length).toBeGreaterThan(2);
    const back: { steps: number; value: number }[] = [];
    for (;;) {
      const st = s.target.reverseContinue(0);
      if (st.kind === 'history-start') break;
      expect(st.kind).toBe('watch');
      back.push({ steps: run.m.steps, value: run.m.mem.readU32(addr) });
    }
    expect(back).toEqual(forward.slice().reverse());
    expect(run.m.steps).toBe(0);
    expect(s.stopReply(s.target.last)).toMatch(/replaylog:begin;/);
  });
});
