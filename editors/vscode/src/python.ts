// The interpreter selected in the Python extension (ms-python.python), when it is installed.

import * as api from './vscodeapi';

/** The parts of the Python extension's API that we use. */
interface PythonExtensionApi {
    ready?: Thenable<void>;
    environments?: {
        getActiveEnvironmentPath(resource?: unknown): { id: string; path: string };
        resolveEnvironment(env: { id: string; path: string }): Thenable<{ executable: { uri?: { fsPath: string } } } | undefined>;
    };
    settings?: { getExecutionDetails(resource?: unknown): { execCommand?: string[] } };
}

export async function selectedPython(log: (message: string) => void): Promise<string | undefined> {
    try {
        const python = await api.extensionExports<PythonExtensionApi>('ms-python.python');
        if (!python) {
            return undefined;
        }
        await python.ready;
        const resource = api.firstWorkspaceUri();
        if (python.environments) {
            const active = python.environments.getActiveEnvironmentPath(resource);
            const resolved = await python.environments.resolveEnvironment(active);
            return resolved?.executable.uri?.fsPath;
        }
        return python.settings?.getExecutionDetails(resource).execCommand?.[0];
    } catch (error) {
        log(`Could not ask the Python extension for its interpreter: ${String(error)}`);
        return undefined;
    }
}
