"""User text made literal before it meets Markdown.

Names a person types or imports (labels, clusters, workspaces, runs, uploaded files, directions)
are shown by Streamlit elements that render Markdown: st.markdown/caption/info/error/…, widget
labels, help texts, metric labels, tab and expander titles. Unescaped, a label named
`![](http://host/x.png)` makes the browser fetch that image and `[click](http://…)` becomes a
link. `md()` is the one way facelab escapes such text; selectbox options and image captions are
plain text and need nothing.
"""

from __future__ import annotations

import re

# CommonMark lets a backslash escape any ASCII punctuation: these start links and images, HTML,
# emphasis, code, headings, lists, tables, `$` math and `:emoji:`/`:red[...]`.
_SPECIAL = re.compile(r"""([\\`*_{}\[\]()<>#+\-.!|~$:@&=%"'/])""")
_LINE_BREAKS = re.compile(r"[\r\n\u2028\u2029\x0b\x0c\x85]+")
# GFM links bare `http://…`, `www.…` and `a@b.c` after escapes are resolved, so an invisible
# word joiner (U+2060) goes where those patterns need two characters side by side.
_AUTOLINK = re.compile(r"(?i)(:(?=//)|@|www(?=\.))")
WORD_JOINER = "\u2060"


def md(text: object) -> str:
    """`text` shown literally in Markdown, on one line (a newline could start a heading or list)."""
    plain = _AUTOLINK.sub(r"\1" + WORD_JOINER, _LINE_BREAKS.sub(" ", str(text)))
    return _SPECIAL.sub(r"\\\1", plain)
