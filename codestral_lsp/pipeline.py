"""One completion, the way every entry point makes it: the server, `complete`, `eval` and `bench --lsp`.

    document text + cursor offset
      -> context windows (tree-sitter, token budgets, neighbour snippets)   context/windows.py
      -> single- or multi-line, and the stop rule run during generation     context/postprocess.py
      -> the backend's FIM completion (local engine or remote server)      backends/
      -> post-processing: suffix overlap, repeats, indentation              context/postprocess.py

Guardrails, for what leaves the machine: a document that `context.exclude` or the workspace's
`.codestralignore` excludes gets no completion from a remote backend (nor from the local one without
`context.localInExcluded`) and lends no snippets to other documents' prompts. Before a prompt goes to
a remote backend, strings that look like secrets are replaced by a placeholder (`context/secrets.py`);
a suggestion from any backend that holds a secret-shaped literal is not shown.

Typeahead: when the user types the first characters of the suggestion on screen, the rest of it is
answered at once from `RecentCompletions`, without generating.

`Completer` is what the features talk to: completions, the code actions' FIM and chat requests, and
forgetting a closed document all go through it, never to the backend directly.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .backends import Backend, Completion, as_backend
from .context import ParseCache, Suggestion, completion_mode, fim_window, neighbour_header, postprocess, stop_rule
from .context.exclusion import Exclusion
from .context.secrets import has_secret, redact
from .settings import Settings

if TYPE_CHECKING:
    from engine import Engine

log = logging.getLogger(__name__)


@dataclass
class Document:
    uri: str
    language_id: str
    text: str
    version: int = 0  # with the uri, the key of the parse cache: a new text needs a new version


@dataclass
class Result:
    suggestion: Suggestion | None
    stats: dict = field(default_factory=dict)
    latency_ms: float = 0.0
    source: str = "model"  # "model", "typeahead", "cache" or "excluded" (context.exclude: nothing asked)
    backend: str | None = None  # the label of the backend whose text this is; None when none was asked
    logprobs: list[float] | None = None  # of the chosen tokens, when asked for and the backend knows them
    stream: object = None  # the backend's finished TextStream: `Completer.logprobs` scores it later


class RecentCompletions:
    """Recent suggestions, for typeahead: answering while the user types what is on screen.

    An entry remembers where its cursor was (`offset`), the text just before it, the text after it,
    the suggestion and the text it replaced. A request at offset + n whose n new characters are the
    first n characters of the suggestion, with the same text around, gets the rest of the suggestion.
    Example: suggestion "range(10):" shown at offset 100; the user types "ra"; the request at 102
    sees before[100:102] == "ra" and answers "nge(10):".
    """

    def __init__(self, size: int = 16, context_chars: int = 2000):
        self.size, self.context_chars = size, context_chars
        self.entries: list[tuple[int, str, str, str, str]] = []  # (offset, before tail, after head, text, replaced)

    def clear(self) -> None:
        self.entries.clear()

    def put(self, text: str, offset: int, suggestion: Suggestion) -> None:
        tail = text[max(0, offset - self.context_chars): offset]
        head = text[suggestion.replace_end: suggestion.replace_end + self.context_chars]
        self.entries.append((offset, tail, head, suggestion.text, text[offset: suggestion.replace_end]))
        del self.entries[: -self.size]

    def lookup(self, text: str, offset: int) -> Suggestion | None:
        for old_offset, tail, head, suggestion, replaced in reversed(self.entries):
            typed = text[old_offset: offset] if offset >= old_offset else None
            if typed is None or len(typed) >= len(suggestion) or not suggestion.startswith(typed):
                continue
            if text[max(0, old_offset - self.context_chars): old_offset] != tail:
                continue
            end = offset + len(replaced)
            if text[offset: end] != replaced or text[end: end + self.context_chars] != head:
                continue
            return Suggestion(suggestion[len(typed):], end)
        return None


class Completer:
    """Turns (document, cursor) into a suggestion with a backend; holds the typeahead and parse caches.

    An `engine.Engine` may be given for a backend (scripts, tools): it is used as the local backend.
    ignore_files: {workspace root uri: the text of its .codestralignore}, added to `context.exclude`.
    """

    def __init__(self, backend: Backend | Engine, settings: Settings | None = None,
                 ignore_files: Mapping[str, str] | None = None):
        self.backend = as_backend(backend)
        self.settings = settings or Settings()
        self.ignore_files = dict(ignore_files or {})
        self.exclusion = Exclusion.build(self.settings.context.exclude, self.ignore_files)
        self.recent = RecentCompletions()
        self.parses = ParseCache()
        tokenizer = self.backend.tokenizer
        self._count = lambda s: len(tokenizer.encode(s))

    def count_tokens(self, text: str) -> int:
        """How many tokens the backend's tokenizer makes of `text`."""
        return self._count(text)

    def use_settings(self, settings: Settings) -> None:
        """New settings: suggestions made under the old ones are forgotten."""
        self.settings = settings
        self.recent.clear()
        self.exclusion = Exclusion.build(settings.context.exclude, self.ignore_files)
        self.backend.configure(settings)

    def use_workspace(self, ignore_files: Mapping[str, str]) -> None:
        """New workspace roots and their .codestralignore texts."""
        self.ignore_files = dict(ignore_files)
        self.exclusion = Exclusion.build(self.settings.context.exclude, self.ignore_files)
        self.recent.clear()

    def kept_out(self, uri: str | None) -> bool:
        """Whether a completion in the document at uri must not be asked for (context.exclude)."""
        if uri is None or not self.exclusion.excludes(uri):
            return False
        return self.backend.remote or not self.settings.context.local_in_excluded

    def forget(self, uri: str) -> None:
        """A closed document: drop its parse tree and what the backend keeps for it."""
        self.parses.forget(uri)
        self.backend.forget(uri)

    @property
    def instruct(self) -> bool:
        """Whether `chat` works (an instruct model)."""
        return self.backend.instruct

    def fill(self, prefix: str, suffix: str, **options) -> Completion:
        """A raw FIM completion between prefix and suffix (the code actions' bodies and docstrings); empty
        when the document named by options["session"] is kept out (context.exclude)."""
        if self.kept_out(options.get("session")):
            return Completion("", [], {"stop_reason": "excluded"})
        prefix, suffix = self.outgoing(prefix, suffix)
        return self.shown(self.backend.complete(prefix, suffix, **options))

    def chat(self, turns: list[tuple[str, str]], **options) -> Completion:
        """An instruct model's answer to (role, content) turns; raises ValueError for other models."""
        contents = self.outgoing(*(content for _, content in turns))
        return self.shown(self.backend.chat([(role, c) for (role, _), c in zip(turns, contents)], **options))

    def outgoing(self, *texts: str) -> list[str]:
        """The texts of one request as they may go to the backend: secrets redacted when it is remote."""
        if not self.backend.remote:
            return list(texts)
        redacted = [redact(text) for text in texts]
        count = sum(n for _, n in redacted)
        if count:
            log.debug("remote request: %d redaction(s)", count)  # the count only, never the values
        return [text for text, _ in redacted]

    @staticmethod
    def shown(answer: Completion) -> Completion:
        """The answer, or an empty one when it holds a secret-shaped literal."""
        if answer.text and has_secret(answer.text):
            log.debug("an answer with a secret-shaped literal was not shown")
            return Completion("", answer.tokens, {**answer.stats, "stop_reason": "secret"})
        return answer

    def window_for(self, doc: Document, offset: int, others: list[Document] = (), tree=None):
        s = self.settings
        header = ""
        others = [o for o in others if not self.exclusion.excludes(o.uri)]  # excluded documents lend nothing
        if s.context.neighbour_files and others:
            line_start = doc.text.rfind("\n", 0, offset) + 1
            anchor = doc.text[max(0, line_start - 1500): line_start]
            header = neighbour_header(doc.language_id, anchor, [(o.uri, o.language_id, o.text) for o in others],
                                      s.context.neighbour_files, s.context.neighbour_tokens, self._count)
        return fim_window(doc.text, offset, doc.language_id, s.completion.prefix_tokens,
                          s.completion.suffix_tokens, self._count, tree=tree, header=header)

    def complete(self, doc: Document, offset: int, others: list[Document] = (),
                 cancelled: Callable[[], bool] | None = None, tab_size: int | None = None,
                 insert_spaces: bool | None = None, use_recent: bool = True, logprobs: bool = False) -> Result:
        """The suggestion at `offset`; tab_size and insert_spaces are the editor's, None: the document's.
        With logprobs, the result carries the chosen tokens' log-probabilities (the cascade's confidence)."""
        start = time.perf_counter()
        if self.kept_out(doc.uri):
            return Result(None, {"stop_reason": "excluded"}, (time.perf_counter() - start) * 1000, "excluded")
        if use_recent:
            hit = self.recent.lookup(doc.text, offset)
            if hit is not None:
                return Result(hit, {}, (time.perf_counter() - start) * 1000, "typeahead", self.backend.label)
        s = self.settings
        tree = self.parses.get(doc.uri, doc.version, doc.text, doc.language_id)
        window = self.window_for(doc, offset, others, tree)
        mode = completion_mode(doc.text, offset, doc.language_id, s.completion.multiline, tree)
        prefix, suffix = self.outgoing(window.prefix, window.suffix)
        gen = self.backend.stream(
            prefix, suffix, max_tokens=s.completion.max_tokens,
            temperature=s.completion.temperature, stop_fn=stop_rule(mode, doc.text, offset, doc.language_id),
            deadline=time.monotonic() + s.completion.timeout_ms / 1000, cancelled=cancelled,
            session=doc.uri, speculative=None if s.speculative.mode == "off" else s.speculative.mode)
        for _ in gen:
            pass
        suggestion = None
        if gen.stats.get("stop_reason") not in ("cancelled", "error"):  # "error": a remote backend's failed request
            suggestion = postprocess(gen.text, doc.text, offset, doc.language_id, mode, tab_size, insert_spaces)
        if suggestion is not None and secret_in(suggestion, doc.text, offset):
            log.debug("a suggestion with a secret-shaped literal was not shown")
            suggestion = None
        if suggestion is not None:
            self.recent.put(doc.text, offset, suggestion)
        result = Result(suggestion, gen.stats, (time.perf_counter() - start) * 1000, backend=self.backend.label,
                        stream=gen)
        if logprobs:
            result.logprobs = self.logprobs(result)
        return result

    def logprobs(self, result: Result) -> list[float] | None:
        """The log-probabilities of the tokens a model result chose, where the backend knows them (local
        models): what the cascade's confidence is computed from. Runs on the worker (it uses the model)."""
        if result.stream is None or result.stats.get("stop_reason") in ("cancelled", "error"):
            return None
        return self.backend.logprobs(result.stream)


def secret_in(suggestion: Suggestion, text: str, offset: int) -> bool:
    """Whether the suggestion holds a secret-shaped literal, read with the line it continues (so that
    `password = "` + `hunter22"` counts) but not counting a secret the user had typed already."""
    before = text[text.rfind("\n", 0, offset) + 1: offset]
    return has_secret(before + suggestion.text, after=len(before))
