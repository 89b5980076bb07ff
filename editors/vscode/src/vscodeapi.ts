// The only module of ours that imports `vscode`: everything the extension needs from the editor
// goes through these functions, so unit tests can run against a fake `vscode` module.

import * as vscode from 'vscode';

export type Disposable = vscode.Disposable;
export type ExtensionContext = vscode.ExtensionContext;
export type LogOutputChannel = vscode.LogOutputChannel;
export type StatusBarItem = vscode.StatusBarItem;
export type ConfigurationChangeEvent = vscode.ConfigurationChangeEvent;

export function getConfiguration(section: string): vscode.WorkspaceConfiguration {
    return vscode.workspace.getConfiguration(section);
}

export function onDidChangeConfiguration(listener: (e: ConfigurationChangeEvent) => unknown): Disposable {
    return vscode.workspace.onDidChangeConfiguration(listener);
}

export function onDidGrantWorkspaceTrust(listener: () => unknown): Disposable {
    return vscode.workspace.onDidGrantWorkspaceTrust(listener);
}

/** Folder paths of the open workspace, first one first. */
export function workspaceFolderPaths(): string[] {
    return (vscode.workspace.workspaceFolders ?? []).map((f) => f.uri.fsPath);
}

/** Writes a setting where it takes effect: the workspace if the workspace overrides it, else the user settings. */
export async function updateSetting(section: string, key: string, value: unknown): Promise<void> {
    const config = vscode.workspace.getConfiguration(section);
    const inspected = config.inspect(key);
    const target = inspected?.workspaceValue !== undefined
        ? vscode.ConfigurationTarget.Workspace
        : vscode.ConfigurationTarget.Global;
    await config.update(key, value, target);
}

export function createStatusBarItem(id: string, name: string): StatusBarItem {
    const item = vscode.window.createStatusBarItem(id, vscode.StatusBarAlignment.Right, 100);
    item.name = name;
    return item;
}

export function themeColor(id: string): vscode.ThemeColor {
    return new vscode.ThemeColor(id);
}

export function createLogOutputChannel(name: string): LogOutputChannel {
    return vscode.window.createOutputChannel(name, { log: true });
}

export function registerCommand(id: string, run: (...args: unknown[]) => unknown): Disposable {
    return vscode.commands.registerCommand(id, run);
}

export function showErrorMessage(message: string, ...actions: string[]): Thenable<string | undefined> {
    return vscode.window.showErrorMessage(message, ...actions);
}

export function triggerInlineSuggestion(): Thenable<unknown> {
    return vscode.commands.executeCommand('editor.action.inlineSuggest.trigger');
}

export function activeDocument(): { uri: string; version: number } | undefined {
    const doc = vscode.window.activeTextEditor?.document;
    return doc ? { uri: doc.uri.toString(), version: doc.version } : undefined;
}

export function openSettings(query: string): Thenable<unknown> {
    return vscode.commands.executeCommand('workbench.action.openSettings', query);
}

/** The exports of an installed extension, activating it first; undefined if it is not installed. */
export async function extensionExports<T>(id: string): Promise<T | undefined> {
    const extension = vscode.extensions.getExtension<T>(id);
    if (!extension) {
        return undefined;
    }
    return extension.isActive ? extension.exports : await extension.activate();
}

export function firstWorkspaceUri(): vscode.Uri | undefined {
    return vscode.workspace.workspaceFolders?.[0]?.uri;
}
