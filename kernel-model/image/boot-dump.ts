// Ground truth from the kernel itself: boots a Debian bzImage in QEMU (TCG, no root
// device, `nokaslr`), lets it run its own boot-time patching and panic at the root
// mount, then reads `.text` and `boot_cpu_data` back out of guest memory through QMP
// `pmemsave`. The dump is cached in .cache/boot-dump/<kernel>/<cpu>-<qemu hash>/ so a
// second call returns at once; the key carries QEMU's version because another QEMU may
// model the CPU differently. Nothing here knows how the kernel patches itself: the
// comparison with textpoke's offline patch is linux/verify-boot.ts.
//
// Why these switches: `-smp 2` keeps the kernel from switching its lock prefixes to
// the uniprocessor form (alternatives_smp_switch, only when one CPU is present);
// `panic=-1` reboots at the panic and `-action reboot=shutdown,shutdown=pause` turns
// that reboot into a stopped machine whose memory QMP can still read.

import { spawn, spawnSync, type ChildProcess } from 'child_process';
import { createHash } from 'crypto';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { LoadError } from './elf';
import { repoRoot, type KernelFiles } from './download';
import type { Vmlinux } from './vmlinux';
import { QmpClient } from './qmp';

export const BOOT_DUMP_FORMAT = 'textpoke-boot-dump/1';
export const QEMU_BINARY = 'qemu-system-x86_64';
/** The command line: no root= (the boot stops at the mount panic), fixed addresses, console on the serial port. */
export const BOOT_CMDLINE = 'console=ttyS0 nokaslr panic=-1';
/** Bytes read at boot_cpu_data: more than struct cpuinfo_x86 in 6.1 and 6.12, so any layout fits. */
const CPU_DATA_BYTES = 1024;

export interface BootDumpMeta {
  format: typeof BOOT_DUMP_FORMAT;
  kernel: { version: string; vmlinuxSha256: string; banner: string };
  cpu: string;
  smp: number;
  qemu: { version: string; hash: string };
  cmdline: string;
  /** `.text` as the booted kernel holds it: [address, address + size). */
  text: { file: string; address: string; physical: string; size: number };
  bootCpuData: { file: string; address: string; physical: string; size: number };
  /** The panic line the boot ended with. */
  panic: string;
  /** Wall-clock seconds on the host: QEMU start to stopped machine, and the memory reads. */
  seconds: { boot: number; dump: number };
  /** The kernel's own timestamp of its last console line (guest seconds). */
  guestSeconds: number;
  created: string;
}

export interface BootDump {
  dir: string;
  meta: BootDumpMeta;
  /** True when this call booted QEMU; false when the cache held the dump. */
  booted: boolean;
}

export interface BootDumpKernel {
  /** Kernel ABI name, the cache's first key. */
  version: string;
  vmlinuz: string;
  vmlinux: Vmlinux;
  vmlinuxSha256: string;
}

/** What bootDump needs of a downloaded kernel (download.ts keeps the bzImage beside the vmlinux). */
export function bootDumpKernel(k: KernelFiles, vm: Vmlinux): BootDumpKernel {
  return { version: k.version, vmlinuz: path.join(k.dir, k.manifest.vmlinuz.file), vmlinux: vm, vmlinuxSha256: k.manifest.vmlinux.sha256 };
}

export interface BootDumpOptions {
  /** QEMU's -cpu model name: qemu64, max, Skylake-Client, ... */
  cpu: string;
  /** Cache root; default <repo>/.cache/boot-dump. */
  cacheDir?: string;
  /** Boot again even when the cache holds a dump. */
  force?: boolean;
  /** Give up when the kernel has not stopped by then (default 300 s: TCG on a loaded machine). */
  timeoutMs?: number;
  log?: (line: string) => void;
}

export function defaultBootDumpDir(): string {
  return path.join(repoRoot(), '.cache', 'boot-dump');
}

