import '../fakes/hook';

import * as assert from 'node:assert/strict';
import { beforeEach, describe, test } from 'node:test';
import type { ClientHooks, ServerClient } from '../../src/client';
import { clientOptions, createLanguageClient } from '../../src/client';
import type { ControllerDeps } from '../../src/controller';
import type { Discovery, ServerCommand } from '../../src/discovery';
import { activate, CodestralExports, deactivate } from '../../src/extension';
import { selectedPython } from '../../src/python';
import type { ServerSettings } from '../../src/settings';
import * as vscode from '../fakes/vscode';
import { packageJson } from '../helpers';

const { fake } = vscode;
const manifest = packageJson();
fake.loadDefaults(manifest.contributes.configuration.properties);

const SERVER: ServerCommand = { command: '/usr/bin/codestral-lsp', args: ['serve'], source: 'PATH' };

class FakeClient implements ServerClient {
    started = false;
    stopped = false;
    sent: ServerSettings[] = [];
    constructor(readonly server: ServerCommand, readonly tree: ServerSettings, readonly hooks: ClientHooks,
        private readonly startError?: Error) {}
    async start() {
        if (this.startError) {
            throw this.startError;
        }
        this.started = true;
    }
    async stop() {
        this.stopped = true;
    }
    async sendSettings(tree: ServerSettings) {
        this.sent.push(tree);
    }
}

interface Harness {
    exports: CodestralExports;
    clients: FakeClient[];
    discovered: (string | undefined)[];
    item: vscode.FakeStatusBarItem;
    channel: vscode.FakeLogOutputChannel;
    /** Waits for the controller to finish what it was asked. */
    settle(): Promise<void>;
}

async function activated(options: { discovery?: Discovery; startError?: Error } = {}): Promise<Harness> {
    const clients: FakeClient[] = [];
    const discovered: (string | undefined)[] = [];
    const overrides: Partial<ControllerDeps> = {
        discover: async (serverPath) => {
            discovered.push(serverPath);
            return options.discovery ?? { ok: true, server: serverPath ? { ...SERVER, command: serverPath } : SERVER };
        },
        createClient: (server, tree, hooks) => {
            const client = new FakeClient(server, tree, hooks, options.startError);
            clients.push(client);
            return client;
        },
    };
    const context = { subscriptions: [] as { dispose(): unknown }[] };
    const exports = activate(context as never, overrides);
    await exports.started;
    const settle = async () => {
        await new Promise((resolve) => setImmediate(resolve));
        await exports.controller.whenIdle();
    };
    return { exports, clients, discovered, item: fake.statusItems[0], channel: fake.channels[0], settle };
}

beforeEach(async () => {
    await deactivate();
    fake.reset();
});

describe('activation', () => {
    test('registers exactly the commands that package.json contributes', async () => {
        await activated();
        assert.deepEqual([...fake.commands.keys()].sort(), manifest.contributes.commands.map((c) => c.command).sort());
    });

    test('shows the status bar item, which opens the log', async () => {
        const { item } = await activated();
        assert.equal(item.visible, true);
        assert.equal(item.command, 'codestral.showLog');
        assert.equal(item.text, '$(loading~spin) Codestral');
    });

    test('starts the discovered server with the settings tree as initializationOptions', async () => {
        fake.userSettings.set('codestral.completion.maxTokens', 16);
        fake.workspaceSettings.set('codestral.model.device', 'cpu');
        const { clients, channel } = await activated();
        assert.equal(clients.length, 1);
        assert.equal(clients[0].started, true);
        assert.deepEqual(clients[0].server, SERVER);
        assert.equal(clients[0].tree.completion.maxTokens, 16);
        assert.equal(clients[0].tree.model.device, 'cpu');
        assert.equal(clients[0].tree.model.path, null);
        assert.ok(channel.lines.some((l) => l.includes('Starting /usr/bin/codestral-lsp serve (found through PATH)')));
    });

    test('codestral.showLog shows the output channel', async () => {
        const { channel } = await activated();
        await fake.commands.get('codestral.showLog')!();
        assert.equal(channel.shown, true);
    });

    test('deactivate stops the server', async () => {
        const { clients } = await activated();
        await deactivate();
        assert.equal(clients[0].stopped, true);
    });
});

