// Host tools some suites need (binutils, lz4). A suite that needs one fails when it
// is missing instead of skipping: a skipped suite is a green run that tested nothing.
// .ci/run installs every tool named here.

import { spawnSync } from 'child_process';

/** Throws, naming the Debian package, unless every tool runs. */
export function requireTools(tools: readonly string[]): void {
  const pkg: Record<string, string> = { as: 'binutils', ld: 'binutils', nm: 'binutils', objdump: 'binutils', lz4: 'lz4', gcc: 'gcc' };
  const missing = tools.filter((t) => spawnSync(t, ['--version']).status !== 0);
  if (missing.length) {
    const pkgs = [...new Set(missing.map((t) => pkg[t] ?? t))];
    throw new Error(`this suite needs ${missing.join(', ')} on PATH (Debian: apt-get install ${pkgs.join(' ')})`);
  }
}
