// Ground truth from the kernel itself: Debian's 6.1 booted in QEMU on each standard CPU
// model (npm run boot-dump; cached in .cache/boot-dump/), its .text compared with
// textpoke's offline boot patch at every paravirt and alternatives site and over all
// of .text. This replaces checking the boot patch against the code that wrote it.

import { testKernel, FETCH_TIMEOUT_MS } from './kernel';
import { loadVmlinuxImage, type VmlinuxImage } from '../../kernel-model/image/vmlinux-image';
import { bootDump, bootDumpKernel, readDumpText, type BootDump } from '../../kernel-model/image/boot-dump';
import { STANDARD_CPUS, cpuFeatureFile, readCpuFeatureFile, featureSet } from '../../kernel-model/image/cpu-features';
import { join } from 'path';
import { readFileSync } from 'fs';
import { bootPatchImage, type BootPatchResult } from '../../kernel-model/linux/boot-patch';
import { compareWithBoot, verifyAgainstBoot, type BootComparison } from '../../kernel-model/linux/verify-boot';
import { encodeCall } from '../../kernel-model/linux/paravirt-patch';
import type { KernelFiles } from '../../kernel-model/image/download';

let k: KernelFiles;
let img: VmlinuxImage;
let boot: BootPatchResult;
const dumps = new Map<string, BootDump>();
const results = new Map<string, BootComparison>();

beforeAll(async () => {
  k = await testKernel();
  img = loadVmlinuxImage(k.vmlinux, k.systemMap);
  boot = bootPatchImage(img);
  for (const cpu of STANDARD_CPUS) {
    const d = await bootDump(
      bootDumpKernel(k, img.vm),
      { cpu, log: (s) => process.stderr.write(`boot-dump: ${s}\n`) },
    );
    dumps.set(cpu, d);
    const c = compareWithBoot(img, readDumpText(d), { writes: boot.writes });
    results.set(cpu, c);
    const s = c.summary;
    process.stderr.write(
      `6.1 -cpu ${cpu}: boot ${d.meta.seconds.boot} s; .text ${c.text.matched}/${c.text.bytes} bytes match; ` +
        `paravirt ${s.paravirt.matched}/${s.paravirt.compared}; alternatives ${s.alternative.matched}/${s.alternative.compared}; differing ${JSON.stringify(c.text.differing)}\n`,
    );
  }
}, FETCH_TIMEOUT_MS);

/** Alternatives that textpoke's 6.1 boot patch decides: those it writes (the ones overlapping a paravirt site). */
function decidedAlternatives(): Set<bigint> {
  const s = new Set<bigint>();
  for (const a of img.vm.altinstructions()) if (boot.writes.has(a.instr)) s.add(a.instr);
  return s;
}

