"""The one-file HTML report of what the app showed (:mod:`.html`)."""

from .html import DOES_NOT_PROVE, report_html

__all__ = ["DOES_NOT_PROVE", "report_html"]
