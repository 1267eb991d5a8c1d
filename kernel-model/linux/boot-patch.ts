// Boot-time patching of an image, offline: the bytes the kernel's boot patching
// leaves in its text, for the image's own pv_ops and a CPU feature set. A vmlinux
// with .parainstructions follows Linux 6.1's rules (alternatives-6.1.ts); one without
// (6.8 and later: paravirt sites are ALT_FLAG_DIRECT_CALL alternatives) follows
// 6.12's (alternatives-6.12.ts); a fixture follows DESIGN.md's (inline native
// templates for native ops, calls otherwise, NOPs for the no-op).

import type { KernelImage, PvSite } from '../image/kernel-image';
import { ImageError } from '../image/kernel-image';
import { PvOps } from './pv-ops';
import { generatePatch, type PatchForm } from './paravirt-patch';
import { bootPatch61, type BootForm } from './alternatives-6.1';
import { bootPatch612, type PatchKind, type KindCount, type RuntimeKind, type PvForm } from './alternatives-6.12';
import { VmlinuxImage } from '../image/vmlinux-image';
import { cpuProfileNames, loadCpuProfile, type CpuProfile } from '../image/cpu-profile';
import { bareMetalFeatures } from '../image/linux-6.1';

export interface BootedSite {
  site: PvSite;
  original: Uint8Array;
  final: Uint8Array;
  form: BootForm | PatchForm | PvForm;
}

export interface BootPatchResult {
  sites: BootedSite[];
  /** address -> bytes to write: every range the boot patching wrote. */
  writes: Map<bigint, Uint8Array>;
  rules: 'linux-6.1' | 'linux-6.12' | 'design';
  /** The patched bytes of any address range (the image where nothing was written). */
  read(address: bigint, len: number): Uint8Array;
  /** The CPU profile the patch was computed for (vmlinux only). */
  cpu?: string;
  /** Entries per table, how many the patch changed, how many are decided at run time (6.12). */
  kinds?: Record<PatchKind, KindCount>;
  /** Rewrites left to the running kernel, by kind (6.12). */
  runtime?: Record<RuntimeKind, number>;
}

export interface BootPatchImageOptions {
  /** A CPU profile, or a QEMU model name / profile path (default: the release's qemu64 profile when there is one). */
  cpu?: CpuProfile | string;
}

/** The Linux release of a vmlinux ("6.1", "6.12") from its linux_banner. */
export function imageRelease(img: VmlinuxImage): string {
  return img.vm.release();
}

/** The profile `cpu` names for the image's release; undefined when none is given and no default exists. */
export function resolveCpu(img: VmlinuxImage, cpu: CpuProfile | string | undefined): CpuProfile | undefined {
  if (typeof cpu === 'object') return cpu;
  const release = imageRelease(img);
  if (cpu !== undefined) return loadCpuProfile(cpu, release);
  return cpuProfileNames(release).includes('qemu64') ? loadCpuProfile('qemu64', release) : undefined;
}

export function bootPatchImage(img: KernelImage, opts: BootPatchImageOptions = {}): BootPatchResult {
  if (img.kind === 'vmlinux') {
    if (!(img instanceof VmlinuxImage)) throw new ImageError(`${img.path}: not a vmlinux image`);
    const cpu = resolveCpu(img, opts.cpu);
    if (img.siteSource === 'altinstructions') {
      const b = bootPatch612(img, img.vm, { features: cpu?.features ?? bareMetalFeatures(), returnThunk: cpu?.returnThunk ?? '__x86_return_thunk' });
      return {
        sites: b.sites, writes: b.writes, rules: 'linux-6.12', read: (a, n) => b.text.read(a, n), cpu: cpu?.name ?? 'bare',
        kinds: b.kinds, runtime: b.runtime,
      };
    }
    const b = bootPatch61(img, {
      alternatives: img.vm.altinstructions(), features: cpu?.features,
      thunks: { vm: img.vm, returnThunk: cpu?.returnThunk ?? '__x86_return_thunk' },
    });
    return {
      sites: b.sites.map((s) => ({ site: s.site, original: s.original, final: s.final, form: s.form })),
      writes: b.writes,
      rules: 'linux-6.1',
      read: (a, n) => b.text.read(a, n),
      cpu: cpu?.name ?? 'bare',
      kinds: b.kinds,
      runtime: b.runtime,
    };
  }
  const pv = new PvOps(img);
  const sites: BootedSite[] = [];
  const writes = new Map<bigint, Uint8Array>();
  for (const s of img.sites) {
    const g = generatePatch(s.op, s.address, s.len, pv.choice(s.op, pv.initialTarget(s.op)));
    sites.push({ site: s, original: img.read(s.address, s.len), final: g.bytes, form: g.form });
    writes.set(s.address, g.bytes);
  }
  const read = (a: bigint, n: number): Uint8Array => {
    const out = img.read(a, n);
    for (const [w, bytes] of writes) {
      for (let i = 0; i < bytes.length; i++) {
        const at = w + BigInt(i) - a;
        if (at >= 0n && at < BigInt(n)) out[Number(at)] = bytes[i];
      }
    }
    return out;
  };
  return { sites, writes, rules: 'design', read };
}
