// CPUID: the identity the emulated CPUs report. A bare-metal x86-64 CPU with the
// integer ISA we implement: x2APIC, CX16, POPCNT, MOVBE, LZCNT/ABM, BMI1, ERMS, SMEP,
// SMAP, FSGSBASE, RDTSCP, SERIALIZE, and no hypervisor bit (so a kernel model
// choosing paravirt ops sees bare metal). Leaves not listed return zeros.

import type { Cpu } from './cpu';

export interface CpuidResult {
  eax: number;
  ebx: number;
  ecx: number;
  edx: number;
}

function str4(s: string): number {
  return s.charCodeAt(0) | (s.charCodeAt(1) << 8) | (s.charCodeAt(2) << 16) | (s.charCodeAt(3) << 24);
}

const BRAND = 'textpoke emulated x86-64 CPU'.padEnd(48, ' ');

export function cpuid(cpu: Cpu, leaf: number, sub: number): CpuidResult {
  const apicId = cpu.apic.id >>> 0;
  switch (leaf >>> 0) {
    case 0:
      return { eax: 0xd, ebx: str4('Genu'), edx: str4('ineI'), ecx: str4('ntel') };
    case 1:
      return {
        // family 6, model 0x55 (a Skylake-SP signature), stepping 4
        eax: 0x00050654,
        ebx: ((apicId & 0xff) << 24) | (cpu.machine.cpus.length << 16) | (8 << 8),
        // SSE3 PCLMUL? no; CX16(13) SSE4.1(19)? no; x2APIC(21) MOVBE(22) POPCNT(23) TSC-deadline(24)? no
        ecx: (1 << 13) | (1 << 21) | (1 << 22) | (1 << 23),
        // FPU TSC MSR PAE CX8 APIC SEP MTRR PGE CMOV PAT CLFSH FXSR SSE SSE2
        edx:
          (1 << 0) | (1 << 4) | (1 << 5) | (1 << 6) | (1 << 8) | (1 << 9) | (1 << 11) | (1 << 12) |
          (1 << 13) | (1 << 15) | (1 << 16) | (1 << 19) | (1 << 24) | (1 << 25) | (1 << 26),
      };
    case 7:
      if (sub !== 0) return { eax: 0, ebx: 0, ecx: 0, edx: 0 };
      // EBX: FSGSBASE(0) BMI1(3) SMEP(7) ERMS(9) SMAP(20) CLFLUSHOPT(23); EDX: SERIALIZE(14)
      return { eax: 0, ebx: (1 << 0) | (1 << 3) | (1 << 7) | (1 << 9) | (1 << 20) | (1 << 23), ecx: 0, edx: 1 << 14 };
    case 0xb: {
      // x2APIC topology: one thread per core, all cores in one package.
      const n = cpu.machine.cpus.length;
      if (sub === 0) return { eax: 0, ebx: 1, ecx: (1 << 8) | 0, edx: apicId };
      if (sub === 1) return { eax: 32 - Math.clz32(Math.max(1, n - 1)), ebx: n, ecx: (2 << 8) | 1, edx: apicId };
      return { eax: 0, ebx: 0, ecx: sub & 0xff, edx: apicId };
    }
    case 0x80000000:
      return { eax: 0x80000008, ebx: 0, ecx: 0, edx: 0 };
    case 0x80000001:
      // ECX: LAHF-SAHF(0) ABM/LZCNT(5) PREFETCHW(8); EDX: SYSCALL(11) NX(20) 1GB(26) RDTSCP(27) LM(29)
      return { eax: 0, ebx: 0, ecx: (1 << 0) | (1 << 5) | (1 << 8), edx: (1 << 11) | (1 << 20) | (1 << 26) | (1 << 27) | (1 << 29) };
    case 0x80000002:
    case 0x80000003:
    case 0x80000004: {
      const o = (leaf - 0x80000002) * 16;
      return {
        eax: str4(BRAND.slice(o, o + 4)),
        ebx: str4(BRAND.slice(o + 4, o + 8)),
        ecx: str4(BRAND.slice(o + 8, o + 12)),
        edx: str4(BRAND.slice(o + 12, o + 16)),
      };
    }
    case 0x80000008:
      return { eax: 0x3030, ebx: 0, ecx: 0, edx: 0 }; // 48-bit physical and linear addresses
    default:
      return { eax: 0, ebx: 0, ecx: 0, edx: 0 };
  }
}
