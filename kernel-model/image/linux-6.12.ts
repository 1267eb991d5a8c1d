// Facts about Linux 6.12 (x86-64, Debian 13's configuration) that are #defines, so
// BTF does not carry them: synthetic X86_FEATURE_* numbers the boot patching tests
// (arch/x86/include/asm/cpufeatures.h), the ENDBR poison and the thunk array stride.
// Struct layouts and pv_ops slot names come from the image's BTF instead
// (btf-layout.ts). Sources and checks: docs/notes/linux-6.12-patching.md.

/** X86_FEATURE_ALWAYS: set on every CPU; ALT_CALL_ALWAYS records test it. */
export const X86_FEATURE_ALWAYS = 3 * 32 + 21;
export const X86_FEATURE_XENPV = 8 * 32 + 16;
/** Set by paravirt_set_cap() when pv_ops.lock.queued_spin_unlock is not the native thunk. */
export const X86_FEATURE_PVUNLOCK = 8 * 32 + 20;
/** Set by paravirt_set_cap() when pv_ops.lock.vcpu_is_preempted is not the native thunk. */
export const X86_FEATURE_VCPUPREEMPT = 8 * 32 + 21;
export const X86_FEATURE_RETPOLINE = 11 * 32 + 12;
export const X86_FEATURE_RETPOLINE_LFENCE = 11 * 32 + 13;
export const X86_FEATURE_RETHUNK = 11 * 32 + 14;
export const X86_FEATURE_CALL_DEPTH = 11 * 32 + 19;

/**
 * What apply_seal_endbr() writes over a sealed function's ENDBR64: `66 0f 1f 00`
 * (osp nopl (%rax)), a 4-byte NOP that is not an ENDBR. Observed at every sealed
 * ENDBR of Debian's 6.12.117 after a QEMU boot.
 */
export const ENDBR_POISON_6_12 = Uint8Array.from([0x66, 0x0f, 0x1f, 0x00]);
export const ENDBR64 = Uint8Array.from([0xf3, 0x0f, 0x1e, 0xfa]);

/** sizeof(retpoline_thunk_t): __x86_indirect_thunk_array holds one 32-byte thunk per register. */
export const RETPOLINE_THUNK_SIZE = 32;

/** The last three bytes of a static-call trampoline (`ud1 %esp, %ecx`): __static_call_fixup() looks for them at +5. */
export const STATIC_CALL_TRAMP_UD = Uint8Array.from([0x0f, 0xb9, 0xcc]);
