"""Exemplars: the images of a collection that excite each channel most and least (:mod:`.search`), the result and
its file (:mod:`.result`), the same search on Ray Data (:mod:`.on_ray`), the bundled collection that needs no upload
(:mod:`.demo_collection`) and the command line (:mod:`.cli`, ``python -m featviz_core.exemplars``)."""

from .demo_collection import demo_collection
from .result import Exemplar, Exemplars
from .search import ExemplarsProgress, batch_stats, find_exemplars

__all__ = ["Exemplar", "Exemplars", "ExemplarsProgress", "batch_stats", "demo_collection", "find_exemplars"]
