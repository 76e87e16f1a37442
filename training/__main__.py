"""``python -m training <command>``: see :mod:`training.cli`."""
from training.cli import main

raise SystemExit(main())
