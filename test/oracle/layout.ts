// Where the oracle puts things, shared by the generator, the native harness (which
// checks these values against its own #defines through the batch header) and the
// emulator side. The addresses are below 2 GiB so absolute disp32 and RIP-relative
// operands can reach the data, and far from where Linux puts a process's image, heap,
// libraries and stack; harness.c maps them with MAP_FIXED_NOREPLACE, so a clash fails
// loudly instead of silently overwriting the harness.

export const CODE_BASE = 0x10000000n;
/** The instruction under test. */
export const INSN_ADDR = CODE_BASE + 0x80n;
/** Branch targets (exit stubs) before and after the instruction, both in rel8 reach. */
export const TARGET_BACK = CODE_BASE + 0x20n;
export const TARGET_FWD = CODE_BASE + 0x100n;
export const INSN_OFF = 0x80;
export const TARGET_BACK_OFF = 0x20;
export const TARGET_FWD_OFF = 0x100;

/** Data and stack: two pages each; the compared windows straddle the page boundary. */
export const REGION_SIZE = 0x2000;
export const DATA_BASE = 0x20000000n;
export const DATA_WIN_OFF = 0xf00;
export const DATA_WIN_SIZE = 0x200;
export const DATA_WIN = DATA_BASE + BigInt(DATA_WIN_OFF);
export const STACK_BASE = 0x30000000n;
export const STACK_WIN_OFF = 0xe00;
export const STACK_WIN_SIZE = 0x400;
export const STACK_WIN = STACK_BASE + BigInt(STACK_WIN_OFF);

/** Control page of the harness (not mapped in the emulator). */
export const CTRL_BASE = 0x10001000n;
const CTRL_EXIT_RIP = 0x0a0n;
const CTRL_EXIT_FN = 0x098n;

/**
 * The exit stub harness.c writes at a code offset: `movq $self, EXIT_RIP; jmp *EXIT_FN`.
 * The emulator's code page gets the same bytes so both machines see one image (the
 * emulator stops before running a stub).
 */
export function exitStub(off: number): Uint8Array {
  const b = new Uint8Array(19);
  const dv = new DataView(b.buffer);
  b.set([0x48, 0xc7, 0x04, 0x25], 0);
  dv.setUint32(4, Number(CTRL_BASE + CTRL_EXIT_RIP), true);
  dv.setUint32(8, Number(CODE_BASE) + off, true);
  b.set([0xff, 0x24, 0x25], 12);
  dv.setUint32(15, Number(CTRL_BASE + CTRL_EXIT_FN), true);
  return b;
}

/** The code page as harness.c builds it: int3 everywhere, stubs, the instruction. */
export function codePage(insn: Uint8Array): Uint8Array {
  const page = new Uint8Array(0x1000).fill(0xcc);
  page.set(exitStub(TARGET_BACK_OFF), TARGET_BACK_OFF);
  page.set(exitStub(TARGET_FWD_OFF), TARGET_FWD_OFF);
  page.set(insn, INSN_OFF);
  page.set(exitStub(INSN_OFF + insn.length), INSN_OFF + insn.length);
  return page;
}

/** The RFLAGS bits a case may choose (CF PF AF ZF SF OF DF); TF and AC stay clear. */
export const INPUT_FLAGS_MASK = 0xcd5;
/** Always set on input: bit 1 and IF (user mode runs with IF=1). */
export const INPUT_FLAGS_FIXED = 0x202;
