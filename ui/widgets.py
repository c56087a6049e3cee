"""Small widgets several pages share."""

from __future__ import annotations

import math
from typing import Any

import streamlit as st

PAGE_SIZE = 64
"""Channels (or filters) drawn at once: big layers have 512–2048."""


def page_picker(count: int, *, key: str, label: str = "Channels shown", container: Any = None,
                noun: str = "channel", show_count: bool = True) -> int:
    """A menu of pages of ``PAGE_SIZE`` items ("1–64 of 512"); returns the page index (0 when one page)."""
    target = container if container is not None else st
    pages = max(1, math.ceil(count / PAGE_SIZE))
    if pages == 1:
        if show_count:
            target.caption(f"{count} {noun}{'s' if count != 1 else ''}")
        return 0
    state = st.session_state
    if not isinstance(state.get(key), int) or not 0 <= state[key] < pages:
        state[key] = 0
    return int(target.selectbox(
        label, list(range(pages)), key=key,
        format_func=lambda p: f"{p * PAGE_SIZE + 1}–{min((p + 1) * PAGE_SIZE, count)} of {count}",
        help=f"Large layers are shown {PAGE_SIZE} at a time, in the chosen order.",
    ))


def page_slice(order: Any, page: int) -> list[int]:
    """The items of ``order`` on page ``page``."""
    return [int(c) for c in order[page * PAGE_SIZE:(page + 1) * PAGE_SIZE]]
