// The stepping console's interpreter as a library: command lines in, text and data
// out, on a prepared scenario.

import { join } from 'path';
import { openConsole, resolveAddress, consoleScenario, ConsoleError, type StepConsole } from '../kernel-model/present/console';
import { runScenario } from '../kernel-model/scenario/run';
import type { RunReport } from '../kernel-model/scenario/run';

const SCENARIOS = join(__dirname, '..', '..', 'fixtures', 'scenarios');
const deadlock = (): StepConsole => openConsole(join(SCENARIOS, 'nmi-deadlock-primary.json'));

function ok(c: StepConsole, line: string): { text: string; data: unknown } {
  const r = c.exec(line);
  if (r.error) throw new Error(`${line}: ${r.error}`);
  return r;
}

describe('StepConsole', () => {
  it('continue runs exactly what runScenario runs', () => {
    const c = deadlock();
    const r = ok(c, 'continue').data as RunReport;
    const { scenario, file } = consoleScenario(join(SCENARIOS, 'nmi-deadlock-primary.json'));
    const direct = runScenario(scenario, {}, file);
    expect(r.outcome).toBe('deadlock');
    expect(r.steps).toBe(direct.steps);
    expect(r.cycle).toEqual(direct.cycle);
  });

  it('breakpoints stop any CPU in front of the instruction; continue goes past them', () => {
    const c = deadlock();
    const b = ok(c, 'break asm_exc_nmi').data as { id: number; address: bigint };
    expect(b.id).toBe(1);
    const first = ok(c, 'continue').data as { stop: string; cpu: number; rip: bigint };
    expect(first).toMatchObject({ stop: 'breakpoint', cpu: 1, rip: b.address });
    expect(c.cpu).toBe(1);
    expect(c.machine.cpu(1).nmiBlocked).toBe(true);
    const second = ok(c, 'continue').data as { stop: string; cpu: number };
    expect(second).toMatchObject({ stop: 'breakpoint', cpu: 0 });
    expect((ok(c, 'continue').data as RunReport).outcome).toBe('deadlock');
    expect(ok(c, 'where').text).toContain('wait-for cycle: CPU0 -> CPU1 -> CPU0');
  });

  it('step runs one CPU only, and reports each step', () => {
    const c = deadlock();
    const before = c.machine.cpu(0).rip;
    const r = ok(c, 'step 1 5').data as { cpu: number; steps: number; trace: { cpu: number }[] };
    expect(r.steps).toBe(5);
    expect(r.trace.every((t) => t.cpu === 1)).toBe(true);
    expect(c.machine.cpu(0).rip).toBe(before);
    expect(c.machine.cpu(0).retired).toBe(0);
    // The CPU named last is the default.
    expect((ok(c, 'step').data as { cpu: number }).cpu).toBe(1);
  });

  it('nmi delivers at the next boundary; regs shows NMIs blocked inside the handler', () => {
    const c = deadlock();
    // Boot first: CPU1 reaches its workload with the IDT loaded.
    ok(c, 'break workload_locker');
    expect(ok(c, 'continue').data).toMatchObject({ stop: 'breakpoint', cpu: 1 });
    ok(c, 'delete 1');
    ok(c, 'nmi 1');
    const s = ok(c, 'step 1 1').data as { context: string[] };
    expect(s.context).toEqual(['thread', 'NMI']);
    const regs = ok(c, 'regs 1').data as { nmiBlocked: boolean; symbol: string; regs: Record<string, bigint> };
    expect(regs.nmiBlocked).toBe(true);
    expect(typeof regs.regs.rsp).toBe('bigint');
  });

  it('x, state and disas read guest memory', () => {
    const c = deadlock();
    const x = ok(c, 'x/2xg pv_ops').data as { values: bigint[]; unit: number };
    expect(x.unit).toBe(8);
    expect(x.values[0] > 0xffffffff80000000n).toBe(true);
    const st = ok(c, 'state').data as { textPokeState: { stateName: string } };
    expect(st.textPokeState.stateName).toBe('PATCH_SYNC_DONE');
    const d = ok(c, 'disas queued_spin_unlock 2').text;
    expect(d).toMatch(/pv site lock\.queued_spin_unlock \(6 bytes\): boot-patched/);
  });

  it('bad input comes back as an error reply, the console goes on', () => {
    const c = deadlock();
    expect(c.exec('frob').error).toMatch(/unknown command 'frob'/);
    expect(c.exec('step 9').error).toMatch(/cpu: expected an integer from 0 to 1/);
    expect(c.exec('x/4xq nmi_lock').error).toMatch(/x\/4xq/);
    expect(c.exec('x/4xb no_such_symbol').error).toMatch(/unknown symbol 'no_such_symbol'/);
    expect(c.exec('x/4xb 0x10').error).toBe('cannot access memory at 0x10');
    expect(c.exec('delete 3').error).toBe('no breakpoint 3');
    expect(c.exec('').error).toBeUndefined();
    expect(c.exec('quit').quit).toBe(true);
  });

  it('resolveAddress: symbols, offsets, hex, registers', () => {
    const c = deadlock();
    const syms = c.machine.symbols;
    const base = syms.resolve('queued_spin_unlock')!;
    expect(resolveAddress('queued_spin_unlock+0x6', syms)).toBe(base + 6n);
    expect(resolveAddress('queued_spin_unlock - 2', syms)).toBe(base - 2n);
    expect(resolveAddress('0xffffffff81000000', syms)).toBe(0xffffffff81000000n);
    expect(resolveAddress('$rip', syms, c.machine.cpu(0))).toBe(c.machine.cpu(0).rip);
    expect(() => resolveAddress('$rzz', syms, c.machine.cpu(0))).toThrow(ConsoleError);
  });

  it('an image boots with idle CPUs', () => {
    const c = openConsole('minikernel', { cpus: 3 });
    expect(c.machine.cpus).toHaveLength(3);
    expect((ok(c, 'continue').data as RunReport).outcome).toBe('completed');
  });
});