describe('settings changes', () => {
    test('reach the running server without a restart', async () => {
        const h = await activated();
        fake.userSettings.set('codestral.completion.maxTokens', 1);
        fake.fireConfigChange('codestral.completion.maxTokens');
        await h.settle();
        assert.equal(h.clients.length, 1);
        assert.equal(h.clients[0].sent.length, 1);
        assert.equal(h.clients[0].sent[0].completion.maxTokens, 1);
    });

    test('of other extensions are ignored', async () => {
        const h = await activated();
        fake.fireConfigChange('editor.fontSize');
        await h.settle();
        assert.equal(h.clients[0].sent.length, 0);
    });

    test('a new codestral.server.path restarts the server', async () => {
        const h = await activated();
        fake.userSettings.set('codestral.server.path', '/opt/bin/codestral-lsp');
        fake.fireConfigChange('codestral.server.path');
        await h.settle();
        assert.deepEqual(h.discovered, [undefined, '/opt/bin/codestral-lsp']);
        assert.equal(h.clients.length, 2);
        assert.equal(h.clients[0].stopped, true);
        assert.equal(h.clients[1].server.command, '/opt/bin/codestral-lsp');
        assert.equal(h.clients[1].started, true);
    });

    test('codestral.restartServer restarts it', async () => {
        const h = await activated();
        await fake.commands.get('codestral.restartServer')!();
        assert.equal(h.clients.length, 2);
        assert.equal(h.clients[0].stopped, true);
        assert.equal(h.clients[1].started, true);
    });
});

describe('enable and disable', () => {
    test('codestral.disable turns completion.enabled off in the user settings, and the server hears of it', async () => {
        const h = await activated();
        await fake.commands.get('codestral.disable')!();
        await h.settle();
        assert.equal(fake.userSettings.get('codestral.completion.enabled'), false);
        assert.equal(h.clients[0].sent.at(-1)?.completion.enabled, false);
        await fake.commands.get('codestral.enable')!();
        await h.settle();
        assert.equal(h.clients[0].sent.at(-1)?.completion.enabled, true);
        assert.equal(h.clients.length, 1);
    });

    test('a workspace override is where the switch is written', async () => {
        fake.workspaceSettings.set('codestral.completion.enabled', true);
        const h = await activated();
        await fake.commands.get('codestral.disable')!();
        await h.settle();
        assert.equal(fake.workspaceSettings.get('codestral.completion.enabled'), false);
        assert.equal(fake.userSettings.has('codestral.completion.enabled'), false);
    });
});

describe('server status', () => {
    test('codestral/status and $/progress drive the status bar', async () => {
        const { clients, item } = await activated();
        const hooks = clients[0].hooks;
        hooks.onProgress('load', { kind: 'begin', title: 'Loading model', percentage: 10 });
        assert.equal(item.text, '$(loading~spin) Codestral 10%');
        hooks.onProgress('load', { kind: 'end' });
        hooks.onStatus({ state: 'ready', message: 'Ready', lastLatencyMs: 85, model: 'codestral-mini' });
        assert.equal(item.text, '$(sparkle) Codestral 85 ms');
    });

    test('a load that ends asks the editor for the suggestion at the cursor, once', async () => {
        const { clients } = await activated();
        const hooks = clients[0].hooks;
        const triggers = () => fake.executed.filter((a) => a[0] === 'editor.action.inlineSuggest.trigger').length;
        hooks.onStatus({ state: 'loading', message: 'loading the model' });
        assert.equal(triggers(), 0);
        hooks.onStatus({ state: 'ready', message: 'Ready', model: 'codestral-mini' });
        assert.equal(triggers(), 1);
        hooks.onStatus({ state: 'ready', message: 'Ready', lastLatencyMs: 12 });
        assert.equal(triggers(), 1, 'a status while ready asks nothing');
    });

    test('a server that stops shows as an error', async () => {
        const { clients, item } = await activated();
        clients[0].hooks.onStopped();
        assert.equal(item.text, '$(error) Codestral');
        assert.match(item.tooltip as string, /The server stopped/);
    });
});

describe('failures', () => {
    const missing: Discovery = { ok: false, message: 'The codestral-lsp server was not found: install it.' };

    test('no server: an error message with a fix, and the status bar says so', async () => {
        fake.errorAnswer = 'Open Settings';
        const h = await activated({ discovery: missing });
        await h.settle();
        assert.equal(h.clients.length, 0);
        assert.deepEqual(fake.errors, [{ message: `Codestral: ${missing.message}`, actions: ['Open Settings', 'Show Log'] }]);
        assert.equal(h.item.text, '$(error) Codestral');
        assert.match(h.item.tooltip as string, /install it/);
        assert.deepEqual(fake.executed, [['workbench.action.openSettings', 'codestral.server.path']]);
        assert.ok(h.channel.lines.some((l) => l.startsWith('error') && l.includes('install it')));
    });

    test('Show Log on the error shows the log', async () => {
        fake.errorAnswer = 'Show Log';
        const h = await activated({ discovery: missing });
        await h.settle();
        assert.equal(h.channel.shown, true);
    });

    test('a server that fails to start is reported', async () => {
        const h = await activated({ startError: new Error('spawn EACCES') });
        assert.equal(h.item.text, '$(error) Codestral');
        assert.match(fake.errors[0].message, /did not start: spawn EACCES/);
        assert.equal(h.clients[0].stopped, true);
        assert.equal(h.exports.controller.running, false);
    });

    test('codestral.enable after a failure tries again', async () => {
        const h = await activated({ discovery: missing });
        await fake.commands.get('codestral.enable')!();
        await h.settle();
        assert.deepEqual(h.discovered, [undefined, undefined]);
    });
});

