// User-facing errors: one line naming what and where, exit status 2, no stack trace
// (unless --debug). Library code throws these (or its own input errors, mapped here);
// anything else is a bug and is reported as one (exit status 70).

export class UserError extends Error {
  constructor(message: string, readonly exitCode = 2) {
    super(message);
  }
}

/**
 * Library errors that describe bad input rather than a bug: a file that is missing,
 * malformed or truncated, an unknown symbol or op, a scenario that fails validation,
 * a patch request the image cannot honour. Matched by class name so bin/ need not
 * import every module that defines one.
 */
const INPUT_ERROR_NAMES = new Set([
  'UserError',
  'ExecInputError',
  'InputError',
  'ScenarioError',
  'LoadError',
  'ImageError',
  'PatchError',
  'PatchRequestError',
  'RuntimePatchError',
  'ConsoleError',
  'OutputError',
  'ReplayFileError',
]);

export function isInputError(e: unknown): e is Error {
  return e instanceof Error && (e instanceof UserError || INPUT_ERROR_NAMES.has(e.constructor.name));
}

/** Prints an error the way the CLI promises and returns the exit code. */
export function reportError(e: unknown, debug: boolean): number {
  if (isInputError(e)) {
    process.stderr.write(`textpoke: ${e.message}\n`);
    if (debug && e.stack) process.stderr.write(e.stack + '\n');
    return e instanceof UserError ? e.exitCode : 2;
  }
  const msg = e instanceof Error ? e.message : String(e);
  process.stderr.write(`textpoke: internal error: ${msg} (run with --debug for the stack trace)\n`);
  if (debug && e instanceof Error && e.stack) process.stderr.write(e.stack + '\n');
  return 70;
}
