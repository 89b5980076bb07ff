// The language client: the server over stdio, inline completions (LSP 3.18, built into
// vscode-languageclient 10+), completions and code actions as the server advertises them.

import {
    DidChangeConfigurationNotification,
    LanguageClient,
    LanguageClientOptions,
    State,
} from 'vscode-languageclient/node';
import type { ServerCommand } from './discovery';
import { didChangeConfigurationParams, ServerSettings } from './settings';
import { ProgressValue, ServerStatus, STATUS_NOTIFICATION } from './status';
import type { LogOutputChannel } from './vscodeapi';

/** The cascade's "ask again": a better suggestion waits for this document version (docs/ARCHITECTURE.md). */
export const REFRESH_NOTIFICATION = 'codestral/inlineCompletionRefresh';

export interface RefreshParams {
    uri: string;
    version: number;
}

export interface ClientHooks {
    onStatus(params: Partial<ServerStatus>): void;
    onRefresh?(params: RefreshParams): void;
    onProgress(token: string | number, value: ProgressValue): void;
    /** The server process went away without our asking. */
    onStopped(): void;
}

/** What the controller needs from a running client. */
export interface ServerClient {
    start(): Promise<void>;
    stop(): Promise<void>;
    sendSettings(tree: ServerSettings): Promise<void>;
}

export function clientOptions(tree: ServerSettings, log: LogOutputChannel | undefined, hooks: ClientHooks): LanguageClientOptions {
    return {
        documentSelector: [{ scheme: 'file' }, { scheme: 'untitled' }],
        outputChannel: log,
        initializationOptions: tree,
        middleware: {
            handleWorkDoneProgress: (token, params, next) => {
                hooks.onProgress(token, params as ProgressValue);
                next(token, params);
            },
        },
    };
}

export function createLanguageClient(server: ServerCommand, tree: ServerSettings, log: LogOutputChannel | undefined,
    hooks: ClientHooks): LanguageClient {
    // No `transport`: stdio is the default, and TransportKind.stdio would append `--stdio` to the args.
    const executable = { command: server.command, args: server.args };
    const client = new LanguageClient('codestral', 'Codestral', { run: executable, debug: executable },
        clientOptions(tree, log, hooks));
    client.onNotification(STATUS_NOTIFICATION, (params: Partial<ServerStatus>) => hooks.onStatus(params));
    client.onNotification(REFRESH_NOTIFICATION, (params: RefreshParams) => hooks.onRefresh?.(params));
    return client;
}

export function createServerClient(server: ServerCommand, tree: ServerSettings, log: LogOutputChannel,
    hooks: ClientHooks): ServerClient {
    const client = createLanguageClient(server, tree, log, hooks);
    let stopping = false;
    client.onDidChangeState((e) => {
        if (e.newState === State.Stopped && e.oldState === State.Running && !stopping) {
            hooks.onStopped();
        }
    });
    return {
        start: () => client.start(),
        stop: async () => {
            stopping = true;
            await client.dispose(2000);
        },
        sendSettings: (settings) => client.sendNotification(DidChangeConfigurationNotification.type,
            didChangeConfigurationParams(settings)),
    };
}
