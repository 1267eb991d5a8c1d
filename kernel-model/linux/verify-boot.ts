// textpoke's offline boot patch against the kernel's own: the `.text` a kernel held
// after booting in QEMU (image/boot-dump.ts) compared byte for byte with the image as
// textpoke patches it offline, at every paravirt and alternatives site and over all of
// `.text`. Where they differ, each differing byte is attributed to the mechanism that
// owns it (image/text-sites.ts): one decided at run time (a static key's state, a
// static call's target), one decided at boot that textpoke does not model offline
// (return thunks, __fentry__ NOPs), or none, which means textpoke's model is wrong.

import type { VmlinuxImage } from '../image/vmlinux-image';
import { ImageError, type KernelImage } from '../image/kernel-image';
import { textSites, type TextSiteTable } from '../image/text-sites';
import { readDumpText, type BootDump } from '../image/boot-dump';
import { bootPatchImage } from './boot-patch';

export type SiteKind = 'paravirt' | 'alternative';

/** Why a byte differs: 'model' is textpoke's error; the others name the kernel mechanism that rewrote it. */
export type DiffClass = TextSiteTable | 'model';

export interface DiffReason {
  /** 'runtime': the kernel decided it from state it computed while booting; 'boot': a fixed boot-time rule textpoke does not apply offline; 'model': textpoke is wrong. */
  decided: 'runtime' | 'boot' | 'model';
  why: string;
}

/** The kernel mechanism behind each table, in the kernel's own names (docs/notes/qemu-ground-truth.md). */
export const DIFF_REASONS: Record<DiffClass, DiffReason> = {
  jump_label: { decided: 'runtime', why: 'jump label: the static key state the kernel reached while booting (static_branch_enable/disable, jump_label_init)' },
  static_call: { decided: 'runtime', why: 'static call: the target the kernel chose while booting (static_call_update, e.g. the preempt mode of PREEMPT_DYNAMIC)' },
  static_call_tramp: { decided: 'runtime', why: 'static call trampoline: jmp to the target the kernel chose while booting, or ret for a NULL target' },
  runtime_const: { decided: 'runtime', why: 'runtime_const_init(): immediates set from values computed at boot (USER_PTR_MAX from the paging depth, the dentry hash table and its shift from memory size)' },
  return: { decided: 'boot', why: 'apply_returns(): `jmp __x86_return_thunk` becomes `ret; int3` padding, or a jump to the return thunk the mitigation chose' },
  retpoline: { decided: 'boot', why: 'apply_retpolines(): an indirect-thunk call rewritten by the retpoline mitigation the CPU gets' },
  mcount: { decided: 'boot', why: 'ftrace_init(): every `call __fentry__` becomes a 5-byte NOP until a tracer is enabled' },
  endbr: { decided: 'boot', why: 'apply_seal_endbr(): the ENDBR of a function no indirect call reaches is poisoned (IBT)' },
  call_depth: { decided: 'boot', why: 'callthunks_patch_builtin_calls(): calls redirected through call-depth thunks (X86_FEATURE_CALL_DEPTH)' },
  smp_lock: { decided: 'boot', why: 'alternatives_smp_unlock(): lock prefixes become DS on a uniprocessor boot' },
  model: { decided: 'model', why: 'textpoke writes other bytes than the booted kernel holds, and no other mechanism owns them' },
};

export interface SiteComparison {
  kind: SiteKind;
  address: bigint;
  len: number;
  expected: Uint8Array;
  actual: Uint8Array;
  match: boolean;
  /** For a mismatch: the classes of its differing bytes (most specific first). */
  classes: DiffClass[];
}

export interface BootComparison {
  text: { address: bigint; bytes: number; matched: number; differing: Partial<Record<DiffClass, number>> };
  /** Runs of differing bytes that only textpoke's model owns, in address order (textpoke's errors outside the site tables). */
  modelRuns: { address: bigint; len: number }[];
  sites: SiteComparison[];
  /** Sites outside the dumped `.text` (in .init.text, freed and poisoned after boot): by kind. */
  notObservable: Record<SiteKind, number>;
  summary: Record<SiteKind, { compared: number; matched: number; byClass: Partial<Record<DiffClass, number>> }>;
}

export interface BootTruth {
  address: bigint;
  bytes: Uint8Array;
}

export interface CompareOptions {
  /**
   * The offline patch (a BootPatchResult): every range it wrote, and the final bytes of
   * any range. Only the written ranges are read back; the rest is the image's own bytes.
   */
  offline: { writes: ReadonlyMap<bigint, Uint8Array>; read(address: bigint, len: number): Uint8Array };
  /** Site tables the offline patch decides (a difference there is the model's error); default BOOT_RULES_MODELLED. */
  modelled?: ReadonlySet<TextSiteTable>;
}

/** The boot-time rules bootPatchImage applies besides paravirt and alternatives (boot-patch.ts, thunk-sites.ts, ftrace-init.ts). */
export const BOOT_RULES_MODELLED: ReadonlySet<TextSiteTable> = new Set(['return', 'retpoline', 'mcount', 'endbr']);