describe.each([...STANDARD_CPUS])('6.1 booted in QEMU on -cpu %s', (cpu) => {
  it('the dump is of this kernel, stopped at the root-mount panic', () => {
    const d = dumps.get(cpu)!;
    expect(d.meta.kernel.version).toBe(k.version);
    expect(d.meta.panic).toMatch(/Unable to mount root fs/);
    expect(d.meta.text.size).toBe(Number(img.vm.symbol('_etext') - img.vm.symbol('_text')));
  });

  it('every paravirt site in .text holds exactly what textpoke writes offline', () => {
    const c = results.get(cpu)!;
    expect(c.summary.paravirt.compared).toBeGreaterThan(3000);
    const bad = c.sites.filter((s) => s.kind === 'paravirt' && !s.match);
    expect(bad.map((s) => `${s.address.toString(16)} ${Buffer.from(s.actual).toString('hex')}`)).toEqual([]);
    expect(c.summary.paravirt.matched).toBe(c.summary.paravirt.compared);
    // Sites in .init.text are freed (poisoned) before the panic: counted, never compared.
    expect(c.notObservable.paravirt + c.summary.paravirt.compared).toBe(img.sites.length);
  });

  it('every alternative textpoke decides matches the booted kernel', () => {
    const c = results.get(cpu)!;
    const decided = decidedAlternatives();
    expect(decided.size).toBeGreaterThan(100);
    const bad = c.sites.filter((s) => s.kind === 'alternative' && decided.has(s.address) && !s.match);
    expect(bad.map((s) => `${s.address.toString(16)} ${s.classes.join('+')}`)).toEqual([]);
  });

  it('every other differing byte is owned by a kernel mechanism, or lies in an alternative textpoke does not decide', () => {
    const c = results.get(cpu)!;
    const t = readDumpText(dumps.get(cpu)!);
    // Were the undecided alternatives decided as the kernel did, textpoke would be wrong nowhere.
    const writes = new Map(boot.writes);
    for (const a of img.vm.altinstructions()) {
      const o = Number(a.instr - t.address);
      if (!writes.has(a.instr) && o >= 0 && o + a.instrlen <= t.bytes.length) writes.set(a.instr, t.bytes.subarray(o, o + a.instrlen));
    }
    const c2 = compareWithBoot(img, t, { writes });
    expect(c2.text.differing.model ?? 0).toBe(0);
    expect(c.text.differing.model).toBeGreaterThan(0);
    // What is left is owned: return thunks and __fentry__ NOPs at boot, static calls and jump labels at run time.
    for (const cls of ['return', 'mcount', 'static_call', 'jump_label'] as const) expect(c2.text.differing[cls]).toBeGreaterThan(0);
  });

  it('the comparison catches a wrong boot patch: irq.save_fl left as a call', () => {
    const writes = new Map(boot.writes);
    const wrong = img.sites.filter((s) => s.op === 'irq.save_fl' && writes.has(s.address));
    const callTo = img.vm.symbol('native_save_fl');
    for (const s of wrong) {
      const b = new Uint8Array(s.len).fill(0x90);
      b.set(encodeCall(s.address, callTo), 0);
      writes.set(s.address, b);
    }
    const c = compareWithBoot(img, readDumpText(dumps.get(cpu)!), { writes });
    const inText = wrong.filter((s) => s.address < img.vm.symbol('_etext')).length;
    expect(inText).toBeGreaterThan(300);
    expect(c.sites.filter((s) => s.kind === 'paravirt' && s.classes[0] === 'model').length).toBe(inText);
  });
});

const FEATURES = join(__dirname, '..', '..', '..', 'fixtures', 'cpu-features');

describe('CPU feature words read from the booted kernel', () => {
  const names = (cpu: string): Set<string> => new Set(cpuFeatureFile(img.vm, dumps.get(cpu)!, '6.1').features.map((f) => f.name));

  it.each([...STANDARD_CPUS])('-cpu %s: the committed fixture holds the words this QEMU boot reports', (cpu) => {
    const fresh = cpuFeatureFile(img.vm, dumps.get(cpu)!, '6.1');
    const committed = readCpuFeatureFile(join(FEATURES, `6.1-${cpu}.json`));
    expect(fresh.words.length).toBe(img.vm.layouts().capabilityWords);
    // Another QEMU may model the CPU differently: then the fixture is only compared in shape.
    if (committed.qemu === fresh.qemu) expect(committed.words).toEqual(fresh.words);
    else process.stderr.write(`cpu-features 6.1-${cpu}: fixture from ${committed.qemu}, this host has ${fresh.qemu}: words not compared\n`);
    // X86_FEATURE_ALWAYS (word 3, bit 21) is set by the kernel itself on every CPU.
    expect(featureSet(committed).has(3 * 32 + 21)).toBe(true);
  });

  it('the words say what each model is: long mode everywhere, AVX only on max and Skylake, Meltdown only on the Intel model', () => {
    for (const cpu of STANDARD_CPUS) expect(names(cpu).has('lm')).toBe(true);
    expect(names('qemu64').has('avx')).toBe(false);
    expect(names('max').has('avx')).toBe(true);
    expect(names('Skylake-Client').has('avx')).toBe(true);
    expect(names('Skylake-Client').has('bug:cpu_meltdown')).toBe(true);
    expect(names('qemu64').has('bug:cpu_meltdown')).toBe(false);
    // The console agrees: the kernel printed AVX's xstate only where the words have avx.
    for (const cpu of STANDARD_CPUS) {
      const log = readFileSync(join(dumps.get(cpu)!.dir, 'serial.log'), 'latin1');
      expect(/'AVX registers'/.test(log)).toBe(names(cpu).has('avx'));
    }
  });
});

describe('verify --against-boot as a library call', () => {
  it('refuses a dump whose .text is not this image', () => {
    const d = dumps.get('qemu64')!;
    const other: BootDump = { ...d, meta: { ...d.meta, text: { ...d.meta.text, address: '0xffffffff81001000' } } };
    expect(() => verifyAgainstBoot(img, other)).toThrow(/a dump of another kernel/);
  });
});
