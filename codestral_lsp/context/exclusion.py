"""Documents whose text must not leave the machine: gitignore-style patterns, matched with pathspec.

The patterns are the `privacy.exclude` setting plus each workspace root's `.codestralignore`. A
document's path is matched relative to the workspace root it is under (the setting's patterns and
that root's own file), or, outside every root, relative to the file system's root (the setting's
patterns only). A pattern without a slash matches a name at any depth, as in .gitignore:

    >>> rule = Exclusion.build([".env*", "*.pem"], {"file:///home/me/app": "secrets/\\n!.env.example\\n"})
    >>> rule.excludes("file:///home/me/app/config/.env.local"), rule.excludes("file:///home/me/app/.env.example")
    (True, False)
    >>> rule.excludes("file:///home/me/app/secrets/db.yaml"), rule.excludes("file:///tmp/server.pem")
    (True, True)
    >>> rule.excludes("file:///home/me/app/src/main.py")
    False
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from pathspec import GitIgnoreSpec

IGNORE_FILE = ".codestralignore"


@dataclass(frozen=True)
class Exclusion:
    patterns: GitIgnoreSpec  # the setting's
    roots: tuple[tuple[str, GitIgnoreSpec], ...]  # (root path, the setting's patterns then its ignore file)

    @classmethod
    def build(cls, patterns: Iterable[str], ignore_files: Mapping[str, str] | None = None) -> Exclusion:
        """patterns: the setting's; ignore_files: {workspace root uri: its .codestralignore text ("" if none)}."""
        patterns = list(patterns)
        roots = ((uri_path(root).rstrip("/"), GitIgnoreSpec.from_lines(patterns + text.splitlines()))
                 for root, text in (ignore_files or {}).items())
        # the deepest root first: a nested workspace folder's own file applies inside it
        return cls(GitIgnoreSpec.from_lines(patterns), tuple(sorted(roots, key=lambda r: -len(r[0]))))

    def excludes(self, uri: str) -> bool:
        """Whether the document at uri is excluded."""
        path = uri_path(uri)
        for root, spec in self.roots:
            if path.startswith(root + "/"):
                return spec.match_file(path[len(root) + 1:])
        return self.patterns.match_file(path.lstrip("/"))


def uri_path(uri: str) -> str:
    """The decoded path of a uri, with forward slashes; a Windows drive letter in lower case.

    >>> uri_path("file:///C%3A/My%20Project/.env"), uri_path("/home/me/x.py"), uri_path("untitled:Untitled-1")
    ('/c:/My Project/.env', '/home/me/x.py', 'Untitled-1')
    """
    parts = urlsplit(uri)
    path = unquote(parts.path if len(parts.scheme) > 1 else uri).replace("\\", "/")
    if len(path) > 2 and path[0] == "/" and path[2] == ":" or len(path) > 1 and path[1] == ":":
        path = "/" + path.lstrip("/")
        path = path[:2].lower() + path[2:]
    return path
