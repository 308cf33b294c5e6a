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


def db(value: float | None) -> str:
    """A PSNR (or any decibel figure) the one way pages show it: one decimal, "–" when missing."""
    return "–" if value is None or value != value else f"{value:.1f} dB"


def count(n: int, word: str, plural: str | None = None) -> str:
    """"1 frame", "2 frames", "1,200 frames"."""
    return f"{n:,} {word if n == 1 else plural or word + 's'}"


def when(iso: str) -> str:
    """An ISO time stamp as a person reads it ("3 Dec 2026, 07:19"); the input when unparsable."""
    from datetime import datetime

    try:
        t = datetime.fromisoformat(iso)
    except (TypeError, ValueError):
        return str(iso)
    return f"{t.day} {t:%b %Y, %H:%M}"


HELP = {  # one plain sentence for each term a page shows
    "active units": "How many of the model's latent numbers carry information about the faces "
                    "(their average KL above 0.01 nats); the rest are ignored by the decoder.",
    "KL per latent dimension": "How much information each latent number carries about the face: "
                               "near 0, the model does not use it.",
    "probe ROC-AUC": "How well a straight line through the latent space tells frames with the label "
                     "from frames without it: 0.5 is chance, 1 perfect.",
    "within / overall distance": "Mean distance between frames with the label divided by the mean "
                                 "distance between all frames: below 1, they sit together.",
    "z": "Colour by one latent number of the model (z0, z1, …): shows what that number tracks.",
    "held-out PSNR": "How close the reconstructions of frames kept out of training are to the "
                     "originals, in dB: higher is sharper; +3 dB halves the error.",
}
