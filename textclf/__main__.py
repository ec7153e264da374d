import signal
import sys

from textclf.errors import PROCESS_INTERRUPT, quiet_lost_interrupt

# Before the heavy imports: an interrupt that lands in one of them is remembered even if a library swallows it.
signal.signal(signal.SIGINT, PROCESS_INTERRUPT.handle)
sys.unraisablehook = quiet_lost_interrupt


def _run() -> int:
    from textclf.cli import main

    return main()


try:
    code = _run()
except BaseException as exc:  # a Stop that lands while Python is still importing: one line, as one that lands later
    from textclf.errors import INTERRUPTED, caused_by_interrupt

    if not caused_by_interrupt(exc):
        raise
    print(INTERRUPTED, file=sys.stderr)
    code = 130
sys.exit(code)
