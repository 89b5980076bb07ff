// Entry point: builds the status bar, the controller and the commands, and starts the server.

import * as os from 'node:os';
import { createServerClient } from './client';
import { Controller, ControllerDeps } from './controller';
import { discoverServer, nodeProbes } from './discovery';
import { selectedPython } from './python';
import { readSettings, SECTION } from './settings';
import { StatusBar } from './status';
import * as api from './vscodeapi';

let controller: Controller | undefined;

/** What activate returns (the extension's exports); tests await `started`. */
export interface CodestralExports {
    controller: Controller;
    started: Promise<void>;
}

export function activate(context: api.ExtensionContext, overrides: Partial<ControllerDeps> = {}): CodestralExports {
    const log = api.createLogOutputChannel('Codestral');
    const item = api.createStatusBarItem('codestral.status', 'Codestral');
    item.command = 'codestral.showLog';
    const status = new StatusBar(item, api.themeColor('statusBarItem.errorBackground'));
    const current = new Controller({ ...realDeps(log), ...overrides }, status);
    controller = current;
    context.subscriptions.push(
        log,
        item,
        api.registerCommand('codestral.enable', () => current.setEnabled(true)),
        api.registerCommand('codestral.disable', () => current.setEnabled(false)),
        api.registerCommand('codestral.restartServer', () => current.restart()),
        api.registerCommand('codestral.showLog', () => log.show()),
        api.onDidChangeConfiguration((e) => {
            if (e.affectsConfiguration(SECTION)) {
                void current.onSettingsChanged();
            }
        }),
        // Trust unlocks the workspace's codestral.server.path.
        api.onDidGrantWorkspaceTrust(() => void current.onSettingsChanged()),
    );
    return { controller: current, started: current.start() };
}

export async function deactivate(): Promise<void> {
    await controller?.stop();
    controller = undefined;
}

function realDeps(log: api.LogOutputChannel): ControllerDeps {
    return {
        readSettings: () => readSettings(api.getConfiguration(SECTION), {
            home: os.homedir(),
            workspaceFolder: api.workspaceFolderPaths()[0],
            env: process.env,
        }),
        discover: (serverPath) => discoverServer(serverPath, nodeProbes(() => selectedPython((m) => log.warn(m)))),
        createClient: (server, tree, hooks) => createServerClient(server, tree, log, hooks),
        updateSetting: (key, value) => api.updateSetting(SECTION, key, value),
        showError: api.showErrorMessage,
        openSettings: api.openSettings,
        askForSuggestion: api.triggerInlineSuggestion,
        activeDocument: api.activeDocument,
        log,
    };
}
