// npm run profile-ops: measures how often each opcode-table row runs on the project's
// workloads and writes the result into emu/op-profile.ts (the table's measured
// frequencies, replacing hand-set hot/warm/cold labels) and into the block between the
// op-profile markers of docs/emulator-internals.md, as Blink annotates its dispatch table.
//
// Workloads: every fixture scenario in fixtures/scenarios/*.json and, when the Debian
// kernel is in the cache (npm run fetch-kernel), the real-kernel scenarios in
// fixtures/scenarios/kernel/. Counting uses the machine's probe slot (emu/probe.ts), so
// ordinary runs pay nothing for it. Steps of host routines (TypeScript stand-ins bound to
// text addresses) are counted apart: they are not instructions.
//
// The scenarios are deterministic, so the profile is too: the same tree gives the same
// file. Both files are written to a temporary name and renamed into place.

import { readdirSync, readFileSync, renameSync, writeFileSync } from 'fs';
import { join } from 'path';
import { loadScenario } from '../kernel-model/scenario/scenario-file';
import { runScenario } from '../kernel-model/scenario/run';
import { cachedKernelVersions, repoRoot } from '../kernel-model/image/download';
import { OpCounter, formatProfileModule, formatProfileTable, type OpProfile } from '../emu/op-count';

function writeAtomically(path: string, text: string): void {
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, text);
  renameSync(tmp, path);
}

function scenarioFiles(dir: string): string[] {
  return readdirSync(dir)
    .filter((f) => f.endsWith('.json'))
    .sort()
    .map((f) => join(dir, f));
}

function main(): void {
  const root = repoRoot();
  const dir = join(root, 'fixtures', 'scenarios');
  const files = scenarioFiles(dir);
  const notes: string[] = [];
  if (cachedKernelVersions().length > 0) files.push(...scenarioFiles(join(dir, 'kernel')));
  else notes.push('the real-kernel scenarios (no kernel in the cache: npm run fetch-kernel)');

  const counter = new OpCounter();
  const workloads: OpProfile['workloads'] = [];
  for (const file of files) {
    const s = loadScenario(file);
    const before = counter.instructions;
    const t0 = performance.now();
    const r = runScenario(s, { probe: counter });
    const steps = counter.instructions - before;
    workloads.push({ name: s.name, instructions: steps });
    process.stderr.write(`${s.name}: ${r.outcome}, ${steps.toLocaleString('en-US')} instructions (${(performance.now() - t0).toFixed(0)} ms)\n`);
  }
  const profile = counter.profile(workloads, notes);

  writeAtomically(join(root, 'emu', 'op-profile.ts'), formatProfileModule(profile));
  const docPath = join(root, 'docs', 'emulator-internals.md');
  const doc = readFileSync(docPath, 'utf8');
  const start = '<!-- op-profile:start -->';
  const end = '<!-- op-profile:end -->';
  const a = doc.indexOf(start);
  const b = doc.indexOf(end);
  if (a < 0 || b < a) throw new Error(`${docPath}: expected the markers ${start} and ${end}`);
  writeAtomically(docPath, doc.slice(0, a + start.length) + '\n' + formatProfileTable(profile, 25) + '\n' + doc.slice(b));
  for (const n of notes) process.stderr.write(`note: ${n}\n`);
  process.stderr.write(`wrote emu/op-profile.ts and the table in docs/emulator-internals.md (${profile.total.toLocaleString('en-US')} instructions)\n`);
}

main();
