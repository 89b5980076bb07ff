"""Initialization, settings and shutdown.

Settings arrive in `initializationOptions` and later in `workspace/didChangeConfiguration`, as the
camelCase tree of settings.py (bare or under "codestral"). The model starts loading once the client
says `initialized`, with `$/progress` where the client supports it. Each workspace root the client
names (workspaceFolders, else rootUri, else rootPath) is read for its `.codestralignore`, again when
folders are added or removed and when a `.codestralignore` is saved.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from lsprotocol import types

from ...context.exclusion import IGNORE_FILE, uri_path

if TYPE_CHECKING:
    from ..server import CodestralServer

log = logging.getLogger(__name__)


def register(server: CodestralServer) -> None:
    @server.feature(types.INITIALIZE)
    def initialize(ls: CodestralServer, params: types.InitializeParams) -> None:
        if params.initialization_options is not None:
            ls.apply_settings(params.initialization_options)
        ls.use_workspace(ignore_files(workspace_roots(params)))

    @server.feature(types.INITIALIZED)
    def initialized(ls: CodestralServer, params: types.InitializedParams) -> None:
        ls.start_loading()

    @server.feature(types.WORKSPACE_DID_CHANGE_CONFIGURATION)
    def did_change_configuration(ls: CodestralServer, params: types.DidChangeConfigurationParams) -> None:
        if isinstance(params.settings, dict) and params.settings:
            ls.apply_settings(params.settings)
            ls.log_message("codestral: settings updated")

    @server.feature(types.WORKSPACE_DID_CHANGE_WORKSPACE_FOLDERS)
    def did_change_workspace_folders(ls: CodestralServer, params: types.DidChangeWorkspaceFoldersParams) -> None:
        removed = {folder.uri for folder in params.event.removed}
        roots = [root for root in ls.ignore_files if root not in removed]
        roots += [folder.uri for folder in params.event.added if folder.uri not in roots]
        ls.use_workspace(ignore_files(roots))

    @server.feature(types.TEXT_DOCUMENT_DID_SAVE)
    def did_save(ls: CodestralServer, params: types.DidSaveTextDocumentParams) -> None:
        if params.text_document.uri.endswith("/" + IGNORE_FILE):
            ls.use_workspace(ignore_files(list(ls.ignore_files)))

    @server.feature(types.SHUTDOWN)
    def shutdown(ls: CodestralServer, params: None) -> None:
        ls.scheduler.shutdown()
        if ls.cascade is not None:
            ls.cascade.executor.shutdown(wait=False, cancel_futures=True)


def workspace_roots(params: types.InitializeParams) -> list[str]:
    """The workspace roots' uris: the folders, else rootUri, else rootPath (a path)."""
    if params.workspace_folders:
        return [folder.uri for folder in params.workspace_folders]
    root = params.root_uri or params.root_path
    return [root] if root else []


def ignore_files(roots: list[str]) -> dict[str, str]:
    """{root: its .codestralignore text, "" when it has none}; roots that are not files are skipped."""
    found = {}
    for root in roots:
        if urlsplit(root).scheme not in ("file", ""):
            continue
        folder = uri_path(root)
        path = Path(folder[1:] if folder[2:3] == ":" else folder) / IGNORE_FILE  # "/c:/x": a Windows drive
        try:
            found[root] = path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            found[root] = ""
        except OSError as exc:
            log.warning("cannot read %s: %s", path, exc)
            found[root] = ""
    return found
