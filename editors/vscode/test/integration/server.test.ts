// The real server over stdio, spoken to with the protocol stack the extension uses
// (vscode-languageserver-protocol on vscode-jsonrpc), initialized as the extension initializes it:
// the client capabilities come from the real LanguageClient, the initializationOptions from the
// settings code, the command from the discovery code.
//
// Environment: CODESTRAL_PYTHON (interpreter, default python3), CODESTRAL_TEST_MODEL (checkpoint
// folder; default: the embedded model if engine/models/ has one, else a tiny random one).

import '../fakes/hook';

import * as assert from 'node:assert/strict';
import { ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
    createProtocolConnection,
    DidChangeConfigurationNotification,
    DidChangeTextDocumentNotification,
    DidOpenTextDocumentNotification,
    InitializeRequest,
    InitializeResult,
    InlineCompletionList,
    InlineCompletionRequest,
    InlineCompletionTriggerKind,
    ProtocolConnection,
    StreamMessageReader,
    StreamMessageWriter,
    WorkDoneProgress,
    WorkDoneProgressCreateRequest,
} from 'vscode-languageserver-protocol/node';
import { clientOptions, createLanguageClient } from '../../src/client';
import { discoverServer, nodeProbes, ServerCommand } from '../../src/discovery';
import { buildTree, didChangeConfigurationParams, ServerSettings } from '../../src/settings';
import type { ProgressValue, ServerStatus } from '../../src/status';
import { packageJson, REPO_ROOT, serverUnavailable, testModel } from '../helpers';

const LOAD_TIMEOUT_MS = 300_000;
const REQUEST_TIMEOUT_MS = 120_000;

/** The settings tree the extension sends, from package.json's defaults plus these values. */
function settingsTree(values: Record<string, unknown>): ServerSettings {
    const properties = packageJson().contributes.configuration.properties;
    const get = <T>(key: string) => (key in values ? values[key] : properties[`codestral.${key}`]?.default) as T;
    return buildTree({ get }, { home: os.homedir(), workspaceFolder: undefined, env: process.env });
}

class Session {
    readonly statuses: Partial<ServerStatus>[] = [];
    readonly progress: ProgressValue[] = [];
    readonly messages: string[] = [];
    stderr = '';
    private version = 1;
    /** Rejects when the server process exits. */
    private readonly exited: Promise<never>;

    constructor(readonly process: ChildProcess, readonly connection: ProtocolConnection) {
        this.exited = new Promise<never>((_, reject) => {
            process.once('exit', (code, signal) => setTimeout(() => reject(new Error(
                `the server exited (${signal ?? code})\n${this.diagnostics()}`)), 100));
            process.once('error', (error) => reject(new Error(`the server did not start: ${error.message}`)));
        });
        this.exited.catch(() => undefined);
        process.stderr?.on('data', (chunk: Buffer) => { this.stderr = (this.stderr + chunk.toString()).slice(-20_000); });
        connection.onNotification('codestral/status', (params: Partial<ServerStatus>) => { this.statuses.push(params); });
        connection.onNotification('window/showMessage', (p: { message: string }) => { this.messages.push(p.message); });
        connection.onNotification('window/logMessage', (p: { message: string }) => { this.messages.push(p.message); });
        connection.onRequest(WorkDoneProgressCreateRequest.type, ({ token }) => {
            connection.onProgress(WorkDoneProgress.type, token, (value) => { this.progress.push(value as ProgressValue); });
        });
        connection.onRequest('client/registerCapability', () => null);
        connection.listen();
    }

    static start(server: ServerCommand): Session {
        const child = spawn(server.command, server.args, { cwd: REPO_ROOT, stdio: 'pipe' });
        const connection = createProtocolConnection(new StreamMessageReader(child.stdout!), new StreamMessageWriter(child.stdin!));
        return new Session(child, connection);
    }

    /** Resolves when a status arrives (after `since` statuses) with this state; rejects on "error". */
    async waitForStatus(state: ServerStatus['state'], since: number, timeoutMs: number): Promise<Partial<ServerStatus>> {
        const deadline = Date.now() + timeoutMs;
        for (;;) {
            const seen = this.statuses.slice(since);
            const hit = seen.find((s) => s.state === state);
            if (hit) {
                return hit;
            }
            const error = seen.find((s) => s.state === 'error');
            assert.ok(!error || state === 'error', `the server reported an error: ${error?.message}\n${this.diagnostics()}`);
            assert.ok(this.process.exitCode === null && this.process.signalCode === null,
                `the server exited (${this.process.signalCode ?? this.process.exitCode})\n${this.diagnostics()}`);
            if (Date.now() > deadline) {
                throw new Error(`no "${state}" status within ${timeoutMs} ms; statuses: ${JSON.stringify(this.statuses)}\n${this.diagnostics()}`);
            }
            await new Promise((resolve) => setTimeout(resolve, 50));
        }
    }