/** QEMU's version line and a short hash of it (the cache key), or a LoadError when QEMU is missing. */
export function qemuVersion(): { version: string; hash: string } {
  const r = spawnSync(QEMU_BINARY, ['--version'], { encoding: 'utf8' });
  if (r.error || r.status !== 0) {
    throw new LoadError(`${QEMU_BINARY} not found: a boot dump needs QEMU (Debian package qemu-system-x86)`);
  }
  const version = r.stdout.split('\n')[0].trim();
  return { version, hash: createHash('sha256').update(version).digest('hex').slice(0, 12) };
}

/** A file name for a CPU model: QEMU's names are letters, digits, '-', '_', '.', ',' and '='. */
function cpuKey(cpu: string): string {
  if (!/^[A-Za-z0-9][A-Za-z0-9_.,=+-]*$/.test(cpu)) throw new LoadError(`--cpu '${cpu}': not a QEMU CPU model name`);
  return cpu.replace(/[,=+]/g, '_');
}

export function bootDumpDir(kernelVersion: string, cpu: string, qemuHash: string, cacheDir = defaultBootDumpDir()): string {
  return path.join(cacheDir, kernelVersion, `${cpuKey(cpu)}-${qemuHash}`);
}

const hex = (n: bigint): string => '0x' + n.toString(16);

/** The physical address the kernel is loaded at for a virtual one: its ELF segment's p_paddr (nokaslr). */
export function physicalAddress(vm: Vmlinux, addr: bigint): bigint {
  for (const s of vm.elf.segments) {
    if (s.type !== 1 /* PT_LOAD */) continue;
    if (addr >= s.vaddr && addr < s.vaddr + BigInt(s.memsz)) return s.paddr + (addr - s.vaddr);
  }
  throw new LoadError(`${vm.label}: address ${hex(addr)} is in no loadable segment`);
}

/** Reads a dump's metadata, checking its format; a LoadError names the file and field otherwise. */
export function readBootDumpMeta(file: string): BootDumpMeta {
  let m: BootDumpMeta;
  try {
    m = JSON.parse(fs.readFileSync(file, 'utf8')) as BootDumpMeta;
  } catch (e) {
    throw new LoadError(`${file}: not a boot dump (${(e as Error).message})`);
  }
  if (m?.format !== BOOT_DUMP_FORMAT) throw new LoadError(`${file}: field 'format': expected '${BOOT_DUMP_FORMAT}'`);
  for (const k of ['text', 'bootCpuData'] as const) {
    const f = m[k];
    if (!f || typeof f.file !== 'string' || typeof f.address !== 'string' || !Number.isInteger(f.size)) {
      throw new LoadError(`${file}: field '${k}': expected {file, address, size}`);
    }
    const p = path.join(path.dirname(file), f.file);
    if (!fs.existsSync(p) || fs.statSync(p).size !== f.size) throw new LoadError(`${file}: field '${k}': ${f.file} is missing or not ${f.size} bytes`);
  }
  return m;
}

/** A dump given as its directory or its dump.json. */
export function openBootDump(where: string): BootDump {
  const file = fs.existsSync(where) && fs.statSync(where).isDirectory() ? path.join(where, 'dump.json') : where;
  if (!fs.existsSync(file)) throw new LoadError(`${where}: no boot dump there (expected a directory holding dump.json, or the dump.json)`);
  return { dir: path.dirname(file), meta: readBootDumpMeta(file), booted: false };
}

export function readDumpText(d: BootDump): { address: bigint; bytes: Buffer } {
  return { address: BigInt(d.meta.text.address), bytes: fs.readFileSync(path.join(d.dir, d.meta.text.file)) };
}

export function readDumpCpuData(d: BootDump): { address: bigint; bytes: Buffer } {
  return { address: BigInt(d.meta.bootCpuData.address), bytes: fs.readFileSync(path.join(d.dir, d.meta.bootCpuData.file)) };
}

