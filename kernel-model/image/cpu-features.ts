// CPU feature words as a booted kernel reports them: boot_cpu_data.x86_capability read
// out of a QEMU boot dump (boot-dump.ts), one 32-bit word per kernel capability word
// (NCAPINTS feature words, then the bug words), at the offset and length the kernel's
// own BTF gives for struct cpuinfo_x86. Written as fixtures/cpu-features/
// <release>-<cpu>.json so the offline boot patch can be run for that CPU model without
// QEMU. These are the words after boot: what apply_alternatives saw, plus anything set
// later in boot (the notes list what the kernel changes after alternatives run).

import * as fs from 'fs';
import * as path from 'path';
import { LoadError } from './elf';
import type { Vmlinux } from './vmlinux';
import { readDumpCpuData, type BootDump } from './boot-dump';

/** The QEMU CPU models every release is booted on: a plain AMD-flavoured baseline, everything TCG can do, a common Intel desktop. */
export const STANDARD_CPUS = ['qemu64', 'max', 'Skylake-Client'] as const;

export const CPU_FEATURES_FORMAT = 'textpoke-cpu-features/1';

export interface CpuFeatureFile {
  format: typeof CPU_FEATURES_FORMAT;
  /** Linux release and the kernel ABI that reported the words. */
  release: string;
  kernel: string;
  /** QEMU's -cpu model and QEMU's version line (another QEMU may model the CPU differently). */
  cpu: string;
  qemu: string;
  source: string;
  /** x86_capability[i] as hex, NCAPINTS feature words then the bug words. */
  words: string[];
  /** Feature numbers (word * 32 + bit) set, with the kernel's name for each (x86_cap_flags / x86_bug_flags), "" where it has none. */
  features: { bit: number; name: string }[];
}

/** Where x86_capability sits in struct cpuinfo_x86 and how many words it has, from the kernel's BTF. */
export function capabilityLayout(vm: Vmlinux): { offset: number; words: number } {
  const f = vm.btf().fields('cpuinfo_x86').find((x) => x.path === 'x86_capability');
  if (!f) throw new LoadError(`${vm.label}: BTF struct cpuinfo_x86 has no x86_capability`);
  const words = vm.layouts().capabilityWords;
  if (f.size !== 4 * words) throw new LoadError(`${vm.label}: cpuinfo_x86.x86_capability is ${f.size} bytes, expected ${words} u32 words`);
  return { offset: f.offset, words };
}

/** The capability words of the booted kernel's boot_cpu_data. */
export function featureWords(vm: Vmlinux, dump: BootDump): number[] {
  const { offset, words } = capabilityLayout(vm);
  const cpu = readDumpCpuData(dump);
  if (offset + 4 * words > cpu.bytes.length) throw new LoadError(`${dump.dir}: boot_cpu_data dump of ${cpu.bytes.length} bytes ends before x86_capability (offset ${offset}, ${words} words)`);
  return Array.from({ length: words }, (_, i) => cpu.bytes.readUInt32LE(offset + 4 * i));
}

/** The set feature numbers of a list of words. */
export function featureBits(words: readonly number[]): number[] {
  const out: number[] = [];
  words.forEach((w, i) => {
    for (let b = 0; b < 32; b++) if ((w >>> b) & 1) out.push(i * 32 + b);
  });
  return out;
}

export function cpuFeatureFile(vm: Vmlinux, dump: BootDump, release: string): CpuFeatureFile {
  const words = featureWords(vm, dump);
  const names = vm.capFlagNames();
  return {
    format: CPU_FEATURES_FORMAT,
    release,
    kernel: dump.meta.kernel.version,
    cpu: dump.meta.cpu,
    qemu: dump.meta.qemu.version,
    source: 'boot_cpu_data.x86_capability of the kernel booted in QEMU, read through QMP (npm run boot-dump)',
    words: words.map((w) => '0x' + w.toString(16).padStart(8, '0')),
    features: featureBits(words).map((bit) => ({ bit, name: names[bit] ?? '' })),
  };
}

export function cpuFeaturesDir(root: string): string {
  return path.join(root, 'fixtures', 'cpu-features');
}

/** Reads a committed feature file; a LoadError names the file and field when it is not one. */
export function readCpuFeatureFile(file: string): CpuFeatureFile {
  let j: CpuFeatureFile;
  try {
    j = JSON.parse(fs.readFileSync(file, 'utf8')) as CpuFeatureFile;
  } catch (e) {
    throw new LoadError(`${file}: not a CPU feature file (${(e as Error).message})`);
  }
  if (j?.format !== CPU_FEATURES_FORMAT) throw new LoadError(`${file}: field 'format': expected '${CPU_FEATURES_FORMAT}'`);
  if (!Array.isArray(j.words) || !j.words.every((w) => typeof w === 'string' && /^0x[0-9a-f]{8}$/.test(w))) {
    throw new LoadError(`${file}: field 'words': expected an array of 32-bit hex words`);
  }
  return j;
}

/** The feature numbers a committed file says are set. */
export function featureSet(f: CpuFeatureFile): Set<number> {
  return new Set(featureBits(f.words.map((w) => Number(w))));
}

/** Writes through a temporary file, so a failed write leaves the old file. */
export function writeCpuFeatureFile(file: string, f: CpuFeatureFile): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const tmp = `${file}.tmp-${process.pid}`;
  fs.writeFileSync(tmp, JSON.stringify(f, null, 2) + '\n');
  fs.renameSync(tmp, file);
}
