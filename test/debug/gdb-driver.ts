// Drives real gdb against an in-process stub, as QEMU's tests/tcg/multiarch/gdbstub
// scripts drive gdb against QEMU: the stub listens on an ephemeral loopback port, gdb
// runs in batch mode (`gdb -batch -nx -ex …`) as a child process, and the test reads
// what gdb printed. The child is spawned asynchronously because the stub shares this
// process's event loop.

import { execFile, spawnSync } from 'child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import { loadScenario, parseScenario } from '../../kernel-model/scenario/scenario-file';
import { prepareScenario, type ScenarioRun, type RunOverrides } from '../../kernel-model/scenario/run';
import { consoleScenario } from '../../kernel-model/present/console';
import { serveGdb } from '../../debug/gdb-server';
import { writeSymbolElf } from '../../debug/symbol-elf';

export const ROOT = join(__dirname, '..', '..', '..');
export const SCENARIOS = join(ROOT, 'fixtures', 'scenarios');

export function gdbInstalled(): boolean {
  return spawnSync('gdb', ['--version'], { encoding: 'utf8' }).status === 0;
}

export function prepare(name: string, o: RunOverrides = {}): ScenarioRun {
  const file = name.endsWith('.json') ? name : join(SCENARIOS, `${name}.json`);
  return prepareScenario(loadScenario(file), o, file);
}

/** An image booted with idle CPUs, as `textpoke gdb minikernel --cpus n` does. */
export function prepareImage(image: string, cpus: number): ScenarioRun {
  const { scenario, file } = consoleScenario(image, cpus);
  return prepareScenario(scenario, {}, file);
}

/** Two CPUs taking a shared lock many million times: a run that lasts until interrupted. */
export function prepareLongRun(): ScenarioRun {
  const s = parseScenario(
    { name: 'long', image: 'minikernel', cpus: 2, work: [{ entry: 'workload_locker', arg: 100_000_000 }, { entry: 'workload_locker', arg: 100_000_000 }], maxSteps: 1e12 },
    'long-run',
  );
  return prepareScenario(s, {}, 'long-run');
}

const dirs: string[] = [];
export function cleanup(): void {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
}

export interface GdbOutput {
  /** Everything gdb printed, stdout and stderr interleaved as it printed them. */
  stdout: string;
}

/**
 * Starts a stub on `run`, writes the symbol ELF, and runs gdb with `commands` (one
 * per line of a script, so multi-line `commands … end` blocks work) after it has
 * loaded the symbols and connected.
 */
export async function gdbSession(run: ScenarioRun, commands: string[]): Promise<GdbOutput> {
  const dir = mkdtempSync(join(tmpdir(), 'textpoke-gdb-'));
  dirs.push(dir);
  const elf = join(dir, 'symbols.elf');
  writeSymbolElf(elf, run.img.sections, run.m.symbols);
  const server = await serveGdb(run, { port: 0 });
  const script = join(dir, 'script.gdb');
  writeFileSync(script, ['set pagination off', 'set confirm off', `file ${elf}`, `target remote 127.0.0.1:${server.port}`, ...commands, 'kill', ''].join('\n'));
  try {
    const out = await new Promise<GdbOutput>((resolve, reject) => {
      // One stream, in order: gdb prints monitor output and target messages on stderr.
      execFile('sh', ['-c', 'command -v gdb >/dev/null || exit 127; exec gdb -batch -nx -x "$0" 2>&1', script], { timeout: 90_000, maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
        if (err && err.code === 127) reject(new Error('gdb is not installed (Debian: apt-get install gdb)'));
        else if (err && err.killed) reject(new Error(`gdb timed out:\n${stdout}\n${stderr}`));
        else resolve({ stdout: stdout + stderr });
      });
    });
    return out;
  } finally {
    server.close();
  }
}

export const hex = (v: bigint): string => '0x' + v.toString(16);
