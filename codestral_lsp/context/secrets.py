"""Secrets in text: found, and replaced by a placeholder before a prompt leaves the machine.

Most kinds are found by detect-secrets' plugins: AWS, Azure storage, GitHub, GitLab, Slack, OpenAI,
npm, PyPI, Stripe and other tokens, JWTs, private-key headers, `password = "..."` style assignments
(its keyword detector) and high-entropy quoted literals. They are called through `analyze_string`
only: their `analyze_line` may verify a secret with its service, over the network. The few kinds it
lacks are the patterns in `EXTRA` (GCP API keys, current OpenAI keys, whole private-key blocks).

A value a plugin finds is widened to the whole token around it (a JWT's signature, a key cut by the
plugin's pattern), and the token is replaced by `PLACEHOLDER`:

    >>> redact('aws_id = "AKIAIOSFODNN7EXAMPLE"\\nx = 1\\n')
    ('aws_id = "<redacted>"\\nx = 1\\n', 1)
    >>> redact("def area(w, h):\\n    return w * h\\n")
    ('def area(w, h):\\n    return w * h\\n', 0)
"""

from __future__ import annotations

import re
from functools import lru_cache

from detect_secrets.filters.heuristic import is_likely_id_string, is_potential_uuid, is_sequential_string
from detect_secrets.plugins import keyword
from detect_secrets.plugins.artifactory import ArtifactoryDetector
from detect_secrets.plugins.aws import AWSKeyDetector
from detect_secrets.plugins.azure_storage_key import AzureStorageKeyDetector
from detect_secrets.plugins.basic_auth import BasicAuthDetector
from detect_secrets.plugins.discord import DiscordBotTokenDetector
from detect_secrets.plugins.github_token import GitHubTokenDetector
from detect_secrets.plugins.gitlab_token import GitLabTokenDetector
from detect_secrets.plugins.high_entropy_strings import Base64HighEntropyString, HexHighEntropyString
from detect_secrets.plugins.jwt import JwtTokenDetector
from detect_secrets.plugins.mailchimp import MailchimpDetector
from detect_secrets.plugins.npm import NpmDetector
from detect_secrets.plugins.openai import OpenAIDetector
from detect_secrets.plugins.private_key import PrivateKeyDetector
from detect_secrets.plugins.pypi_token import PypiTokenDetector
from detect_secrets.plugins.sendgrid import SendGridDetector
from detect_secrets.plugins.slack import SlackDetector
from detect_secrets.plugins.square_oauth import SquareOAuthDetector
from detect_secrets.plugins.stripe import StripeDetector
from detect_secrets.plugins.telegram_token import TelegramBotTokenDetector
from detect_secrets.plugins.twilio import TwilioKeyDetector

PLACEHOLDER = "<redacted>"

# detect-secrets' pattern plugins (its IP-address plugin is left out: addresses are not secrets)
PATTERNS = tuple(cls() for cls in (
    ArtifactoryDetector, AWSKeyDetector, AzureStorageKeyDetector, BasicAuthDetector, DiscordBotTokenDetector,
    GitHubTokenDetector, GitLabTokenDetector, JwtTokenDetector, MailchimpDetector, NpmDetector, OpenAIDetector,
    PrivateKeyDetector, PypiTokenDetector, SendGridDetector, SlackDetector, SquareOAuthDetector, StripeDetector,
    TelegramBotTokenDetector, TwilioKeyDetector))
KEYWORD = keyword.KeywordDetector()
# `name = "value"` in code; `NAME=value` and `name: value` in .env, YAML, INI and the like
KEYWORD_FORMS = (keyword.QUOTES_REQUIRED_DENYLIST_REGEX_TO_GROUP, keyword.CONFIG_DENYLIST_REGEX_TO_GROUP)
ENTROPY = (Base64HighEntropyString(), HexHighEntropyString())  # quoted literals, detect-secrets' default limits

