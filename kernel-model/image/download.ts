// Downloads a Debian cloud kernel into .cache/kernel/<abi>/: vmlinux (the ELF
// decompressed from the bzImage's payload, LZ4 for 6.1, zstd for 6.12), the real
// System.map (from the -dbg package, ~300 MB: streamed out, then the .deb is deleted)
// and a manifest. A second call finds the manifest and returns at once, so tests can
// call this from their setup on every run and a fresh CI machine downloads the kernel.
//
// Each release is pinned to one named Debian ABI (releases.ts says which and why), so
// results do not change when Debian publishes a kernel; only when the pinned ABI is no
// longer offered does the download fall back to the newest, and it says so. Packages
// come through apt with a private source list and package lists per Debian suite under
// the cache directory (.cache/kernel/apt/<suite>/), so the host's own apt sources
// (bookworm on CI) do not decide which kernels exist.

import { spawn, spawnSync } from 'child_process';
import { createHash } from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import { LoadError } from './elf';
import { decompressBzImage } from './bzimage';
import { KERNEL_RELEASES, newestFirst, releaseOfAbi, type KernelRelease, type ReleaseName } from './releases';

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
  /** Kernel ABI name, e.g. "6.1.0-50-cloud-amd64". */
  version: string;
  /** The Linux release ("6.1", "6.12"); absent in manifests written before 6.12 support (then 6.1). */
  release?: ReleaseName;
  packages: { unsigned: PackageInfo; dbg: PackageInfo };
  vmlinuz: FileInfo;
  vmlinux: FileInfo;
  systemMap: FileInfo;
  created: string;
}

export interface KernelFiles {
  version: string;
  release: ReleaseName;
  dir: string;
  vmlinux: string;
  systemMap: string;
  manifest: KernelManifest;
  /** True when this call downloaded; false when the cache already held the kernel. */
  fetched: boolean;
  /** Set when the pinned ABI was not offered and another was taken instead: why. */
  fallback?: string;
}

export interface DownloadOptions {
  /** Linux release; default "6.1", or the release of `version` when that is given. */
  release?: ReleaseName;
  /**
   * Kernel ABI name ("6.1.0-50-cloud-amd64", "6.12.117+deb13-cloud-amd64") or a short
   * form ("50", "6.12.117+deb13"); default: env TEXTPOKE_KERNEL when it names an ABI of
   * the release, else the release's pinned ABI.
   */
  version?: string;
  /** Cache root; default <repo>/.cache/kernel. */
  cacheDir?: string;
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

/** Expands a short form and checks the ABI name belongs to the release; returns the full ABI name. */
export function normalizeVersion(v: string, release: KernelRelease = KERNEL_RELEASES['6.1']): string {
  const s = v.trim();
  const full = release.expand(s) ?? s;
  if (!release.abi.test(full)) {
    throw new LoadError(`kernel version '${v}': expected a Linux ${release.name} cloud ABI such as ${release.pinned}`);
  }
  return full;
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
  const lines = stderr.split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('W:') && !l.startsWith('N:'));
  return lines.find((l) => l.startsWith('E:')) ?? lines[0] ?? 'failed';
}

/** Debian's archive keys, which every Debian system (and so CI) has. */
const KEYRING = '/usr/share/keyrings/debian-archive-keyring.gpg';
/** Package lists older than this are refreshed before they are trusted to say an ABI is gone. */
const LISTS_MAX_AGE_MS = 24 * 3600 * 1000;

/**
 * A private apt configuration for one release's suites under the cache directory:
 * its own source list, package lists and archive cache, and no dpkg status (nothing is
 * installed with it). Returns the -o options that make apt-get and apt-cache use it.
 */
export function aptConfig(release: KernelRelease, cacheDir: string): string[] {
  const dir = path.join(cacheDir, 'apt', release.suite);
  const list = path.join(dir, 'sources.list');
  fs.mkdirSync(path.join(dir, 'lists', 'partial'), { recursive: true });
  fs.mkdirSync(path.join(dir, 'cache', 'archives', 'partial'), { recursive: true });
  const lines = release.suites.map((suite) => {
    const archive = suite.endsWith('-security') ? 'debian-security' : 'debian';
    return `deb [signed-by=${KEYRING}] http://deb.debian.org/${archive} ${suite} main`;
  });
  const text = lines.join('\n') + '\n';
  if (!fs.existsSync(list) || fs.readFileSync(list, 'utf8') !== text) fs.writeFileSync(list, text);
  return [
    '-o', `Dir::Etc::SourceList=${list}`, '-o', 'Dir::Etc::SourceParts=/nonexistent',
    '-o', `Dir::State::Lists=${path.join(dir, 'lists')}`, '-o', `Dir::Cache=${path.join(dir, 'cache')}`,
    '-o', 'Dir::State::status=/dev/null', '-o', 'APT::Architecture=amd64', '-o', 'Acquire::Languages=none',
    '-o', 'APT::Sandbox::User=root',
  ];
}

