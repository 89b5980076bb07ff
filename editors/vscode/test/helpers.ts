// Shared by the tests: where things are, package.json, and the server's Python.

import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

/** editors/vscode (tests run from out/test/...). */
export const PACKAGE_ROOT = path.resolve(__dirname, '..', '..');
/** The repository root: the Python packages codestral_lsp and engine live here. */
export const REPO_ROOT = path.resolve(PACKAGE_ROOT, '..', '..');

export interface PropertySchema {
    type: string | string[];
    default?: unknown;
    enum?: string[];
    minimum?: number;
    scope?: string;
    markdownDescription?: string;
}

export interface PackageJson {
    main: string;
    contributes: {
        commands: { command: string; title: string }[];
        configuration: { properties: Record<string, PropertySchema> };
    };
}

export function packageJson(): PackageJson {
    return JSON.parse(readFileSync(path.join(PACKAGE_ROOT, 'package.json'), 'utf8')) as PackageJson;
}

/** The interpreter that runs the server in tests: $CODESTRAL_PYTHON, else python3 (python on Windows). */
export function python(): string {
    return process.env.CODESTRAL_PYTHON || (process.platform === 'win32' ? 'python' : 'python3');
}

export type PythonResult = { ok: true; stdout: string } | { ok: false; reason: string };

/** Runs `python -c code` in the repository root. */
export function runPython(code: string, timeoutMs = 120_000): PythonResult {
    const result = spawnSync(python(), ['-c', code], { cwd: REPO_ROOT, encoding: 'utf8', timeout: timeoutMs });
    if (result.error) {
        return { ok: false, reason: `${python()} could not run: ${result.error.message}` };
    }
    if (result.status !== 0) {
        return { ok: false, reason: `${python()} -c failed: ${result.stderr.trim().split('\n').pop()}` };
    }
    return { ok: true, stdout: result.stdout };
}

export interface DescribedSetting {
    key: string;
    default: unknown;
    description: string;
    choices: string[] | null;
    minimum: number | null;
    /** The Python type of the default: str, bool, int, float or NoneType. */
    pyType: string;
}

/** The server's settings as `codestral_lsp.settings.describe()` lists them, or why they are not available. */
export function describeServerSettings(): { ok: true; settings: DescribedSetting[] } | { ok: false; reason: string } {
    const result = runPython('import json; from codestral_lsp.settings import describe; '
        + 'print(json.dumps([dict(s, pyType=type(s["default"]).__name__) for s in describe()]))');
    if (!result.ok) {
        return { ok: false, reason: `codestral_lsp is not importable (${result.reason})` };
    }
    return { ok: true, settings: JSON.parse(result.stdout) as DescribedSetting[] };
}

/** Why the server cannot be tested here, or undefined. */
export function serverUnavailable(): string | undefined {
    // From a neutral folder: the server must be installed (pip install -e .), as for a user.
    const help = spawnSync(python(), ['-m', 'codestral_lsp', 'serve', '--help'],
        { cwd: os.tmpdir(), encoding: 'utf8', timeout: 120_000 });
    if (help.error) {
        return `${python()} could not run: ${help.error.message}`;
    }
    return help.status === 0 ? undefined
        : `the server is not installed for ${python()} (${python()} -m codestral_lsp serve --help failed: `
            + `${help.stderr.trim().split('\n').pop()})`;
}

export function embeddedModel(): boolean {
    const dir = path.join(REPO_ROOT, 'engine', 'models');
    return existsSync(dir) && readdirSync(dir).some((name) =>
        ['params.json', 'config.json'].some((f) => existsSync(path.join(dir, name, f))));
}

/** The checkpoint for model.path: null for the embedded model. */
export function testModel(scratch: string): string | null {
    if (process.env.CODESTRAL_TEST_MODEL) {
        return process.env.CODESTRAL_TEST_MODEL;
    }
    if (embeddedModel()) {
        return null;
    }
    const dir = path.join(scratch, 'tiny-model');
    const made = spawnSync(python(), ['-m', 'engine.testing', dir], { cwd: REPO_ROOT, encoding: 'utf8', timeout: 300_000 });
    assert.equal(made.status, 0, `python -m engine.testing failed: ${made.stderr}`);
    return dir;
}
