"""What the model sees and what the user is shown: pure functions, no LSP and no model.

- languages: languageId/file name -> tree-sitter grammar; ParseCache of the latest tree per document.
- windows: fim_window cuts the prefix/suffix around the cursor, stable while the user types.
- neighbours: neighbour_header renders similar snippets of other open documents as comments.
- postprocess: completion_mode, stop_rule and postprocess decide and clean up what is shown.
"""

from .languages import ParseCache, get_language, language_from_uri, language_id_for_path, line_comment, parse
from .neighbours import neighbour_header
from .postprocess import Suggestion, completion_mode, postprocess, stop_rule
from .windows import Window, fim_window

__all__ = [
    "ParseCache", "Suggestion", "Window", "completion_mode", "fim_window", "get_language",
    "language_from_uri", "language_id_for_path", "line_comment", "neighbour_header", "parse", "postprocess", "stop_rule",
]
