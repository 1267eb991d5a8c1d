// CPU feature words as a booted kernel reports them: boot_cpu_data.x86_capability read
// out of a QEMU boot dump (boot-dump.ts), one 32-bit word per kernel capability word
// (NCAPINTS feature words, then the bug words), written as fixtures/cpu-features/
// <release>-<cpu>.json so the offline boot patch can be run for that CPU model without QEMU.

/** The QEMU CPU models every release is booted on: a plain AMD-flavoured baseline, everything TCG can do, a common Intel desktop. */
export const STANDARD_CPUS = ['qemu64', 'max', 'Skylake-Client'] as const;
