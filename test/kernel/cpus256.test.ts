// The vmlinux harness on up to 256 CPUs: runtime patching of Debian's lock ops with
// both protocols on 256 emulated CPUs (past 64, text_poke's sync_ack_map spans several
// words), and a CPU count past the harness's limit refused before any image is loaded.

import { join } from 'path';
import { writeFileSync } from 'fs';
import { testKernel, FETCH_TIMEOUT_MS } from './kernel';
import { loadVmlinuxImage, type VmlinuxImage } from '../../kernel-model/image/vmlinux-image';
import { runtimePatch } from '../../kernel-model/scenario/runtime-patch';
import { checkHarnessCpus } from '../../kernel-model/scenario/boot-vmlinux';
import { loadFixture } from '../../kernel-model/image/fixture-image';
import type { OpChange, Protocol } from '../../kernel-model/linux/kernel-model';
import { textpoke, tempDir, removeTempDirs, expectUserError } from '../cli/textpoke';

afterAll(removeTempDirs);

let img: VmlinuxImage;

beforeAll(async () => {
  const k = await testKernel();
  img = loadVmlinuxImage(k.vmlinux, k.systemMap);
}, FETCH_TIMEOUT_MS);

const TO_NATIVE: OpChange[] = [
  { op: 'lock.queued_spin_unlock', mode: 'native' },
  { op: 'lock.vcpu_is_preempted', mode: 'native' },
];
const GUEST_BOOT: OpChange[] = TO_NATIVE.map((c) => ({ op: c.op, mode: 'paravirt' }));

describe('256 CPUs on the real kernel', () => {
  it('the harness is built for 256 CPUs', () => {
    expect(loadFixture('vmlinux-harness').maxCpus).toBe(256);
  });

  it.each([
    ['stop-machine', false],
    ['stop-machine', true],
    ['batch', false],
  ] as [Protocol, boolean][])('%s, nmi=%s: every site patched and verified, invariants hold', (protocol, nmi) => {
    const r = runtimePatch(img, { ops: TO_NATIVE, protocol, nmi, cpus: 256, bootOps: GUEST_BOOT, iterations: 4, variant: 'fixed' });
    expect(r.report.outcome).toBe('completed');
    expect(r.report.cpus.length).toBe(256);
    for (const s of r.report.sites) expect(`${s.op}@${s.address.toString(16)}: ${s.verified}`).toBe(`${s.op}@${s.address.toString(16)}: true`);
    for (const i of r.report.invariants) expect(`${i.name}: ${i.ok}`).toBe(`${i.name}: true`);
  });
});

describe('the CPU limit, checked before the image is loaded', () => {
  it('checkHarnessCpus names the image and the limit', () => {
    expect(() => checkHarnessCpus(300, 'vmlinux')).toThrow(/^vmlinux: 300 CPUs asked for; the vmlinux harness runs at most 256$/);
    expect(() => checkHarnessCpus(256, 'vmlinux')).not.toThrow();
  });

  it('a scenario asking for more CPUs than exist: one line, exit 2, and the vmlinux is never read', () => {
    const dir = tempDir();
    const file = join(dir, 'too-many.json');
    // The image does not exist: an error about it would mean it was looked at first.
    writeFileSync(file, JSON.stringify({ name: 'too-many', image: join(dir, 'no-such-vmlinux'), cpus: 300, work: [] }));
    expectUserError(textpoke(['run', file]), /cpus/, /256/);
  });
});