/** How old the release's package lists are (Infinity when there are none). */
function listsAge(release: KernelRelease, cacheDir: string): number {
  const dir = path.join(cacheDir, 'apt', release.suite, 'lists');
  if (!fs.existsSync(dir)) return Infinity;
  const lists = fs.readdirSync(dir).filter((f) => f.endsWith('_Packages'));
  if (lists.length === 0) return Infinity;
  return Date.now() - Math.min(...lists.map((f) => fs.statSync(path.join(dir, f)).mtimeMs));
}

/** apt-get update for the release's private configuration. */
export function aptUpdate(release: KernelRelease, cacheDir: string, log: (s: string) => void): void {
  log(`apt-get update (Debian ${release.suite}, lists in ${path.join(cacheDir, 'apt', release.suite)})`);
  const r = run('apt-get', [...aptConfig(release, cacheDir), '-q', 'update']);
  if (r.status !== 0 || /^(E|Err):/m.test(r.stdout + r.stderr)) {
    throw new LoadError(`apt-get update for Debian ${release.suite} failed: ${firstError(r.stderr || r.stdout)}`);
  }
}

/** Makes sure the release's package lists exist and are at most a day old. */
function freshLists(release: KernelRelease, cacheDir: string, log: (s: string) => void): void {
  if (listsAge(release, cacheDir) > LISTS_MAX_AGE_MS) aptUpdate(release, cacheDir, log);
}

/** Kernel ABI names of the release for which apt offers both the -unsigned and the -dbg package, newest first. */
export function aptKernelVersions(release: KernelRelease, cacheDir = defaultCacheDir()): string[] {
  const r = run('apt-cache', [...aptConfig(release, cacheDir), 'search', '--names-only', release.search]);
  if (r.status !== 0) throw new LoadError(`apt-cache search failed: ${firstError(r.stderr)}`);
  const seen = new Map<string, Set<string>>();
  for (const line of r.stdout.split('\n')) {
    const m = /^linux-image-(\S+)-(unsigned|dbg)\s/.exec(line);
    if (!m || !release.abi.test(m[1])) continue;
    const s = seen.get(m[1]) ?? new Set<string>();
    s.add(m[2]);
    seen.set(m[1], s);
  }
  return [...seen].filter(([, s]) => s.size === 2).map(([v]) => v).sort(newestFirst);
}

/** The candidate version apt would download for a package, or null when apt does not know it. */
export function aptPackageVersion(pkg: string, release: KernelRelease, cacheDir = defaultCacheDir()): string | null {
  const r = run('apt-cache', [...aptConfig(release, cacheDir), 'show', '--no-all-versions', pkg]);
  const m = /^Version:\s*(\S+)/m.exec(r.stdout);
  return r.status === 0 && m ? m[1] : null;
}

