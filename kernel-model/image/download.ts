// Downloads a Debian 6.1 cloud kernel into .cache/kernel/<version>/: vmlinux (the ELF
// decompressed from the bzImage's LZ4 payload), the real System.map (from the -dbg
// package, which is ~280 MB: streamed out, then the .deb is deleted) and a manifest.
// A second call finds the manifest and returns at once, so tests can call this from
// their setup on every run and a fresh CI machine downloads the kernel itself.

import { spawn, spawnSync } from 'child_process';
import { createHash } from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import { LoadError } from './elf';
import { decompressLz4Legacy, LZ4_LEGACY_MAGIC, type Lz4LegacyResult } from './lz4';

/** Kernel ABI names this loader targets: Debian 12's 6.1 cloud flavour. */
const ABI_RE = /^6\.1\.0-(\d+)-cloud-amd64$/;

export interface PackageInfo {
  name: string;
  version: string;
}

export interface FileInfo {
  file: string;
  size: number;
  sha256: string;
}

export interface KernelManifest {
  /** Kernel ABI name, e.g. "6.1.0-56-cloud-amd64". */
  version: string;
  packages: { unsigned: PackageInfo; dbg: PackageInfo };
  vmlinuz: FileInfo;
  vmlinux: FileInfo;
  systemMap: FileInfo;
  created: string;
}

export interface KernelFiles {
  version: string;
  dir: string;
  vmlinux: string;
  systemMap: string;
  manifest: KernelManifest;
  /** True when this call downloaded; false when the cache already held the kernel. */
  fetched: boolean;
}

export interface DownloadOptions {
  /** Kernel ABI name ("6.1.0-56-cloud-amd64") or just its number ("56"); default: env TEXTPOKE_KERNEL, else the newest apt offers. */
  version?: string;
  /** Cache root; default <repo>/.cache/kernel. */
  cacheDir?: string;
  /** With no version given, use the newest complete cached kernel without asking apt (tests: stable and offline). */
  preferCached?: boolean;
  /** Re-hash cached files against the manifest instead of only checking sizes. */
  verify?: boolean;
  /** Progress lines. */
  log?: (line: string) => void;
}

/** The repository root: the nearest directory above this file holding package.json. */
export function repoRoot(): string {
  let d = __dirname;
  for (;;) {
    if (fs.existsSync(path.join(d, 'package.json'))) return d;
    const up = path.dirname(d);
    if (up === d) return process.cwd();
    d = up;
  }
}

export function defaultCacheDir(): string {
  return path.join(repoRoot(), '.cache', 'kernel');
}

/** Accepts "56", "6.1.0-56" or "6.1.0-56-cloud-amd64"; returns the full ABI name. */
export function normalizeVersion(v: string): string {
  const s = v.trim();
  const full = /^\d+$/.test(s) ? `6.1.0-${s}-cloud-amd64` : /^6\.1\.0-\d+$/.test(s) ? `${s}-cloud-amd64` : s;
  if (!ABI_RE.test(full)) {
    throw new LoadError(`kernel version '${v}': expected 6.1.0-<N>-cloud-amd64 (or just N)`);
  }
  return full;
}

function abiNumber(v: string): number {
  const m = ABI_RE.exec(v);
  return m ? Number(m[1]) : -1;
}

function run(cmd: string, args: string[], opts: { cwd?: string } = {}): { stdout: string; stderr: string; status: number } {
  const r = spawnSync(cmd, args, { cwd: opts.cwd, encoding: 'utf8', maxBuffer: 64 << 20 });
  if (r.error) {
    const code = (r.error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') {
      throw new LoadError(`${cmd} not found: fetching a kernel needs Debian's apt and dpkg tools (or a filled cache)`);
    }
    throw new LoadError(`${cmd}: ${r.error.message}`);
  }
  return { stdout: r.stdout, stderr: r.stderr, status: r.status ?? 1 };
}

