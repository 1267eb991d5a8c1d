// GPR numbering (as in ModRM) and the layout of `Cpu.r`. A leaf module: the opcode
// table's modules read these constants at load time, before cpu.ts has finished
// loading (cpu.ts imports the table through the decode cache).

export const RAX = 0, RCX = 1, RDX = 2, RBX = 3, RSP = 4, RBP = 5, RSI = 6, RDI = 7;
export const R8 = 8, R9 = 9, R10 = 10, R11 = 11, R12 = 12, R13 = 13, R14 = 14, R15 = 15;
/** Offset of the high halves in `Cpu.r`. */
export const HI = 16;

export const GPR_NAMES = [
  'rax', 'rcx', 'rdx', 'rbx', 'rsp', 'rbp', 'rsi', 'rdi',
  'r8', 'r9', 'r10', 'r11', 'r12', 'r13', 'r14', 'r15',
] as const;
export type GprName = (typeof GPR_NAMES)[number];
