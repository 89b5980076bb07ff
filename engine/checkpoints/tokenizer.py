"""SentencePiece tokenizers of Mistral's models (v1, v2, v3), FIM prompts, and incremental decoding.

The FIM prompt is exactly what mistral-common's `encode_fim` produces:

    [BOS, [SUFFIX], *suffix, [PREFIX], *prefix]

with no [MIDDLE]: the model writes the middle straight after the prefix. The suffix is encoded
without SentencePiece's dummy leading space (the "▁" that `encode` puts before any text).
"""

from __future__ import annotations

import codecs
import functools
import re
from importlib import util
from pathlib import Path

import sentencepiece as spm

SPACE = "\u2581"  # SentencePiece's visible space
REPLACEMENT = "\ufffd"
_SURROGATE = re.compile("[\ud800-\udfff]")


def valid_text(text: str) -> str:
    """text with each lone surrogate (legal in JSON's strings, not in UTF-8) as U+FFFD, one for one.

    SentencePiece's C++ encoder takes UTF-8 and rejects them; a Python str holds a surrogate only
    unpaired, since JSON's escaped pairs decode to one character. Invalid UTF-8 bytes never get this
    far: every way in decodes bytes with errors="replace" or refuses them."""
    return text if text.isascii() else _SURROGATE.sub(REPLACEMENT, text)


class TokenizerError(ValueError):
    pass


