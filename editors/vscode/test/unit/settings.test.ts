import * as assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { buildTree, Config, didChangeConfigurationParams, expandPath, readSettings, SERVER_KEYS } from '../../src/settings';
import { describeServerSettings, packageJson } from '../helpers';

const properties = packageJson().contributes.configuration.properties;
const serverKeys = Object.keys(properties).map((k) => k.replace(/^codestral\./, '')).filter((k) => k !== 'server.path');
const ctx = { home: '/home/me', workspaceFolder: '/projects/demo', env: { MODELS: '/models' } };

/** A Config over package.json's defaults with these values on top (keys without 'codestral.'). */
function config(values: Record<string, unknown> = {}): Config {
    return {
        get: <T>(key: string) => (key in values ? values[key] : properties[`codestral.${key}`]?.default) as T,
    };
}

describe('package.json settings', () => {
    test('are the server tree keys plus codestral.server.path', () => {
        assert.deepEqual([...serverKeys].sort(), [...SERVER_KEYS].sort());
        assert.ok(properties['codestral.server.path']);
    });

    test('equal the server\'s describe(): keys, defaults, choices, minimums', (t) => {
        const described = describeServerSettings();
        if (!described.ok) {
            t.skip(`cannot compare with the server: ${described.reason}`);
            return;
        }
        assert.deepEqual([...serverKeys].sort(), described.settings.map((s) => s.key).sort());
        for (const s of described.settings) {
            const schema = properties[`codestral.${s.key}`];
            // A null default (an optional path) is an empty string in the settings editor.
            assert.deepEqual(schema.default, s.default === null ? '' : s.default, `default of ${s.key}`);
            assert.deepEqual(schema.enum, s.choices ?? undefined, `choices of ${s.key}`);
            assert.equal(schema.minimum, s.minimum ?? undefined, `minimum of ${s.key}`);
            const types: Record<string, string> = { bool: 'boolean', int: 'integer', float: 'number', tuple: 'array' };
            assert.equal(schema.type, types[s.pyType] ?? 'string', `type of ${s.key}`);
        }
    });

    test('each has a markdownDescription, a default and a scope', () => {
        for (const [key, schema] of Object.entries(properties)) {
            assert.ok(schema.markdownDescription, `${key} has no markdownDescription`);
            assert.ok('default' in schema, `${key} has no default`);
            assert.ok(schema.scope, `${key} has no scope`);
        }
    });
});

describe('buildTree', () => {
    test('nests the flat keys into the camelCase tree', () => {
        const tree = buildTree(config({ 'completion.maxTokens': 7, 'speculative.mode': 'off' }), ctx);
        assert.equal(tree.completion.maxTokens, 7);
        assert.equal(tree.speculative.mode, 'off');
        assert.equal(tree.model.device, 'auto');
        assert.deepEqual(Object.keys(tree).sort(), ['cache', 'completion', 'context', 'model', 'speculative']);
        assert.equal(Object.values(tree).reduce((n, group) => n + Object.keys(group).length, 0), SERVER_KEYS.length);
    });

    test('sends empty paths as null and expands the others', () => {
        assert.equal(buildTree(config(), ctx).model.path, null);
        assert.equal(buildTree(config(), ctx).speculative.draftPath, null);
        const tree = buildTree(config({ 'model.path': '${env:MODELS}/mini', 'speculative.draftPath': '~/draft' }), ctx);
        assert.equal(tree.model.path, '/models/mini');
        assert.equal(tree.speculative.draftPath, '/home/me/draft');
    });

    test('does not include codestral.server.path', () => {
        const tree = buildTree(config({ 'server.path': '/bin/x' }), ctx) as unknown as Record<string, unknown>;
        assert.equal(tree.server, undefined);
    });
});

describe('readSettings', () => {
    test('expands codestral.server.path; empty is undefined', () => {
        assert.equal(readSettings(config(), ctx).serverPath, undefined);
        assert.equal(readSettings(config({ 'server.path': '  ' }), ctx).serverPath, undefined);
        assert.equal(readSettings(config({ 'server.path': '${workspaceFolder}/.venv/bin/codestral-lsp' }), ctx).serverPath,
            '/projects/demo/.venv/bin/codestral-lsp');
    });
});

describe('expandPath', () => {
    test('expands ~, ${userHome}, ${workspaceFolder} and ${env:NAME}', () => {
        assert.equal(expandPath('~', ctx), '/home/me');
        assert.equal(expandPath('~/a', ctx), '/home/me/a');
        assert.equal(expandPath('a/~/b', ctx), 'a/~/b');
        assert.equal(expandPath('${userHome}/a', ctx), '/home/me/a');
        assert.equal(expandPath('${workspaceFolder}/a', ctx), '/projects/demo/a');
        assert.equal(expandPath('${env:MODELS}/${env:UNSET}x', ctx), '/models/x');
        assert.equal(expandPath('${workspaceFolder}/a', { ...ctx, workspaceFolder: undefined }), '/a');
    });
});

test('didChangeConfiguration params wrap the tree in its section', () => {
    const tree = buildTree(config(), ctx);
    assert.deepEqual(didChangeConfigurationParams(tree), { settings: { codestral: tree } });
});
