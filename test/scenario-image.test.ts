// A scenario's "image" field: a name, or a local vmlinux with its System.map (paths
// taken from the scenario file's folder), validated field by field; and the named
// Debian kernels resolved from the cache with a clear error when one is missing.

import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { parseScenario } from '../kernel-model/scenario/scenario-file';
import { scenarioImage } from '../kernel-model/scenario/run';
import { cachedDebianKernel, debianKernelName, localKernel } from '../kernel-model/image/named-kernel';

const base = { cpus: 1, work: [{ entry: 'f' }] };

describe('scenario image', () => {
  it('a local kernel: paths relative to the scenario file, both fields required, no others', () => {
    const s = parseScenario({ ...base, image: { vmlinux: 'k/vmlinux', systemMap: '/abs/System.map' } }, '/tmp/sc/x.json');
    expect(s.image).toEqual({ vmlinux: '/tmp/sc/k/vmlinux', systemMap: '/abs/System.map' });
    expect(parseScenario({ ...base, image: 'debian-6.12' }, 'x.json').image).toBe('debian-6.12');
    expect(() => parseScenario({ ...base, image: { vmlinux: 'v' } }, 'x.json')).toThrow(/^x\.json: image\.systemMap: missing \(expected the path of its System\.map\)$/);
    expect(() => parseScenario({ ...base, image: { vmlinux: 'v', systemMap: 'm', kaslr: 1 } }, 'x.json')).toThrow(/^x\.json: image\.kaslr: unknown field/);
    expect(() => parseScenario({ ...base, image: 7 }, 'x.json')).toThrow(/^x\.json: image: expected a fixture name, manifest path, .*, got 7$/);
  });

  it('local files that are missing are named', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'scimg-'));
    const v = path.join(dir, 'vmlinux');
    fs.writeFileSync(v, 'x');
    expect(() => localKernel(path.join(dir, 'nope'))).toThrow(/nope: no such file \(vmlinux\)$/);
    expect(() => localKernel(v)).toThrow(/System\.map: no such file \(System\.map beside the vmlinux; give one with --map or "systemMap"\)$/);
    expect(() => scenarioImage({ vmlinux: v, systemMap: path.join(dir, 'map') })).toThrow(/map: no such file \(System\.map\)$/);
    fs.writeFileSync(path.join(dir, 'System.map'), '');
    expect(localKernel(v)).toEqual({ vmlinux: v, systemMap: path.join(dir, 'System.map') });
  });

  it('debian-<release> names the pinned kernel of a known release only', () => {
    expect(debianKernelName('debian-6.12')).toBe('6.12');
    expect(debianKernelName('debian-6.1')).toBe('6.1');
    expect(debianKernelName('debian-5.10')).toBeUndefined();
    const empty = fs.mkdtempSync(path.join(os.tmpdir(), 'kcache-'));
    expect(() => cachedDebianKernel('6.12', empty)).toThrow(/^debian-6\.12: 6\.12\.117\+deb13-cloud-amd64 is not in the cache \(run npm run fetch-kernel -- --release 6\.12\)$/);
  });
});
