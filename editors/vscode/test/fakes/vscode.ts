// A fake `vscode` module: just the API that src/vscodeapi.ts wraps, with its state open to tests
// through `fake`. Any other name resolves to an inert class, so vscode-languageclient can load.

type Listener<T> = (e: T) => unknown;

export class EventEmitter<T> {
    private listeners: Listener<T>[] = [];
    event = (listener: Listener<T>) => {
        this.listeners.push(listener);
        return { dispose: () => { this.listeners = this.listeners.filter((l) => l !== listener); } };
    };
    fire(e: T): void {
        for (const listener of [...this.listeners]) {
            listener(e);
        }
    }
    dispose(): void {
        this.listeners = [];
    }
}

export class Disposable {
    constructor(private readonly onDispose: () => void) {}
    static from(...items: { dispose(): unknown }[]): Disposable {
        return new Disposable(() => items.forEach((i) => i.dispose()));
    }
    dispose(): void {
        this.onDispose();
    }
}

export class ThemeColor {
    constructor(readonly id: string) {}
}

export class Uri {
    private constructor(readonly scheme: string, readonly fsPath: string) {}
    static file(fsPath: string): Uri {
        return new Uri('file', fsPath);
    }
    static parse(value: string): Uri {
        const match = /^([a-z-]+):(?:\/\/)?(.*)$/.exec(value);
        return match ? new Uri(match[1], decodeURIComponent(match[2])) : new Uri('file', value);
    }
    toString(): string {
        return `${this.scheme}://${encodeURI(this.fsPath)}`;
    }
}

export class Position {
    constructor(readonly line: number, readonly character: number) {}
}

export class Range {
    constructor(readonly start: Position, readonly end: Position) {}
}

export class SnippetString {
    constructor(readonly value: string) {}
}

export class InlineCompletionItem {
    filterText: string | undefined;
    constructor(readonly insertText: string | SnippetString, readonly range?: Range, readonly command?: unknown) {}
}

export class InlineCompletionList {
    constructor(readonly items: InlineCompletionItem[]) {}
}

export class CodeActionKind {
    static readonly Empty = new CodeActionKind('');
    static readonly QuickFix = new CodeActionKind('quickfix');
    static readonly Refactor = new CodeActionKind('refactor');
    static readonly RefactorExtract = new CodeActionKind('refactor.extract');
    static readonly RefactorInline = new CodeActionKind('refactor.inline');
    static readonly RefactorMove = new CodeActionKind('refactor.move');
    static readonly RefactorRewrite = new CodeActionKind('refactor.rewrite');
    static readonly Source = new CodeActionKind('source');
    static readonly SourceOrganizeImports = new CodeActionKind('source.organizeImports');
    static readonly SourceFixAll = new CodeActionKind('source.fixAll');
    static readonly Notebook = new CodeActionKind('notebook');
    constructor(readonly value: string) {}
    append(part: string): CodeActionKind {
        return new CodeActionKind(this.value ? `${this.value}.${part}` : part);
    }
}

export enum InlineCompletionTriggerKind { Invoke = 0, Automatic = 1 }

/** A document as the editor holds it (only what the language client reads). */
export class FakeTextDocument {
    version = 1;
    isClosed = false;
    isDirty = false;
    isUntitled = false;
    readonly uri: Uri;
    constructor(fsPath: string, readonly languageId: string, private readonly text: string) {
        this.uri = Uri.file(fsPath);
    }
    get fileName(): string {
        return this.uri.fsPath;
    }
    getText(): string {
        return this.text;
    }
    get lineCount(): number {
        return this.text.split('\n').length;
    }
}

export enum StatusBarAlignment { Left = 1, Right = 2 }
export enum ConfigurationTarget { Global = 1, Workspace = 2, WorkspaceFolder = 3 }
export enum LogLevel { Off = 0, Trace = 1, Debug = 2, Info = 3, Warning = 4, Error = 5 }
export const version = '1.91.0';

export class FakeStatusBarItem {
    /** Every text it has shown, oldest first. */
    readonly texts: string[] = [];
    private shown = '';
    get text(): string {
        return this.shown;
    }
    set text(value: string) {
        this.shown = value;
        this.texts.push(value);
    }
    tooltip: unknown;
    backgroundColor: unknown;
    command: unknown;
    name: string | undefined;
    visible = false;
    constructor(readonly id: string, readonly alignment: StatusBarAlignment, readonly priority: number) {}
    show(): void { this.visible = true; }
    hide(): void { this.visible = false; }
    dispose(): void { this.visible = false; }
}

