/*
 * The peer side of `npm run bench`'s "peer" section: runs a workload described by a
 * spec file on Unicorn (QEMU's TCG JIT as a library) and prints how long it took, so
 * textpoke's figures stand beside a well-known emulator's on the same bytes.
 *
 * Spec file, one directive per line:
 *   cpus N                      engines sharing one guest memory (uc_mem_map_ptr)
 *   quantum Q                   0: each CPU runs to its stop address in one uc_emu_start;
 *                               1: round-robin, one instruction per uc_emu_start (count=1)
 *   map ADDR SIZE               zero-filled guest memory (page-aligned)
 *   load ADDR FILE OFFSET SIZE  bytes of FILE at OFFSET written at ADDR (inside a map)
 *   reg CPU NAME VALUE          rax..r15, rip (hex)
 *   stop ADDR                   every CPU stops when RIP reaches ADDR (not executed)
 * Output: "seconds S", then "cpu N RAX RCX RDX RBX RSP RBP RSI RDI R8 ... R15" (hex) per
 * CPU, on stdout; errors on stderr with exit status 2.
 *
 * Build: gcc -O2 -o unicorn-bench unicorn-bench.c -lunicorn (bench/peer.ts does it).
 */
#include <unicorn/unicorn.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#define MAX_CPUS 64
#define MAX_MAPS 64

struct region { uint64_t addr, size; void *host; };

static struct region maps[MAX_MAPS];
static int nmaps;
static uc_engine *cpu[MAX_CPUS];
static int ncpus = 1, quantum;
static uint64_t stop_at;

static void die(const char *what, uc_err e) {
  fprintf(stderr, "unicorn-bench: %s: %s\n", what, uc_strerror(e));
  exit(2);
}

static int reg_id(const char *name) {
  static const struct { const char *n; int id; } regs[] = {
    {"rax", UC_X86_REG_RAX}, {"rbx", UC_X86_REG_RBX}, {"rcx", UC_X86_REG_RCX}, {"rdx", UC_X86_REG_RDX},
    {"rsi", UC_X86_REG_RSI}, {"rdi", UC_X86_REG_RDI}, {"rbp", UC_X86_REG_RBP}, {"rsp", UC_X86_REG_RSP},
    {"r8", UC_X86_REG_R8}, {"r9", UC_X86_REG_R9}, {"r10", UC_X86_REG_R10}, {"r11", UC_X86_REG_R11},
    {"r12", UC_X86_REG_R12}, {"r13", UC_X86_REG_R13}, {"r14", UC_X86_REG_R14}, {"r15", UC_X86_REG_R15},
    {"rip", UC_X86_REG_RIP},
  };
  for (size_t i = 0; i < sizeof regs / sizeof regs[0]; i++)
    if (!strcmp(regs[i].n, name)) return regs[i].id;
  fprintf(stderr, "unicorn-bench: unknown register '%s'\n", name);
  exit(2);
}

static void *host_of(uint64_t addr, uint64_t size) {
  for (int i = 0; i < nmaps; i++)
    if (addr >= maps[i].addr && addr - maps[i].addr + size <= maps[i].size)
      return (char *)maps[i].host + (addr - maps[i].addr);
  fprintf(stderr, "unicorn-bench: load at 0x%" PRIx64 " (+0x%" PRIx64 ") is outside every map\n", addr, size);
  exit(2);
}

static void share_memory(uint64_t addr, uint64_t size, void *host) {
  for (int c = 0; c < ncpus; c++) {
    uc_err e = uc_mem_map_ptr(cpu[c], addr, size, UC_PROT_ALL, host);
    if (e) die("uc_mem_map_ptr", e);
  }
}

