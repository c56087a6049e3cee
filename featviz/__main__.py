"""``python -m featviz ...``: the same as the ``featviz`` command."""

from featviz.cli import main

raise SystemExit(main())
