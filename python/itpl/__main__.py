import sys

try:
    from itpl.cli import main
except KeyboardInterrupt:  # Ctrl-C before the CLI's own handler is installed
    print("itpl: interrupted", file=sys.stderr)
    sys.exit(130)

sys.exit(main())
