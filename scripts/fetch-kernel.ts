// npm run fetch-kernel [-- --version 6.1.0-56-cloud-amd64] [--cached] [--verify] [--cache DIR] [--json]
// Downloads Debian's 6.1 cloud kernel into .cache/kernel/<version>/ (see kernel-model/image/download.ts).
// A second run only checks the cache and exits.

import { downloadKernel, type DownloadOptions } from '../kernel-model/image/download';

const USAGE = 'usage: fetch-kernel [--version <6.1.0-N-cloud-amd64 | N>] [--cached] [--verify] [--cache <dir>] [--json]';

function parseArgs(argv: string[]): DownloadOptions & { json: boolean } {
  const o: DownloadOptions & { json: boolean } = { json: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = (): string => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${a} needs a value\n${USAGE}`);
      return v;
    };
    if (a === '--version') o.version = value();
    else if (a.startsWith('--version=')) o.version = a.slice(10);
    else if (a === '--cache') o.cacheDir = value();
    else if (a === '--cached') o.preferCached = true;
    else if (a === '--verify') o.verify = true;
    else if (a === '--json') o.json = true;
    else if (a === '--help' || a === '-h') {
      process.stdout.write(USAGE + '\n');
      process.exit(0);
    } else throw new Error(`unknown argument '${a}'\n${USAGE}`);
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
    `${k.fetched ? 'fetched' : 'cached'} ${k.version} (${m.packages.unsigned.name} ${m.packages.unsigned.version}) in ${secs} s\n` +
      `  vmlinux     ${k.vmlinux} (${m.vmlinux.size} bytes, sha256 ${m.vmlinux.sha256})\n` +
      `  System.map  ${k.systemMap} (${m.systemMap.size} bytes, sha256 ${m.systemMap.sha256})\n`,
  );
}

main().catch((e: unknown) => {
  process.stderr.write(`fetch-kernel: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(e instanceof Error && e.name === 'LoadError' ? 2 : 1);
});
