// `textpoke verify --against-boot`: Debian's 6.1 .text patched offline against the
// same kernel booted in QEMU (the dump is made, or taken from the cache, in beforeAll).

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
  it('reports the bytes of .text that match, by owner, and the paravirt sites', () => {
    const r = textpoke(['verify', k.vmlinux, '--map', k.systemMap, '--against-boot', d.dir, '--limit', '1']);
    expect(r.stdout).toMatch(/[\d,]+ of [\d,]+ bytes match byte for byte \(9\d\.\d+%\)/);
    expect(r.stdout).toMatch(/mcount +[\d,]+ +boot rule not modelled offline: ftrace_init\(\)/);
    expect(r.stdout).toMatch(/paravirt sites: (\d+) of \1 in \.text match/);
    // Alternatives that textpoke does not decide yet differ: exit 1, with the site shown.
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/MISMATCH alternative 0x[0-9a-f]+ <[^>]+>\n +booted +[0-9a-f ]+/);
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
