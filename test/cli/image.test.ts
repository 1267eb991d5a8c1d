// `textpoke load`, `disasm`, `patch` and `verify` on the fixture kernel: text and
// --json output, exit statuses, bad input, and that a failed patch writes nothing.

import { copyFileSync, existsSync, readFileSync, readdirSync, writeFileSync } from 'fs';
import { join } from 'path';
import { textpoke, json, tempDir, removeTempDirs, expectUserError, ROOT, HEX_ADDR, HEX_BYTES } from './textpoke';

interface InsnJson { address: string; bytes: string; text: string; symbol: string; site?: { op: string; len: number; state: string; text: string } }
interface SiteCheckJson { address: string; op: string; ok: boolean; actual: string; expected: string; actualAsm: string; changed?: boolean }
interface VerifyJson { ok: boolean; rules: string; total: number; mismatches: number; changed?: number; sites: SiteCheckJson[] }

afterAll(removeTempDirs);

const UNLOCK = 'lock.queued_spin_unlock=native';

describe('textpoke load', () => {
  it('--json: sections, symbol count, pv sites by op, alternatives', () => {
    const j = json<{
      kind: string; sections: { name: string; address: string }[]; symbols: number; pvOps: { address: string; slots: number };
      sites: { total: number; original: number; byOp: { op: string; count: number; lengths: number[] }[] }; alternatives: unknown;
    }>(textpoke(['load', 'minikernel', '--json']));
    expect(j.kind).toBe('fixture');
    expect(j.sections.map((s) => s.name)).toEqual(['.text', '.data', '.parainstructions', '.bss']);
    expect(j.sections[0].address).toMatch(HEX_ADDR);
    expect(j.symbols).toBeGreaterThan(50);
    expect(j.pvOps.slots).toBe(10);
    expect(j.sites.total).toBe(10);
    expect(j.sites.original).toBe(10);
    expect(j.sites.byOp.find((o) => o.op === 'lock.queued_spin_unlock')).toEqual({ op: 'lock.queued_spin_unlock', slot: 6, count: 1, lengths: [6], original: 1 });
    expect(j.alternatives).toBeNull();
  });

  it('text, from the blob path', () => {
    const r = textpoke(['load', join(ROOT, 'fixtures', 'minikernel.bin')]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/fixture kernel, \d+ symbols/);
    expect(r.stdout).toMatch(/paravirt sites: 10 /);
    expect(r.stdout).toMatch(/lock\.queued_spin_unlock +1 site\(s\), 6 bytes/);
  });

  it('bad input: missing file, truncated blob, malformed manifest, a directory', () => {
    const dir = tempDir();
    expectUserError(textpoke(['load', join(dir, 'nope.bin')]), 'nope.bin', 'no such file');
    copyFileSync(join(ROOT, 'fixtures', 'minikernel.json'), join(dir, 'minikernel.json'));
    const blob = readFileSync(join(ROOT, 'fixtures', 'minikernel.bin'));
    writeFileSync(join(dir, 'minikernel.bin'), blob.subarray(0, 4000));
    expectUserError(textpoke(['load', join(dir, 'minikernel.bin')]), 'minikernel.bin', '4000 bytes', 'truncated');
    writeFileSync(join(dir, 'broken.json'), '{"format": "textpoke-fixture/1", ');
    expectUserError(textpoke(['load', join(dir, 'broken.json')]), 'broken.json', 'not valid JSON');
    writeFileSync(join(dir, 'wrong.json'), JSON.stringify({ format: 'textpoke-fixture/1', name: 'x' }));
    expectUserError(textpoke(['load', join(dir, 'wrong.json')]), "wrong.json: field 'blob' must be a file name");
    expectUserError(textpoke(['load', dir]), 'not a file');
    expectUserError(textpoke(['load', 'nosuchfixture']), 'nosuchfixture.json', 'no such fixture');
  });
});

