"""ctrl+p: every action of every view in the command palette (switches to the view, then runs it)."""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from typing import TYPE_CHECKING

from textual.command import DiscoveryHit, Hit, Hits, Provider

if TYPE_CHECKING:
    from tui.app import DockyardApp


def palette_entries(app: DockyardApp) -> Iterator[tuple[str, str, str, str]]:
    """(title, help, view id or "", action) for every binding with a description."""
    for view_id, title, action, description, binding_id, _key in app.all_bindings():
        if not description or view_id == "-":
            continue
        yield f"{title}: {description}", f"[{binding_id}]", view_id, action


class ActionsProvider(Provider):
    async def discover(self) -> Hits:
        app = self.app
        from tui.app import DockyardApp

        assert isinstance(app, DockyardApp)
        for text, help_text, view_id, action in palette_entries(app):
            yield DiscoveryHit(text, partial(app.run_view_action, view_id, action), help=help_text)

    async def search(self, query: str) -> Hits:
        app = self.app
        from tui.app import DockyardApp

        assert isinstance(app, DockyardApp)
        matcher = self.matcher(query)
        for text, help_text, view_id, action in palette_entries(app):
            score = matcher.match(text)
            if score > 0:
                yield Hit(score, matcher.highlight(text), partial(app.run_view_action, view_id, action),
                          help=help_text)
