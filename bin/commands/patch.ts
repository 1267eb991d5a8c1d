// `textpoke patch <image> --op op=native … -o <out>`: runtime-patch the image on N
// emulated CPUs and write the patched image in the input's format; or `--boot`:
// apply boot-time paravirt patching offline. Nothing is written unless it succeeds.

import type { Argv } from 'yargs';
import { runtimePatch } from '../../kernel-model/scenario/runtime-patch';
import { bootPatchImage } from '../../kernel-model/linux/boot-patch';
import { patchedImageFiles, writePatchedImage } from '../../kernel-model/image/write';
import { slotOf } from '../../kernel-model/image/kernel-image';
import type { Protocol } from '../../kernel-model/linux/kernel-model';
import type { ProtocolVariant } from '../../kernel-model/linux/kernel-context';
import { formatSites } from '../../kernel-model/present/demo';
import { summarizeBootPatch, formatBootPatchSummary } from '../../kernel-model/present/image-summary';
import { checkInt, outputFile, parseOps, scheduleOverride } from '../args';
import { UserError } from '../errors';
import { print, printJson, progressBar, styleFor } from '../output';
import { openImage, imageInputs, imageOptions, cpuProfile, type ImageArgs } from '../image-args';

export interface PatchArgs extends ImageArgs {
  op: string[];
  'boot-op': string[];
  boot: boolean;
  protocol: Exclude<Protocol, 'naive'>;
  nmi: boolean;
  cpus: number;
  variant: ProtocolVariant;
  seed?: number;
  schedule?: string;
  'max-steps'?: number;
  output: string;
  json: boolean;
  color?: boolean;
}

export function patchCommand(y: Argv): Argv<PatchArgs> {
  return imageOptions(y)
    .option('op', { type: 'string', array: true, default: [] as string[], describe: 'op=native or op=paravirt (repeatable)' })
    .option('boot-op', { type: 'string', array: true, default: [] as string[], describe: 'op=mode set in pv_ops before boot patching, as a paravirt guest boots (repeatable)' })
    .option('boot', { type: 'boolean', default: false, describe: "apply boot-time paravirt patching for the image's pv_ops instead (offline)" })
    .option('protocol', { choices: ['batch', 'stop-machine'] as const, default: 'stop-machine' as const, describe: 'text_poke_bp_batch, or the RFC text_poke_late under stop_machine' })
    .option('nmi', { type: 'boolean', default: false, describe: 'NMI-safe mode of the stop-machine protocol' })
    .option('cpus', { type: 'number', default: 2, describe: 'emulated CPUs (CPU0 patches, the others run the lock workload)' })
    .option('variant', { choices: ['rfc', 'fixed'] as const, default: 'fixed' as const, describe: 'protocol variant' })
    .option('seed', { type: 'number', describe: 'random schedule with this seed' })
    .option('schedule', { type: 'string', describe: 'rr:<quantum>, random:<seed>[:<maxQuantum>], or a JSON schedule' })
    .option('max-steps', { type: 'number', describe: 'step limit of the patching run' })
    .option('output', { alias: 'o', type: 'string', demandOption: true, describe: 'where to write the patched image (a fixture: <out>.bin and <out>.json)' })
    .option('json', { type: 'boolean', default: false, describe: 'print the result as one JSON object' })
    .example('$0 patch minikernel --op lock.queued_spin_unlock=native --nmi --cpus 4 -o /tmp/patched', 'runtime-patch one op on 4 CPUs, NMI-safe')
    .example('$0 patch vmlinux --map System.map --boot -o /tmp/vmlinux.booted', 'boot-time patching of a real kernel, offline')
    .example('$0 patch --image debian-6.12 --cpu Skylake-Client --boot -o /tmp/vmlinux.booted', "Debian 13's kernel as it patches itself on a Skylake") as unknown as Argv<PatchArgs>;
}

export function runPatch(a: PatchArgs): number {
  const img = openImage(a);
  // Each file the write would replace (a fixture: its .bin and .json) must not be an input.
  for (const f of patchedImageFiles(img, a.output)) outputFile(f, '-o', imageInputs(img, a));
  const st = styleFor(a.color);
  if (a.boot) {
    if (a.op.length) throw new UserError('--boot patches every site for the pv_ops in the image; it takes no --op');
    const b = bootPatchImage(img, { cpu: cpuProfile(a, img) });
    const files = writePatchedImage(img, b.writes, a.output);
    const sum = summarizeBootPatch(b);
    if (a.json) printJson({ image: img.path, mode: 'boot', files, ...sum });
    else print(`${formatBootPatchSummary(sum)}\nwrote ${files.join(', ')}`);
    return 0;
  }
  if (a.op.length === 0) throw new UserError('name at least one --op (e.g. --op lock.queued_spin_unlock=native), or give --boot');
  const ops = parseOps(a.op);
  const bootOps = parseOps(a['boot-op']);
  for (const o of [...ops, ...bootOps]) slotOf(img, o.op);
  const maxCpus = img.constants.MAX_CPUS ?? 256;
  const cpus = checkInt(a.cpus, '--cpus', 1, maxCpus)!;
  if (a.nmi && a.protocol !== 'stop-machine') throw new UserError('--nmi: NMI mode exists only for the stop-machine protocol');
  const maxSteps = checkInt(a['max-steps'], '--max-steps', 1, Number.MAX_SAFE_INTEGER);
  const schedule = scheduleOverride(a, { kind: 'round-robin', quantum: 50 }, cpus);
  const bar = progressBar('patch', maxSteps ?? 20_000_000, a.json);
  let result;
  try {
    result = runtimePatch(img, { ops, bootOps, protocol: a.protocol, nmi: a.nmi, cpus, variant: a.variant, schedule, maxSteps, onProgress: bar ? (n) => bar.update(n) : undefined });
  } finally {
    bar?.done();
  }
  const r = result.report;
  const bad = r.sites.filter((s) => !s.verified);
  if (bad.length) {
    throw new UserError(`the runtime patch completed but ${bad.length} site(s) do not verify (${bad.map((s) => `0x${s.address.toString(16)} ${s.op}: ${s.how}`).join('; ')}); nothing written`, 1);
  }
  const files = writePatchedImage(img, result.writes, a.output);
  if (a.json) {
    printJson({ image: img.path, mode: 'runtime', files, protocol: a.protocol, nmi: a.nmi, cpus, variant: a.variant, outcome: r.outcome, steps: r.steps, sites: r.sites, invariants: r.invariants });
  } else {
    const ok = r.sites.filter((s) => s.verified).length;
    const out = [
      `${img.path}: ${ops.map((o) => `${o.op}=${o.mode}`).join(', ')} with ${a.protocol}${a.protocol === 'stop-machine' ? ` (nmi=${a.nmi}, ${a.variant})` : ''} on ${cpus} CPUs: ${r.outcome} after ${r.steps.toLocaleString('en-US')} steps`,
      `${r.sites.length} site(s) patched, ${ok} verified:`,
      ...formatSites(r.sites, st),
      `wrote ${files.join(', ')}`,
    ];
    print(out.join('\n'));
  }
  return 0;
}
