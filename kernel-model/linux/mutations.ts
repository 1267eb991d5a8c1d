// Seeded protocol bugs (issue 9): each mutation is one deliberate bug in one of the
// patching protocols, chosen by a scenario's "mutate" field, so that the explorer can be
// shown to find it. The protocol code holds one named check per hook
// (`mutated(k, 'name')`); this table is the only list of them (`textpoke explore
// --list-mutations` prints it). None is on by default, and none changes the poke
// write itself (`__text_do_poke`): only which steps run, in which order.

import type { KernelContext } from './kernel-context';

export interface Mutation {
  /** The protocol the bug is in (the scenario must patch with it). */
  protocol: 'batch' | 'stop-machine';
  /** It only shows in this NMI mode of the stop-machine protocol (undefined: either). */
  nmi?: boolean;
  /** One line: what the mutant does differently. */
  summary: string;
}

export const MUTATIONS = {
  'batch-no-sync-1': { protocol: 'batch', summary: 'text_poke_bp_batch skips text_poke_sync after writing the int3s (phase 1)' },
  'batch-no-sync-2': { protocol: 'batch', summary: 'text_poke_bp_batch skips text_poke_sync after writing the tails (phase 2)' },
  'batch-no-sync-3': { protocol: 'batch', summary: 'text_poke_bp_batch skips text_poke_sync after writing the first bytes (phase 3)' },
  'first-byte-first': { protocol: 'batch', summary: 'text_poke_bp_batch writes the first bytes (phase 3) before the tails (phase 2)' },
  'publish-before-clear': { protocol: 'stop-machine', summary: "poke_sync publishes the new state before clearing sync_ack_map (the series' order) even in the fixed variant" },
  'ack-without-serialize': { protocol: 'stop-machine', summary: 'a secondary in text_poke_sync_site sets its ack bit without running sync_one' },
  'bp-no-rewind': { protocol: 'stop-machine', summary: 'the #BP handler consumes an int3 at the site without rewinding regs->ip to the site' },
  'num-acks-short': { protocol: 'stop-machine', summary: 'text_poke_late sets num_acks one short of the CPUs taking part' },
  'nmi-handler-last': { protocol: 'stop-machine', nmi: true, summary: 'text_poke_nmi is registered last on the NMI_LOCAL chain instead of first' },
  'wait-on-state': { protocol: 'stop-machine', summary: "a secondary waits for text_poke_state.state's value to change (the series' wait), not for the next step, in the fixed variant" },
  'bitmap-acks': { protocol: 'stop-machine', summary: 'the fixed variant acknowledges in the cleared sync_ack_map (clear, then publish) instead of naming the step in acked[]' },
  'no-wait-nmi-work': { protocol: 'stop-machine', nmi: true, summary: 'patch_worker_nmi sends its NMI and returns without waiting for nmi_work to drop to 0' },
} as const satisfies Record<string, Mutation>;

export type MutationName = keyof typeof MUTATIONS;

export const MUTATION_NAMES = Object.keys(MUTATIONS) as MutationName[];

export function isMutation(s: string): s is MutationName {
  return Object.prototype.hasOwnProperty.call(MUTATIONS, s);
}

/** Whether the running protocol carries this seeded bug (the hooks' one check). */
export function mutated(k: KernelContext, name: MutationName): boolean {
  return k.mutation === name;
}