EXTRA = (
    re.compile(r"AIza[0-9A-Za-z_\-]{35}"),  # GCP API key
    re.compile(r"\bsk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_\-]{32,}"),  # OpenAI key (current formats)
    re.compile(r"\b(?:github_pat|glpat)_[A-Za-z0-9_]{22,}"),  # GitHub fine-grained token
)
# A private-key block, whole; or its end when a window starts inside it, or its start when one ends there.
KEY_BLOCK = re.compile(
    r"-----BEGIN[A-Z0-9 ]*PRIVATE KEY( BLOCK)?-----.*?(?:-----END[A-Z0-9 ]*PRIVATE KEY( BLOCK)?-----|\Z)"
    r"|\A[A-Za-z0-9+/=\s:\-,]*?-----END[A-Z0-9 ]*PRIVATE KEY( BLOCK)?-----", re.DOTALL)
TOKEN_BEFORE = re.compile(r"[A-Za-z0-9_\-+/]")  # not "=": `KEY=value` keeps its name
TOKEN_AFTER = re.compile(r"[A-Za-z0-9_\-.+/=]")
KEYWORD_MIN = 4  # shorter keyword values (`password = ""`, `token: x`) are left alone
CONFIG_VALUE = re.compile(r"[\w\-.+/=~!@#$%^&*]+")  # an unquoted value is a bare word, never a call or an expression
NOT_A_VALUE = re.compile(r"None|null|nil|true|false|True|False|undefined|[a-z_]+|[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+")


def redact(text: str) -> tuple[str, int]:
    """text with every secret replaced by PLACEHOLDER, and how many were replaced."""
    spans = find_secrets(text)
    out, last = [], 0
    for start, end in spans:
        out += [text[last:start], PLACEHOLDER]
        last = end
    out.append(text[last:])
    return "".join(out), len(spans)


def has_secret(text: str, after: int = 0) -> bool:
    """Whether a secret in text ends past `after` (a suggestion's start, after the line it continues).

    >>> has_secret('token = "ghp_' + 36 * "a" + '"', after=8)
    True
    """
    return any(end > after for _, end in find_secrets(text))


def find_secrets(text: str) -> list[tuple[int, int]]:
    """Sorted, non-overlapping (start, end) spans of the secrets in text."""
    spans = [m.span() for m in KEY_BLOCK.finditer(text)]
    start = 0
    for line in text.split("\n"):
        spans += [(start + a, start + b) for a, b in line_secrets(line)]
        start += len(line) + 1
    return _merge(spans)


@lru_cache(maxsize=8192)
def line_secrets(line: str) -> tuple[tuple[int, int], ...]:
    """The spans of secrets in one line (memoised: lines repeat from keystroke to keystroke)."""
    if len(line) > 4000 or not line.strip():
        return ()
    values = set()
    for plugin in PATTERNS:
        values.update(v for v in plugin.analyze_string(line) if v)
    values.update(_keyword_values(line))
    for plugin in ENTROPY:
        values.update(v for v in plugin.analyze_string(line) if _random(v, line, plugin))
    values.update(m.group() for pattern in EXTRA for m in pattern.finditer(line))
    values = {v for v in values if PLACEHOLDER not in v}  # what was redacted already
    return tuple(_merge([_widen(line, i, i + len(v)) for v in values for i in _occurrences(line, v)]))


def _keyword_values(line: str):
    for form in KEYWORD_FORMS:
        for v in KEYWORD.analyze_string(line, denylist_regex_to_group=form):
            if not v or len(v) < KEYWORD_MIN:
                continue
            if form is KEYWORD_FORMS[0] or (CONFIG_VALUE.fullmatch(v) and not NOT_A_VALUE.fullmatch(v)):
                yield v


def _random(value: str, line: str, plugin) -> bool:
    """A literal whose entropy is over the plugin's limit and that is not an id, a UUID, a sequence or a
    character set (no character twice: an alphabet, not a key)."""
    return (len(set(value)) < len(value) and plugin.calculate_shannon_entropy(value) > plugin.entropy_limit
            and not is_sequential_string(value) and not is_potential_uuid(value)
            and not is_likely_id_string(value, line, plugin))


def _occurrences(line: str, value: str):
    i = line.find(value)
    while i >= 0:
        yield i
        i = line.find(value, i + len(value))


def _widen(line: str, start: int, end: int) -> tuple[int, int]:
    """The span grown over token characters on both sides: a value cut short becomes the whole token."""
    while start > 0 and TOKEN_BEFORE.match(line[start - 1]):
        start -= 1
    while end < len(line) and TOKEN_AFTER.match(line[end]):
        end += 1
    return start, end


def _merge(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out
