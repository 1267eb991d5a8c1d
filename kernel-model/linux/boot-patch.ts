// Boot-time paravirt patching of an image, offline: the bytes every paravirt site
// holds after the kernel's boot patching, for the image's own pv_ops. A vmlinux
// follows Linux 6.1's rules (alternatives-6.1.ts); a fixture follows DESIGN.md's
// (inline native templates for native ops, calls otherwise, NOPs for the no-op).

import type { KernelImage, PvSite } from '../image/kernel-image';
import { PvOps } from './pv-ops';
import { generatePatch, type PatchForm } from './paravirt-patch';
import { bootPatch61, type BootForm } from './alternatives-6.1';
import type { VmlinuxImage } from '../image/vmlinux-image';

export interface BootedSite {
  site: PvSite;
  original: Uint8Array;
  final: Uint8Array;
  form: BootForm | PatchForm;
}

export interface BootPatchResult {
  sites: BootedSite[];
  /** address -> bytes to write */
  writes: Map<bigint, Uint8Array>;
  rules: 'linux-6.1' | 'design';
}

export function bootPatchImage(img: KernelImage): BootPatchResult {
  if (img.kind === 'vmlinux') {
    const vmi = img as VmlinuxImage;
    const b = bootPatch61(img, { alternatives: vmi.vm.altinstructions() });
    return {
      sites: b.sites.map((s) => ({ site: s.site, original: s.original, final: s.final, form: s.form })),
      writes: b.writes,
      rules: 'linux-6.1',
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
  return { sites, writes, rules: 'design' };
}
