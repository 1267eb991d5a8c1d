// The side-by-side bench must measure the same work on both engines: every workload
// ends with the same registers on textpoke and on Unicorn. CI installs Debian's
// libunicorn-dev, so a missing peer is a failure here, not a skip. No timing
// assertions: figures are only checked for shape.

import { benchPeer } from '../bench/peer';
import { formatPeer } from '../bench/report';
import { benchOptions } from '../bench/util';

describe('bench: side by side with Unicorn (--quick)', () => {
  const r = benchPeer(benchOptions(true));

  it('finds and builds the peer', () => {
    expect(r.note).not.toMatch(/not installed|failed/);
    expect(r.peer).toMatch(/Unicorn/);
  });

  it('runs the fixture workloads on both engines, which end in the same registers', () => {
    const labels = r.rows.map((x) => x.label);
    expect(labels.slice(0, 3)).toEqual(['1 CPU, register loop', '1 CPU, checksum loop', '4 CPUs q=1, register loop']);
    for (const row of r.rows) {
      expect(row.agree).toBe(true);
      expect(row.textpokeMips).toBeGreaterThan(0);
      expect(row.peerMips).toBeGreaterThan(0);
      expect(row.ratio).toBeCloseTo(row.peerMips! / row.textpokeMips, 6);
    }
    expect(r.rows.find((x) => x.label.startsWith('4 CPUs'))).toMatchObject({ cpus: 4, quantum: 1 });
  });

  it('prints one table row per workload', () => {
    const text = formatPeer(r);
    for (const row of r.rows) expect(text).toContain(row.label);
    expect(text).not.toContain('REGISTERS DIFFER');
  });
});
