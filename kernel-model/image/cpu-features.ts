// CPU feature words as a booted kernel reports them: boot_cpu_data.x86_capability read
// out of a QEMU boot dump (boot-dump.ts), one 32-bit word per kernel capability word
// (NCAPINTS feature words, then the bug words), at the offset and length the kernel's
// own BTF gives for struct cpuinfo_x86. The committed profiles the offline boot patch
// uses (fixtures/cpu-features/, cpu-profile.ts, written by npm run cpu-profile) are
// these words; the kernel tests compare them with a fresh boot's.

import { LoadError } from './elf';
import type { Vmlinux } from './vmlinux';
import { readDumpCpuData, type BootDump } from './boot-dump';

/** The QEMU CPU models every release is booted on: a plain AMD-flavoured baseline, everything TCG can do, a common Intel desktop. */
export const STANDARD_CPUS = ['qemu64', 'max', 'Skylake-Client'] as const;

/** The capability words of the booted kernel's boot_cpu_data. */
export function featureWords(vm: Vmlinux, dump: BootDump): number[] {
  const f = vm.btf().field('cpuinfo_x86', 'x86_capability');
  const words = vm.layouts().capabilityWords;
  const cpu = readDumpCpuData(dump);
  if (f.offset + 4 * words > cpu.bytes.length) {
    throw new LoadError(`${dump.dir}: boot_cpu_data dump of ${cpu.bytes.length} bytes ends before x86_capability (offset ${f.offset}, ${words} words)`);
  }
  return Array.from({ length: words }, (_, i) => cpu.bytes.readUInt32LE(f.offset + 4 * i));
}