/** Runtime owners win over boot-time ones: a site inside an alternative that is also a static call changed because of the call. */
const PRIORITY: TextSiteTable[] = ['jump_label', 'static_call', 'static_call_tramp', 'runtime_const', 'return', 'retpoline', 'mcount', 'endbr', 'call_depth', 'smp_lock'];

export function compareWithBoot(img: VmlinuxImage, truth: BootTruth, opts: CompareOptions): BootComparison {
  const base = truth.address;
  const n = truth.bytes.length;
  const end = base + BigInt(n);
  const inText = (a: bigint, len: number): boolean => a >= base && a + BigInt(len) <= end;
  const expected = new Uint8Array(img.read(base, n));
  for (const [a, b] of opts.offline.writes) if (inText(a, b.length)) expected.set(opts.offline.read(a, b.length), Number(a - base));

  // The owner of each byte, by table priority (0 = none).
  const owner = new Uint8Array(n);
  const modelled = opts.modelled ?? BOOT_RULES_MODELLED;
  for (const s of textSites(img.vm)) {
    if (!inText(s.address, s.len) || modelled.has(s.table)) continue;
    const p = PRIORITY.indexOf(s.table) + 1;
    const o = Number(s.address - base);
    for (let i = 0; i < s.len; i++) if (owner[o + i] === 0 || owner[o + i] > p) owner[o + i] = p;
  }
  const classOf = (o: number): DiffClass => (owner[o] ? PRIORITY[owner[o] - 1] : 'model');

  const differing: Partial<Record<DiffClass, number>> = {};
  const modelRuns: BootComparison['modelRuns'] = [];
  let matched = 0;
  for (let o = 0; o < n; o++) {
    if (truth.bytes[o] === expected[o]) matched++;
    else {
      const c = classOf(o);
      differing[c] = (differing[c] ?? 0) + 1;
      if (c !== 'model') continue;
      const last = modelRuns[modelRuns.length - 1];
      if (last && last.address + BigInt(last.len) === base + BigInt(o)) last.len++;
      else modelRuns.push({ address: base + BigInt(o), len: 1 });
    }
  }

  const sites: SiteComparison[] = [];
  const notObservable: Record<SiteKind, number> = { paravirt: 0, alternative: 0 };
  const summary: BootComparison['summary'] = {
    paravirt: { compared: 0, matched: 0, byClass: {} },
    alternative: { compared: 0, matched: 0, byClass: {} },
  };
  const compare = (kind: SiteKind, address: bigint, len: number): void => {
    if (!inText(address, len)) {
      notObservable[kind]++;
      return;
    }
    const o = Number(address - base);
    const actual = truth.bytes.slice(o, o + len);
    const want = expected.slice(o, o + len);
    const classes = new Set<DiffClass>();
    for (let i = 0; i < len; i++) if (actual[i] !== want[i]) classes.add(classOf(o + i));
    const cs = [...classes].sort((a, b) => (a === 'model' ? -1 : b === 'model' ? 1 : PRIORITY.indexOf(a) - PRIORITY.indexOf(b)));
    const s = summary[kind];
    s.compared++;
    if (cs.length === 0) s.matched++;
    else s.byClass[cs[0]] = (s.byClass[cs[0]] ?? 0) + 1;
    sites.push({ kind, address, len, expected: want, actual, match: cs.length === 0, classes: cs });
  };
  for (const p of img.sites) compare('paravirt', p.address, p.len);
  for (const a of img.vm.altinstructions()) compare('alternative', a.instr, a.instrlen);
  return { text: { address: base, bytes: n, matched, differing }, modelRuns, sites, notObservable, summary };
}

/**
 * `verify --against-boot`: the image's `.text`, patched offline by textpoke's boot
 * rules, against a boot dump of the same kernel. Refuses a dump of another kernel.
 */
export function verifyAgainstBoot(img: KernelImage, dump: BootDump, cpu?: string): BootComparison {
  if (img.kind !== 'vmlinux') throw new ImageError(`${img.path}: a boot dump is compared with a vmlinux, not a ${img.kind}`);
  const vmi = img as VmlinuxImage;
  const truth = readDumpText(dump);
  const text = vmi.vm.symbols.resolve('_text');
  const etext = vmi.vm.symbols.resolve('_etext');
  const where = `${dump.dir}/dump.json`;
  if (text !== truth.address || etext === undefined || Number(etext - text) !== truth.bytes.length) {
    throw new ImageError(`${where}: field 'text': .text at ${dump.meta.text.address} (${truth.bytes.length} bytes) is not ${img.path}'s [_text, _etext): a dump of another kernel (${dump.meta.kernel.version})`);
  }
  const file = img.read(truth.address, truth.bytes.length);
  let same = 0;
  for (let i = 0; i < file.length; i++) if (file[i] === truth.bytes[i]) same++;
  if (same < file.length * 0.9) {
    throw new ImageError(`${where}: only ${same} of ${file.length} bytes of .text agree with ${img.path}: a dump of another build (${dump.meta.kernel.version})`);
  }
  return compareWithBoot(vmi, truth, { offline: bootPatchImage(img, { cpu }) });
}