function firstError(stderr: string): string {
  const lines = stderr.split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('W:'));
  return lines.find((l) => l.startsWith('E:')) ?? lines[0] ?? 'failed';
}

/** Kernel ABI names for which apt offers both the -unsigned and the -dbg package, newest first. */
export function aptKernelVersions(): string[] {
  const r = run('apt-cache', ['search', '--names-only', '^linux-image-6\\.1\\.0-[0-9]+-cloud-amd64-(unsigned|dbg)$']);
  if (r.status !== 0) throw new LoadError(`apt-cache search failed: ${firstError(r.stderr)}`);
  const seen = new Map<string, Set<string>>();
  for (const line of r.stdout.split('\n')) {
    const m = /^linux-image-(6\.1\.0-\d+-cloud-amd64)-(unsigned|dbg)\s/.exec(line);
    if (!m) continue;
    const s = seen.get(m[1]) ?? new Set<string>();
    s.add(m[2]);
    seen.set(m[1], s);
  }
  return [...seen].filter(([, s]) => s.size === 2).map(([v]) => v).sort((a, b) => abiNumber(b) - abiNumber(a));
}

/** The candidate version apt would download for a package, or a LoadError. */
export function aptPackageVersion(pkg: string): string {
  const r = run('apt-cache', ['show', '--no-all-versions', pkg]);
  const m = /^Version:\s*(\S+)/m.exec(r.stdout);
  if (r.status !== 0 || !m) {
    throw new LoadError(`apt cannot find package ${pkg} (is deb.debian.org in the apt sources, and has apt-get update run?)`);
  }
  return m[1];
}

/** ABI names of complete kernels in the cache, newest first. */
export function cachedKernelVersions(cacheDir = defaultCacheDir()): string[] {
  if (!fs.existsSync(cacheDir)) return [];
  return fs
    .readdirSync(cacheDir)
    .filter((v) => ABI_RE.test(v) && fs.existsSync(path.join(cacheDir, v, 'manifest.json')))
    .sort((a, b) => abiNumber(b) - abiNumber(a));
}

function sha256File(file: string): string {
  const h = createHash('sha256');
  const fd = fs.openSync(file, 'r');
  try {
    const buf = Buffer.allocUnsafe(4 << 20);
    for (;;) {
      const n = fs.readSync(fd, buf, 0, buf.length, null);
      if (n === 0) break;
      h.update(buf.subarray(0, n));
    }
  } finally {
    fs.closeSync(fd);
  }
  return h.digest('hex');
}

function fileInfo(dir: string, name: string): FileInfo {
  const p = path.join(dir, name);
  return { file: name, size: fs.statSync(p).size, sha256: sha256File(p) };
}

/** Reads a cached kernel's manifest and checks its files (sizes; hashes when `verify`). Null if absent or stale. */
export function checkCachedKernel(dir: string, verify = false): KernelManifest | null {
  const mf = path.join(dir, 'manifest.json');
  if (!fs.existsSync(mf)) return null;
  let m: KernelManifest;
  try {
    m = JSON.parse(fs.readFileSync(mf, 'utf8')) as KernelManifest;
  } catch {
    return null;
  }
  for (const f of [m.vmlinux, m.systemMap, m.vmlinuz]) {
    if (!f || typeof f.file !== 'string') return null;
    const p = path.join(dir, f.file);
    if (!fs.existsSync(p) || fs.statSync(p).size !== f.size) return null;
    if (verify && sha256File(p) !== f.sha256) return null;
  }
  return m;
}

/**
 * Takes an exclusive lock on `lockFile` (parallel test workers may all call fetch),
 * waiting for a live holder and breaking a dead one's lock.
 */
