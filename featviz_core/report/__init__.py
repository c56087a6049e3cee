"""The one-file HTML report of what the app showed (:mod:`.html`), and of a 3-D model on a scan (:mod:`.volume`)."""

from .html import DOES_NOT_PROVE, report_html
from .volume import volume_report_html

__all__ = ["DOES_NOT_PROVE", "report_html", "volume_report_html"]
