// (being written)
import type { OpRow } from '../optable';

export const rows: OpRow[] = [];
