// The bundled extension (dist/extension.js) with its real LanguageClient and the real server; only
// VS Code itself is the fake. Covers what the protocol-level test cannot: our wiring of the client
// (discovery, notifications, progress middleware, settings changes, commands) into the editor.

import '../fakes/hook';

import * as assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { CodestralExports } from '../../src/extension';
import * as vscode from '../fakes/vscode';
import { packageJson, PACKAGE_ROOT, python, serverUnavailable, testModel } from '../helpers';

const { fake } = vscode;
const bundle = path.join(PACKAGE_ROOT, packageJson().main);
const LOAD_TIMEOUT_MS = 300_000;

interface InlineProvider {
    provideInlineCompletionItems(document: unknown, position: vscode.Position, context: unknown, token: unknown):
        Promise<vscode.InlineCompletionList | vscode.InlineCompletionItem[] | undefined>;
}

const token = { isCancellationRequested: false, onCancellationRequested: () => new vscode.Disposable(() => undefined) };
const automatic = { triggerKind: vscode.InlineCompletionTriggerKind.Automatic, selectedCompletionInfo: undefined };

async function until(what: string, condition: () => boolean, timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!condition()) {
        if (Date.now() > deadline) {
            const log = fake.channels[0]?.lines.slice(-30).join('\n');
            throw new Error(`${what}: not within ${timeoutMs} ms. Status bar: ${JSON.stringify(fake.statusItems[0]?.texts)}\nlog:\n${log}`);
        }
        await new Promise((resolve) => setTimeout(resolve, 50));
    }
}

async function complete(document: vscode.FakeTextDocument, line: number, character: number): Promise<string[]> {
    const provider = fake.providers.get('registerInlineCompletionItemProvider')?.[0] as InlineProvider | undefined;
    assert.ok(provider, 'the language client registered no inline completion provider');
    const result = await provider.provideInlineCompletionItems(document, new vscode.Position(line, character), automatic, token);
    const items = Array.isArray(result) ? result : result?.items ?? [];
    return items.map((i) => (typeof i.insertText === 'string' ? i.insertText : i.insertText.value));
}

const skip = serverUnavailable() ?? (existsSync(bundle) ? undefined : 'no bundle: run npm run build');

describe('the bundled extension with the real server', { skip, timeout: LOAD_TIMEOUT_MS * 2 }, () => {
    let scratch: string;
    let extension: { activate(context: unknown): CodestralExports; deactivate(): Promise<void> };
    let exports: CodestralExports;
    const context = { subscriptions: [] as { dispose(): unknown }[] };
    const text = 'def add(a, b):\n    """Return the sum of a and b."""\n    return ';
    const document = new vscode.FakeTextDocument('/project/add.py', 'python', text);

    before(async () => {
        scratch = mkdtempSync(path.join(os.tmpdir(), 'codestral-extension-'));
        fake.reset();
        fake.loadDefaults(packageJson().contributes.configuration.properties);
        fake.userSettings.set('codestral.model.path', testModel(scratch) ?? '');
        // The interpreter "selected in the Python extension" is the one under test.
        fake.extensions.set('ms-python.python', {
            isActive: true, activate: async () => undefined,
            exports: { settings: { getExecutionDetails: () => ({ execCommand: [python()] }) } },
        });
        fake.textDocuments.push(document);
        extension = require(bundle);
        exports = extension.activate(context);
        await exports.started;
    });

    after(async () => {
        await extension?.deactivate();
        context.subscriptions.forEach((d) => d.dispose());
        if (scratch) {
            rmSync(scratch, { recursive: true, force: true });
        }
    });

    test('the status bar goes from loading to ready', async () => {
        const item = fake.statusItems[0];
        await until('a ready status bar', () => {
            assert.ok(!item.text.startsWith('$(error)'), `the status bar shows an error: ${item.tooltip}\n`
                + fake.channels[0].lines.slice(-30).join('\n'));
            return item.text.startsWith('$(sparkle)');
        }, LOAD_TIMEOUT_MS);
        assert.ok(item.texts.some((t) => t.startsWith('$(loading~spin)')), JSON.stringify(item.texts));
        assert.match(item.tooltip as string, /^Codestral: .+\nModel: /);
    });

    test('model loading progress reaches VS Code through the middleware', () => {
        assert.ok(fake.progressTitles.length > 0, 'no window.withProgress: $/progress did not reach VS Code');
    });

    test('an open Python document gets an inline completion', async () => {
        const [first] = await complete(document, 2, 11);
        assert.ok(first, 'no inline completion');
    });

    test('a settings change reaches the server without a restart', async () => {
        fake.userSettings.set('codestral.completion.maxTokens', 1);
        fake.fireConfigChange('codestral.completion.maxTokens');
        await exports.controller.whenIdle();
        assert.equal(fake.providers.get('registerInlineCompletionItemProvider')?.length, 1, 'the server was restarted');
        const other = new vscode.FakeTextDocument('/project/mul.py', 'python', text.replace(/add|sum/g, (w) => (w === 'add' ? 'mul' : 'product')));
        fake.openDocument(other);
        const [short] = await complete(other, 2, 11);
        assert.ok((short ?? '').length <= 17, `maxTokens 1 gave ${JSON.stringify(short)}`);
    });

    test('codestral.disable: no more completions', async () => {
        await fake.commands.get('codestral.disable')!();
        assert.equal(fake.userSettings.get('codestral.completion.enabled'), false);
        await exports.controller.whenIdle();
        assert.deepEqual(await complete(document, 2, 11), []);
    });
});
