// `verify --against-boot` as text: how much of .text textpoke's offline boot patch gets
// right against the kernel booted in QEMU, the differing bytes by the mechanism that
// owns them, the paravirt and alternatives sites, and the sites where textpoke is wrong.

import type { KernelImage } from '../image/kernel-image';
import type { BootDumpMeta } from '../image/boot-dump';
import { disasmInline } from '../image/disasm';
import { hexBytes } from '../linux/kernel-context';
import { DIFF_REASONS, type BootComparison, type DiffClass, type SiteKind } from '../linux/verify-boot';
import type { Style } from './demo';

const num = (n: number): string => n.toLocaleString('en-US');
const pct = (a: number, b: number): string => (b ? ((100 * a) / b).toFixed(3) : '100.000') + '%';

export function printBootComparison(img: KernelImage, meta: BootDumpMeta, c: BootComparison, opts: { limit: number; style: Style }): string {
  const st = opts.style;
  const out: string[] = [];
  const model = c.text.differing.model ?? 0;
  out.push(`${img.path}: .text against ${meta.kernel.version} booted on QEMU -cpu ${meta.cpu} (${meta.qemu.version})`);
  out.push(`  ${num(c.text.matched)} of ${num(c.text.bytes)} bytes match byte for byte (${pct(c.text.matched, c.text.bytes)})`);
  const entries = (Object.entries(c.text.differing) as [DiffClass, number][]).sort((a, b) => b[1] - a[1]);
  if (entries.length) out.push('  differing bytes, by the mechanism that owns them:');
  for (const [k, v] of entries) {
    const r = DIFF_REASONS[k];
    const tag = r.decided === 'model' ? st.red('textpoke is wrong') : r.decided === 'runtime' ? 'decided at run time' : 'boot rule not modelled offline';
    out.push(`    ${k.padEnd(18)} ${num(v).padStart(9)}  ${tag}: ${r.why}`);
  }
  for (const kind of ['paravirt', 'alternative'] as SiteKind[]) {
    const s = c.summary[kind];
    const cls = (Object.entries(s.byClass) as [DiffClass, number][]).map(([k, v]) => `${v} ${k}`).join(', ');
    out.push(`  ${kind} sites: ${s.matched} of ${s.compared} in .text match${cls ? `; differing: ${cls}` : ''}; ${c.notObservable[kind]} in .init.text (freed after boot, not comparable)`);
  }
  const bad = c.sites.filter((s) => s.classes[0] === 'model');
  const shown = opts.limit === 0 ? bad : bad.slice(0, opts.limit);
  for (const s of shown) {
    out.push(`  ${st.red('MISMATCH')} ${s.kind} 0x${s.address.toString(16)} <${img.symbols.format(s.address)}>`);
    out.push(`    booted   ${hexBytes(s.actual)}  ${disasmInline(s.actual, s.address, img.symbols)}`);
    out.push(`    textpoke ${hexBytes(s.expected)}  ${disasmInline(s.expected, s.address, img.symbols)}`);
  }
  if (shown.length < bad.length) out.push(`  … ${bad.length - shown.length} more (--limit 0 lists all)`);
  // Differing bytes outside every site table: show them with what the kernel and textpoke hold.
  const inSite = (a: bigint): boolean => bad.some((s) => a >= s.address && a < s.address + BigInt(s.len));
  const runs = c.modelRuns.filter((r) => !inSite(r.address));
  const shownRuns = opts.limit === 0 ? runs : runs.slice(0, opts.limit);
  for (const r of shownRuns) out.push(`  ${st.red('DIFFERS')} ${r.len} byte(s) at 0x${r.address.toString(16)} <${img.symbols.format(r.address)}>, in no site table`);
  if (shownRuns.length < runs.length) out.push(`  … ${runs.length - shownRuns.length} more runs (--limit 0 lists all)`);
  out.push(model ? st.red(`${num(model)} byte(s) differ where only textpoke's model can be wrong`) : st.green(entries.some(([k]) => DIFF_REASONS[k].decided === 'boot') ? 'every other differing byte is owned by a boot rule textpoke does not apply offline' : 'every differing byte is owned by a mechanism decided at run time'));
  return out.join('\n');
}
