// ftrace-scale batch patching on Debian's 6.1 and 6.12: __fentry__ sites turned into calls to
// the harness's tracer and back in text_poke_bp_batch batches while workers run traced
// spinlock functions (a smaller set of sites than `npm run bench`, which does all of
// .text on 64 CPUs). The boot state it starts from is checked against the kernel
// booted in QEMU. On 6.12 the harness boots the kernel by 6.12's rules (no return
// left to the default thunk, which warns since 6.9; ENDBR before each __fentry__ site).

import { testKernel, FETCH_TIMEOUT_MS } from './kernel';
import { loadVmlinuxImage, type VmlinuxImage } from '../../kernel-model/image/vmlinux-image';
import { bootDump, bootDumpKernel, readDumpText } from '../../kernel-model/image/boot-dump';
import { runFtrace, ftraceRecords, FTRACE_WATCHED, type FtraceReport } from '../../kernel-model/scenario/ftrace';
import { ftraceNopReplace } from '../../kernel-model/linux/ftrace';

let img: VmlinuxImage;
let records: bigint[];

beforeAll(async () => {
  const k = await testKernel();
  img = loadVmlinuxImage(k.vmlinux, k.systemMap);
  records = ftraceRecords(img);
}, FETCH_TIMEOUT_MS);

const failed = (r: FtraceReport): string[] => r.invariants.filter((i) => !i.ok).map((i) => `${i.name}: ${i.detail}`);

describe('ftrace on the real kernel', () => {
  it("ftrace_init's NOPs are what the booted kernel holds at every __fentry__ site of .text", async () => {
    const k = await testKernel();
    const d = await bootDump(bootDumpKernel(k, img.vm), { cpu: 'qemu64' });
    const t = readDumpText(d);
    const nop = Buffer.from(ftraceNopReplace()).toString('hex');
    expect(records.length).toBeGreaterThan(30000);
    const wrong = records.filter((a) => {
      const o = Number(a - t.address);
      return t.bytes.subarray(o, o + 5).toString('hex') !== nop;
    });
    expect(wrong.map((a) => `0x${a.toString(16)} <${img.symbols.format(a)}>`)).toEqual([]);
  }, FETCH_TIMEOUT_MS);

  it('2,000 sites on 8 CPUs: on and off in batches, exact tracer counts, XMC clean, every site restored', () => {
    const r = runFtrace(img, { cpus: 8, sites: 2000, rounds: 3 });
    expect(failed(r)).toEqual([]);
    expect(r.outcome).toBe('completed');
    expect(r.sites).toBe(2000);
    // TP_VEC_MAX (256) sites per batch.
    expect(r.enable.batches).toBe(Math.ceil(2000 / 256));
    expect(r.disable.batches).toBe(Math.ceil(2000 / 256));
    // Workers passed through sites while their int3 was in place: the handler emulated them.
    expect(r.int3s).toBeGreaterThan(0);
    for (const w of r.workers) {
      expect(w.hits[1]).toEqual(FTRACE_WATCHED.map(() => 3n));
      expect(w.hits[2]).toEqual(FTRACE_WATCHED.map(() => 0n));
    }
  });

  it('plain stores instead of the batch protocol: the XMC checker objects', () => {
    const r = runFtrace(img, { cpus: 8, sites: 2000, rounds: 3, poke: 'naive' });
    expect(r.outcome).toBe('failed');
    expect(r.invariants.find((i) => i.name === 'XMC clean')!.ok).toBe(false);
  });

  it('a site that is not the boot NOP: ftrace_bug, and nothing is written', () => {
    const r = runFtrace(img, { cpus: 4, sites: 300, rounds: 2, prepare: (m, recs) => m.mem.writeBytes(recs[10], Uint8Array.of(0xe8, 0, 0, 0, 0)) });
    expect(r.outcome).toBe('failed');
    expect(r.enable.sites).toBe(0);
    expect(failed(r).join('\n')).toMatch(/ftrace_bug: 0x[0-9a-f]+ holds e8 00 00 00 00, expected 0f 1f 44 00 00/);
  });
});

describe('ftrace on Debian 13 (Linux 6.12)', () => {
  let img612: VmlinuxImage;
  let records612: bigint[];
  beforeAll(async () => {
    const k = await testKernel('6.12');
    img612 = loadVmlinuxImage(k.vmlinux, k.systemMap);
    records612 = ftraceRecords(img612);
  }, FETCH_TIMEOUT_MS);
  afterAll(() => img612?.vm.close());

  it("about 40,000 __fentry__ sites in .text, each ftrace_init's NOP in the booted kernel, each after an ENDBR", async () => {
    const k = await testKernel('6.12');
    const t = readDumpText(await bootDump(bootDumpKernel(k, img612.vm), { cpu: 'qemu64' }));
    expect(records612.length).toBeGreaterThan(38000);
    const nop = Buffer.from(ftraceNopReplace()).toString('hex');
    const at = (a: bigint, n: number): string => t.bytes.subarray(Number(a - t.address), Number(a - t.address) + n).toString('hex');
    expect(records612.filter((a) => at(a, 5) !== nop).map((a) => `0x${a.toString(16)} <${img612.symbols.format(a)}>`)).toEqual([]);
    const unlock = img612.vm.symbol('_raw_spin_unlock');
    expect(records612).toContain(unlock + 4n);
    expect(at(unlock, 4)).toBe('f30f1efa');
  }, FETCH_TIMEOUT_MS);

  it('2,000 sites on 8 CPUs: on and off in batches, exact tracer counts, XMC clean, every site restored', () => {
    const r = runFtrace(img612, { cpus: 8, sites: 2000, rounds: 3 });
    expect(failed(r)).toEqual([]);
    expect(r.outcome).toBe('completed');
    expect(r.mcountSites).toBe(records612.length);
    expect(r.enable.batches).toBe(Math.ceil(2000 / 256));
    expect(r.int3s).toBeGreaterThan(0);
    for (const w of r.workers) {
      expect(w.hits[1]).toEqual(FTRACE_WATCHED.map(() => 3n));
      expect(w.hits[2]).toEqual(FTRACE_WATCHED.map(() => 0n));
    }
  });
});
