// Scenario injections: NMIs and interrupts delivered when a trigger fires — at a
// machine step, when a CPU reaches a symbol, or when text_poke_state.state takes a
// value (optionally while a given op's site is the one under patch). Everything is
// wired to machine events, so it is deterministic and costs nothing elsewhere.

import type { Machine } from '../../emu/machine';
import type { Injection, Action } from './scenario-file';
import type { KernelImage } from '../image/kernel-image';
import { ImageError } from '../image/kernel-image';
import { PATCH_STATE_NAMES } from '../linux/kernel-layout';
import type { KernelLayout } from '../linux/kernel-layout';
import type { KernelCalls } from '../linux/kernel-context';

export interface FiredInjection {
  step: number;
  index: number;
  action: string;
  trigger: string;
  /** The CPU whose action fired a symbol trigger, or the writer of the state. */
  by: number;
}

function describeAction(a: Action): string {
  return 'nmi' in a ? `NMI to CPU${a.nmi}` : `interrupt ${a.irq.vector} to CPU${a.irq.cpu}`;
}

function targetOf(a: Action): number {
  return 'nmi' in a ? a.nmi : a.irq.cpu;
}

/** Sites named by an op ("lock.queued_spin_unlock") or by address ("_raw_spin_unlock+5"). */
function siteSet(img: KernelImage, name: string): Set<bigint> {
  const byOp = img.sites.filter((s) => s.op === name).map((s) => s.address);
  if (byOp.length) return new Set(byOp);
  const m = /^([\w.$]+)(?:\+(0x[0-9a-fA-F]+|\d+))?$/.exec(name);
  const base = m ? img.symbols.resolve(m[1]) : undefined;
  if (base === undefined) return new Set();
  const a = base + BigInt(m![2] ?? 0);
  return new Set(img.sites.filter((s) => s.address === a).map((s) => s.address));
}

function stateValue(name: string): bigint {
  return BigInt(Object.entries(PATCH_STATE_NAMES).find(([, n]) => n === name)![0]);
}

export function wireInjections(
  m: Machine,
  img: KernelImage,
  L: KernelLayout | null,
  list: Injection[],
  file: string,
  calls: KernelCalls | null = null,
): FiredInjection[] {
  const fired: FiredInjection[] = [];
  /** Times each injection may still fire. */
  const left = list.map((inj) => inj.times);
  // What has fired is machine history: it joins snapshots.
  m.addStatePart('injections', {
    saveState: (): [number[], number] => [left.slice(), fired.length],
    loadState: ([l, n]: [number[], number]) => {
      left.splice(0, left.length, ...l);
      fired.length = n;
    },
  });
  list.forEach((inj, index) => {
    const fire = (trigger: string, by: number): boolean => {
      if (left[index] <= 0) return false;
      left[index]--;
      // The step of the event itself, inside the running CPU's slice (m.steps is the
      // slice's start), so a report and a trace name the same step.
      const step = by >= 0 ? m.currentStep(m.cpu(by)) : m.steps;
      fired.push({ step, index, action: describeAction(inj.action), trigger, by });
      const a = inj.action;
      if ('nmi' in a) m.nmi(a.nmi);
      else m.interrupt(a.irq.cpu, a.irq.vector);
      return true;
    };
    const w = inj.when;
    if ('step' in w) {
      m.at(w.step, () => fire(`step ${w.step}`, -1));
    } else if ('symbol' in w) {
      const base = img.symbols.resolve(w.symbol);
      if (base === undefined) throw new ImageError(`${file}: inject[${index}].when.symbol: unknown symbol '${w.symbol}' in ${img.path}`);
      const addr = base + BigInt(w.offset ?? 0);
      m.addHook(addr, (cpu) => {
        if (w.cpu !== undefined && cpu.id !== w.cpu) return 'continue';
        if (!fire(`CPU${cpu.id} reached ${m.symbolize(addr)}`, cpu.id)) return 'continue';
        // An event for this very CPU is taken before the instruction runs.
        return targetOf(inj.action) === cpu.id ? 'boundary' : 'continue';
      });
    } else if ('function' in w) {
      if (!L || !calls) throw new ImageError(`${file}: inject[${index}].when.function: this image has no kernel model`);
      const want = w.state === undefined ? null : stateValue(w.state);
      const sites = w.site === undefined ? null : siteSet(img, w.site);
      if (sites && sites.size === 0) throw new ImageError(`${file}: inject[${index}].when.site: '${w.site}' is neither an op with sites nor a site's symbol+offset in ${img.path}`);
      calls.onEnter((cpu, fn) => {
        if (fn !== w.function || (w.cpu !== undefined && cpu !== w.cpu)) return;
        if (want !== null && BigInt(m.mem.readU32(L.tps.state)) !== want) return;
        if (sites && !sites.has(m.mem.readU64(L.bpDesc.addr))) return;
        if (calls.replaying) return;
        fire(`CPU${cpu} entered ${fn}${w.state ? ` in ${w.state}` : ''}${w.site ? ` at the ${w.site} site` : ''}`, cpu);
      });
    } else {
      if (!L) throw new ImageError(`${file}: inject[${index}].when.state: this image has no text_poke_state`);
      const want = stateValue(w.state);
      const sites = w.site === undefined ? null : siteSet(img, w.site);
      if (sites && sites.size === 0) throw new ImageError(`${file}: inject[${index}].when.site: '${w.site}' is neither an op with sites nor a site's symbol+offset in ${img.path}`);
      m.mem.watch(L.tps.state, 4, (writer) => {
        if (BigInt(m.mem.readU32(L.tps.state)) !== want) return;
        if (sites && !sites.has(m.mem.readU64(L.bpDesc.addr))) return;
        fire(`text_poke_state.state became ${w.state}${w.site ? ` at the ${w.site} site` : ''}`, writer);
      });
    }
  });
  return fired;
}
