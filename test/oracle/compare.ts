// Comparing the host CPU's result with the emulator's, and describing a case for a
// failure message (bytes, disassembly, inputs, and a host-vs-emulator diff).

import { disassemble } from '../../emu/decode';
import { GPR_NAMES } from '../../emu/cpu';
import { CF, PF, AF, ZF, SF, OF, TF, IF, DF, IOPL, NT, AC } from '../../emu/flags';
import { hostCpuIdentity, type OracleCase } from './generate';
import type { MachineResult } from './native';
import { DATA_WIN, STACK_WIN, INSN_ADDR } from './layout';

/**
 * RFLAGS bits compared. Left out: RF (the CPU sets it in fault frames, the emulator
 * does not model it), bit 1 (always 1), VM/VIF/VIP (not in 64-bit mode), ID (not
 * something an instruction under test changes).
 */
export const COMPARED_FLAGS = CF | PF | AF | ZF | SF | OF | TF | IF | DF | IOPL | NT | AC;

const FLAG_NAMES: [number, string][] = [
  [CF, 'CF'], [PF, 'PF'], [AF, 'AF'], [ZF, 'ZF'], [SF, 'SF'], [TF, 'TF'], [IF, 'IF'], [DF, 'DF'], [OF, 'OF'],
  [NT, 'NT'], [AC, 'AC'],
];

export function flagNames(f: number): string {
  const n = FLAG_NAMES.filter(([b]) => f & b).map(([, s]) => s);
  return n.length ? n.join(' ') : '-';
}

/**
 * Exception classes that must agree. The kernel reports #GP and #PF both as SIGSEGV
 * (and #SS/#AC as SIGBUS), and the emulator raises #PF where a CPU with page tables
 * might raise #GP, so all memory/protection faults are one class.
 */
export function faultClass(v: number | null): string {
  if (v === null) return 'none';
  switch (v) {
    case 0: return '#DE';
    case 1: return '#DB';
    case 3: return '#BP';
    case 6: return '#UD';
    case 10: case 11: case 12: case 13: case 14: case 17:
      return 'memory/protection fault';
    default:
      return `vector ${v}`;
  }
}

const hex64 = (v: bigint): string => '0x' + v.toString(16).padStart(16, '0');
const hexBytes = (b: Uint8Array): string => Array.from(b, (x) => x.toString(16).padStart(2, '0')).join(' ');

function memDiff(what: string, base: bigint, input: Uint8Array, host: Uint8Array, emu: Uint8Array): string[] {
  const out: string[] = [];
  let i = 0;
  while (i < host.length && out.length < 6) {
    if (host[i] === emu[i]) {
      i++;
      continue;
    }
    // Group nearby differences into one range.
    let j = i + 1;
    let last = i;
    while (j < host.length && j - last <= 8) {
      if (host[j] !== emu[j]) last = j;
      j++;
    }
    const end = Math.min(last + 1, i + 32);
    out.push(
      `${what} 0x${(base + BigInt(i)).toString(16)}..+${end - i}: host ${hexBytes(host.subarray(i, end))} | emulator ${hexBytes(
        emu.subarray(i, end),
      )} | input ${hexBytes(input.subarray(i, end))}`,
    );
    i = last + 1;
  }
  return out;
}

/** The host's window with the case's undefined memory result replaced by the emulator's. */
function masked(c: OracleCase, base: bigint, host: Uint8Array, emu: Uint8Array): Uint8Array {
  const u = c.undefinedMem;
  if (!u || u.addr < base || u.addr >= base + BigInt(host.length)) return host;
  const out = Uint8Array.from(host);
  const off = Number(u.addr - base);
  out.set(emu.subarray(off, off + u.size), off);
  return out;
}

/** The host is an Intel CPU (decides which of a case's vendor differences apply). */
export const HOST_IS_INTEL = hostCpuIdentity().vendor === 'GenuineIntel';

/**
 * Differences between the host's and the emulator's result (empty when they agree).
 * `undefinedFlags` (architectural bits) are not compared, nor what the case's
 * `vendorDiffers` leaves out on a host of that vendor (`hostIntel`).
 */
