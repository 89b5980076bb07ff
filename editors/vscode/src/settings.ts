// The `codestral.*` settings: the server's settings tree (DESIGN.md section 5, same keys as
// `codestral_lsp.settings.describe()`), plus `codestral.server.path`, which only the extension reads.

export const SECTION = 'codestral';
export const SERVER_PATH_KEY = 'server.path';

/** The server's settings tree as it goes on the wire (initializationOptions, didChangeConfiguration). */
export interface ServerSettings {
    model: {
        path: string | null;
        device: 'auto' | 'cpu' | 'cuda' | 'mps';
        dtype: 'auto' | 'float32' | 'bfloat16' | 'float16';
        quantize: 'none' | 'int8';
        backend: 'local' | 'mistral' | 'openai';
        endpoint: string | null;
        apiKeyEnv: string | null;
        remoteModel: string | null;
        fimPrompt: 'suffix' | 'tokens';
        requestTimeoutMs: number;
        retries: number;
        cascade: 'off' | 'on';
        cascadeThreshold: number;
        cascadeRemotePerMinute: number;
    };
    completion: {
        enabled: boolean;
        maxTokens: number;
        multiline: 'auto' | 'always' | 'never';
        debounceMs: number;
        timeoutMs: number;
        prefixTokens: number;
        suffixTokens: number;
        temperature: number;
    };
    context: { neighbourFiles: number; neighbourTokens: number; exclude: string[]; localInExcluded: boolean };
    speculative: { mode: 'off' | 'ngram' | 'draft'; draftPath: string | null; k: number; ngram: number };
    cache: { sessions: number; memoryMb: number };
}

type DottedKey<T> = { [G in keyof T & string]: `${G}.${keyof T[G] & string}` }[keyof T & string];
export type ServerKey = DottedKey<ServerSettings>;

/** Every key of the tree; a test checks them against package.json and the server's describe(). */
export const SERVER_KEYS: readonly ServerKey[] = [
    'model.path', 'model.device', 'model.dtype', 'model.quantize',
    'model.backend', 'model.endpoint', 'model.apiKeyEnv', 'model.remoteModel', 'model.fimPrompt',
    'model.requestTimeoutMs', 'model.retries', 'model.cascade', 'model.cascadeThreshold', 'model.cascadeRemotePerMinute',
    'completion.enabled', 'completion.maxTokens', 'completion.multiline', 'completion.debounceMs',
    'completion.timeoutMs', 'completion.prefixTokens', 'completion.suffixTokens', 'completion.temperature',
    'context.neighbourFiles', 'context.neighbourTokens', 'context.exclude', 'context.localInExcluded',
    'speculative.mode', 'speculative.draftPath', 'speculative.k', 'speculative.ngram',
    'cache.sessions', 'cache.memoryMb',
];

/** Keys that name files: variables are expanded, and empty means null (the server's default). */
const PATH_KEYS: ReadonlySet<ServerKey> = new Set<ServerKey>(['model.path', 'speculative.draftPath']);

/** What `getConfiguration('codestral')` returns, as far as we use it. */
export interface Config {
    get<T>(key: string): T | undefined;
}

/** What `${...}` and `~` expand to. */
export interface ExpandContext {
    home: string;
    workspaceFolder: string | undefined;
    env: Record<string, string | undefined>;
}

export interface ExtensionSettings {
    /** `codestral.server.path`, expanded; undefined when empty. */
    serverPath: string | undefined;
    tree: ServerSettings;
}

export function readSettings(config: Config, ctx: ExpandContext): ExtensionSettings {
    const serverPath = expandPath(config.get<string>(SERVER_PATH_KEY) ?? '', ctx);
    return { serverPath: serverPath || undefined, tree: buildTree(config, ctx) };
}

/** The nested tree from the flat `codestral.group.key` settings. Keys the user left unset get the
 * defaults from package.json, which equal the server's (checked by a test). */
export function buildTree(config: Config, ctx: ExpandContext): ServerSettings {
    const tree: Record<string, Record<string, unknown>> = {};
    for (const key of SERVER_KEYS) {
        const [group, name] = key.split('.');
        let value = config.get<unknown>(key);
        if (PATH_KEYS.has(key)) {
            value = typeof value === 'string' && value !== '' ? expandPath(value, ctx) : null;
        }
        if (value !== undefined) {
            (tree[group] ??= {})[name] = value;
        }
    }
    return tree as unknown as ServerSettings;
}

/**
 * Expands `~`, `${userHome}`, `${workspaceFolder}` and `${env:NAME}` in a path setting.
 * `${workspaceFolder}` without a folder open, and unset variables, expand to ''.
 *
 *     expandPath('~/models/${env:MODEL}', {home: '/h', env: {MODEL: 'mini'}, ...}) === '/h/models/mini'
 */
export function expandPath(value: string, ctx: ExpandContext): string {
    const trimmed = value.trim();
    const withHome = trimmed === '~' || /^~[\\/]/.test(trimmed) ? ctx.home + trimmed.slice(1) : trimmed;
    return withHome.replace(/\$\{(userHome|workspaceFolder|env:([^}]+))\}/g, (_, name: string, envName?: string) => {
        if (envName !== undefined) {
            return ctx.env[envName] ?? '';
        }
        return (name === 'userHome' ? ctx.home : ctx.workspaceFolder) ?? '';
    });
}

/** How the server expects a changed tree in `workspace/didChangeConfiguration`. */
export function didChangeConfigurationParams(tree: ServerSettings): { settings: { codestral: ServerSettings } } {
    return { settings: { codestral: tree } };
}
