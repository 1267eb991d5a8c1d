// Ground truth from the kernel itself: Debian's 6.1 and 6.12 booted in QEMU on each
// standard CPU model (npm run boot-dump; cached in .cache/boot-dump/), their .text
// compared with textpoke's offline boot patch for that CPU's profile at every paravirt
// and alternatives site and over all of .text. This replaces checking the boot patch
// against the code that wrote it.

import { join } from 'path';
import { readFileSync } from 'fs';
import { testKernel, FETCH_TIMEOUT_MS } from './kernel';
import { loadVmlinuxImage, type VmlinuxImage } from '../../kernel-model/image/vmlinux-image';
import { bootDump, bootDumpKernel, readDumpText, type BootDump } from '../../kernel-model/image/boot-dump';
import { STANDARD_CPUS, featureWords } from '../../kernel-model/image/cpu-features';
import { loadCpuProfile, featuresFromWords } from '../../kernel-model/image/cpu-profile';
import { bootPatchImage, type BootPatchResult } from '../../kernel-model/linux/boot-patch';
import { compareWithBoot, verifyAgainstBoot, DIFF_REASONS, type BootComparison } from '../../kernel-model/linux/verify-boot';
import { encodeCall } from '../../kernel-model/linux/paravirt-patch';
import type { ReleaseName } from '../../kernel-model/image/releases';
import type { KernelFiles } from '../../kernel-model/image/download';

interface Booted {
  k: KernelFiles;
  img: VmlinuxImage;
  dumps: Map<string, BootDump>;
  patches: Map<string, BootPatchResult>;
  results: Map<string, BootComparison>;
}

const RELEASES: ReleaseName[] = ['6.1', '6.12'];
const booted = new Map<ReleaseName, Booted>();

beforeAll(async () => {
  for (const release of RELEASES) {
    const k = await testKernel(release);
    const img = loadVmlinuxImage(k.vmlinux, k.systemMap);
    const b: Booted = { k, img, dumps: new Map(), patches: new Map(), results: new Map() };
    for (const cpu of STANDARD_CPUS) {
      const d = await bootDump(bootDumpKernel(k, img.vm), { cpu, log: (s) => process.stderr.write(`boot-dump: ${s}\n`) });
      const p = bootPatchImage(img, { cpu });
      const c = compareWithBoot(img, readDumpText(d), { offline: p });
      b.dumps.set(cpu, d);
      b.patches.set(cpu, p);
      b.results.set(cpu, c);
      const s = c.summary;
      process.stderr.write(
        `${release} -cpu ${cpu}: boot ${d.meta.seconds.boot} s; .text ${c.text.matched}/${c.text.bytes} bytes match; ` +
          `paravirt ${s.paravirt.matched}/${s.paravirt.compared} (+${c.notObservable.paravirt} in .init.text); ` +
          `alternatives ${s.alternative.matched}/${s.alternative.compared} (+${c.notObservable.alternative}); differing ${JSON.stringify(c.text.differing)}\n`,
      );
    }
    booted.set(release, b);
  }
}, FETCH_TIMEOUT_MS);

const cases = RELEASES.flatMap((r) => STANDARD_CPUS.map((c) => [r, c] as [ReleaseName, string]));

