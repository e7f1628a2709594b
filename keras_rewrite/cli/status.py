"""Exit statuses, a documented contract (the README copies this table), and the two
exceptions that carry one: `UsageError` (status 2) and `Failure` (any status, one line)."""
from __future__ import annotations

EXIT_OK = 0  # success; lint found nothing (lint --fix: nothing left after the fix)
EXIT_FINDINGS = 1  # lint found something (lint --fix: something no pass fixes remains); or,
# with several inputs, at least one failed
EXIT_DIFFERENT = 1  # diff: the two models differ (0: identical), as diff(1) and black --check
EXIT_USAGE = 2  # bad command line: unknown option, invalid value, bad --passes file
EXIT_INPUT = 3  # an input is missing, unreadable, not a Keras model, refused, failed to load
EXIT_REWRITE = 4  # a pass or the rebuild failed, or anything unexpected while rewriting
EXIT_OUTPUT = 5  # the output could not be written (exists, folder, reload check, unexpected)
EXIT_INTERRUPTED = 130  # Ctrl-C (SIGINT); no partial output is left
EXIT_TERMINATED = 143  # SIGTERM; no partial output is left

# The exit status of each step of a conversion (keras_rewrite.conversion.ConversionError.step).
STEP_STATUS = {"load": EXIT_INPUT, "rewrite": EXIT_REWRITE, "write": EXIT_OUTPUT}

EXIT_CODES_HELP = f"""\
exit status:
  {EXIT_OK}  success (lint: no findings; lint --fix: none left after the fix)
  {EXIT_FINDINGS}  lint found something (lint --fix: findings no pass fixes remain); or, with
     several inputs, at least one input failed
     (each failure is an error line on stderr, and the summary counts them)
     diff: the two models differ ({EXIT_OK}: identical), as diff(1) and black --check
  {EXIT_USAGE}  usage error: unknown option, invalid value, unreadable --passes file, a
     --custom-objects module that cannot be imported
  {EXIT_INPUT}  an input is missing, unreadable, not a Keras model, refused by safe mode, or
     past a limit on what is read before Keras loads it (--max-config-mb,
     --max-config-depth, --max-layers); or loading it failed unexpectedly
  {EXIT_REWRITE}  the rewrite failed (a pass or the rebuild; e.g. a pattern matching no layer),
     or reading the model's graph, rewriting or predicting failed unexpectedly
  {EXIT_OUTPUT}  an output (model, picture, report) could not be written (exists without
     --force, folder missing or not writable, protected, the written file did not reload as
     the rewritten model), or writing failed unexpectedly; nothing was left behind
  {EXIT_INTERRUPTED}  interrupted (Ctrl-C); {EXIT_TERMINATED} terminated (SIGTERM); nothing was left behind
"""


class UsageError(Exception):
    """The command line is wrong; exit status EXIT_USAGE."""


class Failure(Exception):
    """One input could not be processed. `code` is its exit status, `message` one line."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code
        self.message = message

    def __reduce__(self):  # sent back from --jobs worker processes
        return type(self), (self.code, self.message)


class Interrupted(BaseException):
    """A signal asked the process to stop (SIGINT or SIGTERM); `code` is 128 + its number.

    A BaseException, like KeyboardInterrupt, so that no ``except Exception`` swallows it and
    every ``finally`` on the way out removes what it created."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.code = 128 + signum
