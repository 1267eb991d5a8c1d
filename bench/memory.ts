// Resident memory of many CPUs on the real kernel: Debian's 6.1 vmlinux mapped into a
// Machine of N CPUs, booted as a paravirt guest, every CPU taking and releasing spin
// locks while one patches the lock sites under stop_machine (runtimePatch, as the
// kernel section's runtime rows). Runs in a child process of its own (`node
// dist/bench/memory.js N`), so the peak resident set it reports (getrusage's
// ru_maxrss) is this run's alone and not the rest of the bench's.

import { execFileSync } from 'child_process';
import { join } from 'path';
import { downloadKernel } from '../kernel-model/image/download';
import { loadImage } from '../kernel-model/image/load';
import { VmlinuxImage } from '../kernel-model/image/vmlinux-image';
import type { KernelImage } from '../kernel-model/image/kernel-image';
import { runtimePatch } from '../kernel-model/scenario/runtime-patch';
import { KERNEL_BOOT_OPS } from './kernel';
import { errorText } from './util';

export interface MemoryFigure {
  cpus: number;
  /** Peak resident set of the child process, bytes. */
  maxRss: number;
  /** Resident set, V8 heap in use and array buffers (guest pages) at the end of the run, bytes. */
  rss: number;
  heapUsed: number;
  arrayBuffers: number;
  /** Machine steps of the run, and its CPU seconds (child process). */
  steps: number;
  seconds: number;
}

/** Measures `cpus` CPUs in a child process; an Error's text if it failed. */
export function measureMemory(cpus: number): MemoryFigure | { error: string } {
  try {
    const out = execFileSync(process.execPath, ['--max-old-space-size=4096', join(__dirname, 'memory.js'), String(cpus)], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
      maxBuffer: 1 << 20,
    });
    return JSON.parse(out.trim().split('\n').pop()!) as MemoryFigure;
  } catch (e) {
    return { error: errorText(e) };
  }
}

async function child(cpus: number): Promise<void> {
  const files = await downloadKernel({ log: () => {} });
  const img = loadImage(files.vmlinux, { systemMap: files.systemMap });
  if (!(img instanceof VmlinuxImage)) throw new Error(`${files.vmlinux}: not a vmlinux image`);
  const c0 = process.cpuUsage();
  const r = runtimePatch(img as KernelImage, {
    ops: KERNEL_BOOT_OPS.map((c) => c),
    protocol: 'stop-machine',
    cpus,
    bootOps: [...KERNEL_BOOT_OPS],
    maxSteps: 200_000_000,
  });
  const c = process.cpuUsage(c0);
  const mu = process.memoryUsage();
  const fig: MemoryFigure = {
    cpus,
    maxRss: process.resourceUsage().maxRSS * 1024,
    rss: mu.rss,
    heapUsed: mu.heapUsed,
    arrayBuffers: mu.arrayBuffers,
    steps: r.report.steps,
    seconds: (c.user + c.system) / 1e6,
  };
  img.vm.close();
  process.stdout.write(JSON.stringify(fig) + '\n');
}

if (require.main === module) {
  const n = Number(process.argv[2]);
  if (!Number.isInteger(n) || n < 1) {
    process.stderr.write('usage: node dist/bench/memory.js CPUS\n');
    process.exit(2);
  }
  child(n).catch((e: unknown) => {
    process.stderr.write(`bench memory: ${errorText(e)}\n`);
    process.exit(1);
  });
}
