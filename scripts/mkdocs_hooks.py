"""mkdocs hooks (mkdocs.yml `hooks:`), so that one Markdown source reads right on GitHub and in the site.

A `|` inside a code span of a table is written `\\|` (GitHub's tables would split the cell at it);
Python-Markdown keeps such a code span whole but shows the backslash: drop it in inline code.
"""

from __future__ import annotations

import re

INLINE_CODE = re.compile(r"<code>([^<]*)</code>")  # inline code: a highlighted block holds <span>s


def on_page_content(html: str, **_) -> str:
    return INLINE_CODE.sub(lambda m: "<code>" + m.group(1).replace("\\|", "|") + "</code>", html)
