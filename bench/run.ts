// npm run bench -- [--quick] [--json] [--no-kernel] [--only SECTION,...]
// The project's speed figures: emulator MIPS, scenario throughput, patching time as
// CPUs and sites grow (fixture kernel), and the real kernel's offline pipeline and
// runtime patching. Tables go to stdout as each section finishes, progress to stderr;
// a default (not --quick, all sections) run also writes bench/results.json, the
// figures the README cites.

import { execFileSync } from 'child_process';
import { mkdirSync } from 'fs';
import { cpus as hostCpus, loadavg, platform, release } from 'os';
import { join } from 'path';
import { repoRoot } from '../kernel-model/image/download';
import { loadImage } from '../kernel-model/image/load';
import { writeOutput } from '../kernel-model/image/output-file';
import { benchEmulator, type EmulatorResults } from './emulator';
import { benchScenarios, type ScenarioFigure } from './scenarios';
import { benchFixturePatching, type FixturePatchingResults } from './patching';
import { benchExplore, formatExplore, type ExploreFigure } from './explore';
import { benchSnapshots, formatSnapshots, type SnapshotFigure } from './snapshot';
import { benchKernel, type KernelResults, type KernelSkipped } from './kernel';
import { benchPeer, type PeerResults } from './peer';
import { formatEmulator, formatPeer, formatScenarios, formatPatching, formatKernel, fix } from './report';
import { benchOptions, errorText, now, seconds } from './util';
import { setBlocksByDefault } from '../emu/machine';

export const SECTIONS = ['emulator', 'peer', 'scenarios', 'patching', 'kernel', 'snapshot', 'explore'] as const;
export type Section = (typeof SECTIONS)[number];

const USAGE =
  'usage: npm run bench -- [--quick] [--json] [--no-kernel] [--only SECTION,...]\n' +
  `  --quick      short runs (a smoke test; figures not meaningful, results.json not written)\n` +
  `  --json       one JSON object on stdout instead of tables\n` +
  `  --no-kernel  skip the real-kernel section (no download; results.json not written)\n` +
  `  --only LIST  run only these sections: ${SECTIONS.join(', ')} (results.json not written)\n` +
  `  --no-blocks  step every instruction (no compiled blocks), for comparison (results.json not written)`;

export interface BenchArgs {
  quick: boolean;
  json: boolean;
  sections: Section[];
  /** Partial runs (--only, --no-kernel, --no-blocks) are reported but do not replace the committed bench/results.json. */
  partial: boolean;
  /** Compiled blocks on (the default) or off (--no-blocks). */
  blocks: boolean;
}

export function parseArgs(argv: string[]): BenchArgs {
  const a: BenchArgs = { quick: false, json: false, sections: [...SECTIONS], partial: false, blocks: true };
  let noKernel = false;
  for (let i = 0; i < argv.length; i++) {
    const x = argv[i];
    if (x === '--quick') a.quick = true;
    else if (x === '--json') a.json = true;
    else if (x === '--no-kernel') noKernel = true;
    else if (x === '--no-blocks') {
      a.blocks = false;
      a.partial = true;
    }
    else if (x === '--only' || x.startsWith('--only=')) {
      const v = x === '--only' ? argv[++i] : x.slice('--only='.length);
      if (!v) throw new Error(`--only needs a list of sections\n${USAGE}`);
      const want = v.split(',').map((s) => s.trim()).filter(Boolean);
      for (const w of want) if (!(SECTIONS as readonly string[]).includes(w)) throw new Error(`--only: unknown section '${w}' (sections: ${SECTIONS.join(', ')})`);
      a.sections = SECTIONS.filter((s) => want.includes(s));
      a.partial = true;
    } else if (x === '--help' || x === '-h') {
      process.stdout.write(USAGE + '\n');
      process.exit(0);
    } else throw new Error(`unknown argument '${x}'\n${USAGE}`);
  }
  if (noKernel) {
    a.sections = a.sections.filter((s) => s !== 'kernel');
    a.partial = true;
  }
  return a;
}

export interface BenchMeta {
  date: string;
  commit: string | null;
  node: string;
  v8: string;
  host: { cpu: string; cores: number; platform: string; release: string };
  quick: boolean;
  sections: Section[];
  /** 1-minute load average at the start and the end: other work on the host skews every figure. */
  loadAverage: { start: number; end: number };
}

