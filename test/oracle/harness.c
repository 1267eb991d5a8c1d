/*
 * Host-CPU oracle harness for textpoke (test/oracle/).
 *
 * Runs single x86-64 instructions natively, one after another in this one process, on
 * register, flag and memory inputs chosen by test/oracle/generate.ts, and reports the
 * state afterwards so the emulator's result can be compared with the real CPU's.
 *
 * stdin:  a header, then `ncases` input records (layout below, little-endian)
 * stdout: one output record per case, in order
 *
 * Per case the instruction (or a flag-producing instruction followed by the instruction
 * that consumes the flags) is copied into a code page at a fixed address, followed by
 * an exit stub; two more stubs sit at fixed branch targets, so a jcc/loop/jrcxz shows
 * whether it was taken by where execution arrives. The stubs record their own address
 * (the final "RIP") and jump to `oracle_exit_common`, which saves all 16 GPRs and
 * RFLAGS without using the (case-controlled) stack, then switches back to the host
 * stack. A fault (SIGFPE/SIGSEGV/SIGBUS/SIGILL/SIGTRAP) is caught on an alternate
 * signal stack: the handler takes the registers and the hardware vector (trapno) from
 * the signal context and siglongjmps back to the case loop.
 *
 * Data and stack regions have inaccessible guard pages on both sides (a string
 * instruction running off its region faults as in the emulator, where nothing else is
 * mapped), and each case sets the GS base (arch_prctl) for %gs: operands.
 *
 * Build: gcc -O2 -o harness harness.c   (the jest test does this into .cache/oracle/)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <asm/prctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

/* Must match test/oracle/layout.ts (the batch header carries them and is checked). */
#define CODE_BASE 0x10000000UL /* one RWX page: stubs and the instruction */
#define CTRL_BASE 0x10001000UL /* one RW page: register blocks and slots for the asm */
#define DATA_BASE 0x20000000UL /* two RW pages; the window straddles the page boundary */
#define DATA_WIN_OFF 0xf00UL
#define DATA_WIN_SIZE 0x200UL
#define STACK_BASE 0x30000000UL /* two RW pages: the case's stack */
#define STACK_WIN_OFF 0xe00UL
#define STACK_WIN_SIZE 0x400UL
#define REGION_SIZE 0x2000UL
#define INSN_OFF 0x80UL   /* the instruction under test */
#define TARGET_BACK 0x20UL /* branch target before the instruction (negative rel8) */
#define TARGET_FWD 0x100UL /* branch target after it (rel8 reach from INSN_OFF) */
#define MAX_CODE 32 /* the instruction, or a flag-producing instruction and its consumer (native.ts) */

#define MAGIC 0x3243524fU /* "ORC2" */

/* Control page layout; the asm below uses these absolute addresses. */
#define CTRL_IN_REGS 0x000  /* 16 x u64, ModRM order rax rcx rdx rbx rsp rbp rsi rdi r8..r15 */
#define CTRL_IN_FLAGS 0x080
#define CTRL_ENTRY 0x088     /* address jumped to after loading registers */
#define CTRL_HOST_RSP 0x090  /* host RSP while a case runs */
#define CTRL_EXIT_FN 0x098   /* address of oracle_exit_common, for the stubs' indirect jmp */
#define CTRL_EXIT_RIP 0x0a0  /* written by the stub that was reached */
#define CTRL_OUT_REGS 0x100
#define CTRL_OUT_FLAGS 0x180

#pragma pack(push, 1)
struct header {
  uint32_t magic;
  uint32_t ncases;
  uint64_t code_base, data_base, stack_base;
  uint32_t data_win_off, data_win_size, stack_win_off, stack_win_size;
  uint32_t insn_off, target_back, target_fwd, reserved;
};

struct input {
  uint8_t len; /* length of the code under test, 1..MAX_CODE */
  uint8_t pad[7];
  uint64_t gs_base; /* GS segment base while the case runs */
  uint8_t bytes[MAX_CODE];
  uint64_t regs[16];
  uint64_t rflags;
  uint8_t data[DATA_WIN_SIZE];
  uint8_t stack[STACK_WIN_SIZE];
};

