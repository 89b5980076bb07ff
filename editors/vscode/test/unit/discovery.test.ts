import * as assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, test } from 'node:test';
import { Discovery, discoverServer, nodeProbes, Probes } from '../../src/discovery';

interface World {
    files?: string[];
    onPath?: Record<string, string>;
    selected?: string;
    withModule?: string[];
    platform?: NodeJS.Platform;
}

function probes(world: World): Probes & { asked: string[] } {
    const asked: string[] = [];
    return {
        asked,
        which: (name) => world.onPath?.[name],
        isFile: (file) => world.files?.includes(file) ?? false,
        selectedPython: async () => world.selected,
        hasServerModule: async (python) => {
            asked.push(python);
            return world.withModule?.includes(python) ?? false;
        },
        platform: world.platform ?? 'linux',
    };
}

function command(d: Discovery): string[] {
    assert.ok(d.ok, d.ok ? '' : d.message);
    return [d.server.command, ...d.server.args];
}

function failure(d: Discovery): string {
    assert.ok(!d.ok, 'expected no server');
    return d.message;
}

describe('discoverServer', () => {
    const everything: World = {
        files: ['/opt/codestral-lsp'],
        onPath: { 'codestral-lsp': '/usr/bin/codestral-lsp', python3: '/usr/bin/python3' },
        selected: '/venv/bin/python',
        withModule: ['/venv/bin/python', '/usr/bin/python3'],
    };

    test('1. codestral.server.path wins', async () => {
        assert.deepEqual(command(await discoverServer('/opt/codestral-lsp', probes(everything))),
            ['/opt/codestral-lsp', 'serve']);
    });

    test('a server.path that is not a file is an error, not a silent fallback', async () => {
        const message = failure(await discoverServer('/nope/codestral-lsp', probes(everything)));
        assert.match(message, /codestral\.server\.path is "\/nope\/codestral-lsp", which is not a file/);
    });

    test('2. then codestral-lsp on PATH', async () => {
        assert.deepEqual(command(await discoverServer(undefined, probes(everything))), ['/usr/bin/codestral-lsp', 'serve']);
    });

    test('3. then the interpreter selected in the Python extension', async () => {
        const p = probes({ ...everything, onPath: { python3: '/usr/bin/python3' } });
        const d = await discoverServer(undefined, p);
        assert.deepEqual(command(d), ['/venv/bin/python', '-m', 'codestral_lsp', 'serve']);
        assert.ok(d.ok && /Python extension/.test(d.server.source));
    });

    test('4. then python3 on PATH', async () => {
        const p = probes({ ...everything, onPath: { python3: '/usr/bin/python3' }, selected: undefined });
        assert.deepEqual(command(await discoverServer(undefined, p)), ['/usr/bin/python3', '-m', 'codestral_lsp', 'serve']);
    });

    test('on Windows the fallback is python', async () => {
        const p = probes({ onPath: { python: 'C:\\Python\\python.exe' }, withModule: ['C:\\Python\\python.exe'], platform: 'win32' });
        assert.deepEqual(command(await discoverServer(undefined, p)),
            ['C:\\Python\\python.exe', '-m', 'codestral_lsp', 'serve']);
    });

    test('an interpreter without codestral_lsp gives an error that says how to fix it', async () => {
        const p = probes({ ...everything, onPath: {}, withModule: [] });
        const message = failure(await discoverServer(undefined, p));
        assert.deepEqual(p.asked, ['/venv/bin/python']);
        assert.match(message, /\/venv\/bin\/python cannot import codestral_lsp/);
        assert.match(message, /pip install codestral-lsp/);
        assert.match(message, /codestral\.server\.path/);
    });

    test('no interpreter at all gives an error that says how to fix it', async () => {
        const message = failure(await discoverServer(undefined, probes({})));
        assert.match(message, /not on PATH and there is no python3/);
        assert.match(message, /pip install codestral-lsp/);
    });
});

describe('nodeProbes', () => {
    test('which finds executables on PATH; isFile; hasServerModule on a failing interpreter', async (t) => {
        const dir = mkdtempSync(path.join(os.tmpdir(), 'codestral-which-'));
        t.after(() => rmSync(dir, { recursive: true, force: true }));
        const exe = path.join(dir, process.platform === 'win32' ? 'codestral-lsp.CMD' : 'codestral-lsp');
        writeFileSync(exe, '');
        chmodSync(exe, 0o755);
        const p = nodeProbes(async () => undefined, { PATH: ['/does/not/exist', dir].join(path.delimiter), PATHEXT: '.EXE;.CMD' });
        assert.equal(p.which('codestral-lsp'), exe);
        assert.equal(p.which('no-such-program'), undefined);
        assert.equal(p.isFile(exe), true);
        assert.equal(p.isFile(dir), false);
        assert.equal(await p.hasServerModule(path.join(dir, 'no-such-python')), false);
    });
});
