// The server's lifecycle: find it, start it, pass settings changes on, restart it, stop it.
// Every step runs one after the other, so a restart during a start waits for the start.

import type { ClientHooks, RefreshParams, ServerClient } from './client';
import type { Discovery, ServerCommand } from './discovery';
import type { ExtensionSettings, ServerSettings } from './settings';
import type { StatusBar } from './status';

export interface Log {
    info(message: string): void;
    error(message: string): void;
    show(): void;
}

export interface ControllerDeps {
    readSettings(): ExtensionSettings;
    discover(serverPath: string | undefined): Promise<Discovery>;
    createClient(server: ServerCommand, tree: ServerSettings, hooks: ClientHooks): ServerClient;
    /** Writes `codestral.<key>` where it takes effect. */
    updateSetting(key: string, value: unknown): Promise<void>;
    showError(message: string, ...actions: string[]): Thenable<string | undefined>;
    openSettings(query: string): Thenable<unknown>;
    /** Asks the editor for an inline suggestion at the cursor (the server has just finished loading). */
    askForSuggestion(): Thenable<unknown>;
    /** The focused editor's document (uri as the language client sends it, version), if any. */
    activeDocument?(): RefreshParams | undefined;
    log: Log;
}

export class Controller {
    private client: ServerClient | undefined;
    private serverPath: string | undefined;
    private queue: Promise<void> = Promise.resolve();

    constructor(private readonly deps: ControllerDeps, private readonly status: StatusBar) {}

    get running(): boolean {
        return this.client !== undefined;
    }

    start(): Promise<void> {
        return this.serially(() => this.doStart());
    }

    stop(): Promise<void> {
        return this.serially(() => this.doStop());
    }

    restart(): Promise<void> {
        return this.serially(async () => {
            await this.doStop();
            await this.doStart();
        });
    }

    /** Settings changed: a new server path restarts the server, anything else goes to the running server. */
    onSettingsChanged(): Promise<void> {
        return this.serially(async () => {
            const settings = this.deps.readSettings();
            if (settings.serverPath !== this.serverPath) {
                this.deps.log.info('codestral.server.path changed: restarting the server');
                await this.doStop();
                await this.doStart();
            } else if (this.client) {
                await this.client.sendSettings(settings.tree);
            }
        });
    }

    /** Sets `codestral.completion.enabled`; the change reaches the server like any other setting. */
    async setEnabled(enabled: boolean): Promise<void> {
        await this.deps.updateSetting('completion.enabled', enabled);
        if (enabled && !this.client) {
            await this.start();
        }
    }

    /** Resolves when every step asked for so far has run. */
    whenIdle(): Promise<void> {
        return this.queue;
    }

    private serially(step: () => Promise<void>): Promise<void> {
        const next = this.queue.then(step);
        this.queue = next.catch((error) => this.deps.log.error(String(error)));
        return next;
    }

    private serverState: string | undefined;

    /** The status bar follows the server; a load that ends asks again for the suggestion that the typing
     * during the load got empty answers for. */
    private onServerStatus(params: Parameters<StatusBar['onServerStatus']>[0]): void {
        const was = this.serverState;
        this.serverState = params.state ?? was;
        this.status.onServerStatus(params);
        if (was === 'loading' && params.state === 'ready') {
            void Promise.resolve(this.deps.askForSuggestion()).catch((error) => this.deps.log.error(String(error)));
        }
    }

    /** The cascade has a better answer for this document version: ask again if the user is still there. */
    onRefresh(params: RefreshParams): void {
        const doc = this.deps.activeDocument?.();
        if (doc && doc.uri === params.uri && doc.version === params.version) {
            void Promise.resolve(this.deps.askForSuggestion()).catch((error) => this.deps.log.error(String(error)));
        }
    }

    private async doStart(): Promise<void> {
        const settings = this.deps.readSettings();
        this.serverPath = settings.serverPath;
        this.status.starting();
        this.serverState = 'loading';
        const found = await this.deps.discover(settings.serverPath);
        if (!found.ok) {
            this.fail(found.message);
            return;
        }
        const { command, args, source } = found.server;
        this.deps.log.info(`Starting ${[command, ...args].join(' ')} (found through ${source})`);
        const client = this.deps.createClient(found.server, settings.tree, {
            onStatus: (params) => this.onServerStatus(params),
            onRefresh: (params) => this.onRefresh(params),
            onProgress: (token, value) => this.status.onProgress(token, value),
            onStopped: () => this.status.failed('The server stopped; see the log.'),
        });
        this.client = client;
        try {
            await client.start();
        } catch (error) {
            this.client = undefined;
            await client.stop().catch(() => undefined);
            this.fail(`The server ${command} did not start: ${error instanceof Error ? error.message : String(error)}`);
        }
    }

    private async doStop(): Promise<void> {
        const client = this.client;
        this.client = undefined;
        if (client) {
            await client.stop().catch((error) => this.deps.log.error(`Stopping the server: ${String(error)}`));
        }
    }

    private fail(message: string): void {
        this.deps.log.error(message);
        this.status.failed(message);
        void this.deps.showError(`Codestral: ${message}`, 'Open Settings', 'Show Log').then((action) => {
            if (action === 'Open Settings') {
                void this.deps.openSettings('codestral.server.path');
            } else if (action === 'Show Log') {
                this.deps.log.show();
            }
        });
    }
}