class Tokenizer:
    def __init__(self, path: str | Path, model_proto: bytes | None = None):
        """A SentencePiece model file; or `model_proto`, a serialized model (a GGUF file's vocabulary,
        engine/checkpoints/gguf_reader.py), with `path` naming where it came from."""
        path = Path(path)
        try:
            self.sp = spm.SentencePieceProcessor(model_file=str(path)) if model_proto is None else \
                spm.SentencePieceProcessor(model_proto=model_proto)
        except (OSError, RuntimeError) as exc:
            raise TokenizerError(f"{path}: not a readable SentencePiece model ({exc})") from exc
        self.path = path
        self.vocab_size = self.sp.vocab_size()
        self.bos_id, self.eos_id = self.sp.bos_id(), self.sp.eos_id()
        self.stop_ids = frozenset({self.eos_id})  # the tokens that end a generation
        self.prefix_id = self._control("[PREFIX]")
        self.suffix_id = self._control("[SUFFIX]")
        self.middle_id = self._control("[MIDDLE]")
        self.inst_id = self._control("[INST]")
        self._memo: dict[str, list[int]] = {}  # a line -> its ids as continuing text (see `_line`)
        # Per-id bytes for decoding; byte-fallback pieces "<0x0A>" are single raw bytes.
        self._bytes = [self._piece_bytes(i) for i in range(self.vocab_size)]

    def _control(self, piece: str) -> int | None:
        i = self.sp.piece_to_id(piece)
        return i if i != self.sp.unk_id() and self.sp.is_control(i) else None

    def _piece_bytes(self, i: int) -> bytes:
        if self.sp.is_control(i) or self.sp.is_unknown(i):
            return b""
        piece = self.sp.id_to_piece(i)
        if self.sp.is_byte(i):
            return bytes([int(piece[3:-1], 16)])
        return piece.replace(SPACE, " ").encode("utf-8")

    @property
    def supports_fim(self) -> bool:
        return self.prefix_id is not None and self.suffix_id is not None

    @property
    def fim_name(self) -> str | None:
        return "codestral" if self.supports_fim else None

    @property
    def supports_instruct(self) -> bool:
        return self.inst_id is not None

    def encode(self, text: str, bos: bool = False) -> list[int]:
        """Plain encoding with the dummy leading space, as mistral-common encodes a prompt."""
        if "\n" in text and self.splits_lines:
            first, *rest = text.split("\n")
            ids = self.sp.encode(valid_text(first) + "\n")  # the dummy space, the first line, its break
            ids += self._lines_after_break(rest)
        else:
            ids = self.sp.encode(valid_text(text))
        return [self.bos_id, *ids] if bos else ids

    def encode_infill(self, text: str) -> list[int]:
        """Encode text that continues other text: no dummy leading space."""
        if "\n" in text and self.splits_lines:
            first, *rest = text.split("\n")
            return self._line(first) + [self.newline_id] + self._lines_after_break(rest)
        return self._continuing(text)

    def _continuing(self, text: str) -> list[int]:
        """SentencePiece always adds "▁" before the text; encoding "☺" + text and dropping the first two
        pieces ("▁" and "☺", both of which exist in the v3 vocabulary) leaves the text as it is."""
        return self.sp.encode("\u263a" + valid_text(text))[2:]

    # Line by line. Where no piece holds a line break but the byte piece <0x0A> (Mistral's v1-v3
    # vocabularies), SentencePiece never merges across one, so a text's tokens are its lines' tokens
    # with a break token between them: the first line as the text starts (with the dummy space in
    # `encode`), every other line as continuing text. Lines are remembered, so between two keystrokes
    # only the cursor's line is encoded again: sizing and encoding a prompt of a hundred lines encodes
    # one line instead of a hundred. Example: "x = 1\n\n    y" encodes as encode("x = 1\n") (the dummy
    # space, the pieces of "x = 1", the break), then "" (no pieces), a break, and "    y" continuing.

    MAX_LINES = 50_000  # remembered lines; forgotten all at once beyond this

    @functools.cached_property
    def splits_lines(self) -> bool:
        return self.newline_id is not None and not any(
            b"\n" in self._bytes[i] for i in range(self.vocab_size) if i != self.newline_id)

    @functools.cached_property
    def newline_id(self) -> int | None:
        i = self.sp.piece_to_id("<0x0A>")
        return i if i != self.sp.unk_id() and self.sp.is_byte(i) else None

    def _line(self, line: str) -> list[int]:
        ids = self._memo.get(line)
        if ids is None:
            if len(self._memo) >= self.MAX_LINES:
                self._memo.clear()
            ids = self._memo[line] = self._continuing(line) if line else []
        return ids

    def _lines_after_break(self, lines: list[str]) -> list[int]:
        """Lines that each follow a break, with a break between consecutive ones."""
        ids: list[int] = []
        for j, line in enumerate(lines):
            if j:
                ids.append(self.newline_id)
            ids += self._line(line)
        return ids

    def encode_fim(self, prefix: str, suffix: str) -> list[int]:
        if not self.supports_fim:
            raise TokenizerError(f"{self.path.name}: this tokenizer has no [PREFIX]/[SUFFIX] tokens, "
                                 "so it cannot fill in the middle; use a v3 tokenizer (Codestral, Mistral v0.3)")
        return self.fim_ids(self.encode(prefix), self.encode_infill(suffix) if suffix else [])

    def fim_ids(self, prefix_ids: list[int], suffix_ids: list[int]) -> list[int]:
        """The FIM prompt of encoded prefix and suffix."""
        return [self.bos_id, self.suffix_id, *suffix_ids, self.prefix_id, *prefix_ids]

    def encode_chat(self, turns: list[tuple[str, str]]) -> list[int]:
        """Mistral's v3 instruct template for (role, content) turns, token for token as mistral-common:

            <s>[INST]▁user[/INST]▁answer</s>[INST]▁system\\n\\nlast user[/INST]

        System messages, joined by blank lines, go before the last user message.
        """
        if not self.supports_instruct:
            raise TokenizerError(f"{self.path.name}: this tokenizer has no [INST] tokens")
        system = "\n\n".join(content for role, content in turns if role == "system")
        turns = [(role, content) for role, content in turns if role != "system"]
        inst_end = self.sp.piece_to_id("[/INST]")
        tokens = [self.bos_id]
        for i, (role, content) in enumerate(turns):
            if role == "assistant":
                tokens += [*self.encode(content), self.eos_id]
                continue
            if i == len(turns) - 1 and system:
                content = f"{system}\n\n{content}"
            tokens += [self.inst_id, *self.encode(content), inst_end]
        return tokens

    def decode(self, ids: list[int]) -> str:
        """Decode generated ids literally: a leading "▁" stays a space (unlike `sp.decode`)."""
        return b"".join(self._bytes[i] for i in ids).decode("utf-8", errors="replace")

    def token_bytes(self, i: int) -> bytes:
        return self._bytes[i]

    def pieces(self) -> list[str]:
        return [self.sp.id_to_piece(i) for i in range(self.vocab_size)]

    def stream_decoder(self) -> "StreamDecoder":
        return StreamDecoder(self)


class StreamDecoder:
    """Turns ids into text as they arrive, never emitting half a UTF-8 character.

    Byte-fallback tokens may split one character over several ids: "é" can arrive as <0xC3> <0xA9>.
    The incremental UTF-8 decoder holds the first byte back until the second arrives.
    """

    def __init__(self, tokenizer: Tokenizer):
        self.tokenizer = tokenizer
        self.utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def push(self, token_id: int) -> str:
        return self.utf8.decode(self.tokenizer.token_bytes(token_id))

    def flush(self) -> str:
        return self.utf8.decode(b"", final=True)


def v3_tokenizer_path() -> Path:
    """The Codestral/Mistral v3 SentencePiece model that mistral-common ships (Apache-2.0)."""
    spec = util.find_spec("mistral_common")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("mistral-common is not installed: pip install mistral-common")
    path = Path(spec.submodule_search_locations[0]) / "data" / "mistral_instruct_tokenizer_240323.model.v3"
    if not path.is_file():
        raise RuntimeError(f"{path} is missing from this mistral-common release")
    return path
