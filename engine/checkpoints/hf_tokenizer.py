"""Tokenizers in Hugging Face's `tokenizer.json` (byte-level BPE of Qwen2.5-Coder and DeepSeek-Coder,
SentencePiece-style BPE of CodeLlama), through the `tokenizers` library, with the same interface as
`tokenizer.Tokenizer`: encode, encode_infill, encode_fim, decode, token_bytes, stream_decoder.

Special tokens are never produced from user text: a file that contains "<|fim_prefix|>" is encoded
as those characters (`encode_special_tokens`), as PreTrainedTokenizerFast does with
`split_special_tokens=True`. The FIM template (engine/checkpoints/families.py) builds the prompt

    [start ids] <prefix token> *prefix <suffix token> *suffix <middle token>

where the start ids are what the tokenizer's post-processor adds to a text (DeepSeek's and
CodeLlama's BOS; nothing for Qwen). Generation stops at the template's stop tokens and the
config's EOS ids (`stop_ids`).
"""

from __future__ import annotations

import json
from pathlib import Path

from tokenizers import Tokenizer as _Tokenizer

from .chat_template import ChatTemplate, encode_template_text
from .families import FimTemplate, fim_template
from .tokenizer import SPACE, StreamDecoder, TokenizerError, valid_text

MARK = "\u263a"  # "☺": encoded before a text that continues another, then dropped (see encode_infill)


def byte_level_table() -> dict[str, int]:
    """GPT-2's byte-level alphabet: the printable character that stands for each byte -> the byte."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars, extra = {}, 0
    for b in range(256):
        if b in printable:
            chars[chr(b)] = b
        else:
            chars[chr(256 + extra)] = b
            extra += 1
    return chars


class HFTokenizer:
    def __init__(self, path: str | Path, fim: str | None = None, model_vocab: int | None = None,
                 eos_ids: list[int] = (), tokenizer: _Tokenizer | None = None, chat: ChatTemplate | None = None):
        """A tokenizer.json; or `tokenizer`, one built in memory (a GGUF file's vocabulary,
        engine/checkpoints/gguf_reader.py), with `path` naming where it came from. `chat`: the
        checkpoint's chat template (tokenizer_config.json), for instruct models."""
        self.chat = chat
        self.path = Path(path)
        try:
            self.tk = _Tokenizer.from_file(str(self.path)) if tokenizer is None else tokenizer
        except Exception as exc:  # the Rust library raises its own exception type
            raise TokenizerError(f"{self.path}: not a readable tokenizer.json ({exc})") from exc
        self.tk.encode_special_tokens = True  # user text never becomes a special token
        added = self.tk.get_added_tokens_decoder()  # id -> AddedToken
        self.special = {t.content: i for i, t in added.items() if t.special}
        n = self.tk.get_vocab_size(with_added_tokens=True)
        self.vocab_size = max(n, model_vocab or 0)  # models pad their tables beyond the tokenizer's ids
        self._bytes = self._all_bytes(added)
        self.start_ids = self.tk.encode("", add_special_tokens=True).ids  # BOS where the tokenizer adds one
        self.bos_id = self.start_ids[0] if self.start_ids else None
        vocab = self.tk.get_vocab(with_added_tokens=True)
        self.template: FimTemplate | None = fim_template(set(vocab), fim)
        t = self.template
        if t is not None and not {t.prefix, t.suffix, t.middle} <= set(vocab):
            raise TokenizerError(f"{self.path}: the FIM template {t.name} needs {t.prefix}, {t.suffix} and {t.middle}")
        self.prefix_id, self.suffix_id, self.middle_id = (vocab[t.prefix], vocab[t.suffix], vocab[t.middle]) if t \
            else (None, None, None)
        stops = [vocab[s] for s in (t.stops if t else ()) if s in vocab] + [i for i in eos_ids if i is not None]
        self.eos_id = stops[0] if stops else None
        self.stop_ids = frozenset(stops)
        self.dummy_space = self.decode(self.tk.encode("a", add_special_tokens=False).ids) == " a"

    def _all_bytes(self, added: dict) -> list[bytes]:
        """Each id's bytes when decoded: byte-level pieces through GPT-2's alphabet, SentencePiece-style
        pieces with "▁" as a space and <0xNN> as a byte; special tokens as nothing."""
        decoder = json.dumps(json.loads(self.tk.to_str()).get("decoder"))
        byte_level = '"ByteLevel"' in decoder
        table = byte_level_table()
        out = [b""] * self.vocab_size
        for piece, i in self.tk.get_vocab(with_added_tokens=False).items():
            if byte_level:
                out[i] = bytes(table[c] for c in piece) if all(c in table for c in piece) else piece.encode()
            elif len(piece) == 6 and piece.startswith("<0x") and piece.endswith(">"):
                out[i] = bytes([int(piece[3:5], 16)])
            else:
                out[i] = piece.replace(SPACE, " ").encode("utf-8")
        for i, token in added.items():
            out[i] = b"" if token.special else token.content.encode("utf-8")
        return out

    @property
    def supports_fim(self) -> bool:
        return self.template is not None

    @property
    def fim_name(self) -> str | None:
        return self.template.name if self.template else None

    @property
    def supports_instruct(self) -> bool:
        return self.chat is not None

    def encode_chat(self, turns: list[tuple[str, str]]) -> list[int]:
        """(role, content) turns through the checkpoint's own chat template, ending where the answer
        starts: the template's text with its special tokens, each content as plain text."""
        if self.chat is None:
            raise TokenizerError(f"{self.path.name}: the checkpoint has no chat template (tokenizer_config.json)")
        ids: list[int] = []
        for piece in self.chat.render(turns):
            ids += self.encode(turns[piece][1]) if isinstance(piece, int) else \
                encode_template_text(piece, self.special, self.encode)
        return ids

    def encode(self, text: str, bos: bool = False) -> list[int]:
        """Text as the start of a prompt (with a SentencePiece-style tokenizer's dummy space)."""
        ids = self.tk.encode(valid_text(text), add_special_tokens=False).ids
        return [*self.start_ids, *ids] if bos else ids

    def encode_infill(self, text: str) -> list[int]:
        """Text that continues other text: without the dummy space where the tokenizer adds one. The
        mark is encoded before the text and its ids dropped, as `Tokenizer._continuing` does."""
        if not self.dummy_space or not text:
            return self.encode(text)
        mark = self.encode(MARK)
        ids = self.encode(MARK + text)
        return ids[len(mark):] if ids[:len(mark)] == mark else self.encode(text)

    def fim_ids(self, prefix_ids: list[int], suffix_ids: list[int]) -> list[int]:
        """The FIM prompt of encoded prefix and suffix."""
        return [*self.start_ids, self.prefix_id, *prefix_ids, self.suffix_id, *suffix_ids, self.middle_id]

    def encode_fim(self, prefix: str, suffix: str) -> list[int]:
        if self.template is None:
            raise TokenizerError(f"{self.path.name}: no FIM template matches this tokenizer's special tokens")
        return self.fim_ids(self.encode(prefix), self.encode_infill(suffix) if suffix else [])

    def decode(self, ids: list[int]) -> str:
        return b"".join(self._bytes[i] for i in ids).decode("utf-8", errors="replace")

    def token_bytes(self, i: int) -> bytes:
        return self._bytes[i]

    def pieces(self) -> list[str]:
        return [self.tk.id_to_token(i) or "" for i in range(self.vocab_size)]

    def stream_decoder(self) -> StreamDecoder:
        return StreamDecoder(self)