    open(uri: string, text: string): void {
        void this.connection.sendNotification(DidOpenTextDocumentNotification.type,
            { textDocument: { uri, languageId: 'python', version: this.version, text } });
    }

    /** Inserts text at the start of the document, as an incremental change. */
    insertAtStart(uri: string, text: string): void {
        this.version += 1;
        void this.connection.sendNotification(DidChangeTextDocumentNotification.type, {
            textDocument: { uri, version: this.version },
            contentChanges: [{ range: { start: { line: 0, character: 0 }, end: { line: 0, character: 0 } }, text }],
        });
    }

    /** The answer to a request, or an error with the server's output if it exits or takes too long. */
    async guarded<T>(what: string, request: Promise<T>, timeoutMs = REQUEST_TIMEOUT_MS): Promise<T> {
        let timer: NodeJS.Timeout | undefined;
        const timeout = new Promise<never>((_, reject) => {
            timer = setTimeout(() => reject(new Error(`no answer to ${what} within ${timeoutMs} ms\n${this.diagnostics()}`)),
                timeoutMs);
        });
        try {
            return await Promise.race([request, timeout, this.exited]);
        } finally {
            clearTimeout(timer);
        }
    }

    async inlineCompletion(uri: string, line: number, character: number): Promise<InlineCompletionList> {
        const result = await this.guarded('textDocument/inlineCompletion', this.connection.sendRequest(InlineCompletionRequest.type, {
            textDocument: { uri },
            position: { line, character },
            context: { triggerKind: InlineCompletionTriggerKind.Automatic },
        }));
        assert.ok(result && !Array.isArray(result), `expected an InlineCompletionList, got ${JSON.stringify(result)}`);
        return result as InlineCompletionList;
    }

    configure(tree: ServerSettings): void {
        void this.connection.sendNotification(DidChangeConfigurationNotification.type, didChangeConfigurationParams(tree));
    }

    async stop(): Promise<void> {
        if (this.process.exitCode === null) {
            try {
                await Promise.race([this.connection.sendRequest('shutdown'), new Promise((r) => setTimeout(r, 5000))]);
                await this.connection.sendNotification('exit');
            } catch {
                // already gone
            }
            const exited = new Promise((resolve) => this.process.once('exit', resolve));
            await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
        }
        this.connection.dispose();
        if (this.process.exitCode === null) {
            this.process.kill();
        }
    }

    diagnostics(): string {
        return `server messages:\n${this.messages.slice(-20).join('\n')}\nserver stderr (tail):\n${this.stderr.slice(-4000)}`;
    }
}

// The cursor is at the end of the last line: a UTF-16 column after non-ASCII text.
const PREFIX = [
    'import math',
    '',
    '',
    'def circle_area(radius: float) -> float:',
    '    """Area of a circle of this radius, in m²."""',
    '    return math.pi * radius ** 2',
    '',
    '',
    'def greet(name: str) -> str:',
    '    """Say hello; café ☕ style."""',
    '    greeting = "héllo ☕ " + ',
].join('\n');
const SUFFIX = '\n    return greeting\n';
const CURSOR = { line: PREFIX.split('\n').length - 1, character: PREFIX.split('\n').at(-1)!.length };

const reason = serverUnavailable();