describe('textpoke disasm', () => {
  it('objdump-style listing with the pv site annotated', () => {
    const r = textpoke(['disasm', 'minikernel', 'queued_spin_unlock']);
    expect(r.code).toBe(0);
    const lines = r.stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^ffffffff[0-9a-f]{8} <queued_spin_unlock>: +ff 15 [0-9a-f ]+ +callq? \*0x[0-9a-f]+ <pv_ops\+0x30> +# pv site lock\.queued_spin_unlock \(6 bytes\): original \(indirect call through pv_ops\)$/);
    expect(lines[1]).toMatch(/<queued_spin_unlock\+0x6>:/);
    // To the end of the function only.
    expect(lines[lines.length - 1]).toMatch(/ret$/);
  });

  it('--json, --count and --syntax intel, by address', () => {
    const first = json<{ insns: InsnJson[] }>(textpoke(['disasm', 'minikernel', 'queued_spin_unlock', '--count', '3', '--syntax', 'intel', '--json']));
    expect(first.insns).toHaveLength(3);
    expect(first.insns[0].bytes).toMatch(HEX_BYTES);
    expect(first.insns[0].text).toMatch(/^call qword ptr/);
    expect(first.insns[0].site).toMatchObject({ op: 'lock.queued_spin_unlock', len: 6, state: 'original' });
    const byAddr = json<{ symbol: string; insns: InsnJson[] }>(textpoke(['disasm', 'minikernel', first.insns[1].address, '--count', '1', '--json']));
    expect(byAddr.symbol).toBe('queued_spin_unlock+0x6');
    expect(textpoke(['disasm', 'minikernel', 'queued_spin_unlock+0x6', '--count', '1']).stdout).toMatch(/<queued_spin_unlock\+0x6>/);
  });

  it('bad input: unknown symbol, address outside the image, bad count', () => {
    expectUserError(textpoke(['disasm', 'minikernel', 'no_such_function']), "minikernel.json: unknown symbol 'no_such_function'");
    expectUserError(textpoke(['disasm', 'minikernel', '0x1000']), 'in no loaded section');
    expectUserError(textpoke(['disasm', 'minikernel', 'queued_spin_unlock', '--count', '0']), '--count');
  });
});

