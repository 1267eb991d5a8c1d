// The real kernel (Debian 6.1 cloud vmlinux): how long the offline pipeline takes on
// 14 MB of text and 3,679 paravirt sites (load, boot-patch, write, verify, coverage
// sweep, mapping into a Machine), and runtime patching of its lock sites on N CPUs once
// (runtimePatch on N CPUs); the kernel scenarios (6.1 and 6.12) and ftrace on both.

import { rmSync, statSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import { Machine } from '../emu/machine';
import { sweepCoverage } from '../emu/coverage';
import { downloadKernel, type KernelFiles } from '../kernel-model/image/download';
import { loadImage } from '../kernel-model/image/load';
import { VmlinuxImage } from '../kernel-model/image/vmlinux-image';
import { bootPatch61 } from '../kernel-model/linux/alternatives-6.1';
import { verifyImage } from '../kernel-model/linux/verify-image';
import { writePatchedImage } from '../kernel-model/image/write';
import type { KernelImage } from '../kernel-model/image/kernel-image';
import { runtimePatch } from '../kernel-model/scenario/runtime-patch';
import { loadScenario } from '../kernel-model/scenario/scenario-file';
import type { OpChange } from '../kernel-model/linux/kernel-model';
import { type BenchOptions, errorText, median, timed, timedAsync } from './util';
import { int } from './report';
import { benchScenario, scenarioFiles, type ScenarioFigure } from './scenarios';
import { LOCK_OPS, OP_SETS, PATCH_CONFIGS, patchGrid, type OpSet, type PatchRow } from './patching';
import { benchGroundTruth, type GroundTruthResults } from './ftrace';
import { measureMemory, type MemoryFigure } from './memory';

export interface KernelStep {
  name: string;
  /** Median milliseconds over the runs. */
  ms: number;
  runs: number;
  detail: string;
}

export interface KernelRuntimeResults {
  available: boolean;
  /** Which implementation ran, or why none did. */
  note: string;
  rows: PatchRow[];
}

export interface KernelResults {
  skipped: false;
  version: string;
  fetched: boolean;
  fetchMs: number;
  vmlinuxBytes: number;
  textBytes: number;
  sites: number;
  lockSites: Record<string, number>;
  steps: KernelStep[];
  coverage: { share: number; total: number; implemented: number; functions: number };
  /** fixtures/scenarios/kernel/*.json: scenarios on Debian's text. */
  scenarios: ScenarioFigure[];
  runtime: KernelRuntimeResults;
  /** QEMU boots of the kernel (ground truth) and ftrace-scale batch patching. */
  groundTruth: GroundTruthResults;
  /** Peak resident memory of the runtime patch on many CPUs (bench/memory.ts), each in a child process. */
  memory: (MemoryFigure | { cpus: number; error: string })[];
}

export interface KernelSkipped {
  skipped: true;
  reason: string;
}

function openVmlinux(files: KernelFiles): VmlinuxImage {
  const img = loadImage(files.vmlinux, { systemMap: files.systemMap });
  if (!(img instanceof VmlinuxImage)) throw new Error(`${files.vmlinux}: loadImage did not return a vmlinux image`);
  return img;
}

/**
 * The kernel boots as a paravirt guest for the lock ops that have a paravirt
 * implementation runnable without a hypervisor (unlock and vcpu_is_preempted; the
 * slow path, wait and kick need the hypervisor's pv_lock_hash), so their sites are
 * calls the runtime patch then turns native. On a bare-metal boot every lock site is
 * already native and a patch to native has nothing to do.
 */
export const KERNEL_BOOT_OPS: readonly OpChange[] = [
  { op: 'lock.queued_spin_unlock', mode: 'paravirt' },
  { op: 'lock.vcpu_is_preempted', mode: 'paravirt' },
];

/**
 * One op's sites vs every lock site there is to patch. The second set names only the
 * two booted-paravirt ops: asking for all five gives the same 48 sites under
 * stop-machine, but the batch planner rejects the (unchanged, already native) NOP
 * sites of lock.wait before noticing they need no patch.
 */
export const KERNEL_OP_SETS: readonly OpSet[] = [
  OP_SETS[0],
  { label: 'all patchable lock ops', ops: KERNEL_BOOT_OPS.map((c) => c.op) },
];

async function runtimeSection(img: VmlinuxImage, o: BenchOptions): Promise<KernelRuntimeResults> {
  const rows = await patchGrid(
    runtimePatch,
    img as KernelImage,
    {
      configs: PATCH_CONFIGS,
      cpus: o.quick ? [2] : [2, 8, 64],
      opSets: o.quick ? [KERNEL_OP_SETS[0]] : KERNEL_OP_SETS,
      // Real-kernel runs take up to a second (64 CPUs): no warm-up beyond the probe run,
      // and budgets that keep the whole bench near three minutes if that grows.
      runs: o.trials,
      warm: 0,
      runBudget: o.quick ? 20 : 30,
      gridBudget: o.quick ? 30 : 100,
      bootOps: KERNEL_BOOT_OPS,
    },
    o,
    'kernel runtime patch',
  );
  return { available: true, note: 'runtimePatch (kernel-model/scenario/runtime-patch.ts)', rows };
}

export async function benchKernel(o: BenchOptions): Promise<KernelResults | KernelSkipped> {
  let files: KernelFiles;
  let fetchMs: number;
  try {
    const t = await timedAsync(() => downloadKernel({ log: (s) => o.log(`fetch-kernel: ${s}`) }));
    files = t.value;
    fetchMs = t.seconds * 1e3;
  } catch (e) {
    return { skipped: true, reason: `the kernel could not be fetched: ${errorText(e)}` };
  }
  const runs = o.trials;
  const steps: KernelStep[] = [];
  const step = <T>(name: string, fn: () => T, detail: (v: T) => string, n = runs): T => {
    o.log(`kernel: ${name}`);
    const secs: number[] = [];
    let v: T | undefined;
    for (let i = 0; i < n; i++) {
      const t = timed(fn);
      secs.push(t.seconds);
      v = t.value;
    }
    steps.push({ name, ms: median(secs) * 1e3, runs: n, detail: detail(v as T) });
    return v as T;
  };

  // Each load opens the ELF; all but the last are closed again.
  let img: VmlinuxImage | null = null;
  img = step('load vmlinux + System.map', () => {
    img?.vm.close();
    return openVmlinux(files);
  }, (i) => `${int(i.sites.length)} paravirt sites, ${int(i.symbols.size)} symbols`);
  const vm = img.vm;
  try {
    const text = vm.requireSection('.text');
    const alternatives = vm.altinstructions();
    const boot = step('boot-patch all sites (bootPatch61)', () => bootPatch61(img!, { alternatives }), (b) => `${int(b.sites.length)} sites, ${int(b.writes.size)} ranges written`);
    step('verify unpatched image (verifyImage)', () => verifyImage(img!), (v) => `${int(v.sites.length)} sites checked; ${int(v.mismatches)} differ from what boot patching writes (the file holds the unpatched pv calls)`);
    const out = join(tmpdir(), `textpoke-bench-vmlinux-${process.pid}`);
    try {
      step('write boot-patched copy', () => writePatchedImage(img!, boot.writes, out), () => `${(statSync(out).size / 1e6).toFixed(1)} MB ELF`);
      let patched: VmlinuxImage | null = null;
      try {
        step('verify boot-patched copy (load + verifyImage)', () => {
          patched?.vm.close();
          patched = openVmlinux({ ...files, vmlinux: out });
          return verifyImage(patched, { against: img! });
        }, (v) => `${int(v.sites.length - v.mismatches)}/${int(v.sites.length)} sites verify, ${int(v.sites.filter((s) => s.changed).length)} changed from the original`);
      } finally {
        (patched as VmlinuxImage | null)?.vm.close();
      }
    } finally {
      rmSync(out, { force: true });
    }
    const cov = step('coverage sweep of .text (per function)', () => {
      const bytes = vm.elf.readSection(vm.elf.sections[text.index]);
      const functions = vm.functions(['.text']).map((f) => ({ start: Number(f.start - text.addr), end: Number(f.end - text.addr) }));
      return sweepCoverage([{ base: text.addr, bytes, functions }]);
    }, (r) => `${int(r.total)} instructions, ${(r.share * 100).toFixed(2)}% implemented, ${int(r.functions)} functions`);
    const allocated = img.sections.reduce((a, s) => a + s.size, 0);
    step('map all sections into a Machine', () => {
      const m = new Machine({ cpus: 1 });
      img!.mapInto(m);
      return m;
    }, () => `${(allocated / 1e6).toFixed(1)} MB (.text, .data, ...) and symbols`);

    const lockSites: Record<string, number> = {};
    for (const op of LOCK_OPS) lockSites[op] = img.sites.filter((s) => s.op === op).length;
    // The 6.12 scenarios need Debian 13's kernel in the cache too; without it they are left out.
    const have612 = await downloadKernel({ release: '6.12', log: (s) => o.log(`fetch-kernel: ${s}`) }).then(() => true, () => false);
    const scenarios = scenarioFiles('kernel').filter((f) => have612 || loadScenario(f).image !== 'debian-6.12').map((f) => {
      o.log(`kernel: scenario ${f}`);
      return benchScenario(f, o);
    });
    const runtime = await runtimeSection(img, o);
    const memory = (o.quick ? [8] : [64, 256]).map((n) => {
      o.log(`kernel: resident memory, ${n} CPUs`);
      const f = measureMemory(n);
      return 'error' in f ? { cpus: n, error: f.error } : f;
    });
    const groundTruth = await benchGroundTruth(files, img, o);
    return {
      skipped: false,
      version: files.version,
      fetched: files.fetched,
      fetchMs,
      vmlinuxBytes: statSync(files.vmlinux).size,
      textBytes: text.size,
      sites: img.sites.length,
      lockSites,
      steps,
      coverage: { share: cov.share, total: cov.total, implemented: cov.implemented, functions: cov.functions },
      scenarios,
      runtime,
      groundTruth,
      memory,
    };
  } finally {
    vm.close();
  }
}