export interface BenchResults {
  meta: BenchMeta;
  emulator?: EmulatorResults;
  peer?: PeerResults;
  scenarios?: ScenarioFigure[];
  patching?: FixturePatchingResults;
  kernel?: KernelResults | KernelSkipped;
  snapshot?: SnapshotFigure[];
  explore?: ExploreFigure[];
  /** Sections that threw, with the error (the others still report). */
  errors: Record<string, string>;
  totalSeconds: number;
}

function gitCommit(): string | null {
  try {
    // Read-only: which commit the figures belong to.
    return execFileSync('git', ['rev-parse', '--short=12', 'HEAD'], { cwd: repoRoot(), encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return null;
  }
}

function meta(a: BenchArgs): BenchMeta {
  const c = hostCpus();
  return {
    date: new Date().toISOString(),
    commit: gitCommit(),
    node: process.version,
    v8: process.versions.v8,
    host: { cpu: c[0]?.model ?? 'unknown', cores: c.length, platform: platform(), release: release() },
    quick: a.quick,
    sections: a.sections,
    loadAverage: { start: loadavg()[0], end: NaN },
  };
}

/** Runs the chosen sections; `print` receives each section's table as it finishes. */
export async function runBench(a: BenchArgs, print: (text: string) => void, log: (line: string) => void): Promise<BenchResults> {
  const t0 = now();
  setBlocksByDefault(a.blocks);
  const o = benchOptions(a.quick, log);
  const res: BenchResults = { meta: meta(a), errors: {}, totalSeconds: 0 };
  const m = res.meta;
  print(
    `textpoke bench${a.quick ? ' (--quick: short runs, figures not meaningful)' : ''}${a.blocks ? '' : ' (--no-blocks)'}: ${m.date}, commit ${m.commit ?? '?'}, ` +
      `node ${m.node}, ${m.host.cpu} × ${m.host.cores}, load average ${fix(m.loadAverage.start, 2)}`,
  );
  if (m.loadAverage.start > m.host.cores / 2) log(`the host is busy (load average ${fix(m.loadAverage.start, 2)} on ${m.host.cores} cores): figures will be low`);
  const guard = async (name: Section, fn: () => Promise<void> | void): Promise<void> => {
    if (!a.sections.includes(name)) return;
    const s0 = now();
    try {
      await fn();
    } catch (e) {
      res.errors[name] = errorText(e);
      print(`\n${name}: FAILED: ${errorText(e)}`);
    }
    log(`${name}: ${fix(seconds(s0))} s`);
  };
  await guard('emulator', () => {
    res.emulator = benchEmulator(o);
    print(formatEmulator(res.emulator));
  });
  await guard('peer', () => {
    res.peer = benchPeer(o);
    print(formatPeer(res.peer));
  });
  await guard('scenarios', () => {
    res.scenarios = benchScenarios(o);
    print(formatScenarios(res.scenarios));
  });
  await guard('patching', async () => {
    res.patching = await benchFixturePatching(loadImage('minikernel'), o);
    print(formatPatching(res.patching));
  });
  await guard('kernel', async () => {
    res.kernel = await benchKernel(o);
    print(formatKernel(res.kernel));
  });
  await guard('snapshot', () => {
    res.snapshot = benchSnapshots(o);
    print(formatSnapshots(res.snapshot));
  });
  await guard('explore', () => {
    res.explore = benchExplore(o);
    print(formatExplore(res.explore));
  });
  res.totalSeconds = seconds(t0);
  m.loadAverage.end = loadavg()[0];
  return res;
}

async function main(): Promise<void> {
  const a = parseArgs(process.argv.slice(2));
  const log = (line: string): void => {
    process.stderr.write(`bench: ${line}\n`);
  };
  const print = a.json ? (): void => {} : (text: string): void => void process.stdout.write(text + '\n');
  const res = await runBench(a, print, log);
  if (a.json) process.stdout.write(JSON.stringify(res, null, 2) + '\n');
  else process.stdout.write(`\ntotal ${fix(res.totalSeconds)} s (load average ${fix(res.meta.loadAverage.start, 2)} at the start, ${fix(res.meta.loadAverage.end, 2)} at the end)\n`);
  if (!a.quick && !a.partial) {
    // Written next to the sources (not into dist/): the committed figures the README cites.
    const dir = join(repoRoot(), 'bench');
    mkdirSync(dir, { recursive: true });
    writeOutput(join(dir, 'results.json'), JSON.stringify(res, null, 2) + '\n');
    log(`wrote ${join(dir, 'results.json')}`);
  }
  if (Object.keys(res.errors).length) process.exitCode = 1;
}

if (require.main === module) {
  main().catch((e: unknown) => {
    process.stderr.write(`bench: ${errorText(e)}\n`);
    process.exit(1);
  });
}
