"""A checkpoint's own chat template (the Jinja text in `tokenizer_config.json` or a GGUF file's
`tokenizer.chat_template`), rendered with jinja2 in its sandbox as transformers renders it, and turned
into ids without ever making a special token out of what the user wrote.

Rendering with a sentinel in place of each message's content splits the prompt into the template's
own text, where special tokens are meant (`<|im_start|>user\\n`), and the contents, encoded as plain
text. For Qwen2.5-Coder-Instruct's ChatML, for example, turns [("user", "Sort a list")] render as

    <|im_start|>system\\nYou are ...<|im_end|>\\n<|im_start|>user\\n{0}<|im_end|>\\n<|im_start|>assistant\\n

and {0} is encoded as text: a message that contains "<|im_end|>" stays those characters.
"""

from __future__ import annotations

import re

SENTINEL = "\ue000{}\ue001"  # private-use characters around the message's index: never in a template


class ChatTemplate:
    def __init__(self, source: str, bos_token: str | None = None, eos_token: str | None = None):
        from jinja2.exceptions import TemplateError
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        def raise_exception(message):  # templates call it to refuse a conversation (transformers' helper)
            raise TemplateError(message)

        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        env.globals["raise_exception"] = raise_exception
        try:
            self.template = env.from_string(source)
        except TemplateError as exc:
            raise ValueError(f"the chat template does not parse: {exc}") from exc
        self.bos_token, self.eos_token = bos_token or "", eos_token or ""

    def render(self, turns: list[tuple[str, str]]) -> list[str | int]:
        """The prompt for (role, content) turns, ending where the assistant's answer starts: pieces of
        template text, and at each message's place the index of that message."""
        from jinja2.exceptions import TemplateError

        messages = [{"role": role, "content": SENTINEL.format(i)} for i, (role, _) in enumerate(turns)]
        try:
            text = self.template.render(messages=messages, add_generation_prompt=True,
                                        bos_token=self.bos_token, eos_token=self.eos_token)
        except TemplateError as exc:
            raise ValueError(f"the chat template refused these turns: {exc}") from exc
        pieces: list[str | int] = []
        for n, part in enumerate(re.split("\ue000(\\d+)\ue001", text)):
            if n % 2:
                pieces.append(int(part))
            elif part:
                pieces.append(part)
        return pieces


def encode_template_text(text: str, special: dict[str, int], encode) -> list[int]:
    """The template's own text: its special tokens (longest first) as their ids, the rest through
    `encode` (plain text)."""
    if not special:
        return encode(text)
    pattern = "(" + "|".join(re.escape(s) for s in sorted(special, key=len, reverse=True)) + ")"
    ids: list[int] = []
    for n, part in enumerate(re.split(pattern, text)):
        if n % 2:
            ids.append(special[part])
        elif part:
            ids += encode(part)
    return ids