async function withLock<T>(lockFile: string, log: (s: string) => void, fn: () => Promise<T>): Promise<T> {
  let told = false;
  for (;;) {
    try {
      fs.writeFileSync(lockFile, String(process.pid), { flag: 'wx' });
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      const pid = Number(fs.readFileSync(lockFile, 'utf8'));
      let alive = false;
      try {
        process.kill(pid, 0);
        alive = pid > 0 && pid !== process.pid;
      } catch {
        alive = false;
      }
      if (!alive) {
        fs.rmSync(lockFile, { force: true });
        continue;
      }
      if (!told) log(`waiting for process ${pid}, which is fetching the same kernel`);
      told = true;
      await new Promise((r) => setTimeout(r, 500));
    }
  }
  try {
    return await fn();
  } finally {
    fs.rmSync(lockFile, { force: true });
  }
}

/** `apt-get download pkg=version` into `dir`; returns the .deb's path. */
function aptDownload(pkg: string, version: string, dir: string): string {
  const r = run('apt-get', ['download', '-q', `${pkg}=${version}`], { cwd: dir });
  if (r.status !== 0) throw new LoadError(`apt-get download ${pkg}=${version} failed: ${firstError(r.stderr)}`);
  const deb = fs.readdirSync(dir).find((f) => f.startsWith(`${pkg}_`) && f.endsWith('.deb'));
  if (!deb) throw new LoadError(`apt-get download ${pkg}=${version} left no .deb in ${dir}`);
  return path.join(dir, deb);
}

/**
 * Streams one member (a tar wildcard pattern) out of a .deb's data archive into
 * `outFile` without unpacking anything else; tar stops at the first match, which
 * also stops the decompression of the rest of the package.
 */
function extractMember(deb: string, pattern: string, outFile: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const out = fs.openSync(outFile, 'w');
    // dpkg-deb runs its decompressor as a child: its own process group lets us stop both.
    const dpkg = spawn('dpkg-deb', ['--fsys-tarfile', deb], { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    const tar = spawn('tar', ['-x', '-O', '--wildcards', '--occurrence=1', '-f', '-', pattern], {
      stdio: [dpkg.stdout, out, 'pipe'],
    });
    // Drop our copy of the pipe's read end, so the writers see a broken pipe once tar quits.
    dpkg.stdout.destroy();
    let tarErr = '';
    let dpkgErr = '';
    dpkg.stderr.on('data', (d: Buffer) => (dpkgErr += d.toString()));
    tar.stderr!.on('data', (d: Buffer) => (tarErr += d.toString()));
    dpkg.on('error', (e) => reject(new LoadError(`dpkg-deb: ${e.message}`)));
    tar.on('error', (e) => reject(new LoadError(`tar: ${e.message}`)));
    let dpkgDone: number | null | undefined;
    dpkg.on('close', (code) => (dpkgDone = code));
    tar.on('close', (code) => {
      fs.closeSync(out);
      // tar quits after the first match; dpkg-deb then dies of a broken pipe, which is expected.
      if (dpkgDone === undefined && dpkg.pid !== undefined) {
        try {
          process.kill(-dpkg.pid, 'SIGTERM');
        } catch {
          // Already gone.
        }
      }
      const size = fs.statSync(outFile).size;
      if (code === 0 && size > 0) resolve();
      else {
        const why = (tarErr || dpkgErr).split('\n').find((l) => l.trim()) ?? `exit status ${code}`;
        reject(new LoadError(`${path.basename(deb)}: cannot extract ${pattern}: ${why.trim()}`));
      }
    });
  });
}

