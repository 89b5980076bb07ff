import * as assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { present, StatusBar, StatusItem } from '../../src/status';

const RED = { id: 'statusBarItem.errorBackground' };

function bar() {
    const item: StatusItem & { shown: boolean } = {
        text: '', tooltip: undefined, backgroundColor: undefined, shown: false,
        show() { this.shown = true; },
    };
    return { item, status: new StatusBar(item, RED) };
}

describe('present', () => {
    const base = { message: '', lastLatencyMs: null, model: null };

    test('one icon per state', () => {
        assert.equal(present({ ...base, state: 'loading' }, undefined).text, '$(loading~spin) Codestral');
        assert.equal(present({ ...base, state: 'ready' }, undefined).text, '$(sparkle) Codestral');
        assert.equal(present({ ...base, state: 'error' }, undefined).text, '$(error) Codestral');
        assert.equal(present({ ...base, state: 'disabled' }, undefined).text, '$(circle-slash) Codestral');
    });

    test('ready shows the last latency, rounded; the tooltip has message, model and latency', () => {
        const shown = present({ state: 'ready', message: 'Model loaded', lastLatencyMs: 41.6, model: 'codestral-mini' }, undefined);
        assert.equal(shown.text, '$(sparkle) Codestral 42 ms');
        assert.equal(shown.tooltip, 'Codestral: Model loaded\nModel: codestral-mini\nLast completion: 42 ms\nClick to show the log');
        assert.equal(shown.error, false);
    });

    test('the tooltip names the backend that answered the last suggestion', () => {
        const shown = present({ state: 'ready', message: 'openai backend', lastLatencyMs: 80, model: 'openai:tiny',
            lastBackend: 'openai:tiny' }, undefined);
        assert.equal(shown.tooltip, 'Codestral: openai backend\nModel: openai:tiny\nLast completion: 80 ms\n'
            + 'Last suggestion from: openai:tiny\nClick to show the log');
        assert.doesNotMatch(present({ ...base, state: 'ready', lastBackend: null }, undefined).tooltip as string, /from/);
    });

    test('a status without lastBackend keeps the one known', () => {
        const { item, status } = bar();
        status.onServerStatus({ state: 'ready', message: '', lastLatencyMs: 9, model: 'm', lastBackend: 'mistral:codestral-latest' });
        status.onServerStatus({ state: 'ready', message: '', lastLatencyMs: 12, model: 'm' });
        assert.match(item.tooltip as string, /Last suggestion from: mistral:codestral-latest/);
    });

    test('progress shows a spinner and its percentage', () => {
        const shown = present({ ...base, state: 'loading' }, { title: 'Loading model', message: 'weights', percentage: 33.3 });
        assert.equal(shown.text, '$(loading~spin) Codestral 33%');
        assert.match(shown.tooltip as string, /Loading model: weights \(33%\)/);
    });

    test('an error is not hidden by progress', () => {
        const shown = present({ ...base, state: 'error', message: 'out of memory' }, { title: 'Loading model' });
        assert.equal(shown.text, '$(error) Codestral');
        assert.equal(shown.error, true);
    });
});

describe('StatusBar', () => {
    test('is shown at once, as starting', () => {
        const { item } = bar();
        assert.equal(item.shown, true);
        assert.equal(item.text, '$(loading~spin) Codestral');
    });

    test('follows codestral/status notifications', () => {
        const { item, status } = bar();
        status.onServerStatus({ state: 'loading', message: 'Loading codestral-mini', lastLatencyMs: null, model: 'codestral-mini' });
        assert.equal(item.text, '$(loading~spin) Codestral');
        status.onServerStatus({ state: 'ready', message: 'Ready', lastLatencyMs: 120, model: 'codestral-mini' });
        assert.equal(item.text, '$(sparkle) Codestral 120 ms');
        assert.equal(item.backgroundColor, undefined);
        status.onServerStatus({ state: 'disabled', message: 'Completions are off' });
        assert.equal(item.text, '$(circle-slash) Codestral');
        assert.match(item.tooltip as string, /Model: codestral-mini/, 'fields left out keep their value');
        status.onServerStatus({ state: 'error', message: 'CUDA out of memory', lastLatencyMs: null, model: null });
        assert.equal(item.text, '$(error) Codestral');
        assert.equal(item.backgroundColor, RED);
        assert.match(item.tooltip as string, /CUDA out of memory/);
    });

    test('an unknown state keeps the last one', () => {
        const { item, status } = bar();
        status.onServerStatus({ state: 'ready', message: '', lastLatencyMs: null, model: null });
        status.onServerStatus({ state: 'dreaming' as 'ready', message: '?' });
        assert.equal(item.text, '$(sparkle) Codestral');
    });

    test('follows $/progress begin, report and end', () => {
        const { item, status } = bar();
        status.onServerStatus({ state: 'loading', message: 'Loading', lastLatencyMs: null, model: null });
        status.onProgress('t1', { kind: 'begin', title: 'Loading model', percentage: 0 });
        assert.equal(item.text, '$(loading~spin) Codestral 0%');
        status.onProgress('t1', { kind: 'report', message: 'layer 3 of 6', percentage: 50 });
        assert.equal(item.text, '$(loading~spin) Codestral 50%');
        assert.match(item.tooltip as string, /Loading model: layer 3 of 6 \(50%\)/);
        status.onProgress('other', { kind: 'report', percentage: 99 });
        assert.equal(item.text, '$(loading~spin) Codestral 50%', 'a report for an unknown token is ignored');
        status.onServerStatus({ state: 'ready', message: 'Ready', lastLatencyMs: null, model: 'm' });
        assert.equal(item.text, '$(loading~spin) Codestral 50%', 'progress shows until it ends');
        status.onProgress('t1', { kind: 'end' });
        assert.equal(item.text, '$(sparkle) Codestral');
    });

    test('failed and starting from the extension side', () => {
        const { item, status } = bar();
        status.onProgress('t', { kind: 'begin', title: 'Loading model' });
        status.failed('The server stopped');
        assert.equal(item.text, '$(error) Codestral');
        assert.equal(status.state, 'error');
        status.starting();
        assert.equal(item.text, '$(loading~spin) Codestral');
        assert.equal(item.backgroundColor, undefined);
    });
});
