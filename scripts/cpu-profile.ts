// npm run cpu-profile -- --kernel <dir with vmlinux, System.map, manifest.json> --dump <boot dump dir> [--out FILE]
// Writes a CPU profile (kernel-model/image/cpu-profile.ts) from a QEMU boot dump of
// that kernel: boot_cpu_data.x86_capability (its offset from the kernel's BTF), the
// QEMU model from the dump's metadata, and x86_return_thunk as apply_returns() used
// it (the target of the patched return sites outside static-call trampolines).

import * as fs from 'fs';
import * as path from 'path';
import { loadVmlinux } from '../kernel-model/image/vmlinux';
import { CPU_PROFILE_FORMAT, cpuProfileDir, type CpuProfileFile } from '../kernel-model/image/cpu-profile';
import { STATIC_CALL_TRAMP_UD } from '../kernel-model/image/linux-6.12';

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1] : undefined;
}

function main(): void {
  const kdir = arg('--kernel');
  const ddir = arg('--dump');
  if (!kdir || !ddir) throw new Error('usage: cpu-profile --kernel <kernel cache dir> --dump <boot dump dir> [--out FILE]');
  const meta = JSON.parse(fs.readFileSync(path.join(ddir, 'dump.json'), 'utf8')) as {
    cpu: string; qemu: { version: string }; smp: number; kernel: { version: string }; text: { file: string; address: string };
    bootCpuData: { file: string };
  };
  const vm = loadVmlinux(path.join(kdir, 'vmlinux'), { systemMap: path.join(kdir, 'System.map') });
  const banner = /Linux version (\d+)\.(\d+)/.exec(vm.readAt(vm.symbol('linux_banner'), 64).toString('latin1'));
  const release = banner ? `${banner[1]}.${banner[2]}` : '?';
  const cap = vm.btf().field('cpuinfo_x86', 'x86_capability');
  const nwords = vm.layouts().capabilityWords;
  const cpuData = fs.readFileSync(path.join(ddir, meta.bootCpuData.file));
  const words: number[] = [];
  for (let i = 0; i < nwords; i++) words.push(cpuData.readUInt32LE(cap.offset + 4 * i));
  const names = vm.capFlagNames();
  const set: string[] = [];
  for (let b = 0; b < nwords * 32; b++) if ((words[b >> 5] >>> (b & 31)) & 1) set.push(names[b] ?? `${b >> 5}*32+${b & 31}`);

  const text = fs.readFileSync(path.join(ddir, meta.text.file));
  const base = BigInt(meta.text.address);
  const rs = vm.elf.requireSection('.return_sites');
  const tbl = vm.elf.readSection(rs);
  let returnThunk = '__x86_return_thunk';
  for (let o = 0; o < tbl.length; o += 4) {
    const a = rs.addr + BigInt(o) + BigInt(tbl.readInt32LE(o));
    const at = Number(a - base);
    if (at < 0 || at + 8 > text.length || text[at] !== 0xe9) continue;
    if (text.subarray(at + 5, at + 8).equals(Buffer.from(STATIC_CALL_TRAMP_UD))) continue;
    const t = a + 5n + BigInt(text.readInt32LE(at + 1));
    const hit = vm.symbols.lookup(t);
    if (hit && hit.offset === 0n) {
      returnThunk = hit.name;
      break;
    }
  }
  const out: CpuProfileFile = {
    format: CPU_PROFILE_FORMAT, release, kernel: meta.kernel.version, cpu: meta.cpu,
    source: `boot_cpu_data.x86_capability after a QEMU boot (${meta.qemu.version}, TCG, -smp ${meta.smp}, stopped at the root-mount panic)`,
    words: words.map((w) => '0x' + w.toString(16)), returnThunk, names: set,
  };
  const file = arg('--out') ?? path.join(cpuProfileDir(), `${release}-${meta.cpu}.json`);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file + '.tmp', JSON.stringify(out, null, 2) + '\n');
  fs.renameSync(file + '.tmp', file);
  process.stdout.write(`${file}: ${meta.cpu} on ${meta.kernel.version}: ${set.length} bits, x86_return_thunk ${returnThunk}\n`);
}

main();