/** The payload of a bzImage: [offset, offset+length) from its boot-protocol header. */
export function bzImagePayload(img: Buffer, label = 'vmlinuz'): { offset: number; length: number } {
  const fail = (at: number, what: string): never => {
    throw new LoadError(`${label}: byte 0x${at.toString(16)}: ${what}`);
  };
  if (img.length < 0x250) fail(0, `too short for a bzImage (size 0x${img.length.toString(16)})`);
  if (img.toString('latin1', 0x202, 0x206) !== 'HdrS') fail(0x202, 'no "HdrS" boot-protocol signature: not a bzImage');
  const proto = img.readUInt16LE(0x206);
  if (proto < 0x208) fail(0x206, `boot protocol 0x${proto.toString(16)} is older than 2.08 (no payload fields)`);
  const setupSects = img[0x1f1] || 4; // 0 means 4, by the boot protocol
  const pm = (setupSects + 1) * 512;
  const off = pm + img.readUInt32LE(0x248);
  const len = img.readUInt32LE(0x24c);
  if (off + len > img.length) fail(0x248, `payload [0x${off.toString(16)}, 0x${(off + len).toString(16)}) runs past end of file (size 0x${img.length.toString(16)})`);
  return { offset: off, length: len };
}

const PAYLOAD_MAGICS: [string, string][] = [
  ['1f8b', 'gzip'], ['425a68', 'bzip2'], ['fd377a585a00', 'xz'], ['5d0000', 'lzma'], ['894c5a4f', 'lzo'], ['28b52ffd', 'zstd'],
];

/** Decompresses a bzImage's LZ4 payload into `outFile` (written block by block). */
export function decompressBzImage(vmlinuz: string, outFile: string): { size: number } {
  const img = fs.readFileSync(vmlinuz);
  const label = path.basename(vmlinuz);
  const { offset, length } = bzImagePayload(img, label);
  const payload = img.subarray(offset, offset + length);
  if (payload.length < 4 || payload.readUInt32LE(0) !== LZ4_LEGACY_MAGIC) {
    const head = payload.subarray(0, 6).toString('hex');
    const kind = PAYLOAD_MAGICS.find(([m]) => head.startsWith(m));
    throw new LoadError(`${label}: byte 0x${offset.toString(16)}: payload is ${kind ? kind[1] : `'${head}'`}, expected LZ4 legacy (02 21 4c 18)`);
  }
  const fd = fs.openSync(outFile, 'w');
  let r: Lz4LegacyResult;
  try {
    r = decompressLz4Legacy(payload, (c) => fs.writeSync(fd, c), { file: label, base: offset });
  } finally {
    fs.closeSync(fd);
  }
  if (r.trailer !== null && r.trailer !== r.size) {
    throw new LoadError(`${label}: byte 0x${(offset + r.consumed).toString(16)}: payload says it expands to 0x${r.trailer.toString(16)} bytes, got 0x${r.size.toString(16)}`);
  }
  return { size: r.size };
}

/** Picks the kernel version to use (see DownloadOptions.version). */
export function pickVersion(opts: DownloadOptions, cacheDir: string): string {
  const want = opts.version ?? process.env.TEXTPOKE_KERNEL;
  if (want) return normalizeVersion(want);
  if (opts.preferCached) {
    const cached = cachedKernelVersions(cacheDir);
    if (cached.length) return cached[0];
  }
  let avail: string[];
  try {
    avail = aptKernelVersions();
  } catch (e) {
    // No apt here: fall back to whatever the cache holds.
    const cached = cachedKernelVersions(cacheDir);
    if (cached.length) return cached[0];
    throw e;
  }
  if (!avail.length) {
    throw new LoadError('apt offers no linux-image-6.1.0-<N>-cloud-amd64 with both -unsigned and -dbg packages (is deb.debian.org/debian-security in the apt sources, and has apt-get update run?)');
  }
  return avail[0];
}