/** ABI names of complete kernels in the cache (of one release, or all), newest first. */
export function cachedKernelVersions(cacheDir = defaultCacheDir(), release?: KernelRelease): string[] {
  if (!fs.existsSync(cacheDir)) return [];
  return fs
    .readdirSync(cacheDir)
    .filter((v) => (release ? release.abi.test(v) : releaseOfAbi(v) !== undefined) && fs.existsSync(path.join(cacheDir, v, 'manifest.json')))
    .sort(newestFirst);
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

/** `apt-get download pkg=version` into `dir` with the release's apt configuration; returns the .deb's path. */
function aptDownload(pkg: string, version: string, dir: string, apt: string[]): string {
  const r = run('apt-get', [...apt, 'download', '-q', `${pkg}=${version}`], { cwd: dir });
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

/** The release a download is for: the option, else that of the named version, else 6.1. */
export function pickRelease(opts: DownloadOptions): KernelRelease {
  if (opts.release) return KERNEL_RELEASES[opts.release];
  if (opts.version) {
    const byAbi = Object.values(KERNEL_RELEASES).find((r) => r.abi.test(r.expand(opts.version!.trim()) ?? opts.version!.trim()));
    if (byAbi) return byAbi;
  }
  return KERNEL_RELEASES['6.1'];
}

/** The ABI asked for: the option, else TEXTPOKE_KERNEL when it names one of the release's, else the pinned one. */
export function pickVersion(opts: DownloadOptions, release: KernelRelease): { version: string; pinned: boolean } {
  if (opts.version) return { version: normalizeVersion(opts.version, release), pinned: false };
  const env = process.env.TEXTPOKE_KERNEL?.trim();
  if (env) {
    const full = release.expand(env) ?? env;
    if (release.abi.test(full)) return { version: full, pinned: false };
  }
  return { version: release.pinned, pinned: true };
}

/** Makes sure the kernel is in the cache, downloading it if needed, and returns its files. */
export async function downloadKernel(opts: DownloadOptions = {}): Promise<KernelFiles> {
  const log = opts.log ?? ((): void => {});
  const cacheDir = opts.cacheDir ?? defaultCacheDir();
  fs.mkdirSync(cacheDir, { recursive: true });
  const release = pickRelease(opts);
  const want = pickVersion(opts, release);
  const files = (version: string, m: KernelManifest, fetched: boolean, fallback?: string): KernelFiles => {
    const dir = path.join(cacheDir, version);
    return {
      version, release: release.name, dir, vmlinux: path.join(dir, m.vmlinux.file), systemMap: path.join(dir, m.systemMap.file),
      manifest: m, fetched, ...(fallback ? { fallback } : {}),
    };
  };
  const cached = checkCachedKernel(path.join(cacheDir, want.version), opts.verify);
  if (cached) return files(want.version, cached, false);

  return withLock(path.join(cacheDir, `${release.suite}.lock`), log, async () => {
    // Another process may have finished while we waited for the lock.
    const again = checkCachedKernel(path.join(cacheDir, want.version), opts.verify);
    if (again) return files(want.version, again, false);
    const apt = aptConfig(release, cacheDir);
    let offered: { unsigned: string; dbg: string } | null;
    try {
      freshLists(release, cacheDir, log);
      offered = offeredVersions(want.version, release, cacheDir);
      if (!offered && listsAge(release, cacheDir) > 60_000) {
        // Lists up to a day old may predate a change; ask once more before giving up on the ABI.
        aptUpdate(release, cacheDir, log);
        offered = offeredVersions(want.version, release, cacheDir);
      }
    } catch (e) {
      // No apt or no network: a pinned kernel may still fall back to a cached one of the release.
      const other = want.pinned ? cachedKernelVersions(cacheDir, release)[0] : undefined;
      if (!other) throw e;
      const why = `pinned ${want.version} is not cached and apt failed (${(e as Error).message}): using cached ${other}`;
      log(why);
      return files(other, checkCachedKernel(path.join(cacheDir, other))!, false, why);
    }
    if (offered) return files(want.version, await download(want.version, release, offered, cacheDir, apt, log), true);
    if (!want.pinned) {
      throw new LoadError(`Debian ${release.suite} does not offer linux-image-${want.version}-unsigned and -dbg (offered: ${aptKernelVersions(release, cacheDir).join(', ') || 'none'})`);
    }
    const newest = aptKernelVersions(release, cacheDir)[0];
    if (!newest) throw new LoadError(`Debian ${release.suite} offers no Linux ${release.name} cloud kernel with both -unsigned and -dbg packages`);
    const why = `pinned ABI ${want.version} is no longer offered by Debian ${release.suite}: falling back to the newest, ${newest} (results may differ from the pinned kernel's)`;
    log(why);
    const have = checkCachedKernel(path.join(cacheDir, newest), opts.verify);
    if (have) return files(newest, have, false, why);
    const o = offeredVersions(newest, release, cacheDir)!;
    return files(newest, await download(newest, release, o, cacheDir, apt, log), true, why);
  });
}

/** Package versions apt offers for an ABI's -unsigned and -dbg packages, or null when either is missing. */
function offeredVersions(version: string, release: KernelRelease, cacheDir: string): { unsigned: string; dbg: string } | null {
  const unsigned = aptPackageVersion(`linux-image-${version}-unsigned`, release, cacheDir);
  const dbg = aptPackageVersion(`linux-image-${version}-dbg`, release, cacheDir);
  return unsigned && dbg ? { unsigned, dbg } : null;
}

async function download(
  version: string, release: KernelRelease, offered: { unsigned: string; dbg: string }, cacheDir: string, apt: string[], log: (s: string) => void,
): Promise<KernelManifest> {
  const dir = path.join(cacheDir, version);
  const unsignedPkg = `linux-image-${version}-unsigned`;
  const dbgPkg = `linux-image-${version}-dbg`;
  const unsignedVer = offered.unsigned;
  const dbgVer = offered.dbg;
  fs.mkdirSync(dir, { recursive: true });
  fs.rmSync(path.join(dir, 'manifest.json'), { force: true });
  // Leftovers of an interrupted download (we hold the lock, so nobody is using them).
  for (const f of fs.readdirSync(dir)) if (f.startsWith('.download-')) fs.rmSync(path.join(dir, f), { recursive: true, force: true });
  const tmp = fs.mkdtempSync(path.join(dir, '.download-'));
  try {
    log(`downloading ${unsignedPkg} ${unsignedVer}`);
    const udeb = aptDownload(unsignedPkg, unsignedVer, tmp, apt);
    const vmlinuz = path.join(dir, 'vmlinuz');
    await extractMember(udeb, `*boot/vmlinuz-${version}`, vmlinuz);
    fs.rmSync(udeb);

    log(`decompressing vmlinuz (${release.compression}) to vmlinux`);
    const vmlinuxTmp = path.join(tmp, 'vmlinux');
    decompressBzImage(vmlinuz, vmlinuxTmp);
    const head = Buffer.alloc(4);
    const fd = fs.openSync(vmlinuxTmp, 'r');
    fs.readSync(fd, head, 0, 4, 0);
    fs.closeSync(fd);
    if (head.toString('hex') !== '7f454c46') throw new LoadError(`vmlinuz: decompressed payload is not an ELF file (starts ${head.toString('hex')})`);
    fs.renameSync(vmlinuxTmp, path.join(dir, 'vmlinux'));

    log(`downloading ${dbgPkg} ${dbgVer} (large; only System.map is kept)`);
    const ddeb = aptDownload(dbgPkg, dbgVer, tmp, apt);
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
      release: release.name,
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