describe('the language client', () => {
    const hooks = (log: unknown[]): ClientHooks => ({
        onStatus: (p) => log.push(['status', p]),
        onProgress: (token, value) => log.push(['progress', token, value]),
        onStopped: () => log.push(['stopped']),
    });
    const tree = { completion: { maxTokens: 3 } } as ServerSettings;

    test('sends the tree as initializationOptions, for files and untitled documents', () => {
        const options = clientOptions(tree, undefined, hooks([]));
        assert.equal(options.initializationOptions, tree);
        assert.deepEqual(options.documentSelector, [{ scheme: 'file' }, { scheme: 'untitled' }]);
    });

    test('passes work-done progress to the status bar and on to VS Code', () => {
        const log: unknown[] = [];
        const options = clientOptions(tree, undefined, hooks(log));
        const passed: unknown[] = [];
        options.middleware!.handleWorkDoneProgress!('tok', { kind: 'begin', title: 'Loading' }, (...args) => passed.push(args));
        assert.deepEqual(log, [['progress', 'tok', { kind: 'begin', title: 'Loading' }]]);
        assert.deepEqual(passed, [['tok', { kind: 'begin', title: 'Loading' }]]);
    });

    test('starts the server command as discovered, over stdio, with no extra arguments', () => {
        const client = createLanguageClient(SERVER, tree, undefined, hooks([]));
        const options = (client as unknown as { _serverOptions: { run: object; debug: object } })._serverOptions;
        // A `transport: stdio` would make the client append --stdio, which the server refuses.
        assert.deepEqual(options.run, { command: SERVER.command, args: ['serve'] });
        assert.deepEqual(options.debug, options.run);
    });

    test('announces inline completion support without proposed features', () => {
        const client = createLanguageClient(SERVER, tree, undefined, hooks([]));
        const capabilities = (client as unknown as { computeClientCapabilities(): any }).computeClientCapabilities();
        assert.deepEqual(capabilities.textDocument.inlineCompletion, { dynamicRegistration: true });
        assert.equal(capabilities.window.workDoneProgress, true);
        assert.ok(capabilities.textDocument.completion);
        assert.ok(capabilities.textDocument.codeAction.resolveSupport);
    });
});

describe('the Python extension', () => {
    const log: string[] = [];
    const install = (exports: unknown) => fake.extensions.set('ms-python.python', {
        isActive: false, exports: undefined, activate: async () => exports,
    });

    test('absent: no interpreter', async () => {
        assert.equal(await selectedPython((m) => log.push(m)), undefined);
    });

    test('its environments API gives the active interpreter', async () => {
        fake.workspaceFolders = [{ uri: vscode.Uri.file('/project') }];
        let asked: unknown;
        install({
            ready: Promise.resolve(),
            environments: {
                getActiveEnvironmentPath: (resource: unknown) => {
                    asked = resource;
                    return { id: 'venv', path: '/project/.venv' };
                },
                resolveEnvironment: async (env: { path: string }) => ({ executable: { uri: { fsPath: `${env.path}/bin/python` } } }),
            },
        });
        assert.equal(await selectedPython((m) => log.push(m)), '/project/.venv/bin/python');
        assert.equal((asked as { fsPath: string }).fsPath, '/project');
    });

    test('its older settings API works too', async () => {
        install({ settings: { getExecutionDetails: () => ({ execCommand: ['/usr/bin/python3.12'] }) } });
        assert.equal(await selectedPython((m) => log.push(m)), '/usr/bin/python3.12');
    });

    test('an API that throws is logged, not fatal', async () => {
        install({ ready: Promise.reject(new Error('boom')) });
        const messages: string[] = [];
        assert.equal(await selectedPython((m) => messages.push(m)), undefined);
        assert.match(messages[0], /boom/);
    });
});
