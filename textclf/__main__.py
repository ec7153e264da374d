import sys


def _run() -> int:
    from textclf.cli import main

    return main()


try:
    code = _run()
except KeyboardInterrupt:  # a Stop that lands while Python is still importing: one line, as one that lands later
    from textclf.errors import INTERRUPTED

    print(INTERRUPTED, file=sys.stderr)
    code = 130
sys.exit(code)
