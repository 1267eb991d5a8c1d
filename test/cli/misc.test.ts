// Every command's --help has an example; usage errors; `coverage` and `exec`.

import { spawn } from 'child_process';
import { writeFileSync } from 'fs';
import { join } from 'path';
import { textpoke, json, expectUserError, tempDir, removeTempDirs, BIN, ROOT } from './textpoke';

afterAll(removeTempDirs);

describe('textpoke --help and usage', () => {
  it.each(['demo', 'run', 'load', 'disasm', 'patch', 'verify', 'step', 'coverage', 'exec'])('%s --help shows an example', (cmd) => {
    const r = textpoke([cmd, '--help']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/Examples:\n {2}textpoke /);
  });

  it('top-level help lists every command', () => {
    const r = textpoke(['--help']);
    expect(r.code).toBe(0);
    for (const c of ['demo', 'run', 'load', 'disasm', 'patch', 'verify', 'step', 'coverage', 'exec']) expect(r.stdout).toContain(`textpoke ${c}`);
  });

  it('usage errors exit 2 with one line', () => {
    expectUserError(textpoke(['frobnicate']), 'Unknown argument: frobnicate');
    expectUserError(textpoke([]), 'name a command');
    expectUserError(textpoke(['run']), /arguments/);
    expectUserError(textpoke(['load', 'minikernel', '--bogus']), 'Unknown argument: bogus');
  });
});

describe('textpoke explore: numeric options', () => {
  // yargs turns "abc" into NaN and accepts negatives; a limit of NaN or -3 once made
  // an unlimited or an empty search that still exited 0.
  it.each([
    [['--nmis', 'abc'], '--nmis: expected an integer from 0 to 16 (got something that is not a number)'],
    [['--time-limit', 'abc'], '--time-limit: expected a number greater than 0'],
    [['--time-limit', '-3'], '--time-limit: expected a number greater than 0 (got -3)'],
    [['--max-schedules', '-1'], '--max-schedules: expected an integer from 1'],
    [['--max-schedules', '1.5'], '--max-schedules: expected an integer from 1'],
  ])('%j is one line, exit 2', (args, message) => {
    expectUserError(textpoke(['explore', join(ROOT, 'fixtures/scenarios/explore/fixed-2cpu.json'), ...args]), message);
  });

  // Both once searched from wherever the run happened to be and printed "clean to bound".
  it.each([
    [['--cpus-nmi', '7'], 'fixed-2cpu.json (CPUs 0 to 1)'],
    [['--from', '99999999'], '--from 99999999: the scenario\'s run stops at step'],
  ])('%j: a start or target the scenario does not have is one line, exit 2', (args, message) => {
    expectUserError(textpoke(['explore', join(ROOT, 'fixtures/scenarios/explore/fixed-2cpu.json'), ...args]), message);
  });

  // A replay applied to the wrong scenario used to run on and report whatever followed.
  it.each([
    [{ from: 99999999, choices: [] }, 'from: the scenario\'s run stops at step'],
    [{ from: 100, choices: [{ kind: 'nmi', cpu: 0 }, { kind: 'nmi', cpu: 0 }] }, 'choices[1]: nmi to CPU 0 is not possible there'],
  ])('run --replay %j that does not fit the scenario: one line, exit 2', (replay, message) => {
    const file = join(tempDir(), 'replay.json');
    writeFileSync(file, JSON.stringify({ format: 'textpoke-replay/1', scenario: 'x.json', ...replay }));
    expectUserError(textpoke(['run', join(ROOT, 'fixtures/scenarios/explore/fixed-2cpu.json'), '--replay', file]), message);
  });
});

describe('textpoke coverage', () => {
  it('sweeps the fixture kernel', () => {
    const j = json<{ total: number; share: number; sharePercent: number }>(textpoke(['coverage', 'minikernel', '--json']));
    expect(j.total).toBeGreaterThan(500);
    expect(j.share).toBe(1);
    const r = textpoke(['coverage', 'minikernel', '--top', '3']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/implemented: [\d,]+ of [\d,]+ = 100\.000%/);
  });

  it('bad input', () => {
    expectUserError(textpoke(['coverage', '/nonexistent/vmlinux']), 'no such file');
    // An empty file has no instructions: "0 of 0 = 100%" would read as success.
    const empty = join(tempDir(), 'empty.bin');
    writeFileSync(empty, '');
    expectUserError(textpoke(['coverage', empty]), 'empty.bin: no bytes to sweep');
  });
});

describe('textpoke exec keeps its contract', () => {
  it('adds and halts', () => {
    const j = json<{ stop: string; regs: Record<string, string> }>(textpoke(['exec', '--code', '4801d8f4', '--regs', '{"rax":"0x2","rbx":"0x3"}', '--json']));
    expect(j.stop).toBe('hlt');
    expect(j.regs.rax).toBe('0x5');
    expectUserError(textpoke(['exec', '--code', 'xyz']), '--code');
  });
});

describe('textpoke exec: a run with no end', () => {
  it('shows progress and stops cleanly on SIGINT with the registers so far (exit 130)', async () => {
    // TEXTPOKE_PROGRESS=1: the progress line a terminal would get, on a pipe.
    const child = spawn(process.execPath, [BIN, 'exec', '--code', 'ebfe', '--max-steps', '1e12'], {
      cwd: ROOT, env: { ...process.env, TEXTPOKE_PROGRESS: '1', NO_COLOR: '1' }, stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    const exited = new Promise<number | null>((done) => child.on('exit', (code) => done(code)));
    // Interrupt once progress has been shown: the run is under way, the handler installed.
    await new Promise<void>((shown) => {
      child.stderr.on('data', (d: Buffer) => {
        stderr += d.toString();
        if (/exec \[[.#]+\] [\d,]+ steps/.test(stderr)) shown();
      });
    });
    child.kill('SIGINT');
    const code = await exited;
    expect(code).toBe(130);
    expect(stdout).toMatch(/^stop: interrupted\nsteps: \d+\n/);
    expect(Number(/steps: (\d+)/.exec(stdout)![1])).toBeGreaterThan(0);
    expect(stdout).toMatch(/^rip +0x0000000000401000$/m);
  });
});

