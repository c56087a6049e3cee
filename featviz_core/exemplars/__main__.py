"""``python -m featviz_core.exemplars``: the exemplars command line (:mod:`featviz_core.exemplars.cli`)."""

from .cli import main

raise SystemExit(main())
