"""`codestral-lsp bench soak FILE`: type for a long time into a real server and watch it.

The typing replay of `bench typing` (a region of FILE typed back key by key, `replay.typing_events`)
goes to a server process over LSP, one `didChange` and one `inlineCompletion` per keystroke, for as
many keystrokes as asked: when the region is typed, the document is reset (one whole-text change)
and typing starts again. Printed as one JSON object:

    {"keystrokes": N, "unanswered": U, "errors": E, "p50_ms", "p95_ms", "p99_ms", "max_ms",
     "rss_mb": {"loaded": MB, "first": MB, "last": MB, "max": MB}, "rss_growth_mb": last - first,
     "samples": [[keystroke, MB], ...], "seconds": S}

`first` is the server's resident memory after the first completion (the session's KV cache is
allocated then), so `rss_growth_mb` is what typing added: a leak shows there. A request not answered
within `timeout_s` counts as unanswered and typing goes on.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from lsprotocol.types import Range

from ..context import language_from_uri
from ..lsp.documents import TextDocument
from .evaluate import percentile
from .fuzz import ThreadedClient
from .replay import typing_events


def rss_mb(pid: int) -> float | None:
    """Resident memory of a process in MB, from /proc (Linux); None elsewhere."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def soak(command: list[str], path: str | Path, keystrokes: int = 300, sample_every: int = 100,
         timeout_s: float = 30.0, progress: Callable[[int, int], None] | None = None) -> dict:
    text = Path(path).read_text(encoding="utf-8")
    events = typing_events(text, None)
    if not events:
        raise ValueError(f"{path}: nothing to type (the file has fewer than three lines)")
    uri = Path(path).resolve().as_uri()
    first_text, first_offset = events[0]
    start_text = first_text[: first_offset - 1] + first_text[first_offset:]
    client = ThreadedClient(command)
    started = time.monotonic()
    latencies, samples, unanswered, errors = [], [], 0, 0
    try:
        client.initialize({"completion": {"debounceMs": 0}})
        if client.wait_status()["state"] != "ready":
            raise RuntimeError("the server did not become ready")
        loaded = rss_mb(client.proc.pid)
        doc = TextDocument(uri, language_from_uri(uri), 1, start_text)
        client.notify("textDocument/didOpen", {"textDocument": {"uri": uri, "languageId": doc.language_id,
                                                                "version": 1, "text": start_text}})
        version = 1
        for n in range(keystrokes):
            i = n % len(events)
            new_text, offset = events[i]
            version += 1
            if i == 0 and n > 0:  # the region is typed: start again from the text without it
                doc = TextDocument(uri, doc.language_id, version, start_text)
                client.notify("textDocument/didChange", {"textDocument": {"uri": uri, "version": version},
                                                         "contentChanges": [{"text": start_text}]})
                version += 1
            at = doc.position_at(offset - 1)
            char = new_text[offset - 1]
            doc.apply_change(char, Range(at, at))
            point = {"line": at.line, "character": at.character}
            client.notify("textDocument/didChange", {"textDocument": {"uri": uri, "version": version},
                                                     "contentChanges": [{"range": {"start": point, "end": point},
                                                                         "text": char}]})
            cursor = doc.position_at(offset)
            began = time.perf_counter()
            try:
                answer = client.request("textDocument/inlineCompletion", {
                    "textDocument": {"uri": uri}, "position": {"line": cursor.line, "character": cursor.character},
                    "context": {"triggerKind": 2}}, timeout=timeout_s)
                latencies.append((time.perf_counter() - began) * 1000)
                errors += "error" in answer
            except TimeoutError:
                unanswered += 1
                if client.proc.poll() is not None:
                    break
            if n == 0 or (n + 1) % sample_every == 0:
                samples.append([n + 1, rss_mb(client.proc.pid)])
            if progress and (n + 1) % sample_every == 0:
                progress(n + 1, keystrokes)
    finally:
        client.close()
    memory = [mb for _, mb in samples if mb is not None]
    return {"keystrokes": keystrokes, "unanswered": unanswered, "errors": errors,
            "p50_ms": percentile(latencies, 50), "p95_ms": percentile(latencies, 95),
            "p99_ms": percentile(latencies, 99), "max_ms": max(latencies, default=None),
            "rss_mb": {"loaded": loaded, "first": memory[0] if memory else None,
                       "last": memory[-1] if memory else None, "max": max(memory, default=None)},
            "rss_growth_mb": round(memory[-1] - memory[0], 1) if memory else None,
            "samples": samples, "seconds": round(time.monotonic() - started, 1)}