describe.each(cases)('%s booted in QEMU on -cpu %s', (release, cpu) => {
  const get = (): { b: Booted; c: BootComparison; d: BootDump } => {
    const b = booted.get(release)!;
    return { b, c: b.results.get(cpu)!, d: b.dumps.get(cpu)! };
  };

  it('the dump is of this kernel, stopped at the root-mount panic', () => {
    const { b, d } = get();
    expect(d.meta.kernel.version).toBe(b.k.version);
    expect(d.meta.panic).toMatch(/Unable to mount root fs/);
    expect(d.meta.text.size).toBe(Number(b.img.vm.symbol('_etext') - b.img.vm.symbol('_text')));
  });

  it('every paravirt site in .text holds exactly what textpoke writes offline', () => {
    const { b, c } = get();
    expect(c.summary.paravirt.compared).toBeGreaterThan(3000);
    const bad = c.sites.filter((s) => s.kind === 'paravirt' && !s.match);
    expect(bad.map((s) => `${s.address.toString(16)} ${Buffer.from(s.actual).toString('hex')} ${s.classes.join('+')}`)).toEqual([]);
    // Sites in .init.text are freed (poisoned) before the panic: counted, never compared.
    expect(c.notObservable.paravirt + c.summary.paravirt.compared).toBe(b.img.sites.length);
  });

  it('every alternative in .text holds exactly what textpoke writes offline', () => {
    const { c } = get();
    expect(c.summary.alternative.compared).toBeGreaterThan(4000);
    const bad = c.sites.filter((s) => s.kind === 'alternative' && !s.match);
    expect(bad.map((s) => `${s.address.toString(16)} ${s.classes.join('+')}`)).toEqual([]);
  });

  it('every other differing byte of .text is decided at run time (static keys, static calls, runtime constants)', () => {
    const { c } = get();
    expect(c.modelRuns.slice(0, 5).map((r) => `0x${r.address.toString(16)} (${r.len})`)).toEqual([]);
    for (const cls of Object.keys(c.text.differing)) expect(`${cls}: ${DIFF_REASONS[cls as keyof typeof DIFF_REASONS].decided}`).toBe(`${cls}: runtime`);
    expect(c.text.differing.static_call).toBeGreaterThan(0);
    expect(c.text.differing.jump_label).toBeGreaterThan(0);
  });

  it('the comparison catches a wrong boot patch: irq.save_fl left as a call', () => {
    const { b, d } = get();
    const p = b.patches.get(cpu)!;
    const wrong = b.img.sites.filter((s) => s.op === 'irq.save_fl' && s.address < b.img.vm.symbol('_etext'));
    expect(wrong.length).toBeGreaterThan(300);
    const target = b.img.vm.symbol('native_save_fl');
    const over = new Map(wrong.map((s) => [s.address, encodeCall(s.address, target)]));
    const writes = new Map([...p.writes, ...over]);
    const read = (a: bigint, n: number): Uint8Array => over.get(a)?.slice() ?? p.read(a, n);
    const c = compareWithBoot(b.img, readDumpText(d), { offline: { writes, read } });
    expect(c.sites.filter((s) => s.kind === 'paravirt' && s.classes[0] === 'model').length).toBe(wrong.length);
  });

  it("the committed CPU profile holds the feature words this boot's boot_cpu_data reports", () => {
    const { b, d } = get();
    const fresh = featureWords(b.img.vm, d);
    const profile = loadCpuProfile(cpu, release);
    const file = JSON.parse(readFileSync(profile.file!, 'utf8')) as { source: string; words: string[] };
    expect(file.words.length).toBe(b.img.vm.layouts().capabilityWords);
    // Another QEMU may model the CPU differently: then the words are only compared in shape.
    if (file.source.includes(d.meta.qemu.version)) expect([...profile.features].sort((x, y) => x - y)).toEqual([...featuresFromWords(fresh)].sort((x, y) => x - y));
    else process.stderr.write(`cpu profile ${release}-${cpu}: written with another QEMU than ${d.meta.qemu.version}: words not compared\n`);
    // X86_FEATURE_ALWAYS (word 3, bit 21) is set by the kernel itself on every CPU.
    expect(featuresFromWords(fresh).has(3 * 32 + 21)).toBe(true);
  });
});

describe('what the feature words say about each model', () => {
  it('long mode everywhere, AVX only on max and Skylake (as the console says), Meltdown only on the Intel model', () => {
    for (const release of RELEASES) {
      const b = booted.get(release)!;
      const names = (cpu: string): Set<string> => {
        const n = b.img.vm.capFlagNames();
        return new Set([...featuresFromWords(featureWords(b.img.vm, b.dumps.get(cpu)!))].map((bit) => n[bit] ?? ''));
      };
      for (const cpu of STANDARD_CPUS) {
        expect(names(cpu).has('lm')).toBe(true);
        const log = readFileSync(join(b.dumps.get(cpu)!.dir, 'serial.log'), 'latin1');
        expect(/'AVX registers'/.test(log)).toBe(names(cpu).has('avx'));
      }
      expect(names('qemu64').has('avx')).toBe(false);
      expect(names('max').has('avx')).toBe(true);
      expect(names('Skylake-Client').has('bug:cpu_meltdown')).toBe(true);
      expect(names('qemu64').has('bug:cpu_meltdown')).toBe(false);
    }
  });
});

describe('verify --against-boot as a library call', () => {
  it('refuses a dump whose .text is not this image', () => {
    const b = booted.get('6.1')!;
    const d = b.dumps.get('qemu64')!;
    const other: BootDump = { ...d, meta: { ...d.meta, text: { ...d.meta.text, address: '0xffffffff81001000' } } };
    expect(() => verifyAgainstBoot(b.img, other, 'qemu64')).toThrow(/a dump of another kernel/);
    // A 6.12 dump against the 6.1 image: another kernel.
    expect(() => verifyAgainstBoot(b.img, booted.get('6.12')!.dumps.get('qemu64')!, 'qemu64')).toThrow(/another/);
  });
});
