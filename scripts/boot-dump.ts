// npm run boot-dump [-- --release 6.1|6.12] [--version ABI] [--cpu qemu64 --cpu max ...] [--force] [--json]
// Boots the release's Debian kernel (fetching it first if needed) in QEMU on each CPU
// model and caches what the booted kernel holds in .text and boot_cpu_data
// (.cache/boot-dump/<kernel>/<cpu>-<qemu hash>/; see kernel-model/image/boot-dump.ts).
// `npm run cpu-profile -- --kernel DIR --dump DIR` turns a dump's feature words into the
// committed profile the offline boot patch's --cpu reads (fixtures/cpu-features/).

import { downloadKernel } from '../kernel-model/image/download';
import { KERNEL_RELEASES, releaseByName, type ReleaseName } from '../kernel-model/image/releases';
import { loadVmlinux } from '../kernel-model/image/vmlinux';
import { bootDump, bootDumpKernel, type BootDump } from '../kernel-model/image/boot-dump';
import { STANDARD_CPUS } from '../kernel-model/image/cpu-features';

const USAGE = `usage: boot-dump [--release ${Object.keys(KERNEL_RELEASES).join('|')}] [--version <ABI>] [--cpu <QEMU model>]... [--cache <dir>] [--force] [--json]`;

class UsageError extends Error {}

interface Args {
  release: ReleaseName;
  version?: string;
  cpus: string[];
  cacheDir?: string;
  force: boolean;
  json: boolean;
}

function parseArgs(argv: string[]): Args {
  const o: Args = { release: '6.1', cpus: [], force: false, json: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = (): string => {
      const v = argv[++i];
      if (v === undefined) throw new UsageError(`${a} needs a value\n${USAGE}`);
      return v;
    };
    if (a === '--release') {
      const r = releaseByName(value());
      if (typeof r === 'string') throw new UsageError(`--release: ${r}`);
      o.release = r.name;
    } else if (a === '--version') o.version = value();
    else if (a === '--cpu') o.cpus.push(value());
    else if (a === '--cache') o.cacheDir = value();
    else if (a === '--force') o.force = true;
    else if (a === '--json') o.json = true;
    else if (a === '--help' || a === '-h') {
      process.stdout.write(USAGE + '\n');
      process.exit(0);
    } else throw new UsageError(`unknown argument '${a}'\n${USAGE}`);
  }
  if (!o.cpus.length) o.cpus = [...STANDARD_CPUS];
  return o;
}

async function main(): Promise<void> {
  const a = parseArgs(process.argv.slice(2));
  const log = (s: string): boolean => process.stderr.write(`boot-dump: ${s}\n`);
  const k = await downloadKernel({ release: a.release, version: a.version, log });
  const vm = loadVmlinux(k.vmlinux, { systemMap: k.systemMap });
  const dumps: BootDump[] = [];
  for (const cpu of a.cpus) {
    dumps.push(await bootDump(bootDumpKernel(k, vm), { cpu, cacheDir: a.cacheDir, force: a.force, log }));
  }
  vm.close();
  if (a.json) {
    process.stdout.write(JSON.stringify(dumps, null, 2) + '\n');
    return;
  }
  for (const d of dumps) {
    const m = d.meta;
    process.stdout.write(
      `${d.booted ? 'booted' : 'cached'} ${m.kernel.version} -cpu ${m.cpu}: boot ${m.seconds.boot} s (guest ${m.guestSeconds} s), dump ${m.seconds.dump} s, .text ${m.text.size} bytes\n  ${d.dir}\n`,
    );
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`boot-dump: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(e instanceof UsageError || (e instanceof Error && e.name === 'LoadError') ? 2 : 1);
});