struct output {
  uint32_t signo;  /* 0: reached an exit stub; else the signal that ended the case */
  uint32_t trapno; /* hardware vector from the signal context (valid when signo != 0) */
  uint64_t err;    /* hardware error code from the signal context */
  uint64_t rip;    /* exit stub reached, or the RIP in the signal context */
  uint64_t regs[16];
  uint64_t rflags;
  uint8_t data[DATA_WIN_SIZE];
  uint8_t stack[STACK_WIN_SIZE];
};
#pragma pack(pop)

/* Entry and exit, in asm so that no compiler-generated code touches the stack or the
 * flags between the case's register load and the register save. All control-page
 * accesses use absolute 32-bit addresses (the page sits below 2 GiB). */
void oracle_enter(void);
void oracle_exit_common(void);
__asm__(
    ".text\n"
    ".globl oracle_enter\n"
    ".type oracle_enter,@function\n"
    "oracle_enter:\n"
    "  push %rbx\n  push %rbp\n  push %r12\n  push %r13\n  push %r14\n  push %r15\n"
    "  mov %rsp, 0x10001090\n"
    "  pushq 0x10001080\n"
    "  popfq\n"
    "  mov 0x10001000, %rax\n"
    "  mov 0x10001008, %rcx\n"
    "  mov 0x10001010, %rdx\n"
    "  mov 0x10001018, %rbx\n"
    "  mov 0x10001028, %rbp\n"
    "  mov 0x10001030, %rsi\n"
    "  mov 0x10001038, %rdi\n"
    "  mov 0x10001040, %r8\n"
    "  mov 0x10001048, %r9\n"
    "  mov 0x10001050, %r10\n"
    "  mov 0x10001058, %r11\n"
    "  mov 0x10001060, %r12\n"
    "  mov 0x10001068, %r13\n"
    "  mov 0x10001070, %r14\n"
    "  mov 0x10001078, %r15\n"
    "  mov 0x10001020, %rsp\n"
    "  jmp *0x10001088\n"
    ".size oracle_enter, .-oracle_enter\n"
    ".globl oracle_exit_common\n"
    ".type oracle_exit_common,@function\n"
    "oracle_exit_common:\n"
    "  mov %rax, 0x10001100\n"
    "  mov %rcx, 0x10001108\n"
    "  mov %rdx, 0x10001110\n"
    "  mov %rbx, 0x10001118\n"
    "  mov %rsp, 0x10001120\n"
    "  mov %rbp, 0x10001128\n"
    "  mov %rsi, 0x10001130\n"
    "  mov %rdi, 0x10001138\n"
    "  mov %r8, 0x10001140\n"
    "  mov %r9, 0x10001148\n"
    "  mov %r10, 0x10001150\n"
    "  mov %r11, 0x10001158\n"
    "  mov %r12, 0x10001160\n"
    "  mov %r13, 0x10001168\n"
    "  mov %r14, 0x10001170\n"
    "  mov %r15, 0x10001178\n"
    "  mov 0x10001090, %rsp\n"
    "  pushfq\n"
    "  pop %rax\n"
    "  mov %rax, 0x10001180\n"
    /* The case may have set DF; the C ABI requires it clear. */
    "  cld\n"
    "  pop %r15\n  pop %r14\n  pop %r13\n  pop %r12\n  pop %rbp\n  pop %rbx\n"
    "  ret\n"
    ".size oracle_exit_common, .-oracle_exit_common\n");

static sigjmp_buf jump_back;
static volatile sig_atomic_t in_case;
static struct output *fault_out;

static uint8_t *const code = (uint8_t *)CODE_BASE;
static uint8_t *const ctrl = (uint8_t *)CTRL_BASE;
static uint8_t *const data = (uint8_t *)DATA_BASE;
static uint8_t *const stack = (uint8_t *)STACK_BASE;

static void die(const char *what) {
  fprintf(stderr, "oracle harness: %s: %s\n", what, strerror(errno));
  exit(2);
}

