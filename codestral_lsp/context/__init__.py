"""What the model sees and what the user is shown: pure functions, no LSP and no model.

- languages: one Profile per language (grammar, extensions, comments, brackets, imports, ...).
- parsing: tree-sitter trees; ParseCache of the latest tree per document.
- indentation: the document's indentation (tabs or N spaces), detected from its text.
- windows: fim_window cuts the prefix/suffix around the cursor, stable while the user types.
- neighbours: neighbour_header renders similar snippets of other open documents as comments.
- postprocess: completion_mode, stop_rule and postprocess decide and clean up what is shown.
"""

from .languages import Profile, get_language, language_from_uri, language_id_for_path, line_comment, profile
from .neighbours import neighbour_header
from .parsing import ParseCache, parse
from .postprocess import Suggestion, completion_mode, postprocess, stop_rule
from .windows import Window, fim_window

__all__ = [
    "ParseCache", "Profile", "Suggestion", "Window", "completion_mode", "fim_window", "get_language",
    "language_from_uri", "language_id_for_path", "line_comment", "neighbour_header", "parse", "postprocess", "profile",
    "stop_rule",
]
