// `textpoke verify <image> [--against <original>]`: every paravirt site against what
// the alternatives engine generates for the image's pv_ops. Exit status 1 on any
// mismatch. `--against-boot DUMP`: the image's .text, boot-patched offline, against
// what the kernel itself held after booting in QEMU (npm run boot-dump); exit status 1
// when a byte differs that no kernel mechanism other than textpoke's model owns.

import type { Argv } from 'yargs';
import { verifyImage } from '../../kernel-model/linux/verify-image';
import { disasmInline } from '../../kernel-model/image/disasm';
import { hexBytes } from '../../kernel-model/linux/kernel-context';
import { print, printJson, styleFor } from '../output';
import { openImage, imageOptions, cpuProfile, type ImageArgs } from '../image-args';
import { checkInt } from '../args';
import { openBootDump } from '../../kernel-model/image/boot-dump';
import { verifyAgainstBoot } from '../../kernel-model/linux/verify-boot';
import { printBootComparison } from '../../kernel-model/present/boot-comparison';

export interface VerifyArgs extends ImageArgs {
  against?: string;
  'against-map'?: string;
  'against-boot'?: string;
  limit: number;
  json: boolean;
  color?: boolean;
}

export function verifyCommand(y: Argv): Argv<VerifyArgs> {
  return imageOptions(y)
    .option('against', { type: 'string', describe: 'the original image: also report which sites changed' })
    .option('against-map', { type: 'string', describe: "System.map of the --against vmlinux (default: the one beside it)" })
    .option('against-boot', { type: 'string', describe: 'a boot dump (directory or dump.json from npm run boot-dump): how much of .text matches the booted kernel byte for byte' })
    .option('limit', { type: 'number', default: 20, describe: 'mismatches to list in text output (0: all)' })
    .option('json', { type: 'boolean', default: false, describe: 'print every site check as one JSON object' })
    .example('$0 verify /tmp/patched.bin --against minikernel', 'check a patched fixture and list what changed')
    .example('$0 verify vmlinux --against-boot .cache/boot-dump/6.1.0-50-cloud-amd64/qemu64-<hash>', '.text against the kernel booted in QEMU')
    .example('$0 verify vmlinux', 'a distribution vmlinux: its sites still hold the unpatched indirect calls, so this exits 1') as unknown as Argv<VerifyArgs>;
}

export function runVerify(a: VerifyArgs): number {
  const limit = checkInt(a.limit, '--limit', 0, Number.MAX_SAFE_INTEGER)!;
  if (a['against-boot'] !== undefined) {
    const img = openImage(a);
    const dump = openBootDump(a['against-boot']);
    // The CPU the kernel booted on, unless --cpu names another profile.
    const c = verifyAgainstBoot(img, dump, a.cpu ?? dump.meta.cpu);
    const ok = !c.text.differing.model;
    if (a.json) printJson({ image: img.path, dump: dump.dir, kernel: dump.meta.kernel.version, cpu: dump.meta.cpu, qemu: dump.meta.qemu.version, ok, text: c.text, summary: c.summary, notObservable: c.notObservable, mismatches: c.sites.filter((s) => !s.match) });
    else print(printBootComparison(img, dump.meta, c, { limit, style: styleFor(a.color) }));
    return ok ? 0 : 1;
  }
  // The original first: a boot-patched 6.12 image takes its paravirt sites from it.
  const against = a.against !== undefined ? openImage({ image: a.against, map: a['against-map'] }) : undefined;
  const img = openImage(a, undefined, against);
  const v = verifyImage(img, { against, cpu: cpuProfile(a, img) });
  const changed = against ? v.sites.filter((s) => s.changed).length : undefined;
  if (a.json) {
    printJson({
      image: img.path,
      against: against?.path,
      ok: v.ok,
      rules: v.rules,
      total: v.sites.length,
      mismatches: v.mismatches,
      changed,
      sites: v.sites.map((s) => ({
        address: s.site.address, op: s.site.op, len: s.site.len, ok: s.ok, how: s.how, actual: s.actual, expected: s.expected,
        actualAsm: disasmInline(s.actual, s.site.address, img.symbols), expectedAsm: disasmInline(s.expected, s.site.address, img.symbols),
        original: s.original, changed: s.changed,
      })),
    });
    return v.ok ? 0 : 1;
  }
  const st = styleFor(a.color);
  const out: string[] = [];
  const verdict = v.ok ? st.green('all match') : st.red(`${v.mismatches} mismatch(es)`);
  out.push(`${img.path}: ${v.sites.length} paravirt site(s) checked against pv_ops (${v.rules} rules): ${verdict}`);
  if (against) out.push(`${changed} site(s) differ from ${against.path}`);
  const bad = v.sites.filter((s) => !s.ok);
  const shown = limit === 0 ? bad : bad.slice(0, limit);
  for (const s of shown) {
    out.push(`  ${st.red('MISMATCH')} 0x${s.site.address.toString(16)} <${img.symbols.format(s.site.address)}> ${s.site.op}: ${s.how}`);
    out.push(`    have  ${hexBytes(s.actual).padEnd(s.site.len * 3)}  ${disasmInline(s.actual, s.site.address, img.symbols)}`);
    out.push(`    want  ${hexBytes(s.expected).padEnd(s.site.len * 3)}  ${disasmInline(s.expected, s.site.address, img.symbols)}`);
    if (s.original && s.changed) out.push(`    was   ${hexBytes(s.original)}`);
  }
  if (shown.length < bad.length) out.push(`  … ${bad.length - shown.length} more (--limit 0 lists all)`);
  print(out.join('\n'));
  return v.ok ? 0 : 1;
}
