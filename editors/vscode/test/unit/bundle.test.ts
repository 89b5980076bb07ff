import '../fakes/hook';

import * as assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import * as vscode from '../fakes/vscode';
import { packageJson, PACKAGE_ROOT } from '../helpers';

const { fake } = vscode;
const bundle = path.join(PACKAGE_ROOT, packageJson().main);

test('the esbuild bundle activates on its own and reports a wrong server path', { skip: existsSync(bundle) ? undefined : 'no bundle: run npm run build' }, async () => {
    fake.reset();
    fake.loadDefaults(packageJson().contributes.configuration.properties);
    fake.userSettings.set('codestral.server.path', path.join(PACKAGE_ROOT, 'no-such-codestral-lsp'));
    const extension = require(bundle) as { activate(context: unknown): { started: Promise<void> }; deactivate(): Promise<void> };
    const context = { subscriptions: [] as { dispose(): unknown }[] };
    await extension.activate(context).started;
    assert.equal(fake.commands.size, 4);
    assert.match(fake.errors[0].message, /codestral\.server\.path is ".*no-such-codestral-lsp", which is not a file/);
    assert.equal(fake.statusItems[0].text, '$(error) Codestral');
    await extension.deactivate();
    context.subscriptions.forEach((d) => d.dispose());
});
