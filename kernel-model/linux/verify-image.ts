// Verifying an image: does every paravirt site hold what boot patching makes of the
// image's pv_ops? (After a runtime patch the pv_ops slots changed too, so the same
// check covers runtime-patched images.) With an original image, the report also says
// which sites changed; the original must be the same build (else "what changed" is
// meaningless), which sameBuild checks.

import type { KernelImage, PvSite } from '../image/kernel-image';
import { ImageError } from '../image/kernel-image';
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

const hex = (v: bigint): string => '0x' + v.toString(16);

/**
 * Why `b` is not the build `a` was made from (a patched image keeps its original's
 * layout: the same sections, pv_ops and paravirt sites; only site bytes differ), or
 * null when it is.
 */
export function sameBuild(a: KernelImage, b: KernelImage): string | null {
  if (a.kind !== b.kind) return `one is a ${a.kind}, the other a ${b.kind}`;
  const secs = (x: KernelImage): string[] => x.sections.map((s) => `${s.name} at ${hex(s.address)} (${s.size} bytes)`);
  const sa = secs(a);
  const sb = secs(b);
  const i = sa.findIndex((s, k) => s !== sb[k]);
  if (i >= 0 || sa.length !== sb.length) {
    const k = i >= 0 ? i : Math.min(sa.length, sb.length);
    return `sections differ: ${sa[k] ?? 'nothing'} against ${sb[k] ?? 'nothing'}`;
  }
  if (a.pvOps.address !== b.pvOps.address) return `pv_ops is at ${hex(a.pvOps.address)} against ${hex(b.pvOps.address)}`;
  if (a.sites.length !== b.sites.length) return `${a.sites.length} paravirt sites against ${b.sites.length}`;
  const bad = a.sites.findIndex((s, k) => s.address !== b.sites[k].address || s.op !== b.sites[k].op || s.len !== b.sites[k].len);
  if (bad >= 0) return `paravirt site ${bad} is ${a.sites[bad].op} at ${hex(a.sites[bad].address)} against ${b.sites[bad].op} at ${hex(b.sites[bad].address)}`;
  return null;
}

export function verifyImage(img: KernelImage, opts: { against?: KernelImage; cpu?: CpuProfile } = {}): ImageVerification {
  if (opts.against) {
    const why = sameBuild(img, opts.against);
    if (why) throw new ImageError(`--against ${opts.against.path}: not the build ${img.path} was made from (${why})`);
  }
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
