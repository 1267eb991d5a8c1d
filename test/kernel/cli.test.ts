// The CLI on Debian's 6.1 vmlinux: load, disasm, verify, and patch (boot-time and
// runtime) followed by verify on the written ELF.

import { join } from 'path';
import { copyFileSync, existsSync, readFileSync, statSync, symlinkSync, writeFileSync } from 'fs';
import { testKernel, FETCH_TIMEOUT_MS } from './kernel';
import { textpoke, json, tempDir, removeTempDirs } from '../cli/textpoke';
import type { KernelFiles } from '../../kernel-model/image/download';
import { cachedDebianKernel } from '../../kernel-model/image/named-kernel';

afterAll(removeTempDirs);

describe('textpoke on a real vmlinux', () => {
  let k: KernelFiles;
  let dir: string;

  beforeAll(async () => {
    k = await testKernel();
    dir = tempDir();
  }, FETCH_TIMEOUT_MS);

  it('load: sections, symbols, pv sites by op, alternatives', () => {
    const j = json<{ kind: string; symbols: number; sections: { name: string }[]; sites: { total: number; original: number; byOp: { op: string; count: number }[] }; alternatives: { total: number; overlappingSites: number } }>(
      textpoke(['load', k.vmlinux, '--map', k.systemMap, '--json']),
    );
    expect(j.kind).toBe('vmlinux');
    expect(j.symbols).toBeGreaterThan(50000);
    expect(j.sections.map((s) => s.name)).toEqual(expect.arrayContaining(['.text', '.data', '.parainstructions', '.altinstructions']));
    expect(j.sites.total).toBeGreaterThan(3000);
    expect(j.sites.original).toBe(j.sites.total);
    expect(j.sites.byOp.find((o) => o.op === 'lock.queued_spin_unlock')!.count).toBeGreaterThan(10);
    expect(j.alternatives.total).toBeGreaterThan(1000);
    expect(j.alternatives.overlappingSites).toBeGreaterThan(0);
  });

  it('disasm _raw_spin_unlock: the unpatched pv call annotated', () => {
    const r = textpoke(['disasm', k.vmlinux, '_raw_spin_unlock', '--map', k.systemMap]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/<_raw_spin_unlock\+0x[0-9a-f]+>: +ff 15 [0-9a-f ]+ +callq? \*0x[0-9a-f]+ <pv_ops\+0x[0-9a-f]+> +# pv site lock\.queued_spin_unlock \(6 bytes\): original \(indirect call through pv_ops\)/);
  });

  it('disasm of a name that labels several functions: a warning with the count; name@N picks one', () => {
    const r = textpoke(['disasm', k.vmlinux, 'type_show', '--map', k.systemMap, '--count', '1']);
    expect(r.code).toBe(0);
    const m = /^textpoke: warning: .*'type_show' names (\d+) symbols; using the one at (0x[0-9a-f]+) \(type_show@(\d+)\)/.exec(r.stderr);
    expect(m).not.toBeNull();
    const count = Number(m![1]);
    expect(count).toBeGreaterThanOrEqual(12);
    const second = textpoke(['disasm', k.vmlinux, 'type_show@2', '--map', k.systemMap, '--count', '1']);
    expect(second.code).toBe(0);
    expect(second.stderr).toBe('');
    const addr = (out: string): string | undefined => /^([0-9a-f]{16}) </m.exec(out)?.[1];
    expect(`0x${addr(r.stdout)!.replace(/^0+/, '')}`).toBe(m![2]);
    expect(addr(second.stdout)).toMatch(/^ffffffff/);
    expect(addr(second.stdout)).not.toBe(addr(r.stdout));
    const bad = textpoke(['disasm', k.vmlinux, `type_show@${count + 1}`, '--map', k.systemMap]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain(`names ${count} symbols; give type_show@1 to type_show@${count}`);
  });

  it('a System.map from another build is named as such (exit 2), before anything else is checked', () => {
    const map = readFileSync(k.systemMap, 'latin1');
    // Another build of the same version: its text 0x1000 bytes longer, so _etext moves.
    const other = join(dir, 'System.map.other');
    writeFileSync(other, map.replace(/^([0-9a-f]{16}) T _etext$/m, (_l, a: string) => `${(BigInt('0x' + a) + 0x1000n).toString(16)} T _etext`));
    const r = textpoke(['load', k.vmlinux, '--map', other]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/System\.map\.other: System\.map does not match this vmlinux \(vmlinux\): _etext is 0x[0-9a-f]+ in the map but \.text ends at 0x[0-9a-f]+/);
    expect(r.stderr).not.toContain('__per_cpu_load');
  });

  it('patch -o naming the vmlinux or its System.map is refused (exit 2), the files untouched', () => {
    // Copies and links in a scratch directory, so a failure here cannot damage the cache.
    const map = join(dir, 'System.map.copy');
    copyFileSync(k.systemMap, map);
    const link = join(dir, 'vmlinux.link');
    symlinkSync(k.vmlinux, link);
    const before = statSync(k.vmlinux).mtimeMs;
    const m = textpoke(['patch', k.vmlinux, '--map', map, '--boot', '-o', map]);
    expect(m.code).toBe(2);
    expect(m.stderr).toMatch(/-o .*System\.map\.copy: is the System\.map of the input image/);
    expect(Buffer.compare(readFileSync(map), readFileSync(k.systemMap))).toBe(0);
    const v = textpoke(['patch', k.vmlinux, '--map', map, '--boot', '-o', link]);
    expect(v.code).toBe(2);
    expect(v.stderr).toMatch(/-o .*vmlinux\.link: is the input image/);
    expect(statSync(k.vmlinux).mtimeMs).toBe(before);
  });

  it('verify --against the fixture kernel: not the same build (exit 2)', () => {
    const r = textpoke(['verify', k.vmlinux, '--map', k.systemMap, '--against', 'minikernel']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^textpoke: --against .*minikernel\.json: not the build .*vmlinux was made from \(one is a vmlinux, the other a fixture\)/);
  });

  it('verify: the distribution image still holds the indirect calls (exit 1)', () => {
    const r = textpoke(['verify', k.vmlinux, '--map', k.systemMap, '--limit', '1']);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/paravirt site\(s\) checked against pv_ops \(linux-6\.1 rules\): \d+ mismatch/);
  });

  it('patch --boot, then verify the written ELF (exit 0)', () => {
    const out = join(dir, 'vmlinux.booted');
    const p = json<{ mode: string; files: string[]; byForm: Record<string, number> }>(textpoke(['patch', k.vmlinux, '--map', k.systemMap, '--boot', '-o', out, '--json']));
    expect(p.mode).toBe('boot');
    expect(p.files).toEqual([out]);
    expect(p.byForm.inline).toBeGreaterThan(1000);
    const v = textpoke(['verify', out, '--map', k.systemMap, '--against', k.vmlinux, '--against-map', k.systemMap]);
    expect(v.code).toBe(0);
    expect(v.stdout).toMatch(/all match/);
    const d = textpoke(['disasm', out, '_raw_spin_unlock', '--map', k.systemMap]);
    expect(d.stdout).toMatch(/c6 07 00 +movb \$0,\(%rdi\) +# pv site lock\.queued_spin_unlock \(6 bytes\): boot-patched/);
  });

  it('run: the seed deadlock on the real kernel, and its NMI-safe twin', () => {
    const scen = (n: string): string => join(__dirname, '..', '..', '..', 'fixtures', 'scenarios', 'kernel', `${n}.json`);
    const d = json<{ outcome: string; cycle: number[]; cpus: { symbol: string; context: string[] }[] }>(textpoke(['run', scen('real-nmi-deadlock-primary'), '--json']));
    expect(d.outcome).toBe('deadlock');
    expect(d.cycle).toEqual([0, 1]);
    expect(d.cpus[1].context).toEqual(['thread', 'stop_machine', 'NMI', '#BP']);
    const s = textpoke(['run', scen('real-nmi-safe-primary')]);
    expect(s.code).toBe(0);
    expect(s.stdout).toMatch(/COMPLETED/);
    expect(s.stdout).toMatch(/… \d+ more changed site\(s\), all verified/);
  });

  it('patch at runtime (paravirt boot, unlock switched to native, NMI-safe), then verify', () => {
    const out = join(dir, 'vmlinux.runtime');
    const r = textpoke(['patch', k.vmlinux, '--map', k.systemMap, '--boot-op', 'lock.queued_spin_unlock=paravirt', '--op', 'lock.queued_spin_unlock=native', '--nmi', '-o', out]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/completed after/);
    expect(existsSync(out)).toBe(true);
    expect(textpoke(['verify', out, '--map', k.systemMap]).code).toBe(0);
  });
});

describe('textpoke on Debian 6.12', () => {
  let dir: string;
  beforeAll(async () => {
    await testKernel('6.12');
    dir = tempDir();
  }, FETCH_TIMEOUT_MS);

  it('patch --boot --cpu on the downloaded kernel by name, then verify the result against the original', () => {
    const out = join(dir, 'vmlinux-6.12.booted');
    const p = textpoke(['patch', '--image', 'debian-6.12', '--cpu', 'Skylake-Client', '--boot', '-o', out, '--json']);
    expect(p.code).toBe(0);
    const j = json<{ rules: string; cpu: string; kinds: Record<string, { sites: number; changed: number }>; runtime: Record<string, number> }>(p);
    expect(j.rules).toBe('linux-6.12');
    expect(j.cpu).toBe('Skylake-Client');
    expect(j.kinds.alternative.changed).toBeGreaterThan(5000);
    expect(j.runtime.jump_label).toBeGreaterThan(1000);
    const v = textpoke(['verify', out, '--map', join(dir, '..', 'nope'), '--against', 'debian-6.12']);
    expect(v.code).toBe(2);
    expect(v.stderr).toMatch(/nope: no such file \(--map\)/);
    const k = textpoke(['verify', out, '--against', 'debian-6.12', '--cpu', 'Skylake-Client', '--map', cachedDebianKernel('6.12').systemMap]);
    expect(k.code).toBe(0);
    expect(k.stdout).toMatch(/linux-6\.12 rules\): all match/);
  });

  it('a CPU without a profile, or a fixture given --cpu, is one line and exit 2', () => {
    const r = textpoke(['load', 'debian-6.12', '--cpu', 'Cascadelake']);
    expect(r.code).toBe(2);
    expect(r.stderr.trim()).toBe('textpoke: --cpu Cascadelake: no profile for Linux 6.12 (known: Skylake-Client, max, qemu64)');
    const f = textpoke(['load', 'minikernel', '--cpu', 'max']);
    expect(f.code).toBe(2);
    expect(f.stderr).toMatch(/--cpu: .* is a fixture; CPU profiles apply to a vmlinux/);
  });
});
