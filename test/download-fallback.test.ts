// The pinned-ABI download without Debian's archive: with apt failing (fake apt-get
// and apt-cache first on PATH, in a child process of its own), a release whose pinned
// kernel is not cached falls back to a cached kernel of the same release and says so;
// an ABI asked for by name is never replaced; a cached pinned kernel needs no apt.

import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import type { DownloadOptions, KernelFiles, KernelManifest } from '../kernel-model/image/download';
import { KERNEL_RELEASES } from '../kernel-model/image/releases';

const DOWNLOAD = path.join(__dirname, '..', 'kernel-model', 'image', 'download.js');

/** downloadKernel in a child node whose PATH starts with `bin`: its result, or its error message. */
function downloadWith(bin: string, opts: DownloadOptions): { k?: KernelFiles; error?: string; log: string[] } {
  const script = `
    const { downloadKernel } = require(${JSON.stringify(DOWNLOAD)});
    const log = [];
    downloadKernel({ ...${JSON.stringify(opts)}, log: (s) => log.push(s) })
      .then((k) => process.stdout.write(JSON.stringify({ k, log })), (e) => process.stdout.write(JSON.stringify({ error: e.message, log })));`;
  const env: NodeJS.ProcessEnv = { ...process.env, PATH: `${bin}:${process.env.PATH}` };
  delete env.TEXTPOKE_KERNEL;
  const r = spawnSync(process.execPath, ['-e', script], { env, encoding: 'utf8' });
  return JSON.parse(r.stdout) as { k?: KernelFiles; error?: string; log: string[] };
}

function fakeKernel(cacheDir: string, version: string): void {
  const dir = path.join(cacheDir, version);
  fs.mkdirSync(dir, { recursive: true });
  const file = (name: string, text: string): { file: string; size: number; sha256: string } => {
    fs.writeFileSync(path.join(dir, name), text);
    return { file: name, size: text.length, sha256: '0'.repeat(64) };
  };
  const m: KernelManifest = {
    version, release: '6.12',
    packages: { unsigned: { name: `linux-image-${version}-unsigned`, version: '1' }, dbg: { name: `linux-image-${version}-dbg`, version: '1' } },
    vmlinuz: file('vmlinuz', 'z'), vmlinux: file('vmlinux', 'elf'), systemMap: file('System.map', 'map'), created: 'now',
  };
  fs.writeFileSync(path.join(dir, 'manifest.json'), JSON.stringify(m));
}

describe('pinned kernels when apt cannot help', () => {
  let cacheDir: string;
  let bin: string;

  beforeAll(() => {
    bin = fs.mkdtempSync(path.join(os.tmpdir(), 'fakeapt-'));
    for (const tool of ['apt-get', 'apt-cache']) {
      fs.writeFileSync(path.join(bin, tool), '#!/bin/sh\necho "E: network is unreachable" >&2\nexit 100\n', { mode: 0o755 });
    }
    cacheDir = fs.mkdtempSync(path.join(os.tmpdir(), 'kcache-'));
  });
  afterAll(() => {
    fs.rmSync(bin, { recursive: true, force: true });
    fs.rmSync(cacheDir, { recursive: true, force: true });
  });

  it('falls back to a cached kernel of the release, saying why', () => {
    fakeKernel(cacheDir, '6.12.111+deb13-cloud-amd64');
    const r = downloadWith(bin, { release: '6.12', cacheDir });
    expect(r.error).toBeUndefined();
    expect(r.k!.version).toBe('6.12.111+deb13-cloud-amd64');
    expect(r.k!.fetched).toBe(false);
    expect(r.k!.fallback).toMatch(/^pinned 6\.12\.117\+deb13-cloud-amd64 is not cached and apt failed \(apt-get update for Debian trixie failed: E: network is unreachable\): using cached 6\.12\.111\+deb13-cloud-amd64$/);
    expect(r.log).toContain(r.k!.fallback);
  });

  it('never replaces an ABI asked for by name', () => {
    const r = downloadWith(bin, { version: '6.12.113+deb13-cloud-amd64', cacheDir });
    expect(r.error).toMatch(/apt-get update for Debian trixie failed: E: network is unreachable/);
  });

  it('a cached pinned kernel is used without asking apt', () => {
    fakeKernel(cacheDir, KERNEL_RELEASES['6.12'].pinned);
    const r = downloadWith(bin, { release: '6.12', cacheDir });
    expect(r.k!.version).toBe(KERNEL_RELEASES['6.12'].pinned);
    expect(r.k!.fallback).toBeUndefined();
  });
});
