// Which command starts the server: `codestral.server.path`, else `codestral-lsp` on PATH, else the
// selected Python interpreter (or python3) with `-m codestral_lsp`. Pure decisions over injected
// probes, so the order is unit-tested; `nodeProbes` are the real probes.

import { execFile } from 'node:child_process';
import { statSync } from 'node:fs';
import * as path from 'node:path';

export interface ServerCommand {
    command: string;
    args: string[];
    /** Where it came from, for the log. */
    source: string;
}

export type Discovery = { ok: true; server: ServerCommand } | { ok: false; message: string };

export interface Probes {
    /** An executable of this name on PATH, or undefined. */
    which(name: string): string | undefined;
    isFile(file: string): boolean;
    /** The interpreter chosen in the Python extension, if it is installed. */
    selectedPython(): Promise<string | undefined>;
    /** Whether this interpreter can import codestral_lsp. */
    hasServerModule(python: string): Promise<boolean>;
    platform: NodeJS.Platform;
}

const INSTALL = 'pip install codestral-lsp (or pip install -e . in a checkout of codestral-lsp)';

export async function discoverServer(serverPath: string | undefined, probes: Probes): Promise<Discovery> {
    if (serverPath) {
        if (!probes.isFile(serverPath)) {
            return {
                ok: false,
                message: `The setting codestral.server.path is "${serverPath}", which is not a file. `
                    + 'Point it at the codestral-lsp executable, or clear it to use codestral-lsp from PATH.',
            };
        }
        return found(serverPath, ['serve'], 'the setting codestral.server.path');
    }
    const onPath = probes.which('codestral-lsp');
    if (onPath) {
        return found(onPath, ['serve'], 'PATH');
    }
    const selected = await probes.selectedPython();
    const fallbackName = probes.platform === 'win32' ? 'python' : 'python3';
    const python = selected ?? probes.which(fallbackName);
    if (!python) {
        return {
            ok: false,
            message: `The codestral-lsp server was not found: it is not on PATH and there is no ${fallbackName} either. `
                + `Install it with ${INSTALL}, or set codestral.server.path to the codestral-lsp executable.`,
        };
    }
    if (await probes.hasServerModule(python)) {
        const source = selected ? 'the interpreter selected in the Python extension' : `${fallbackName} on PATH`;
        return found(python, ['-m', 'codestral_lsp', 'serve'], source);
    }
    return {
        ok: false,
        message: `The codestral-lsp server was not found: it is not on PATH and ${python} cannot import codestral_lsp. `
            + `Install it into that interpreter with ${INSTALL}, `
            + 'or set codestral.server.path to the codestral-lsp executable.',
    };
}

function found(command: string, args: string[], source: string): Discovery {
    return { ok: true, server: { command, args, source } };
}

/** Probes on the real file system and processes; the Python extension lookup is passed in. */
export function nodeProbes(selectedPython: () => Promise<string | undefined>, env = process.env): Probes {
    const platform = process.platform;
    const isFile = (file: string) => {
        try {
            return statSync(file).isFile();
        } catch {
            return false;
        }
    };
    const which = (name: string) => {
        const extensions = platform === 'win32' ? (env.PATHEXT ?? '.EXE;.CMD;.BAT').split(';') : [''];
        for (const dir of (env.PATH ?? '').split(path.delimiter).filter(Boolean)) {
            for (const ext of extensions) {
                const candidate = path.join(dir, name + ext);
                if (isFile(candidate)) {
                    return candidate;
                }
            }
        }
        return undefined;
    };
    const hasServerModule = (python: string) => new Promise<boolean>((resolve) => {
        const code = 'import importlib.util, sys; sys.exit(0 if importlib.util.find_spec("codestral_lsp") else 1)';
        execFile(python, ['-c', code], { timeout: 20_000 }, (error) => resolve(!error));
    });
    return { which, isFile, selectedPython, hasServerModule, platform };
}
