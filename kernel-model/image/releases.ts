// The Debian kernels textpoke downloads, one per Linux release it supports, each
// pinned to a named ABI so that tests and figures stay the same when Debian
// publishes a newer kernel.
//
// Why these ABIs (checked with apt-cache policy against Debian's archive on 2026-12-03):
// - 6.1: bookworm main offered 6.1.0-47 (6.1.170-3) and 6.1.0-50 (6.1.176-1). 6.1.0-50
//   is the one in the current point release (it stays until the next one, and the
//   snapshot archive keeps it after), and the kernel the 6.1 tests were written on.
// - 6.12: trixie main offered 6.12.107+deb13 and 6.12.117+deb13; trixie-security had
//   111 … 118. 6.12.117+deb13 is the newest in the point release (main): security
//   kernels are replaced every few weeks, point-release ones only at the next point
//   release.

export type ReleaseName = '6.1' | '6.12';

export interface KernelRelease {
  name: ReleaseName;
  /** Debian suite whose archive has it, and the suites apt reads for it. */
  suite: string;
  suites: readonly string[];
  /** The pinned ABI. */
  pinned: string;
  /** ABI names of this release's cloud kernels. */
  abi: RegExp;
  /** apt-cache search pattern for the -unsigned and -dbg packages. */
  search: string;
  /** How the short forms a user may type expand to an ABI name (null: not a short form). */
  expand(v: string): string | null;
  /** The bzImage's payload compression, for messages. */
  compression: 'LZ4' | 'zstd';
}

function versionKey(v: string): number[] {
  return v.replace(/-cloud-amd64$/, '').split(/[^0-9]+/).filter((x) => x !== '').map(Number);
}

/** Orders ABI names newest first (numeric fields compared left to right). */
export function newestFirst(a: string, b: string): number {
  const x = versionKey(a);
  const y = versionKey(b);
  for (let i = 0; i < Math.max(x.length, y.length); i++) {
    const d = (y[i] ?? -1) - (x[i] ?? -1);
    if (d !== 0) return d;
  }
  return 0;
}

export const KERNEL_RELEASES: Readonly<Record<ReleaseName, KernelRelease>> = {
  '6.1': {
    name: '6.1',
    suite: 'bookworm',
    suites: ['bookworm', 'bookworm-updates', 'bookworm-security'],
    pinned: '6.1.0-50-cloud-amd64',
    abi: /^6\.1\.0-(\d+)-cloud-amd64$/,
    search: '^linux-image-6\\.1\\.0-[0-9]+-cloud-amd64-(unsigned|dbg)$',
    expand: (v) => (/^\d+$/.test(v) ? `6.1.0-${v}-cloud-amd64` : /^6\.1\.0-\d+$/.test(v) ? `${v}-cloud-amd64` : null),
    compression: 'LZ4',
  },
  '6.12': {
    name: '6.12',
    suite: 'trixie',
    suites: ['trixie', 'trixie-updates', 'trixie-security'],
    pinned: '6.12.117+deb13-cloud-amd64',
    abi: /^6\.12\.(\d+)\+deb13(?:\.\d+)?-cloud-amd64$/,
    search: '^linux-image-6\\.12\\.[0-9]+\\+deb13[.0-9]*-cloud-amd64-(unsigned|dbg)$',
    expand: (v) => (/^\d+$/.test(v) ? `6.12.${v}+deb13-cloud-amd64` : /^6\.12\.\d+\+deb13(\.\d+)?$/.test(v) ? `${v}-cloud-amd64` : null),
    compression: 'zstd',
  },
};

/** The release an ABI name belongs to, or undefined. */
export function releaseOfAbi(abi: string): KernelRelease | undefined {
  return Object.values(KERNEL_RELEASES).find((r) => r.abi.test(abi));
}

/** A release by name, or a message listing the known ones. */
export function releaseByName(name: string): KernelRelease | string {
  const r = (KERNEL_RELEASES as Record<string, KernelRelease | undefined>)[name];
  return r ?? `unknown release '${name}' (known: ${Object.keys(KERNEL_RELEASES).join(', ')})`;
}
