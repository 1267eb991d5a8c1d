// The scenario fields `memoryModel` and `rmw` and the `run` flags `--memory-model` and
// `--rmw`: parsed, validated with one clear line, and reaching the machine.

import { readFileSync, writeFileSync } from 'fs';
import { join } from 'path';
import { textpoke, json, tempDir, removeTempDirs, expectUserError, SCENARIOS } from './cli/textpoke';
import { loadScenario, ScenarioError } from '../kernel-model/scenario/scenario-file';
import { prepareScenario } from '../kernel-model/scenario/run';

afterAll(removeTempDirs);

function scenarioWith(extra: Record<string, unknown>): string {
  const base = JSON.parse(readFileSync(join(SCENARIOS, 'batch-poke.json'), 'utf8')) as Record<string, unknown>;
  const f = join(tempDir(), 's.json');
  writeFileSync(f, JSON.stringify({ ...base, ...extra }));
  return f;
}

describe('scenario fields', () => {
  it('default to sc and atomic; tso and split reach the machine', () => {
    const plain = loadScenario(join(SCENARIOS, 'batch-poke.json'));
    expect([plain.memoryModel, plain.rmw]).toEqual(['sc', 'atomic']);
    const s = loadScenario(scenarioWith({ memoryModel: 'tso', rmw: 'split' }));
    const run = prepareScenario(s);
    expect([run.m.memoryModel, run.m.rmw]).toEqual(['tso', 'split']);
    expect(run.m.cpus.every((c) => c.tso)).toBe(true);
  });

  it('a bad value names the field and the choices', () => {
    expect(() => loadScenario(scenarioWith({ memoryModel: 'pso' }))).toThrow(ScenarioError);
    expect(() => loadScenario(scenarioWith({ memoryModel: 'pso' }))).toThrow(/memoryModel: expected one of "sc", "tso", got "pso"/);
    expect(() => loadScenario(scenarioWith({ rmw: 1 }))).toThrow(/rmw: expected one of "atomic", "split"/);
  });
});

describe('textpoke run --memory-model --rmw', () => {
  it('override the scenario and show in the report', () => {
    const j = json<{ outcome: string; memoryModel: string; rmw: string }>(
      textpoke(['run', join(SCENARIOS, 'batch-poke.json'), '--memory-model', 'tso', '--rmw', 'split', '--seed', '2', '--json']),
    );
    expect(j.outcome).toBe('completed');
    expect([j.memoryModel, j.rmw]).toEqual(['tso', 'split']);
    const t = textpoke(['run', join(SCENARIOS, 'batch-poke.json'), '--memory-model', 'tso']);
    expect(t.stdout).toMatch(/coherent fetch, tso, schedule/);
  });

  it('reject an unknown model with one line and exit status 2', () => {
    expectUserError(textpoke(['run', join(SCENARIOS, 'batch-poke.json'), '--memory-model', 'pso']), /memory-model/);
  });
});