describe('the real server, initialized as the extension does', { skip: reason, timeout: LOAD_TIMEOUT_MS * 2 }, () => {
    let scratch: string;
    let session: Session;
    let initialized: InitializeResult;
    let tree: ServerSettings;
    let full = '';

    before(async () => {
        scratch = mkdtempSync(path.join(os.tmpdir(), 'codestral-vscode-'));
        const model = testModel(scratch);
        tree = settingsTree({ 'model.path': model ?? '' });
        const found = await discoverServer(process.env.CODESTRAL_SERVER_PATH,
            nodeProbes(async () => process.env.CODESTRAL_PYTHON || undefined));
        assert.ok(found.ok, found.ok ? '' : found.message);
        session = Session.start(found.server);
        // Exactly what the extension's LanguageClient sends.
        const hooks = { onStatus: () => undefined, onProgress: () => undefined, onStopped: () => undefined };
        const client = createLanguageClient(found.server, tree, undefined, hooks);
        const capabilities = (client as unknown as { computeClientCapabilities(): object }).computeClientCapabilities();
        initialized = await session.guarded('initialize', session.connection.sendRequest(InitializeRequest.type, {
            processId: process.pid,
            clientInfo: { name: 'Visual Studio Code', version: '1.91.0' },
            rootUri: null,
            workspaceFolders: null,
            capabilities,
            initializationOptions: clientOptions(tree, undefined, hooks).initializationOptions,
        }));
        await session.connection.sendNotification('initialized', {});
        await session.waitForStatus('ready', 0, LOAD_TIMEOUT_MS);
    });

    after(async () => {
        await session?.stop();
        if (scratch) {
            rmSync(scratch, { recursive: true, force: true });
        }
    });

    test('advertises inline completions, completions and code actions, with incremental sync', () => {
        const caps = initialized.capabilities;
        assert.ok(caps.inlineCompletionProvider, 'no inlineCompletionProvider');
        assert.ok(caps.completionProvider, 'no completionProvider');
        assert.ok(caps.codeActionProvider, 'no codeActionProvider');
        const sync = caps.textDocumentSync;
        assert.equal(typeof sync === 'object' ? sync.change : sync, 2, 'text sync is not incremental');
    });

    test('reports loading, then ready, with the model name', () => {
        const states = session.statuses.map((s) => s.state);
        const loading = states.indexOf('loading');
        assert.ok(loading >= 0 && loading < states.indexOf('ready'), `statuses: ${states.join(', ')}`);
        const ready = session.statuses.find((s) => s.state === 'ready')!;
        assert.equal(typeof ready.message, 'string');
        assert.ok('lastLatencyMs' in ready && 'model' in ready, `incomplete status: ${JSON.stringify(ready)}`);
    });

    test('reports model loading with $/progress', async () => {
        // The end may come just after the "ready" status.
        for (let i = 0; i < 100 && session.progress.at(-1)?.kind !== 'end'; i++) {
            await new Promise((resolve) => setTimeout(resolve, 50));
        }
        const kinds = session.progress.map((p) => p.kind);
        assert.equal(kinds[0], 'begin', `progress: ${JSON.stringify(session.progress)}`);
        assert.equal(kinds.at(-1), 'end', `progress: ${JSON.stringify(session.progress)}`);
    });

    test('gives a non-empty inline completion at a UTF-16 position', async (t) => {
        session.open('file:///project/greet.py', PREFIX + SUFFIX);
        const list = await session.inlineCompletion('file:///project/greet.py', CURSOR.line, CURSOR.character);
        assert.ok(list.items.length > 0, `no items\n${session.diagnostics()}`);
        const item = list.items[0];
        full = typeof item.insertText === 'string' ? item.insertText : item.insertText.value;
        assert.ok(full.length > 0, 'empty insertText');
        t.diagnostic(`completion: ${JSON.stringify(full)}`);
        if (item.range) {
            assert.deepEqual(item.range.start, CURSOR, 'the replaced range does not start at the cursor');
        }
    });

    test('reports the latency of the last completion in codestral/status', async () => {
        for (let i = 0; i < 40 && !session.statuses.some((s) => typeof s.lastLatencyMs === 'number'); i++) {
            await new Promise((resolve) => setTimeout(resolve, 50));
        }
        const latest = session.statuses.at(-1);
        assert.equal(typeof latest?.lastLatencyMs, 'number',
            `no codestral/status with lastLatencyMs after a completion; statuses: ${JSON.stringify(session.statuses)}`);
        assert.ok(latest!.lastLatencyMs! >= 0);
        assert.equal(latest!.state, 'ready');
    });

    test('applies didChangeConfiguration: maxTokens 1 gives a shorter completion', async (t) => {
        assert.ok(full, 'needs the completion of the test before');
        session.configure(settingsTree({ 'model.path': tree.model.path ?? '', 'completion.maxTokens': 1 }));
        // A new line at the top: the user has typed since, and the cached suggestion no longer applies.
        session.insertAtStart('file:///project/greet.py', '# edited\n');
        const list = await session.inlineCompletion('file:///project/greet.py', CURSOR.line + 1, CURSOR.character);
        const short = list.items.map((i) => (typeof i.insertText === 'string' ? i.insertText : i.insertText.value))[0] ?? '';
        t.diagnostic(`completion with maxTokens 1: ${JSON.stringify(short)}`);
        // One token is at most 16 characters (SentencePiece's longest piece), plus a restored leading space.
        assert.ok(short.length <= 17, `maxTokens 1 gave ${JSON.stringify(short)}`);
        if (full.length > 17) {
            assert.ok(short.length < full.length, `${JSON.stringify(short)} is not shorter than ${JSON.stringify(full)}`);
        }
    });

    test('applies didChangeConfiguration: completion.enabled false gives no completion', async () => {
        const since = session.statuses.length;
        session.configure(settingsTree({ 'model.path': tree.model.path ?? '', 'completion.enabled': false }));
        session.insertAtStart('file:///project/greet.py', '# edited again\n');
        const list = await session.inlineCompletion('file:///project/greet.py', CURSOR.line + 2, CURSOR.character);
        assert.deepEqual(list.items, []);
        // Sent when the settings apply, before the answer above; a missing "disabled" status fails here.
        await session.waitForStatus('disabled', since, 10_000);
    });
});