describe('textpoke patch and verify', () => {
  it('verify: an unpatched fixture mismatches at every site (exit 1), with disassembly', () => {
    const r = textpoke(['verify', 'minikernel']);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/10 paravirt site\(s\) checked against pv_ops \(design rules\): 10 mismatch\(es\)/);
    expect(r.stdout).toMatch(/MISMATCH 0x[0-9a-f]+ <queued_spin_unlock> lock\.queued_spin_unlock/);
    expect(r.stdout).toMatch(/want {2}e8 [0-9a-f ]+ +call 0x[0-9a-f]+ <__pv_queued_spin_unlock>; nop/);
    const j = json<VerifyJson>(textpoke(['verify', 'minikernel', '--json']));
    expect(j.ok).toBe(false);
    expect(j.mismatches).toBe(10);
    expect(j.sites[0].actual).toMatch(/^ff 15 /);
  });

  it('patch: runtime patch on 4 CPUs with the NMI-safe protocol, written as blob + manifest; verify passes', () => {
    const dir = tempDir();
    const out = join(dir, 'patched');
    const r = textpoke(['patch', 'minikernel', '--op', UNLOCK, '--nmi', '--cpus', '4', '-o', out]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/lock\.queued_spin_unlock=native with stop-machine \(nmi=true, fixed\) on 4 CPUs: completed/);
    expect(r.stdout).toMatch(/new {2}c6 07 00 0f 1f 00 +movb \$0,\(%rdi\)/);
    expect(readdirSync(dir).sort()).toEqual(['patched.bin', 'patched.json']);

    const v = textpoke(['verify', `${out}.bin`, '--against', 'minikernel']);
    expect(v.code).toBe(0);
    expect(v.stdout).toMatch(/all match/);
    const vj = json<VerifyJson>(textpoke(['verify', `${out}.json`, '--against', 'minikernel', '--json']));
    expect(vj.ok).toBe(true);
    expect(vj.sites.find((s) => s.op === 'lock.queued_spin_unlock')).toMatchObject({ ok: true, actual: 'c6 07 00 0f 1f 00', changed: true });

    const d = textpoke(['disasm', `${out}.bin`, 'queued_spin_unlock', '--count', '2']);
    expect(d.stdout).toMatch(/c6 07 00 +movb \$0,\(%rdi\) +# pv site lock\.queued_spin_unlock \(6 bytes\): boot-patched/);
    expect(d.stdout).toMatch(/# {3}\(rest of the site\)/);
  });

  it('patch --json with the batch protocol and a seeded schedule', () => {
    const dir = tempDir();
    const j = json<{ mode: string; outcome: string; files: string[]; sites: { op: string; verified: boolean; new: string }[] }>(
      textpoke(['patch', 'minikernel', '--op', 'lock.queued_spin_lock_slowpath=native', '--protocol', 'batch', '--cpus', '3', '--seed', '5', '-o', join(dir, 'b.bin'), '--json']),
    );
    expect(j.mode).toBe('runtime');
    expect(j.outcome).toBe('completed');
    expect(j.files).toEqual([join(dir, 'b.bin'), join(dir, 'b.json')]);
    expect(j.sites).toHaveLength(1);
    expect(j.sites[0]).toMatchObject({ op: 'lock.queued_spin_lock_slowpath', verified: true });
    expect(j.sites[0].new).toMatch(/^e8 /);
  });

  it('patch --boot: boot-time patching offline, counts per op and form; the result verifies', () => {
    const dir = tempDir();
    const out = join(dir, 'booted');
    const j = json<{ mode: string; rules: string; sites: number; byForm: Record<string, number>; byOp: Record<string, Record<string, number>> }>(
      textpoke(['patch', 'minikernel', '--boot', '-o', out, '--json']),
    );
    expect(j.mode).toBe('boot');
    expect(j.sites).toBe(10);
    expect(j.byOp['irq.irq_disable']).toEqual({ inline: 1 });
    expect(j.byForm.call + j.byForm.inline).toBe(10);
    expect(textpoke(['verify', `${out}.bin`]).code).toBe(0);
  });

  it('a failing patch writes nothing: unknown op, bad mode, bad protocol mix, missing -o', () => {
    const dir = tempDir();
    const out = join(dir, 'out');
    expectUserError(textpoke(['patch', 'minikernel', '--op', 'lock.no_such_op=native', '-o', out]), "unknown op 'lock.no_such_op'", 'lock.queued_spin_unlock');
    expectUserError(textpoke(['patch', 'minikernel', '--op', 'lock.queued_spin_unlock=fast', '-o', out]), '--op lock.queued_spin_unlock=fast', 'native or');
    expectUserError(textpoke(['patch', 'minikernel', '--op', UNLOCK, '--protocol', 'batch', '--nmi', '-o', out]), '--nmi');
    expectUserError(textpoke(['patch', 'minikernel', '--op', UNLOCK, '--cpus', '0', '-o', out]), '--cpus');
    expectUserError(textpoke(['patch', 'minikernel', '--op', UNLOCK, '-o', join(dir, 'no', 'out')]), 'does not exist');
    expectUserError(textpoke(['patch', 'minikernel', '--boot', '--op', UNLOCK, '-o', out]), '--boot');
    expectUserError(textpoke(['patch', 'minikernel', '--op', UNLOCK]), 'Missing required argument: output');
    expect(readdirSync(dir)).toEqual([]);
    expect(existsSync(`${out}.bin`)).toBe(false);
  });

  it('verify --against an unrelated image is refused (exit 2), naming the first difference', () => {
    expectUserError(textpoke(['verify', 'minikernel', '--against', 'vmlinux-harness']), /--against .*vmlinux-harness\.json: not the build .*minikernel\.json was made from \(sections differ: \.text at 0xffffffff81000000/);
    // Its own unpatched self is the same build: verify runs (and reports the mismatches, exit 1).
    expect(textpoke(['verify', 'minikernel', '--against', 'minikernel']).code).toBe(1);
  });

  it('-o naming an input or a committed fixture is refused (exit 2) and the file is left as it was', () => {
    const fixtures = join(ROOT, 'fixtures');
    const before = ['minikernel.bin', 'minikernel.json', 'vmlinux-harness.bin', 'vmlinux-harness.json'].map((f) => readFileSync(join(fixtures, f)));
    // The input fixture itself, by name, by blob and by manifest path.
    expectUserError(textpoke(['patch', 'minikernel', '--boot', '-o', join(fixtures, 'minikernel')]), /-o .*minikernel\.bin: is the input fixture blob/);
    expectUserError(textpoke(['patch', join(fixtures, 'minikernel.json'), '--boot', '-o', join(fixtures, 'minikernel.json')]), 'refusing to overwrite an input');
    // Another committed fixture.
    expectUserError(textpoke(['patch', 'minikernel', '--op', UNLOCK, '-o', join(fixtures, 'vmlinux-harness')]), 'is a fixture committed with textpoke');
    expect(['minikernel.bin', 'minikernel.json', 'vmlinux-harness.bin', 'vmlinux-harness.json'].map((f) => readFileSync(join(fixtures, f)))).toEqual(before);
    // A copy elsewhere: its own files are inputs too (the manifest beside the blob).
    const dir = tempDir();
    for (const f of ['minikernel.bin', 'minikernel.json']) copyFileSync(join(fixtures, f), join(dir, f));
    expectUserError(textpoke(['patch', join(dir, 'minikernel.bin'), '--boot', '-o', join(dir, 'minikernel.json')]), 'is the input fixture');
    expect(readdirSync(dir).sort()).toEqual(['minikernel.bin', 'minikernel.json']);
  });

  it('an output location that cannot be written is the user\'s error: exit 2 naming the path', () => {
    // /sys refuses new files even to root, where a read-only directory would not.
    expectUserError(textpoke(['patch', 'minikernel', '--boot', '-o', '/sys/textpoke-out']), '/sys/textpoke-out');
    expectUserError(textpoke(['run', join(ROOT, 'fixtures', 'scenarios', 'nmi-safe-primary.json'), '--trace', '/sys/textpoke-trace']), '/sys/textpoke-trace');
  });
});
