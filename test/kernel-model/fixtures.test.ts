// The committed fixture blobs and manifests are what their sources assemble to, and a
// damaged fixture is reported precisely.

import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'fs';
import { tmpdir } from 'os';
import { join } from 'path';
import { buildFixture, fixtureNames, FIXTURE_DIR } from '../../scripts/build-fixtures';
import { loadFixture } from '../../kernel-model/image/fixture-image';

describe('fixtures', () => {
  it.each(fixtureNames())('%s: the committed blob and manifest match the source', (name) => {
    const built = buildFixture(name);
    const blob = readFileSync(join(FIXTURE_DIR, `${name}.bin`));
    expect(Buffer.compare(blob, Buffer.from(built.blob))).toBe(0);
    expect(JSON.parse(readFileSync(join(FIXTURE_DIR, `${name}.json`), 'utf8'))).toEqual(built.manifest);
  });

  it('minikernel has the paravirt sites the scenarios patch, as ff 15 calls through pv_ops', () => {
    const img = loadFixture('minikernel');
    const ops = img.sites.map((s) => s.op).sort();
    expect(ops).toEqual(
      ['cpu.io_delay', 'irq.irq_disable', 'irq.irq_enable', 'irq.save_fl', 'lock.kick', 'lock.queued_spin_lock_slowpath',
        'lock.queued_spin_unlock', 'lock.vcpu_is_preempted', 'lock.wait', 'mmu.read_cr2'].sort(),
    );
    for (const s of img.sites) {
      const b = img.read(s.address, 6);
      expect([b[0], b[1]]).toEqual([0xff, 0x15]);
      const disp = new DataView(b.buffer, b.byteOffset).getInt32(2, true);
      expect(s.address + 6n + BigInt(disp)).toBe(img.pvOps.address + 8n * BigInt(s.slot));
    }
  });

  describe('damaged fixtures are named precisely', () => {
    const dir = mkdtempSync(join(tmpdir(), 'textpoke-fixture-'));
    afterAll(() => rmSync(dir, { recursive: true, force: true }));
    const copy = (): string => {
      copyFileSync(join(FIXTURE_DIR, 'minikernel.bin'), join(dir, 'minikernel.bin'));
      copyFileSync(join(FIXTURE_DIR, 'minikernel.json'), join(dir, 'minikernel.json'));
      return join(dir, 'minikernel.json');
    };
    it('a truncated blob', () => {
      const m = copy();
      const bin = join(dir, 'minikernel.bin');
      writeFileSync(bin, readFileSync(bin).subarray(0, 1000));
      expect(() => loadFixture(m)).toThrow(/minikernel\.bin: 1000 bytes whose sha256 does not match/);
    });
    it('a manifest field of the wrong type', () => {
      const m = copy();
      const j = JSON.parse(readFileSync(m, 'utf8'));
      j.sites[3].len = 'six';
      writeFileSync(m, JSON.stringify(j));
      expect(() => loadFixture(m)).toThrow(/sites\[3\]: field 'len' must be a length/);
    });
    it('a manifest that is not JSON', () => {
      const m = copy();
      writeFileSync(m, '{ nope');
      expect(() => loadFixture(m)).toThrow(/minikernel\.json: not valid JSON/);
    });
  });
});
