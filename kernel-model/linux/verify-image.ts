// Verifying an image: does every paravirt site hold what boot patching makes of the
// image's pv_ops? (After a runtime patch the pv_ops slots changed too, so the same
// check covers runtime-patched images.) With an original image, the report also says
// which sites changed.

import type { KernelImage, PvSite } from '../image/kernel-image';
import { bootPatchImage } from './boot-patch';
import type { CpuProfile } from '../image/cpu-profile';
import { VmlinuxImage } from '../image/vmlinux-image';
import { compareSite } from './verify-site';
import { PvOps } from './pv-ops';

export interface SiteCheck {
  site: PvSite;
  actual: Uint8Array;
  expected: Uint8Array;
  ok: boolean;
  how: string;
  /** The original image's bytes, when verifying against one. */
  original?: Uint8Array;
  changed?: boolean;
}

export interface ImageVerification {
  ok: boolean;
  sites: SiteCheck[];
  mismatches: number;
  rules: string;
}

export function verifyImage(img: KernelImage, opts: { against?: KernelImage; cpu?: CpuProfile } = {}): ImageVerification {
  // A 6.8+ boot patch reads the original `call *pv_ops` bytes, which a patched image no longer has.
  const fromOriginal = opts.against && img instanceof VmlinuxImage && img.siteSource === 'altinstructions';
  const boot = bootPatchImage(fromOriginal ? opts.against! : img, { cpu: opts.cpu });
  const pv = new PvOps(img);
  const sites: SiteCheck[] = boot.sites.map((b) => {
    const actual = img.read(b.site.address, b.site.len);
    const target = pv.initialTarget(b.site.op);
    const v = compareSite(b.site, actual, b.final, pv.choice(b.site.op, target));
    const c: SiteCheck = { site: b.site, actual, expected: b.final, ok: v.ok, how: v.how };
    if (opts.against) {
      c.original = opts.against.read(b.site.address, b.site.len);
      c.changed = Buffer.compare(Buffer.from(c.original), Buffer.from(actual)) !== 0;
    }
    return c;
  });
  const mismatches = sites.filter((s) => !s.ok).length;
  return { ok: mismatches === 0, sites, mismatches, rules: boot.rules };
}