/** Makes sure the kernel is in the cache, downloading it if needed, and returns its files. */
export async function downloadKernel(opts: DownloadOptions = {}): Promise<KernelFiles> {
  const log = opts.log ?? ((): void => {});
  const cacheDir = opts.cacheDir ?? defaultCacheDir();
  fs.mkdirSync(cacheDir, { recursive: true });
  const version = pickVersion(opts, cacheDir);
  const dir = path.join(cacheDir, version);
  const files = (m: KernelManifest, fetched: boolean): KernelFiles => ({
    version, dir, vmlinux: path.join(dir, m.vmlinux.file), systemMap: path.join(dir, m.systemMap.file), manifest: m, fetched,
  });
  const cached = checkCachedKernel(dir, opts.verify);
  if (cached) return files(cached, false);

  return withLock(path.join(cacheDir, `${version}.lock`), log, async () => {
    // Another process may have finished while we waited for the lock.
    const again = checkCachedKernel(dir, opts.verify);
    if (again) return files(again, false);
    const m = await download(version, dir, log);
    return files(m, true);
  });
}

async function download(version: string, dir: string, log: (s: string) => void): Promise<KernelManifest> {
  const unsignedPkg = `linux-image-${version}-unsigned`;
  const dbgPkg = `linux-image-${version}-dbg`;
  const unsignedVer = aptPackageVersion(unsignedPkg);
  const dbgVer = aptPackageVersion(dbgPkg);
  fs.mkdirSync(dir, { recursive: true });
  fs.rmSync(path.join(dir, 'manifest.json'), { force: true });
  // Leftovers of an interrupted download (we hold the lock, so nobody is using them).
  for (const f of fs.readdirSync(dir)) if (f.startsWith('.download-')) fs.rmSync(path.join(dir, f), { recursive: true, force: true });
  const tmp = fs.mkdtempSync(path.join(dir, '.download-'));
  try {
    log(`downloading ${unsignedPkg} ${unsignedVer}`);
    const udeb = aptDownload(unsignedPkg, unsignedVer, tmp);
    const vmlinuz = path.join(dir, 'vmlinuz');
    await extractMember(udeb, `*boot/vmlinuz-${version}`, vmlinuz);
    fs.rmSync(udeb);

    log('decompressing vmlinuz (LZ4) to vmlinux');
    const vmlinuxTmp = path.join(tmp, 'vmlinux');
    decompressBzImage(vmlinuz, vmlinuxTmp);
    const head = Buffer.alloc(4);
    const fd = fs.openSync(vmlinuxTmp, 'r');
    fs.readSync(fd, head, 0, 4, 0);
    fs.closeSync(fd);
    if (head.toString('hex') !== '7f454c46') throw new LoadError(`vmlinuz: decompressed payload is not an ELF file (starts ${head.toString('hex')})`);
    fs.renameSync(vmlinuxTmp, path.join(dir, 'vmlinux'));

    log(`downloading ${dbgPkg} ${dbgVer} (large; only System.map is kept)`);
    const ddeb = aptDownload(dbgPkg, dbgVer, tmp);
    const mapTmp = path.join(tmp, 'System.map');
    try {
      await extractMember(ddeb, `*/System.map-${version}`, mapTmp);
    } finally {
      fs.rmSync(ddeb, { force: true });
    }
    const firstLine = fs.readFileSync(mapTmp, 'latin1').slice(0, 200).split('\n')[0];
    if (!/^[0-9a-f]{16} \S /.test(firstLine)) throw new LoadError(`${dbgPkg}: System.map does not look like a symbol map (first line '${firstLine}')`);
    fs.renameSync(mapTmp, path.join(dir, 'System.map'));

    log('hashing');
    const m: KernelManifest = {
      version,
      packages: { unsigned: { name: unsignedPkg, version: unsignedVer }, dbg: { name: dbgPkg, version: dbgVer } },
      vmlinuz: fileInfo(dir, 'vmlinuz'),
      vmlinux: fileInfo(dir, 'vmlinux'),
      systemMap: fileInfo(dir, 'System.map'),
      created: new Date().toISOString(),
    };
    // Written last: its presence means the cache entry is complete.
    const mfTmp = path.join(tmp, 'manifest.json');
    fs.writeFileSync(mfTmp, JSON.stringify(m, null, 2) + '\n');
    fs.renameSync(mfTmp, path.join(dir, 'manifest.json'));
    return m;
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}
