// npm run fetch-kernel [-- --release 6.1|6.12] [--version ABI] [--verify] [--cache DIR] [--json]
// Downloads a Debian cloud kernel (the release's pinned ABI unless --version names
// another) into .cache/kernel/<abi>/ (see kernel-model/image/download.ts and
// releases.ts). A second run only checks the cache and exits.

import { downloadKernel, type DownloadOptions } from '../kernel-model/image/download';
import { KERNEL_RELEASES, releaseByName } from '../kernel-model/image/releases';

const USAGE = `usage: fetch-kernel [--release ${Object.keys(KERNEL_RELEASES).join('|')}] [--version <ABI, e.g. ${KERNEL_RELEASES['6.1'].pinned}>] [--verify] [--cache <dir>] [--json]`;

class UsageError extends Error {}

function parseArgs(argv: string[]): DownloadOptions & { json: boolean } {
  const o: DownloadOptions & { json: boolean } = { json: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const eq = a.indexOf('=');
    const flag = a.startsWith('--') && eq > 0 ? a.slice(0, eq) : a;
    const value = (): string => {
      const v = eq > 0 && a.startsWith('--') ? a.slice(eq + 1) : argv[++i];
      if (v === undefined) throw new UsageError(`${flag} needs a value\n${USAGE}`);
      return v;
    };
    if (flag === '--release') {
      const r = releaseByName(value());
      if (typeof r === 'string') throw new UsageError(`--release: ${r}`);
      o.release = r.name;
    } else if (flag === '--version') o.version = value();
    else if (flag === '--cache') o.cacheDir = value();
    else if (a === '--verify') o.verify = true;
    else if (a === '--json') o.json = true;
    else if (a === '--help' || a === '-h') {
      process.stdout.write(USAGE + '\n');
      process.exit(0);
    } else throw new UsageError(`unknown argument '${a}'\n${USAGE}`);
  }
  return o;
}

async function main(): Promise<void> {
  const t0 = performance.now();
  const opts = parseArgs(process.argv.slice(2));
  const k = await downloadKernel({ ...opts, log: (s) => process.stderr.write(`fetch-kernel: ${s}\n`) });
  const secs = ((performance.now() - t0) / 1000).toFixed(2);
  if (opts.json) {
    process.stdout.write(JSON.stringify({ ...k, seconds: Number(secs) }, null, 2) + '\n');
    return;
  }
  const m = k.manifest;
  process.stdout.write(
    `${k.fetched ? 'fetched' : 'cached'} Linux ${k.release} ${k.version} (${m.packages.unsigned.name} ${m.packages.unsigned.version}) in ${secs} s\n` +
      (k.fallback ? `  note: ${k.fallback}\n` : '') +
      `  vmlinux     ${k.vmlinux} (${m.vmlinux.size} bytes, sha256 ${m.vmlinux.sha256})\n` +
      `  System.map  ${k.systemMap} (${m.systemMap.size} bytes, sha256 ${m.systemMap.sha256})\n`,
  );
}

main().catch((e: unknown) => {
  process.stderr.write(`fetch-kernel: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(e instanceof UsageError || (e instanceof Error && e.name === 'LoadError') ? 2 : 1);
});
