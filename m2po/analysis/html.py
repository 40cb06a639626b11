"""Markdown -> HTML for the report: the ``markdown`` package (with tables) when installed, else a small
converter that knows exactly what the report writes (headings, paragraphs, bullet lists, pipe tables,
images, links, anchors, ``**bold**``, ``*italic*`` and ``code``).

Images found beside the report are embedded as base64 ``data:`` URIs, so the page needs no other file:
it survives being moved or mailed.
"""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

CSS = (
    "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;line-height:1.45}"
    "table{border-collapse:collapse;margin:1em 0;font-size:0.9em}"
    "th,td{border:1px solid #ccc;padding:3px 7px;text-align:left;vertical-align:top}"
    "th{background:#f2f2f2}img{max-width:100%;border:1px solid #eee}code{background:#f6f6f6}"
)


def _inline(text: str) -> str:
    out = html.escape(text, quote=False)
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    out = re.sub(r"!\[([^\]]*)\]\(([^)\s]+)\)", r'<img alt="\1" src="\2">', out)
    out = re.sub(r"\[([^\]]+)\]\(([^)\s]+)\)", r'<a href="\2">\1</a>', out)
    out = re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", out)
    return re.sub(r"(?<![\w*])\*([^*\s][^*]*)\*(?![\w*])", r"<em>\1</em>", out)


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def simple_markdown(text: str) -> str:
    """A minimal Markdown subset to HTML (body only)."""
    lines = text.splitlines()
    out: list[str] = []
    para: list[str] = []
    i = 0

    def flush() -> None:
        if para:
            out.append(f"<p>{_inline(' '.join(para))}</p>")
            para.clear()

    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        heading = re.match(r"^(#{1,6})\s+(.*)$", stripped)
        if not stripped:
            flush()
        elif heading:
            flush()
            n = len(heading.group(1))
            out.append(f"<h{n}>{_inline(heading.group(2))}</h{n}>")
        elif stripped.startswith("|") and i + 1 < len(lines) and re.match(r"^\|?[\s:|-]+\|?$", lines[i + 1].strip()):
            flush()
            head = "".join(f"<th>{_inline(c)}</th>" for c in _cells(stripped))
            rows = []
            i += 2
            while i < len(lines) and lines[i].strip().startswith("|"):
                rows.append("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in _cells(lines[i])) + "</tr>")
                i += 1
            out.append(f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>")
            continue
        elif re.fullmatch(r'<a id="[\w-]+"></a>', stripped):
            flush()
            out.append(stripped)
        elif re.match(r"^[-*]\s+", stripped):
            flush()
            items = []
            while i < len(lines) and re.match(r"^[-*]\s+", lines[i].strip()):
                item = re.sub(r"^[-*]\s+", "", lines[i].strip())
                items.append(f"<li>{_inline(item)}</li>")
                i += 1
            out.append(f"<ul>{''.join(items)}</ul>")
            continue
        else:
            para.append(stripped)
        i += 1
    flush()
    return "\n".join(out)


_MIME = {".png": "image/png", ".svg": "image/svg+xml", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}


def embed_images(body: str, base_dir: str | Path) -> str:
    """Replace ``src="relative/path.png"`` by the image's bytes as a ``data:`` URI (missing files stay)."""

    def inline(m: re.Match) -> str:
        path = Path(base_dir) / html.unescape(m.group(2))
        mime = _MIME.get(path.suffix.lower())
        if mime is None or not path.is_file():
            return m.group(0)
        return f'{m.group(1)}"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode()}"'

    return re.sub(r'(<img\b[^>]*?\bsrc=)"(?!data:|https?:)([^"]+)"', inline, body)


def to_html(markdown_text: str, title: str, base_dir: str | Path | None = None) -> str:
    """A standalone HTML page of the Markdown text; ``base_dir``: embed the images found there."""
    try:
        import markdown

        body = markdown.markdown(markdown_text, extensions=["tables"])
    except ImportError:
        body = simple_markdown(markdown_text)
    if base_dir is not None:
        body = embed_images(body, base_dir)
    return (
        f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{CSS}</style></head>\n<body>\n{body}\n</body></html>\n"
    )