export function compareResults(
  c: OracleCase, host: MachineResult, emu: MachineResult, undefinedFlags: number, hostIntel = HOST_IS_INTEL,
): string[] {
  const d: string[] = [];
  const v = c.vendorDiffers !== null && c.vendorDiffers.intel === hostIntel ? c.vendorDiffers : null;
  const upper = (i: number): bigint => (v?.upperHalves.includes(i) ? 0xffffffffn : (1n << 64n) - 1n);
  if (v && host.vector !== null) undefinedFlags |= v.flagsIfFault;
  if (emu.error) d.push(`emulator error: ${emu.error}`);
  const hc = faultClass(host.vector);
  const ec = faultClass(emu.vector);
  if (hc !== ec) {
    d.push(`exception: host ${hc}${host.vector !== null ? ` (vector ${host.vector}, signal ${host.signal})` : ''}, emulator ${ec}${
      emu.detail ? ` (${emu.detail})` : ''}`);
  }
  // Where execution ended: the stub reached (taken vs not taken), or the faulting
  // instruction. A trap (#BP/#DB) reports the next RIP on the host; not compared.
  if (hc === ec && hc !== '#BP' && hc !== '#DB' && host.rip !== emu.rip) {
    d.push(`end RIP: host ${hex64(host.rip)}, emulator ${hex64(emu.rip)}`);
  }
  for (let i = 0; i < 16; i++) {
    if ((host.regs[i] & upper(i)) !== (emu.regs[i] & upper(i)) && !c.undefinedRegs.includes(i)) {
      d.push(`${GPR_NAMES[i].padEnd(3)}: host ${hex64(host.regs[i])}, emulator ${hex64(emu.regs[i])}, input ${hex64(c.regs[i])}`);
    }
  }
  const mask = COMPARED_FLAGS & ~undefinedFlags;
  if ((host.rflags & mask) !== (emu.rflags & mask)) {
    const diff = (host.rflags ^ emu.rflags) & mask;
    d.push(
      `rflags (compared ${flagNames(mask)}): differ in ${flagNames(diff)}; host ${flagNames(host.rflags & mask)}, emulator ${flagNames(
        emu.rflags & mask,
      )}, input ${flagNames(c.rflags & mask)}`,
    );
  }
  d.push(...memDiff('data', DATA_WIN, c.data, masked(c, DATA_WIN, host.data, emu.data), emu.data));
  d.push(...memDiff('stack', STACK_WIN, c.stack, masked(c, STACK_WIN, host.stack, emu.stack), emu.stack));
  return d;
}

/** The case's bytes, disassembly and inputs. */
export function describeCase(c: OracleCase): string {
  const dis: string[] = [];
  for (let off = 0; off < c.bytes.length; ) {
    const d = disassemble(c.bytes.subarray(off), INSN_ADDR + BigInt(off), 'intel');
    dis.push(d.text);
    off += d.len;
  }
  const lines = [
    `${c.form} #${c.index}: ${hexBytes(c.bytes)}    ${dis.join('; ')}    (at ${hex64(INSN_ADDR)})`,
    `  input rflags 0x${c.rflags.toString(16)} (${flagNames(c.rflags)}); undefined here: ${flagNames(c.flagsUndefined)}` +
      (c.undefinedRegs.length ? `, ${c.undefinedRegs.map((r) => GPR_NAMES[r]).join(' ')}` : '') +
      (c.undefinedMem ? `, memory ${hex64(c.undefinedMem.addr)}+${c.undefinedMem.size}` : '') +
      (c.vendorDiffers ? `; on ${c.vendorDiffers.intel ? 'Intel' : 'non-Intel'} hosts not compared: ` +
        [...c.vendorDiffers.upperHalves.map((r) => `upper ${GPR_NAMES[r]}`),
          ...(c.vendorDiffers.flagsIfFault ? [`${flagNames(c.vendorDiffers.flagsIfFault)} after a fault`] : [])].join(', ') : '') +
      (c.gsBase ? `; GS base ${hex64(c.gsBase)}` : ''),
  ];
  for (let i = 0; i < 16; i += 4) {
    lines.push('  ' + [0, 1, 2, 3].map((k) => `${GPR_NAMES[i + k].padEnd(3)}=${hex64(c.regs[i + k])}`).join(' '));
  }
  if (c.mem) {
    const inData = c.mem.addr >= DATA_WIN && c.mem.addr < STACK_WIN;
    const buf = inData ? c.data : c.stack;
    const off = Number(c.mem.addr - (inData ? DATA_WIN : STACK_WIN));
    lines.push(`  memory operand at ${hex64(c.mem.addr)} (${c.mem.size} bytes): ${hexBytes(buf.subarray(off, off + c.mem.size))}`);
  }
  return lines.join('\n');
}
