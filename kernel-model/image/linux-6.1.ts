// Facts about Linux 6.1 (x86-64, Debian 12's configuration: PARAVIRT_XXL and
// PARAVIRT_SPINLOCKS) that the model needs as data. Sources and the way each fact
// was checked are in docs/notes/linux-6.1-patching.md. Loading reads these layouts
// from the image's BTF; the tables here cross-check that reader on Debian's 6.1.

import type { BtfLayouts } from './btf-layout';
import { ALT_INSTR_6_1 } from './altinstructions';

/** struct paravirt_patch_template, flattened: slot index (= .parainstructions type) -> op name. */
export const PV_OPS_6_1: readonly string[] = [
  // cpu (30 slots)
  'cpu.io_delay', 'cpu.get_debugreg', 'cpu.set_debugreg', 'cpu.read_cr0', 'cpu.write_cr0', 'cpu.write_cr4',
  'cpu.load_tr_desc', 'cpu.load_gdt', 'cpu.load_idt', 'cpu.set_ldt', 'cpu.store_tr', 'cpu.load_tls',
  'cpu.load_gs_index', 'cpu.write_ldt_entry', 'cpu.write_gdt_entry', 'cpu.write_idt_entry', 'cpu.alloc_ldt',
  'cpu.free_ldt', 'cpu.load_sp0', 'cpu.invalidate_io_bitmap', 'cpu.update_io_bitmap', 'cpu.wbinvd', 'cpu.cpuid',
  'cpu.read_msr', 'cpu.write_msr', 'cpu.read_msr_safe', 'cpu.write_msr_safe', 'cpu.read_pmc',
  'cpu.start_context_switch', 'cpu.end_context_switch',
  // irq (5)
  'irq.save_fl', 'irq.irq_disable', 'irq.irq_enable', 'irq.safe_halt', 'irq.halt',
  // mmu (44)
  'mmu.flush_tlb_user', 'mmu.flush_tlb_kernel', 'mmu.flush_tlb_one_user', 'mmu.flush_tlb_multi',
  'mmu.tlb_remove_table', 'mmu.exit_mmap', 'mmu.notify_page_enc_status_changed', 'mmu.read_cr2', 'mmu.write_cr2',
  'mmu.read_cr3', 'mmu.write_cr3', 'mmu.activate_mm', 'mmu.dup_mmap', 'mmu.pgd_alloc', 'mmu.pgd_free',
  'mmu.alloc_pte', 'mmu.alloc_pmd', 'mmu.alloc_pud', 'mmu.alloc_p4d', 'mmu.release_pte', 'mmu.release_pmd',
  'mmu.release_pud', 'mmu.release_p4d', 'mmu.set_pte', 'mmu.set_pmd', 'mmu.ptep_modify_prot_start',
  'mmu.ptep_modify_prot_commit', 'mmu.pte_val', 'mmu.make_pte', 'mmu.pgd_val', 'mmu.make_pgd', 'mmu.set_pud',
  'mmu.pmd_val', 'mmu.make_pmd', 'mmu.pud_val', 'mmu.make_pud', 'mmu.set_p4d', 'mmu.p4d_val', 'mmu.make_p4d',
  'mmu.set_pgd', 'mmu.lazy_mode.enter', 'mmu.lazy_mode.leave', 'mmu.lazy_mode.flush', 'mmu.set_fixmap',
  // lock (5)
  'lock.queued_spin_lock_slowpath', 'lock.queued_spin_unlock', 'lock.wait', 'lock.kick', 'lock.vcpu_is_preempted',
];

/** X86_FEATURE_* numbers (word * 32 + bit) that alternatives at paravirt sites test. */
export const X86_FEATURE_ALWAYS = 3 * 32 + 21;
export const X86_FEATURE_HYPERVISOR = 4 * 32 + 31;
export const X86_FEATURE_XENPV = 8 * 32 + 16;
export const X86_FEATURE_PVUNLOCK = 8 * 32 + 20;
export const X86_FEATURE_VCPUPREEMPT = 8 * 32 + 21;

/** Bit 15 of an .altinstructions record's cpuid field: apply when the feature is absent. */
export const ALTINSTR_FLAG_INV = 0x8000;

/** (NCAPINTS + NBUGINTS) * 32: feature numbers at or above it are a BUG in apply_alternatives. */
export const MAX_FEATURE = (22 + 2) * 32;

/** The native targets paravirt_set_cap() compares the lock slots with. */
export const NATIVE_UNLOCK_THUNK = '__raw_callee_save___native_queued_spin_unlock';
export const NATIVE_PREEMPTED_THUNK = '__raw_callee_save___native_vcpu_is_preempted';

/**
 * Paravirt implementations in 6.1 that run without a hypervisor and without kernel
 * init: the paravirt qspinlock unlock through its callee-save thunk (as the slot
 * requires; it releases with a cmpxchg and needs the lock hash only when a paravirt
 * waiter marked the lock, which the native slow path never does), and KVM's
 * vcpu_is_preempted (it only reads per-CPU steal-time data). Not here: the paravirt
 * slow path (it hashes waiters into pv_lock_hash, allocated by boot code that the
 * harness does not run) and lock.wait/kick (KVM's issue hypercalls).
 */
export const PARAVIRT_TARGETS_6_1: Readonly<Record<string, string>> = {
  'lock.queued_spin_unlock': '__raw_callee_save___pv_queued_spin_unlock',
  'lock.vcpu_is_preempted': '__raw_callee_save___kvm_vcpu_is_preempted',
};

/** Feature bits a bare-metal boot has set, before paravirt_set_cap(). */
export function bareMetalFeatures(): Set<number> {
  return new Set([X86_FEATURE_ALWAYS]);
}

/**
 * The 6.1 struct layouts as data: what the BTF reader must find in Debian's 6.1
 * image (a cross-check of btf-layout.ts), and the layouts for hand-made ELFs that
 * carry no BTF.
 */
export const LAYOUTS_6_1: BtfLayouts = {
  altInstr: ALT_INSTR_6_1,
  paraSite: {
    size: 16,
    instr: { offset: 0, size: 8, bitOffset: 0, bitSize: 0, signed: false },
    type: { offset: 8, size: 1, bitOffset: 64, bitSize: 0, signed: false },
    len: { offset: 9, size: 1, bitOffset: 72, bitSize: 0, signed: false },
  },
  pvOpsSlots: [...PV_OPS_6_1],
  capabilityWords: MAX_FEATURE / 32,
};
