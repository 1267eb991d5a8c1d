// `textpoke verify --against-boot`: Debian's 6.1 .text patched offline against the
// same kernel booted in QEMU on qemu64 (the dump is made, or taken from the cache, in
// beforeAll); the CPU profile defaults to the dump's.

import { join } from 'path';
import { writeFileSync } from 'fs';
import { testKernel, FETCH_TIMEOUT_MS } from './kernel';
import { textpoke, json, tempDir, removeTempDirs, expectUserError } from '../cli/textpoke';
import { loadVmlinux } from '../../kernel-model/image/vmlinux';
import { bootDump, bootDumpKernel, type BootDump } from '../../kernel-model/image/boot-dump';
import type { KernelFiles } from '../../kernel-model/image/download';

afterAll(removeTempDirs);

let k: KernelFiles;
let d: BootDump;

beforeAll(async () => {
  k = await testKernel();
  const vm = loadVmlinux(k.vmlinux, { systemMap: k.systemMap });
  d = await bootDump(bootDumpKernel(k, vm), { cpu: 'qemu64' });
  vm.close();
}, FETCH_TIMEOUT_MS);

describe('verify --against-boot', () => {
  it('reports the bytes of .text that match, by owner, and every site matching (exit 0)', () => {
    const r = textpoke(['verify', k.vmlinux, '--map', k.systemMap, '--against-boot', d.dir]);
    expect(r.stdout).toMatch(/[\d,]+ of [\d,]+ bytes match byte for byte \(99\.\d+%\)/);
    expect(r.stdout).toMatch(/static_call +[\d,]+ +decided at run time: static call/);
    expect(r.stdout).toMatch(/paravirt sites: (\d+) of \1 in \.text match/);
    expect(r.stdout).toMatch(/alternative sites: (\d+) of \1 in \.text match/);
    expect(r.stdout).toMatch(/every differing byte is owned by a mechanism decided at run time/);
    expect(r.code).toBe(0);
  });

  it('the wrong CPU profile for the dump: alternatives differ, shown, exit 1', () => {
    const r = textpoke(['verify', k.vmlinux, '--map', k.systemMap, '--against-boot', d.dir, '--cpu', 'Skylake-Client', '--limit', '1']);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/MISMATCH alternative 0x[0-9a-f]+ <[^>]+>\n +booted +[0-9a-f ]+/);
    expect(r.stdout).toMatch(/byte\(s\) differ where only textpoke's model can be wrong/);
  });

  it('--json: counts that add up', () => {
    const j = json<{ ok: boolean; text: { bytes: number; matched: number; differing: Record<string, number> }; summary: { paravirt: { compared: number; matched: number } } }>(
      textpoke(['verify', k.vmlinux, '--map', k.systemMap, '--against-boot', join(d.dir, 'dump.json'), '--json']),
    );
    const diff = Object.values(j.text.differing).reduce((a, b) => a + b, 0);
    expect(j.text.matched + diff).toBe(j.text.bytes);
    expect(j.summary.paravirt.matched).toBe(j.summary.paravirt.compared);
  });

  it('a file that is not a dump: one line, exit 2', () => {
    const bad = join(tempDir(), 'dump.json');
    writeFileSync(bad, '{"format": "something else"}');
    expectUserError(textpoke(['verify', k.vmlinux, '--map', k.systemMap, '--against-boot', bad]), "field 'format'");
  });
});