/** Makes sure a dump of `kernel` booted on `opts.cpu` is in the cache, booting QEMU when it is not. */
export async function bootDump(kernel: BootDumpKernel, opts: BootDumpOptions): Promise<BootDump> {
  const q = qemuVersion();
  const dir = bootDumpDir(kernel.version, opts.cpu, q.hash, opts.cacheDir);
  if (!opts.force && fs.existsSync(path.join(dir, 'dump.json'))) {
    const d = openBootDump(dir);
    if (d.meta.kernel.vmlinuxSha256 === kernel.vmlinuxSha256) return d;
  }
  fs.mkdirSync(path.dirname(dir), { recursive: true });
  const tmp = fs.mkdtempSync(path.join(path.dirname(dir), '.boot-'));
  try {
    const meta = await bootAndDump(kernel, opts, q, tmp);
    fs.writeFileSync(path.join(tmp, 'dump.json'), JSON.stringify(meta, null, 2) + '\n');
    fs.rmSync(dir, { recursive: true, force: true });
    try {
      fs.renameSync(tmp, dir);
    } catch (e) {
      // A parallel test worker booted the same kernel and got there first: take its dump.
      if (!fs.existsSync(path.join(dir, 'dump.json'))) throw e;
      return { ...openBootDump(dir), booted: true };
    }
    return { dir, meta, booted: true };
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

function lastLines(file: string, n: number): string {
  if (!fs.existsSync(file)) return '(no console output)';
  return fs.readFileSync(file, 'latin1').split('\n').filter((l) => l.trim()).slice(-n).join(' | ');
}

async function bootAndDump(kernel: BootDumpKernel, opts: BootDumpOptions, q: { version: string; hash: string }, out: string): Promise<BootDumpMeta> {
  const log = opts.log ?? ((): void => {});
  const vm = kernel.vmlinux;
  const textStart = vm.symbol('_text');
  const textEnd = vm.symbol('_etext');
  const cpuData = vm.symbol('boot_cpu_data');
  const textPhys = physicalAddress(vm, textStart);
  const cpuDataPhys = physicalAddress(vm, cpuData);
  const textSize = Number(textEnd - textStart);

  // QMP's socket path must fit sun_path (108 bytes): a short private directory.
  const sockDir = fs.mkdtempSync(path.join(os.tmpdir(), 'tp-qmp-'));
  const sock = path.join(sockDir, 'qmp');
  const serial = path.join(out, 'serial.log');
  const smp = 2;
  const args = [
    '-machine', 'q35', '-accel', 'tcg', '-cpu', opts.cpu, '-smp', String(smp), '-m', '512M',
    '-nodefaults', '-no-user-config', '-display', 'none',
    '-serial', `file:${serial}`,
    '-qmp', `unix:${sock},server=on,wait=off`,
    '-action', 'reboot=shutdown,shutdown=pause',
    '-kernel', kernel.vmlinuz, '-append', BOOT_CMDLINE,
  ];
  log(`booting ${kernel.version} on -cpu ${opts.cpu} (${q.version})`);
  const t0 = performance.now();
  let stderr = '';
  let exited: number | null | undefined;
  const qemu: ChildProcess = spawn(QEMU_BINARY, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  qemu.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const exitedP = new Promise<void>((resolve) => qemu.on('close', (code) => {
    exited = code;
    resolve();
  }));
  qemu.on('error', () => undefined);
  const qemuFailed = (): LoadError =>
    new LoadError(`${QEMU_BINARY} -cpu ${opts.cpu} exited (status ${exited}): ${stderr.split('\n').find((l) => l.trim())?.trim() ?? 'no message'}`);
  let qmp: QmpClient | null = null;
  try {
    qmp = await QmpClient.connect(sock, 20000, () => exited === undefined).catch((e: Error) => {
      throw exited !== undefined ? qemuFailed() : new LoadError(e.message);
    });
    const timeoutMs = opts.timeoutMs ?? 300000;
    let timer: NodeJS.Timeout | undefined;
    const stopped = await Promise.race([
      qmp.waitEvent('SHUTDOWN').then(() => 'stopped' as const),
      exitedP.then(() => 'exited' as const),
      new Promise<'timeout'>((r) => (timer = setTimeout(() => r('timeout'), timeoutMs))),
    ]);
    clearTimeout(timer);
    if (stopped === 'exited') throw qemuFailed();
    if (stopped === 'timeout') throw new LoadError(`${kernel.version} on -cpu ${opts.cpu}: no reboot after the root-mount panic within ${timeoutMs / 1000} s; console: ${lastLines(serial, 3)}`);
    const bootSecs = (performance.now() - t0) / 1000;
    const t1 = performance.now();
    const textFile = path.join(out, 'text.bin');
    const cpuFile = path.join(out, 'boot_cpu_data.bin');
    await qmp.execute('pmemsave', { val: Number(textPhys), size: textSize, filename: textFile });
    await qmp.execute('pmemsave', { val: Number(cpuDataPhys), size: CPU_DATA_BYTES, filename: cpuFile });
    const dumpSecs = (performance.now() - t1) / 1000;
    await qmp.execute('quit').catch(() => undefined);

    const console = fs.existsSync(serial) ? fs.readFileSync(serial, 'latin1') : '';
    const panic = /Kernel panic - not syncing: (.*)/.exec(console);
    if (!panic) throw new LoadError(`${kernel.version} on -cpu ${opts.cpu}: the machine stopped without a kernel panic; console: ${lastLines(serial, 3)}`);
    if (!/Kernel Offset: disabled/.test(console)) throw new LoadError(`${kernel.version} on -cpu ${opts.cpu}: the kernel did not report 'Kernel Offset: disabled' (nokaslr ignored?); the dump's addresses would be wrong`);
    const banner = /Linux version (\S+)/.exec(console)?.[1] ?? '';
    if (banner !== kernel.version) throw new LoadError(`${kernel.vmlinuz}: booted kernel says version '${banner}', expected '${kernel.version}'`);
    checkDumpIsText(vm, fs.readFileSync(textFile), textStart, textPhys);
    const stamps = [...console.matchAll(/^\[\s*(\d+\.\d+)\]/gm)];
    log(`stopped after ${bootSecs.toFixed(2)} s (guest ${stamps.at(-1)?.[1] ?? '?'} s), dumped ${textSize} bytes of .text in ${dumpSecs.toFixed(2)} s`);
    return {
      format: BOOT_DUMP_FORMAT,
      kernel: { version: kernel.version, vmlinuxSha256: kernel.vmlinuxSha256, banner: /Linux version .*/.exec(console)?.[0].trim() ?? '' },
      cpu: opts.cpu,
      smp,
      qemu: q,
      cmdline: BOOT_CMDLINE,
      text: { file: 'text.bin', address: hex(textStart), physical: hex(textPhys), size: textSize },
      bootCpuData: { file: 'boot_cpu_data.bin', address: hex(cpuData), physical: hex(cpuDataPhys), size: CPU_DATA_BYTES },
      panic: panic[1].trim(),
      seconds: { boot: round2(bootSecs), dump: round2(dumpSecs) },
      guestSeconds: Number(stamps.at(-1)?.[1] ?? 0),
      created: new Date().toISOString(),
    };
  } finally {
    qmp?.close();
    if (exited === undefined) {
      qemu.kill('SIGKILL');
      await exitedP;
    }
    fs.rmSync(sockDir, { recursive: true, force: true });
  }
}

function round2(x: number): number {
  return Math.round(x * 100) / 100;
}

/**
 * Most of `.text` is never patched, so a dump read from the right place agrees with
 * the file on nearly every byte; a dump from the wrong physical address (KASLR on, a
 * different load address) agrees on almost none.
 */
function checkDumpIsText(vm: Vmlinux, dump: Buffer, textStart: bigint, textPhys: bigint): void {
  const file = vm.readAt(textStart, dump.length);
  let same = 0;
  for (let i = 0; i < dump.length; i++) if (dump[i] === file[i]) same++;
  if (same < dump.length * 0.9) {
    throw new LoadError(`boot dump at physical ${hex(textPhys)}: only ${same} of ${dump.length} bytes agree with ${vm.label}'s .text: the kernel is not loaded there`);
  }
}