export class FakeLogOutputChannel {
    lines: string[] = [];
    shown = false;
    logLevel = LogLevel.Info;
    readonly onDidChangeLogLevel = new EventEmitter<LogLevel>().event;
    constructor(readonly name: string) {}
    trace(m: string): void { this.lines.push(`trace ${m}`); }
    debug(m: string): void { this.lines.push(`debug ${m}`); }
    info(m: string): void { this.lines.push(`info ${m}`); }
    warn(m: string): void { this.lines.push(`warn ${m}`); }
    error(m: unknown): void { this.lines.push(`error ${String(m)}`); }
    append(m: string): void { this.lines.push(m); }
    appendLine(m: string): void { this.lines.push(m); }
    show(): void { this.shown = true; }
    hide(): void { this.shown = false; }
    clear(): void { this.lines = []; }
    dispose(): void {}
}

/** Test-side control of the fake editor. */
export const fake = {
    /** User settings, by full key ('codestral.completion.maxTokens'). */
    userSettings: new Map<string, unknown>(),
    /** Workspace settings, by full key. */
    workspaceSettings: new Map<string, unknown>(),
    /** Defaults, by full key: filled from package.json by `loadDefaults`. */
    defaults: new Map<string, unknown>(),
    commands: new Map<string, (...args: unknown[]) => unknown>(),
    executed: [] as unknown[][],
    errors: [] as { message: string; actions: string[] }[],
    /** What showErrorMessage resolves to. */
    errorAnswer: undefined as string | undefined,
    statusItems: [] as FakeStatusBarItem[],
    channels: [] as FakeLogOutputChannel[],
    extensions: new Map<string, { isActive: boolean; exports: unknown; activate(): Promise<unknown> }>(),
    workspaceFolders: undefined as { uri: Uri }[] | undefined,
    /** Open documents. */
    textDocuments: [] as FakeTextDocument[],
    /** Providers that vscode-languageclient registered, by the name of the register function. */
    providers: new Map<string, unknown[]>(),
    /** Titles of window.withProgress calls (what VS Code shows for $/progress). */
    progressTitles: [] as string[],
    documentOpened: new EventEmitter<FakeTextDocument>(),
    configChanged: new EventEmitter<{ affectsConfiguration(section: string): boolean }>(),
    trustGranted: new EventEmitter<void>(),

    reset(): void {
        this.userSettings.clear();
        this.workspaceSettings.clear();
        this.commands.clear();
        this.executed = [];
        this.errors = [];
        this.errorAnswer = undefined;
        this.statusItems = [];
        this.channels = [];
        this.extensions.clear();
        this.workspaceFolders = undefined;
        this.textDocuments = [];
        this.providers.clear();
        this.progressTitles = [];
        this.documentOpened = new EventEmitter();
        this.configChanged = new EventEmitter();
        this.trustGranted = new EventEmitter();
    },

    loadDefaults(properties: Record<string, { default?: unknown }>): void {
        for (const [key, schema] of Object.entries(properties)) {
            this.defaults.set(key, schema.default);
        }
    },

    /** Opens a document, as when the user opens a file. */
    openDocument(document: FakeTextDocument): void {
        this.textDocuments.push(document);
        this.documentOpened.fire(document);
    },

    /** Fires onDidChangeConfiguration for these full keys. */
    fireConfigChange(...keys: string[]): void {
        this.configChanged.fire({
            affectsConfiguration: (section) => keys.some((k) => k === section || k.startsWith(`${section}.`)),
        });
    },
};

/** Unknown `onDid...`/`onWill...` events of a namespace never fire. */
function withEvents<T extends object>(namespace: T): T {
    return new Proxy(namespace, {
        get(target, name) {
            if (typeof name === 'string' && !(name in target) && /^on(Did|Will)/.test(name)) {
                return () => new Disposable(() => undefined);
            }
            return target[name as keyof T];
        },
    });
}

function value(full: string): unknown {
    for (const layer of [fake.workspaceSettings, fake.userSettings, fake.defaults]) {
        if (layer.has(full)) {
            return layer.get(full);
        }
    }
    return undefined;
}