/* CPU time of this process: on a shared host, wall time measures the neighbours too. */
static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return t.tv_sec + t.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
  if (argc != 2) { fprintf(stderr, "usage: unicorn-bench SPEC\n"); return 2; }
  FILE *f = fopen(argv[1], "r");
  if (!f) { perror(argv[1]); return 2; }
  char line[4096];
  /* First pass: cpus, so the engines exist before maps and registers. */
  while (fgets(line, sizeof line, f)) if (sscanf(line, "cpus %d", &ncpus) == 1) break;
  if (ncpus < 1 || ncpus > MAX_CPUS) { fprintf(stderr, "unicorn-bench: cpus out of range\n"); return 2; }
  for (int c = 0; c < ncpus; c++) {
    uc_err e = uc_open(UC_ARCH_X86, UC_MODE_64, &cpu[c]);
    if (e) die("uc_open", e);
  }
  rewind(f);
  while (fgets(line, sizeof line, f)) {
    char name[64], file[2048];
    uint64_t a, b, c2, d;
    int n;
    if (sscanf(line, "quantum %d", &quantum) == 1) continue;
    if (sscanf(line, "cpus %d", &n) == 1) continue;
    if (sscanf(line, "stop %" SCNx64, &stop_at) == 1) continue;
    if (sscanf(line, "map %" SCNx64 " %" SCNx64, &a, &b) == 2) {
      if (nmaps == MAX_MAPS) { fprintf(stderr, "unicorn-bench: too many maps\n"); return 2; }
      b = (b + 0xfff) & ~0xfffULL;
      void *h = mmap(NULL, b, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
      if (h == MAP_FAILED) { perror("mmap"); return 2; }
      if ((a & 0xfff) != 0) { fprintf(stderr, "unicorn-bench: map at 0x%" PRIx64 " is not page-aligned\n", a); return 2; }
      maps[nmaps++] = (struct region){a, b, h};
      share_memory(a, b, h);
      continue;
    }
    if (sscanf(line, "load %" SCNx64 " %2047s %" SCNx64 " %" SCNx64, &a, file, &c2, &d) == 4) {
      FILE *g = fopen(file, "rb");
      if (!g) { perror(file); return 2; }
      if (fseeko(g, (off_t)c2, SEEK_SET) || fread(host_of(a, d), 1, d, g) != d) {
        fprintf(stderr, "unicorn-bench: %s: short read at offset %" PRIu64 "\n", file, c2);
        return 2;
      }
      fclose(g);
      continue;
    }
    if (sscanf(line, "reg %d %63s %" SCNx64, &n, name, &a) == 3) {
      if (n < 0 || n >= ncpus) { fprintf(stderr, "unicorn-bench: reg for CPU %d of %d\n", n, ncpus); return 2; }
      uc_err e = uc_reg_write(cpu[n], reg_id(name), &a);
      if (e) die("uc_reg_write", e);
      continue;
    }
    if (line[0] == '\n' || line[0] == '#') continue;
    fprintf(stderr, "unicorn-bench: cannot read spec line: %s", line);
    return 2;
  }
  fclose(f);

  double t0 = now();
  if (quantum == 0) {
    for (int c = 0; c < ncpus; c++) {
      uint64_t rip;
      uc_reg_read(cpu[c], UC_X86_REG_RIP, &rip);
      uc_err e = uc_emu_start(cpu[c], rip, stop_at, 0, 0);
      if (e) die("uc_emu_start", e);
    }
  } else {
    int live = ncpus;
    int done[MAX_CPUS] = {0};
    while (live > 0) {
      for (int c = 0; c < ncpus; c++) {
        if (done[c]) continue;
        uint64_t rip;
        uc_reg_read(cpu[c], UC_X86_REG_RIP, &rip);
        if (rip == stop_at) { done[c] = 1; live--; continue; }
        uc_err e = uc_emu_start(cpu[c], rip, stop_at, 0, 1);
        if (e) die("uc_emu_start", e);
      }
    }
  }
  double dt = now() - t0;
  for (int c = 0; c < ncpus; c++) {
    uint64_t rip;
    uc_reg_read(cpu[c], UC_X86_REG_RIP, &rip);
    if (rip != stop_at) { fprintf(stderr, "unicorn-bench: CPU%d stopped at 0x%" PRIx64 ", not at the stop address\n", c, rip); return 2; }
  }
  printf("seconds %.9f\n", dt);
  static const int gpr[16] = {
    UC_X86_REG_RAX, UC_X86_REG_RCX, UC_X86_REG_RDX, UC_X86_REG_RBX, UC_X86_REG_RSP, UC_X86_REG_RBP,
    UC_X86_REG_RSI, UC_X86_REG_RDI, UC_X86_REG_R8, UC_X86_REG_R9, UC_X86_REG_R10, UC_X86_REG_R11,
    UC_X86_REG_R12, UC_X86_REG_R13, UC_X86_REG_R14, UC_X86_REG_R15,
  };
  for (int c = 0; c < ncpus; c++) {
    printf("cpu %d", c);
    for (int i = 0; i < 16; i++) {
      uint64_t v;
      uc_reg_read(cpu[c], gpr[i], &v);
      printf(" 0x%" PRIx64, v);
    }
    printf("\n");
  }
  return 0;
}
