// textpoke as a library: the machine, the kernel model, and the operations the
// command line offers. Everything the CLI does is one of these calls.

// The machine
export { Machine, type MachineOptions, type RunOptions, type RunResult, type StopReason, type FetchMode } from './emu/machine';
export { Cpu } from './emu/cpu';
export { RAX, RCX, RDX, RBX, RSP, RBP, RSI, RDI, R8, R9, R10, R11, R12, R13, R14, R15, GPR_NAMES } from './emu/regs';
export { execCode, type ExecRequest, type ExecResult } from './emu/exec';
export type { Schedule } from './emu/scheduler';
export type { Probe } from './emu/probe';
export type { HostRoutine, HostGen, HostContext, HostOp } from './emu/host';
export type { XmcViolation } from './emu/xmc';
export { writeIdtGate, loadIdt, setIst } from './emu/setup';
export { sweepCoverage, formatCoverage } from './emu/coverage';

// Kernel images
export { loadImage } from './kernel-model/load-image';
export type { KernelImage, PvSite } from './kernel-model/image';
export { loadFixture } from './kernel-model/fixture-image';
export { loadVmlinuxImage } from './kernel-model/vmlinux-image';
export { fetchKernel } from './kernel-model/fetch';

// Patching and verification
export { bootPatchImage } from './kernel-model/boot-patch';
export { bootPatch61 } from './kernel-model/boot-patch-61';
export { runtimePatch, type RuntimePatchOptions } from './kernel-model/runtime-patch';
export { verifyImage } from './kernel-model/verify-image';
export { writePatchedImage } from './kernel-model/image-writer';
export { generatePatch } from './kernel-model/paravirt-patch';

// Scenarios and reports
export { loadScenario, parseScenario, type Scenario, type Outcome } from './kernel-model/scenario';
export { runScenario, prepareScenario, explain, type RunReport } from './kernel-model/run-scenario';
export { KernelModel, type PatchRequest } from './kernel-model/kernel';
export { machineReport } from './kernel-model/report';
export { runDemo } from './kernel-model/demo';
export { StepConsole } from './kernel-model/console';