export const workspace = withEvents({
    getConfiguration(section: string) {
        const full = (key: string) => `${section}.${key}`;
        return {
            get: <T>(key: string, fallback?: T) => (value(full(key)) ?? fallback) as T,
            has: (key: string) => value(full(key)) !== undefined,
            inspect: (key: string) => ({
                key: full(key),
                defaultValue: fake.defaults.get(full(key)),
                globalValue: fake.userSettings.get(full(key)),
                workspaceValue: fake.workspaceSettings.get(full(key)),
            }),
            update: async (key: string, v: unknown, target: ConfigurationTarget) => {
                const layer = target === ConfigurationTarget.Global ? fake.userSettings : fake.workspaceSettings;
                layer.set(full(key), v);
                fake.fireConfigChange(full(key));
            },
        };
    },
    onDidChangeConfiguration: (listener: Listener<{ affectsConfiguration(s: string): boolean }>) =>
        fake.configChanged.event(listener),
    onDidGrantWorkspaceTrust: (listener: Listener<void>) => fake.trustGranted.event(listener),
    onDidOpenTextDocument: (listener: Listener<FakeTextDocument>) => fake.documentOpened.event(listener),
    get workspaceFolders() {
        return fake.workspaceFolders;
    },
    get textDocuments() {
        return fake.textDocuments;
    },
    isTrusted: true,
    notebookDocuments: [],
    createFileSystemWatcher: () => withEvents({ dispose: () => undefined }),
    registerTextDocumentContentProvider: () => new Disposable(() => undefined),
});

/** Documents match a selector by scheme (and language, when the filter has one). */
function score(selector: unknown, document: FakeTextDocument): number {
    const filters = Array.isArray(selector) ? selector : [selector];
    return filters.some((f: { scheme?: string; language?: string } | string) => typeof f === 'string'
        ? f === document.languageId
        : (!f.scheme || f.scheme === document.uri.scheme) && (!f.language || f.language === document.languageId)) ? 10 : 0;
}

export const languages = new Proxy({
    match: score,
    createDiagnosticCollection: () => ({ set() {}, delete() {}, clear() {}, dispose() {} }),
}, {
    get(target, name) {
        if (typeof name === 'string' && name.startsWith('register')) {
            return (...args: unknown[]) => {
                fake.providers.set(name, [...(fake.providers.get(name) ?? []), args.find((a, i) => i > 0 && typeof a === 'object')]);
                return new Disposable(() => undefined);
            };
        }
        return target[name as keyof typeof target];
    },
});

export const env = { language: 'en', appName: 'Visual Studio Code', machineId: 'fake', sessionId: 'fake' };

export const window = withEvents({
    createStatusBarItem(id: string, alignment: StatusBarAlignment, priority: number) {
        const item = new FakeStatusBarItem(id, alignment, priority);
        fake.statusItems.push(item);
        return item;
    },
    createOutputChannel(name: string) {
        const channel = new FakeLogOutputChannel(name);
        fake.channels.push(channel);
        return channel;
    },
    async showErrorMessage(message: string, ...actions: string[]) {
        fake.errors.push({ message, actions });
        return fake.errorAnswer;
    },
    async showWarningMessage(message: string) {
        fake.errors.push({ message, actions: [] });
        return undefined;
    },
    async showInformationMessage() {
        return undefined;
    },
    async withProgress(options: { title?: string }, task: (progress: unknown, token: unknown) => Promise<unknown>) {
        fake.progressTitles.push(options.title ?? '');
        const token = { isCancellationRequested: false, onCancellationRequested: () => new Disposable(() => undefined) };
        return task({ report: () => undefined }, token);
    },
    activeTextEditor: undefined,
    visibleTextEditors: [],
    tabGroups: withEvents({ all: [] }),
});

export enum ProgressLocation { SourceControl = 1, Window = 10, Notification = 15 }

export const commands = {
    registerCommand(id: string, run: (...args: unknown[]) => unknown) {
        fake.commands.set(id, run);
        return new Disposable(() => fake.commands.delete(id));
    },
    async executeCommand(...args: unknown[]) {
        fake.executed.push(args);
    },
};

export const extensions = {
    getExtension: (id: string) => fake.extensions.get(id),
};

// Names we do not fake become inert classes (vscode-languageclient extends some at load time).
const inert = new Map<string | symbol, unknown>();
module.exports = new Proxy(module.exports, {
    get(target, name) {
        if (name in target || typeof name === 'symbol' || name === 'then') {
            return target[name as string];
        }
        if (!inert.has(name)) {
            inert.set(name, class {});
        }
        return inert.get(name);
    },
});
