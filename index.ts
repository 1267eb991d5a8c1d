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
export { loadImage } from './kernel-model/image/load';
export type { KernelImage, PvSite } from './kernel-model/image/kernel-image';
export { loadFixture } from './kernel-model/image/fixture-image';
export { loadVmlinuxImage } from './kernel-model/image/vmlinux-image';
export { downloadKernel } from './kernel-model/image/download';

// Patching and verification
export { bootPatchImage } from './kernel-model/linux/boot-patch';
export { bootPatch61 } from './kernel-model/linux/alternatives-6.1';
export { runtimePatch, type RuntimePatchOptions } from './kernel-model/scenario/runtime-patch';
export { verifyImage } from './kernel-model/linux/verify-image';
export { writePatchedImage } from './kernel-model/image/write';
export { generatePatch } from './kernel-model/linux/paravirt-patch';

// Scenarios and reports
export { loadScenario, parseScenario, SCENARIO_SCHEMA, type Scenario, type Outcome } from './kernel-model/scenario/scenario-file';
export { runScenario, prepareScenario, explain, type RunReport } from './kernel-model/scenario/run';
export { KernelModel, type PatchRequest } from './kernel-model/linux/kernel-model';
export { machineReport } from './kernel-model/scenario/report';
export { runDemo } from './kernel-model/present/demo';
export { StepConsole } from './kernel-model/present/console';