/* Maps [addr, addr+size) exactly there, failing if anything is already mapped. */
static void map_fixed(unsigned long addr, unsigned long size, int prot) {
  void *p = mmap((void *)addr, size, prot, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
  if (p == MAP_FAILED) {
    fprintf(stderr, "oracle harness: cannot map 0x%lx+0x%lx: %s (address not free in this process?)\n", addr, size,
            strerror(errno));
    exit(2);
  }
  if ((unsigned long)p != addr) {
    /* Kernels before 4.17 ignore MAP_FIXED_NOREPLACE and may place the mapping elsewhere. */
    fprintf(stderr, "oracle harness: mapping for 0x%lx landed at %p\n", addr, p);
    exit(2);
  }
}

/* Writes "movq $addr, EXIT_RIP; jmp *EXIT_FN" at code offset `off` (19 bytes). */
static void put_stub(unsigned long off) {
  uint8_t *p = code + off;
  uint32_t self = (uint32_t)(CODE_BASE + off);
  uint32_t slot = (uint32_t)(CTRL_BASE + CTRL_EXIT_RIP);
  uint32_t fn = (uint32_t)(CTRL_BASE + CTRL_EXIT_FN);
  *p++ = 0x48, *p++ = 0xc7, *p++ = 0x04, *p++ = 0x25;
  memcpy(p, &slot, 4), p += 4;
  memcpy(p, &self, 4), p += 4;
  *p++ = 0xff, *p++ = 0x24, *p++ = 0x25;
  memcpy(p, &fn, 4);
}

/* Signal context register order -> ModRM order. */
static const int GREG_OF[16] = {REG_RAX, REG_RCX, REG_RDX, REG_RBX, REG_RSP, REG_RBP, REG_RSI, REG_RDI,
                                REG_R8,  REG_R9,  REG_R10, REG_R11, REG_R12, REG_R13, REG_R14, REG_R15};

static void on_signal(int sig, siginfo_t *si, void *ctx) {
  (void)si;
  if (!in_case) {
    /* A fault in the harness itself: not a case result. */
    signal(sig, SIG_DFL);
    raise(sig);
    return;
  }
  in_case = 0;
  const greg_t *g = ((ucontext_t *)ctx)->uc_mcontext.gregs;
  struct output *o = fault_out;
  o->signo = (uint32_t)sig;
  o->trapno = (uint32_t)g[REG_TRAPNO];
  o->err = (uint64_t)g[REG_ERR];
  o->rip = (uint64_t)g[REG_RIP];
  for (int i = 0; i < 16; i++) o->regs[i] = (uint64_t)g[GREG_OF[i]];
  o->rflags = (uint64_t)g[REG_EFL];
  siglongjmp(jump_back, 1);
}

static int read_all(void *buf, size_t n) {
  size_t got = fread(buf, 1, n, stdin);
  return got == n;
}

int main(void) {
  struct header h;
  if (!read_all(&h, sizeof h)) {
    fprintf(stderr, "oracle harness: no header on stdin\n");
    return 2;
  }
  if (h.magic != MAGIC || h.code_base != CODE_BASE || h.data_base != DATA_BASE || h.stack_base != STACK_BASE ||
      h.data_win_off != DATA_WIN_OFF || h.data_win_size != DATA_WIN_SIZE || h.stack_win_off != STACK_WIN_OFF ||
      h.stack_win_size != STACK_WIN_SIZE || h.insn_off != INSN_OFF || h.target_back != TARGET_BACK ||
      h.target_fwd != TARGET_FWD) {
    fprintf(stderr, "oracle harness: header does not match this build (rebuild harness.c with generate.ts)\n");
    return 2;
  }

  map_fixed(CODE_BASE, 0x1000, PROT_READ | PROT_WRITE | PROT_EXEC);
  map_fixed(CTRL_BASE, 0x1000, PROT_READ | PROT_WRITE);
  map_fixed(DATA_BASE, REGION_SIZE, PROT_READ | PROT_WRITE);
  map_fixed(STACK_BASE, REGION_SIZE, PROT_READ | PROT_WRITE);
  /* Inaccessible pages around data and stack: a string instruction that runs off a
   * region faults there, as it does in the emulator (where nothing else is mapped). */
  map_fixed(DATA_BASE - 0x1000, 0x1000, PROT_NONE);
  map_fixed(DATA_BASE + REGION_SIZE, 0x1000, PROT_NONE);
  map_fixed(STACK_BASE - 0x1000, 0x1000, PROT_NONE);
  map_fixed(STACK_BASE + REGION_SIZE, 0x1000, PROT_NONE);

  /* Faults are taken on their own stack: the case's RSP is arbitrary, and the red zone
   * below it belongs to the case's memory image. */
  static uint8_t altstack[1 << 16];
  stack_t ss = {.ss_sp = altstack, .ss_size = sizeof altstack, .ss_flags = 0};
  if (sigaltstack(&ss, NULL) != 0) die("sigaltstack");
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = on_signal;
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
  sigemptyset(&sa.sa_mask);
  const int sigs[] = {SIGFPE, SIGSEGV, SIGBUS, SIGILL, SIGTRAP};
  for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
    if (sigaction(sigs[i], &sa, NULL) != 0) die("sigaction");

  /* A runaway case must not hang CI. */
  alarm(600);

  static struct input in;
  static struct output out;
  static char obuf[1 << 20];
  setvbuf(stdout, obuf, _IOFBF, sizeof obuf);
  *(uint64_t *)(ctrl + CTRL_ENTRY) = CODE_BASE + INSN_OFF;
  *(uint64_t *)(ctrl + CTRL_EXIT_FN) = (uint64_t)(uintptr_t)&oracle_exit_common;

  uint64_t gs_now = 0;
  if (syscall(SYS_arch_prctl, ARCH_SET_GS, 0UL) != 0) die("arch_prctl(ARCH_SET_GS)");
  for (uint32_t n = 0; n < h.ncases; n++) {
    if (!read_all(&in, sizeof in)) {
      fprintf(stderr, "oracle harness: input ends at case %u of %u\n", n, h.ncases);
      return 2;
    }
    if (in.len == 0 || in.len > MAX_CODE) {
      fprintf(stderr, "oracle harness: case %u: bad instruction length %u\n", n, in.len);
      return 2;
    }
    /* int3 everywhere else: a stray jump ends in SIGTRAP instead of running garbage. */
    memset(code, 0xcc, 0x1000);
    put_stub(TARGET_BACK);
    put_stub(TARGET_FWD);
    memcpy(code + INSN_OFF, in.bytes, in.len);
    put_stub(INSN_OFF + in.len);
    memset(data, 0, REGION_SIZE);
    memcpy(data + DATA_WIN_OFF, in.data, DATA_WIN_SIZE);
    memset(stack, 0, REGION_SIZE);
    memcpy(stack + STACK_WIN_OFF, in.stack, STACK_WIN_SIZE);
    memcpy(ctrl + CTRL_IN_REGS, in.regs, sizeof in.regs);
    /* Only the flags the case may choose: TF and AC stay clear (AC=1 would turn on
     * alignment checking at CPL 3), IF/IOPL are not writable from user mode anyway. */
    *(uint64_t *)(ctrl + CTRL_IN_FLAGS) = (in.rflags & 0xcd5) | 0x202;
    *(uint64_t *)(ctrl + CTRL_EXIT_RIP) = 0;
    /* GS is free in user space (glibc's TLS is FS): per-CPU style %gs: operands. */
    if (in.gs_base != gs_now) {
      if (syscall(SYS_arch_prctl, ARCH_SET_GS, in.gs_base) != 0) die("arch_prctl(ARCH_SET_GS)");
      gs_now = in.gs_base;
    }

    memset(&out, 0, sizeof out);
    fault_out = &out;
    if (sigsetjmp(jump_back, 1) == 0) {
      in_case = 1;
      oracle_enter();
      in_case = 0;
      out.rip = *(uint64_t *)(ctrl + CTRL_EXIT_RIP);
      memcpy(out.regs, ctrl + CTRL_OUT_REGS, sizeof out.regs);
      out.rflags = *(uint64_t *)(ctrl + CTRL_OUT_FLAGS);
    }
    memcpy(out.data, data + DATA_WIN_OFF, DATA_WIN_SIZE);
    memcpy(out.stack, stack + STACK_WIN_OFF, STACK_WIN_SIZE);
    if (fwrite(&out, sizeof out, 1, stdout) != 1) die("write");
  }
  if (fflush(stdout) != 0) die("flush");
  return 0;
}
