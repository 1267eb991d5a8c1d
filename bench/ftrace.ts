// The real kernel's ground truth and its largest runtime patch: how long QEMU takes to
// boot Debian's 6.1 to the root-mount panic on each standard CPU model and hand back
// its .text (a fresh boot, not the cache), and `echo function > current_tracer` and
// back: every __fentry__ site of .text through text_poke_bp_batch on 64 CPUs
// (kernel-model/scenario/ftrace.ts), on Debian's 6.1 and 6.12, each timed with its
// setup (harness boot by that release's rules, ftrace_init).

import { mkdtempSync, rmSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import { downloadKernel, type KernelFiles } from '../kernel-model/image/download';
import { loadVmlinuxImage, type VmlinuxImage } from '../kernel-model/image/vmlinux-image';
import { bootDump, bootDumpKernel, qemuVersion } from '../kernel-model/image/boot-dump';
import { STANDARD_CPUS } from '../kernel-model/image/cpu-features';
import { runFtrace } from '../kernel-model/scenario/ftrace';
import { type BenchOptions, errorText, timed, timedAsync } from './util';

export interface BootFigure {
  cpu: string;
  /** Host seconds from QEMU's start to the stopped machine, and for reading memory back. */
  bootSeconds: number;
  dumpSeconds: number;
  /** What the whole call took (QEMU start and exit, checks, writing the cache entry). */
  totalSeconds: number;
  guestSeconds: number;
}

export interface FtraceFigure {
  /** Linux release ("6.1", "6.12") and the kernel's ABI. */
  release: string;
  kernel: string;
  /** __fentry__ sites in .text (all patched unless --quick). */
  mcountSites: number;
  cpus: number;
  sites: number;
  batches: number;
  rounds: string;
  int3s: number;
  steps: number;
  seconds: number;
  outcome: string;
  failed: string[];
}

export interface GroundTruthResults {
  qemu: string | null;
  boots: BootFigure[];
  bootError?: string;
  /** One run per release: 6.1, then 6.12. */
  ftrace: FtraceFigure[];
  ftraceErrors: string[];
}

export async function benchGroundTruth(files: KernelFiles, img: VmlinuxImage, o: BenchOptions): Promise<GroundTruthResults> {
  const res: GroundTruthResults = { qemu: null, boots: [], ftrace: [], ftraceErrors: [] };
  const cache = mkdtempSync(join(tmpdir(), 'textpoke-bench-boot-'));
  try {
    res.qemu = qemuVersion().version;
    for (const cpu of o.quick ? [STANDARD_CPUS[0]] : STANDARD_CPUS) {
      o.log(`kernel: QEMU boot -cpu ${cpu}`);
      const t = await timedAsync(() => bootDump(bootDumpKernel(files, img.vm), { cpu, cacheDir: cache, force: true }));
      const m = t.value.meta;
      res.boots.push({ cpu, bootSeconds: m.seconds.boot, dumpSeconds: m.seconds.dump, totalSeconds: t.seconds, guestSeconds: m.guestSeconds });
    }
  } catch (e) {
    res.bootError = errorText(e);
  } finally {
    rmSync(cache, { recursive: true, force: true });
  }
  const cpus = o.quick ? 8 : 64;
  const sites = o.quick ? 2000 : undefined;
  const runOn = (k: KernelFiles, image: VmlinuxImage): void => {
    o.log(`kernel: ftrace on ${k.version}, ${cpus} CPUs${sites ? `, ${sites} sites` : ', every site of .text'}`);
    const t = timed(() => runFtrace(image, { cpus, sites, rounds: 3 }));
    const r = t.value;
    const rounds = r.workers.reduce((n, w) => n + w.rounds, 0n);
    res.ftrace.push({
      release: image.vm.release(), kernel: k.version, mcountSites: r.mcountSites,
      cpus, sites: r.sites, batches: r.enable.batches + r.disable.batches, rounds: rounds.toString(), int3s: r.int3s, steps: r.steps,
      seconds: t.seconds, outcome: r.outcome, failed: r.invariants.filter((i) => !i.ok).map((i) => `${i.name}: ${i.detail}`),
    });
  };
  try {
    runOn(files, img);
  } catch (e) {
    res.ftraceErrors.push(`6.1: ${errorText(e)}`);
  }
  try {
    const k = await downloadKernel({ release: '6.12', log: (s) => o.log(`fetch-kernel: ${s}`) });
    const image = loadVmlinuxImage(k.vmlinux, k.systemMap);
    try {
      runOn(k, image);
    } finally {
      image.vm.close();
    }
  } catch (e) {
    res.ftraceErrors.push(`6.12: ${errorText(e)}`);
  }
  return res;
}
