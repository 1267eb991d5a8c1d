// Real kernels run flat-mapped: asking for page tables on one is a one-line error,
// never a silent flat run that a reader would take for a paged one.

import { join } from 'path';
import { testKernel, FETCH_TIMEOUT_MS } from './kernel';
import { textpoke, expectUserError, SCENARIOS } from '../cli/textpoke';

beforeAll(async () => {
  await testKernel();
}, FETCH_TIMEOUT_MS);

it('run --paging on a real-kernel scenario: exit 2 naming the field', () => {
  expectUserError(textpoke(['run', join(SCENARIOS, 'kernel', 'real-batch-poke.json'), '--paging']), /paging: page tables are built for fixture kernels only; .* runs flat-mapped/);
});
