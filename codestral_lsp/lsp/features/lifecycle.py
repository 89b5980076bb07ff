"""Initialization, settings and shutdown.

Settings arrive in `initializationOptions` and later in `workspace/didChangeConfiguration`, as the
camelCase tree of settings.py (bare or under "codestral"). The model starts loading once the client
says `initialized`, with `$/progress` where the client supports it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lsprotocol import types

if TYPE_CHECKING:
    from ..server import CodestralServer



def register(server: CodestralServer) -> None:
    @server.feature(types.INITIALIZE)
    def initialize(ls: CodestralServer, params: types.InitializeParams) -> None:
        if params.initialization_options is not None:
            ls.apply_settings(params.initialization_options)

    @server.feature(types.INITIALIZED)
    def initialized(ls: CodestralServer, params: types.InitializedParams) -> None:
        ls.start_loading()

    @server.feature(types.WORKSPACE_DID_CHANGE_CONFIGURATION)
    def did_change_configuration(ls: CodestralServer, params: types.DidChangeConfigurationParams) -> None:
        if isinstance(params.settings, dict) and params.settings:
            ls.apply_settings(params.settings)
            ls.log_message("codestral: settings updated")

    @server.feature(types.SHUTDOWN)
    def shutdown(ls: CodestralServer, params: None) -> None:
        ls.scheduler.shutdown()
