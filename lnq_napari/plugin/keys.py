"""Keyboard-first review: napari actions (``lnq-napari:*``) bound through napari's action manager on the
viewer's keymap, so they are listed and remappable in *Preferences > Shortcuts* (Viewer key bindings).

Each command acts on the viewer's current node session: step through the suggestions (the view is
centred on each), accept or reject the current one, step through the nodes, save, open the next case of
the review queue (refused while edits are unsaved), show or hide the node layer. The default keys are
free in napari's Labels, Image and Points keymaps, which take precedence over the viewer's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from lnq_napari.errors import LNQError
from lnq_napari.plugin._session import NodeSession, session_for
from lnq_napari.wording import count

PREFIX = "lnq-napari"


@dataclass(frozen=True)
class ReviewKey:
    """One review action: its napari action name, what it does, its default keys and its command."""

    name: str
    description: str
    keys: tuple[str, ...]
    command: Callable[[object], str]


def _report(viewer, message: str) -> str:
    """Say ``message`` in the status bar and in the Correct tab's status line: a key that moves the slice
    (N, J, K) has napari put the cursor's coordinates in the status bar a moment later, over the message."""
    from lnq_napari.plugin.widgets.correct import CorrectWidget

    viewer.status = message
    correct = find_widget(viewer, CorrectWidget)
    if correct is not None:
        correct.status.setText(message)
    return message


def _with_session(viewer, act: Callable[[NodeSession], str]) -> str:
    session = session_for(viewer, create=True)
    if session is None:
        return _report(viewer, "no node layer: run Segment or open a label file first")
    try:
        message = act(session)
    except LNQError as exc:
        message = str(exc)
    session.stats.keys += 1
    return _report(viewer, message)


def _centre_suggestion(viewer, session: NodeSession) -> None:
    from lnq_napari.plugin.widgets.nodes import centre_on

    i = session.current_suggestion
    if 0 <= i < len(session.suggestion_points()):
        centre_on(viewer, session.suggestions.data_to_world(session.suggestion_points()[i]))
        session.suggestions.selected_data = {i}


def _suggestion_text(session: NodeSession, i: int) -> str:
    feats = session.suggestions.features
    if "text" in feats and len(feats) > i:
        return f"#{int(feats['rank'].iloc[i])} {feats['text'].iloc[i]}"
    return f"suggestion {i + 1}"


def step_suggestion(viewer, step: int) -> str:
    """Make the next (``step`` 1) or previous (-1) suggestion current and centre the view on it."""

    def act(session: NodeSession) -> str:
        n = len(session.suggestion_points())
        if not n:
            return "no suggestion left"
        cur = session.current_suggestion
        session.focus_suggestion((cur + step) % n if cur >= 0 else (0 if step > 0 else n - 1))
        _centre_suggestion(viewer, session)
        i = session.current_suggestion
        return f"{i + 1}/{n}: {_suggestion_text(session, i)}"

    return _with_session(viewer, act)


def decide_suggestion(viewer, accept: bool) -> str:
    """Accept (add the node) or reject the current suggestion, then centre on the one that follows."""

    def act(session: NodeSession) -> str:
        n = len(session.suggestion_points())
        if not n:
            return "no suggestion left"
        i = session.current_suggestion if session.current_suggestion >= 0 else 0
        if accept:
            node = session.accept_suggestion(i)
            done = f"accepted: node {node}" if node else "no node-like tissue there; suggestion dropped"
        else:
            session.reject_suggestion(i)
            done = "rejected"
        left = len(session.suggestion_points())
        session.focus_suggestion(min(i, left - 1))
        _centre_suggestion(viewer, session)
        return f"{done}; {count(left, 'suggestion')} left"

    return _with_session(viewer, act)


def step_node(viewer, step: int) -> str:
    """Centre the view on the next (``step`` 1) or previous (-1) node by id and select its label."""
    from lnq_napari.plugin.widgets.nodes import centre_on

    def act(session: NodeSession) -> str:
        data = np.asarray(session.nodes.data)
        boxes = ndimage.find_objects(data)
        ids = [i + 1 for i, box in enumerate(boxes) if box is not None]
        if not ids:
            return "no node"
        cur = int(session.nodes.selected_label)
        later = [i for i in ids if (i > cur if step > 0 else i < cur)]
        node = (later[0] if step > 0 else later[-1]) if later else (ids[0] if step > 0 else ids[-1])
        box = boxes[node - 1]
        local = np.argwhere(data[box] == node).mean(axis=0) + [s.start for s in box]
        centre_on(viewer, session.nodes.data_to_world(local))
        session.nodes.selected_label = node
        return f"node {node} ({ids.index(node) + 1} of {len(ids)})"

    return _with_session(viewer, act)


