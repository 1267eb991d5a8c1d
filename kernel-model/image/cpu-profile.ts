// CPU profiles for offline boot patching (`--cpu`): the feature and bug words a
// kernel had when it patched itself, one file per release and QEMU CPU model in
// fixtures/cpu-features/<release>-<cpu>.json. The words are boot_cpu_data.x86_capability
// read out of a QEMU boot of that very kernel (TCG), so they include the synthetic
// bits the kernel sets itself (X86_FEATURE_ALWAYS, the mitigation choices) that no CPU
// model definition lists. Bits are numbered as the kernel numbers them
// (word * 32 + bit); names come from the kernel's own x86_cap_flags table.
//
// One boot-time fact that is not a feature bit is recorded beside the words:
// x86_return_thunk, the thunk apply_returns() writes when X86_FEATURE_RETHUNK is set
// (chosen by the mitigation code: __x86_return_thunk, its_return_thunk, srso_…).

import * as fs from 'fs';
import * as path from 'path';
import { LoadError } from './elf';
import { repoRoot } from './download';

export const CPU_PROFILE_FORMAT = 'textpoke-cpu-profile/1';

export interface CpuProfileFile {
  format: typeof CPU_PROFILE_FORMAT;
  release: string;
  /** Kernel ABI the words were read from. */
  kernel: string;
  /** QEMU -cpu model. */
  cpu: string;
  /** How the words were obtained. */
  source: string;
  /** NCAPINTS + NBUGINTS words, hex. */
  words: string[];
  /** Symbol x86_return_thunk pointed at when the kernel booted. */
  returnThunk: string;
  /** The set bits by name (x86_cap_flags; "word*32+bit" for unnamed bits), for people. */
  names: string[];
}

export interface CpuProfile {
  name: string;
  file: string | null;
  features: Set<number>;
  returnThunk: string;
}

export function cpuProfileDir(): string {
  return path.join(repoRoot(), 'fixtures', 'cpu-features');
}

export function featuresFromWords(words: readonly number[]): Set<number> {
  const out = new Set<number>();
  words.forEach((w, i) => {
    for (let b = 0; b < 32; b++) if ((w >>> b) & 1) out.add(i * 32 + b);
  });
  return out;
}

/** Profiles on disk for a release: their CPU names. */
export function cpuProfileNames(release: string, dir = cpuProfileDir()): string[] {
  if (!fs.existsSync(dir)) return [];
  const pre = `${release}-`;
  return fs.readdirSync(dir).filter((f) => f.startsWith(pre) && f.endsWith('.json')).map((f) => f.slice(pre.length, -5)).sort();
}

/**
 * A CPU profile by QEMU model name for the release (fixtures/cpu-features/), or a
 * profile file's path. Errors name the file and field.
 */
export function loadCpuProfile(nameOrPath: string, release: string, dir = cpuProfileDir()): CpuProfile {
  const isPath = nameOrPath.includes('/') || nameOrPath.endsWith('.json');
  const file = isPath ? nameOrPath : path.join(dir, `${release}-${nameOrPath}.json`);
  if (!fs.existsSync(file)) {
    const known = cpuProfileNames(release, dir);
    throw new LoadError(`--cpu ${nameOrPath}: no profile for Linux ${release}${isPath ? ` (${file}: no such file)` : ''} (known: ${known.join(', ') || 'none'})`);
  }
  let j: CpuProfileFile;
  try {
    j = JSON.parse(fs.readFileSync(file, 'utf8')) as CpuProfileFile;
  } catch (e) {
    throw new LoadError(`${file}: not valid JSON (${(e as Error).message})`);
  }
  if (j.format !== CPU_PROFILE_FORMAT) throw new LoadError(`${file}: format: expected "${CPU_PROFILE_FORMAT}"`);
  if (j.release !== release) throw new LoadError(`${file}: release: the profile is for Linux ${j.release}, the image is ${release}`);
  if (!Array.isArray(j.words) || j.words.some((w) => typeof w !== 'string' || !/^0x[0-9a-f]{1,8}$/.test(w))) {
    throw new LoadError(`${file}: words: expected an array of 32-bit hex strings`);
  }
  if (typeof j.returnThunk !== 'string' || !j.returnThunk) throw new LoadError(`${file}: returnThunk: expected a symbol name`);
  return { name: j.cpu, file, features: featuresFromWords(j.words.map((w) => parseInt(w, 16))), returnThunk: j.returnThunk };
}
