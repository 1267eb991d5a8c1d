// `textpoke demo` and `textpoke run`: text and --json output, schedules, tracing,
// exit statuses.

import { existsSync, readFileSync, readdirSync, writeFileSync } from 'fs';
import { join } from 'path';
import { textpoke, json, tempDir, removeTempDirs, expectUserError, SCENARIOS, HEX_ADDR, HEX_BYTES } from './textpoke';

afterAll(removeTempDirs);

const scenario = (name: string): string => join(SCENARIOS, `${name}.json`);
const ANSI = /\x1b\[/;

interface SiteJson { address: string; op: string; old: string; new: string; verified: boolean }
interface CpuJson { cpu: number; context: string[]; rip: string; symbol: string }
interface ReportJson {
  outcome: string;
  steps: number;
  cpus: CpuJson[];
  cycle: number[] | null;
  sites: SiteJson[];
  schedule: Record<string, unknown>;
  fetchMode: string;
  nmi: boolean;
  expectation: { ok: boolean } | null;
}

describe('textpoke demo', () => {
  it('shows the deadlock, then the NMI-safe patch with verified bytes, and a verdict, fast', () => {
    const r = textpoke(['demo']);
    expect(r.code).toBe(0);
    expect(r.stderr).toBe('');
    const out = r.stdout;
    expect(out).toMatch(/1\. nmi=false.*DEADLOCK/);
    expect(out).toContain('wait-for cycle: CPU0 -> CPU1 -> CPU0');
    expect(out).toMatch(/CPU1 +thread > stop_machine > NMI > #BP +at poke_int3_handler/);
    expect(out).toContain('holds nmi_lock');
    expect(out).toMatch(/2\. nmi=true.*COMPLETED/);
    expect(out).toMatch(/lock\.queued_spin_unlock at 0x[0-9a-f]+: verified/);
    expect(out).toMatch(/new {2}c6 07 00 0f 1f 00 +movb \$0,\(%rdi\); nopl \(%rax\)/);
    expect(out.trimEnd().split('\n').pop()).toMatch(/^Verdict: /);
    expect(out).not.toMatch(ANSI);
  });

  it('--json prints both reports', () => {
    const d = json<{ ok: boolean; deadlock: ReportJson; safe: ReportJson }>(textpoke(['demo', '--json']));
    expect(d.ok).toBe(true);
    expect(d.deadlock.outcome).toBe('deadlock');
    expect(d.deadlock.cycle).toEqual([0, 1]);
    expect(d.deadlock.nmi).toBe(false);
    expect(d.safe.outcome).toBe('completed');
    expect(d.safe.nmi).toBe(true);
    expect(d.safe.sites.length).toBe(5);
    for (const s of d.safe.sites) {
      expect(s.verified).toBe(true);
      expect(s.address).toMatch(HEX_ADDR);
      expect(s.new).toMatch(HEX_BYTES);
    }
  });

  it('--case secondaries: the two-secondaries cycle', () => {
    const r = textpoke(['demo', '--case', 'secondaries']);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('wait-for cycle: CPU0 -> CPU2 -> CPU1 -> CPU0');
  });

  it('colour: --color forces it, NO_COLOR always wins', () => {
    expect(textpoke(['demo', '--color']).stdout).toMatch(ANSI);
    expect(textpoke(['demo', '--color'], { env: { NO_COLOR: '1' } }).stdout).not.toMatch(ANSI);
  });
});

describe('textpoke run', () => {
  it('--json: one object with outcome, steps, cpus, cycle and sites (bigints and bytes as hex)', () => {
    const r = textpoke(['run', scenario('nmi-deadlock-primary'), '--json']);
    expect(r.code).toBe(0);
    const j = json<ReportJson>(r);
    expect(j.outcome).toBe('deadlock');
    expect(j.steps).toBeGreaterThan(1000);
    expect(j.cycle).toEqual([0, 1]);
    expect(j.cpus).toHaveLength(2);
    for (const c of j.cpus) {
      expect(c.rip).toMatch(HEX_ADDR);
      expect(typeof c.symbol).toBe('string');
      expect(c.context[0]).toBe('thread');
    }
    expect(j.cpus[1].context).toEqual(['thread', 'stop_machine', 'NMI', '#BP']);
    const unlock = j.sites.find((s) => s.op === 'lock.queued_spin_unlock')!;
    expect(unlock.old).toMatch(HEX_BYTES);
    expect(unlock.new.startsWith('cc ')).toBe(true);
    expect(unlock.verified).toBe(false);
    expect(j.expectation).toEqual({ ok: true, detail: 'as expected' });
  });

  it('text: the deadlock report, exit 0 when the expectation holds', () => {
    const r = textpoke(['run', scenario('nmi-deadlock-secondaries')]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^nmi-deadlock-secondaries: DEADLOCK after [\d,]+ steps/);
    expect(r.stdout).toContain('wait-for cycle: CPU0 -> CPU2 -> CPU1 -> CPU0');
    expect(r.stdout).toContain('expectation: met');
  });

  it('exit 1 when the scenario expectation is not met (--nmi turns the deadlock into a completed patch)', () => {
    const r = textpoke(['run', scenario('nmi-deadlock-primary'), '--nmi']);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/COMPLETED/);
    expect(r.stdout).toContain('expectation: NOT met (expected outcome deadlock, got completed');
  });

  it('outcomes: xmc-violation and step-limit', () => {
    expect(json<ReportJson>(textpoke(['run', scenario('naive-poke'), '--json'])).outcome).toBe('xmc-violation');
    const j = json<ReportJson>(textpoke(['run', scenario('nmi-safe-primary'), '--max-steps', '100', '--json']));
    expect(j.outcome).toBe('step-limit');
    expect(j.steps).toBe(100);
  });

  it('--paging / --no-paging override the scenario: both complete, the paged run pays for its CR3 switches', () => {
    const paged = json<ReportJson>(textpoke(['run', scenario('nmi-safe-primary'), '--json']));
    const flat = json<ReportJson>(textpoke(['run', scenario('nmi-safe-primary'), '--no-paging', '--json']));
    expect([paged.outcome, flat.outcome]).toEqual(['completed', 'completed']);
    expect(paged.steps).toBeGreaterThan(flat.steps);
    expect(json<ReportJson>(textpoke(['run', scenario('naive-poke'), '--paging', '--json'])).steps).not.toBe(json<ReportJson>(textpoke(['run', scenario('naive-poke'), '--json'])).steps);
  });

  it('--seed, --schedule and --fetch-mode override the scenario', () => {
    const seeded = json<ReportJson>(textpoke(['run', scenario('batch-poke'), '--seed', '7', '--json']));
    expect(seeded.schedule).toEqual({ kind: 'random', seed: 7, maxQuantum: 4 });
    expect(seeded.outcome).toBe('completed');
    const rr = json<ReportJson>(textpoke(['run', scenario('nmi-safe-primary'), '--schedule', 'rr:50', '--fetch-mode', 'stale', '--json']));
    expect(rr.schedule).toEqual({ kind: 'round-robin', quantum: 50 });
    expect(rr.fetchMode).toBe('stale');
    const list = json<ReportJson>(textpoke(['run', scenario('nmi-safe-primary'), '--schedule', '{"kind":"list","slots":[[1,5],[0,5]]}', '--json']));
    expect(list.schedule).toEqual({ kind: 'list', slots: [{ cpu: 1, steps: 5 }, { cpu: 0, steps: 5 }], then: { kind: 'round-robin', quantum: 1 } });
  });

  it('injections carry the step of their event, the one the trace shows (not the slice start)', () => {
    const dir = tempDir();
    const t = join(dir, 't.txt');
    const traced = json<ReportJson & { injections: { step: number; action: string; by: number }[] }>(textpoke(['run', scenario('nmi-deadlock-primary'), '--trace', t, '--json']));
    const plain = json<ReportJson & { injections: { step: number }[] }>(textpoke(['run', scenario('nmi-deadlock-primary'), '--json']));
    // The same steps with and without the trace probe.
    expect(plain.injections.map((i) => i.step)).toEqual(traced.injections.map((i) => i.step));
    const byStep = new Map(readFileSync(t, 'utf8').trimEnd().split('\n').map((l) => [Number(l.trim().split(/\s+/)[0]), l]));
    const [toCpu1, toCpu0] = traced.injections;
    // Where the seed's drawing puts them: the NMI to CPU1 fires as CPU1 enters
    // text_poke_sync_site (its first step there, the wait on the state); the one to
    // CPU0 as CPU0 enters __text_do_poke for the site's next bytes.
    expect(byStep.get(toCpu1.step)).toMatch(/ cpu1 .*text_poke_state\.state to leave its value/);
    // Through poking_mm: the write is to the alias at poking_addr, named after the text byte.
    expect(byStep.get(toCpu0.step)).toMatch(/ cpu0 .*write 0x2aaaaaaab742 = .*\(PATCH_SYNC_1 bytes, queued_spin_unlock\+0x1 through poking_addr\)$/);
    expect(toCpu0.step - toCpu1.step).toBeGreaterThan(1);
    const text = textpoke(['run', scenario('nmi-deadlock-primary')]).stdout;
    expect(text).toContain(`injected at step ${toCpu1.step.toLocaleString('en-US')}: NMI to CPU1`);
  });

  it('--trace: one line per step (step, CPU, context, RIP, symbol, disassembly), deterministic', () => {
    const dir = tempDir();
    const a = join(dir, 'a.txt');
    const r = textpoke(['run', scenario('nmi-deadlock-primary'), '--trace', a, '--json']);
    const steps = json<ReportJson>(r).steps;
    const lines = readFileSync(a, 'utf8').trimEnd().split('\n');
    expect(lines).toHaveLength(steps);
    expect(lines[0]).toMatch(/^\s+0 {2}cpu\d {2}thread +[0-9a-f]{16} {2}startup_64 +cli$/);
    expect(lines[lines.length - 1]).toMatch(new RegExp(`^\\s+${steps - 1} `));
    expect(lines.some((l) => /cpu1 {2}thread>stop_machine>NMI +[0-9a-f]{16} {2}asm_exc_nmi +push %rax/.test(l))).toBe(true);
    expect(lines.some((l) => /\[host poke_int3_handler\]/.test(l))).toBe(true);
    const b = join(dir, 'b.txt');
    textpoke(['run', scenario('nmi-deadlock-primary'), '--trace', b]);
    expect(readFileSync(b, 'utf8')).toBe(readFileSync(a, 'utf8'));
    expect(readdirSync(dir).sort()).toEqual(['a.txt', 'b.txt']);
  });

  it('bad input: one line naming what and where, exit 2, nothing written', () => {
    const dir = tempDir();
    expectUserError(textpoke(['run', join(dir, 'missing.json')]), 'missing.json', 'no such file');
    writeFileSync(join(dir, 'malformed.json'), '{"cpus": 2,');
    expectUserError(textpoke(['run', join(dir, 'malformed.json')]), 'malformed.json', 'not valid JSON');
    const bad = JSON.parse(readFileSync(scenario('nmi-deadlock-primary'), 'utf8'));
    bad.inject[0].when.state = 'PATCH_SYNC_9';
    writeFileSync(join(dir, 'invalid.json'), JSON.stringify(bad));
    expectUserError(textpoke(['run', join(dir, 'invalid.json')]), /invalid\.json: inject\[0\]\.when\.state: expected one of .*"PATCH_SYNC_0"/);
    bad.inject[0].when = { symbol: 'no_such_symbol', cpu: 1 };
    writeFileSync(join(dir, 'badsym.json'), JSON.stringify(bad));
    expectUserError(textpoke(['run', join(dir, 'badsym.json')]), "unknown symbol 'no_such_symbol'");
    // One work entry per CPU: three CPUs with two entries is a typo, not two workers.
    const short = JSON.parse(readFileSync(scenario('nmi-deadlock-primary'), 'utf8'));
    short.cpus = 3;
    writeFileSync(join(dir, 'short.json'), JSON.stringify(short));
    expectUserError(textpoke(['run', join(dir, 'short.json')]), 'short.json: work: has 2 entries for 3 CPUs');
    expectUserError(textpoke(['run', scenario('nmi-safe-primary'), '--schedule', 'rr:0']), '--schedule rr:0');
    expectUserError(textpoke(['run', scenario('nmi-safe-primary'), '--schedule', '{"kind":"list"}']), '--schedule: schedule.slots');
    expectUserError(textpoke(['run', scenario('nmi-safe-primary'), '--seed', '1', '--schedule', 'rr:5']), '--seed and --schedule');
    expectUserError(textpoke(['run', scenario('nmi-safe-primary'), '--fetch-mode', 'weird']), /fetch-mode/);
    // --trace naming the scenario file would overwrite the scenario.
    const copy = join(dir, 'copy.json');
    writeFileSync(copy, readFileSync(scenario('nmi-safe-primary')));
    expectUserError(textpoke(['run', copy, '--trace', copy]), /--trace .*copy\.json: is the scenario file/);
    expect(readFileSync(copy, 'utf8')).toBe(readFileSync(scenario('nmi-safe-primary'), 'utf8'));
    const trace = join(dir, 'sub', 't.txt');
    expectUserError(textpoke(['run', scenario('nmi-safe-primary'), '--trace', trace]), '--trace', 'does not exist');
    expect(existsSync(join(dir, 'sub'))).toBe(false);
  });

  it('--debug adds the stack trace', () => {
    const r = textpoke(['run', '/nonexistent/s.json', '--debug']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/\n\s+at /);
  });
});