def toggle_prediction(viewer) -> str:
    """Show or hide the node layer (the prediction under review) to see the CT beneath it."""

    def act(session: NodeSession) -> str:
        session.nodes.visible = not session.nodes.visible
        return f"{session.nodes.name} {'shown' if session.nodes.visible else 'hidden'}"

    return _with_session(viewer, act)


def save_case(viewer) -> str:
    """Save the node layer as a new label version (what the Save widget's button does; in its worker
    thread: the status bar says "saving ...", then what the Save widget says when it ends)."""
    from lnq_napari.plugin.widgets.save import SaveWidget

    save = find_widget(viewer, SaveWidget)
    if save is None:
        return _report(viewer, "open Plugins > lnq-napari > Panel (or > Save) to save")
    session = session_for(viewer, create=True)
    if session is not None and save.worker is None and session.saving is None:  # a press that saves
        session.stats.keys += 1
    if save.save() is not None:
        def ended(_path=None) -> None:
            save.saved.disconnect(ended)
            _report(viewer, save.status.text())

        save.saved.connect(ended)  # a signal of the widget: none comes once it is gone
    return _report(viewer, save.status.text())


def next_case(viewer) -> str:
    """Open the case after this one in the Review queue (refused while edits are unsaved)."""
    from lnq_napari.plugin.widgets.review import ReviewWidget

    review = find_widget(viewer, ReviewWidget)
    if review is None:
        return _report(viewer, "open Plugins > lnq-napari > Panel (or > Review) for the review queue")
    review.open_next()
    return _report(viewer, review.status.text())


REVIEW_KEYS: tuple[ReviewKey, ...] = (
    ReviewKey(f"{PREFIX}:next_suggestion", "Next suggestion (centred)", ("N",),
              lambda viewer: step_suggestion(viewer, 1)),
    ReviewKey(f"{PREFIX}:previous_suggestion", "Previous suggestion", ("Shift-N",),
              lambda viewer: step_suggestion(viewer, -1)),
    ReviewKey(f"{PREFIX}:accept_suggestion", "Accept suggestion", ("A",),
              lambda viewer: decide_suggestion(viewer, accept=True)),
    ReviewKey(f"{PREFIX}:reject_suggestion", "Reject suggestion", ("R",),
              lambda viewer: decide_suggestion(viewer, accept=False)),
    ReviewKey(f"{PREFIX}:next_node", "Next node (centred)", ("J",), lambda viewer: step_node(viewer, 1)),
    ReviewKey(f"{PREFIX}:previous_node", "Previous node", ("K",), lambda viewer: step_node(viewer, -1)),
    ReviewKey(f"{PREFIX}:save", "Save a new version", ("Shift-S",), save_case),
    ReviewKey(f"{PREFIX}:next_case", "Next case in the queue", ("Shift-Enter",), next_case),
    ReviewKey(f"{PREFIX}:toggle_prediction", "Show / hide the nodes", ("T",), toggle_prediction),
)


def _action(key: ReviewKey):
    from napari.components import ViewerModel

    def command(viewer: ViewerModel) -> None:  # the action manager passes the viewer
        key.command(viewer)

    return command


def register_review_keys() -> None:
    """Register the review actions with napari's action manager (once; later calls do nothing) and
    bind their default keys unless the user's settings already map them."""
    from napari.components import ViewerModel
    from napari.settings import get_settings
    from napari.utils.action_manager import action_manager

    saved = get_settings().shortcuts.shortcuts
    for key in REVIEW_KEYS:
        if key.name in action_manager._actions:
            continue
        description = f"{PREFIX}: {key.description}"  # as listed in Preferences > Shortcuts
        action_manager.register_action(key.name, _action(key), description, ViewerModel)
        if key.name not in saved:
            for shortcut in key.keys:
                action_manager.bind_shortcut(key.name, shortcut)


def key_rows() -> list[tuple[str, str]]:
    """``(keys, description)`` of each review action as bound now (remapped keys included)."""
    from napari.utils.action_manager import action_manager
    from napari.utils.interactions import Shortcut

    rows = []
    for key in REVIEW_KEYS:
        bound = action_manager._shortcuts.get(key.name, [])
        rows.append((" or ".join(Shortcut(s).platform for s in bound) or "(none)", key.description))
    return rows


def find_widget(viewer, cls):
    """The docked widget of type ``cls``: docked alone, or inside the lnq-napari panel; else None."""
    docks = getattr(viewer.window, "dock_widgets", {})
    for widget in docks.values():
        if isinstance(widget, cls):
            return widget
        inner = getattr(widget, "widgets", None)
        if isinstance(inner, dict):
            found = [w for w in inner.values() if isinstance(w, cls)]
            if found:
                return found[0]
    return None
