"""The one base class of facelab's errors meant for the user.

A `FacelabError` says what went wrong in the user's words (a bad file, a missing workspace, too
few labels): the CLI prints its message as one line and exits 2 (`facelab.cli.main` catches it
once, for every command), and the app shows it with `st.error`. Anything else is a bug and keeps
its traceback. A ValueError, so code that caught the older per-module classes as ValueError
still does.
"""

from __future__ import annotations


class FacelabError(ValueError):
    """An error whose message is for the user, shown as is."""
