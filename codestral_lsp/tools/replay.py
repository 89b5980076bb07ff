"""The typing replay that `bench typing` and `bench peers` share: a region of a file typed back key by key."""

from __future__ import annotations


def typing_events(text: str, events: int | None, region: tuple[int, int] | None = None) -> list[tuple[str, int]]:
    """(document text, cursor offset) after each keystroke of re-typing the region (default: middle third).

    Example: text "a\\nb\\nc\\n" has 3 lines; the middle third is line 2, "b\\n" = text[2:4]. Typing it
    back gives two events: ("a\\nbc\\n", 3) after "b", and ("a\\nb\\nc\\n", 4) after the newline.
    """
    if region is None:
        lines = text.splitlines(keepends=True)
        third = len(lines) // 3
        start = sum(len(line) for line in lines[:third])
        end = start + sum(len(line) for line in lines[third: 2 * third])
    else:
        start, end = region
    typed = text[start:end]
    before, after = text[:start], text[end:]
    out = []
    for i in range(1, len(typed) + 1):
        out.append((before + typed[:i] + after, start + i))
        if events is not None and len(out) >= events:
            break
    return out
